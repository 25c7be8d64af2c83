"""The ``federate`` config section."""

from __future__ import annotations

from gptfl_hpc.schema import Section


class FederateConfig(Section):
    """Federated training of the downstream model on the clients' private data."""
