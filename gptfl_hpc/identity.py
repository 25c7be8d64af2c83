"""The one way a JSON value becomes an identity: sha256 of its canonical JSON.

Canonical means sorted keys and no spaces, so two equal values give the same bytes whatever order
their dicts were built in. The run's config hash, the prompts, synthesis and pretraining
identities and the IBLT parameter fingerprint are all this digest of their own part.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_json(value: Any) -> str:
    """The sha256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
