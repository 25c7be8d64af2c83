"""gptfl-hpc: GPT-FL (generative pre-trained model-assisted federated learning) on Slurm clusters."""

__version__ = "0.1.0"
