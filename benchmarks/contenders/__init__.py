"""Other FL frameworks (pfl-research, Flower with Ray) run for real on the benchmark workload.

Each runs in its own venv (``venvs.ensure_venv``) as a subprocess (``run.run_contender``);
``workload`` holds the model and data every contender, the project's simulator included, trains.
"""

from .run import ContenderError, run_contender, run_timed
from .venvs import VenvError, ensure_venv

__all__ = ["ContenderError", "VenvError", "ensure_venv", "run_contender", "run_timed"]
