"""The launch layer: configs and callables in, job ids and results out.

Only the CLI and ``jobs/`` import this package; the science (synth, pretrain, fl) never does.
"""

from gptfl_hpc.launch.launcher import InlineJob, JobFailed, Launcher, Preemptible

__all__ = ["InlineJob", "JobFailed", "Launcher", "Preemptible"]
