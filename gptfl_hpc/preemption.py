"""Cooperative preemption, as the science sees it.

The launch layer turns Slurm's USR2 into a flag. A long loop polls :func:`requested` at its safe
points (after a flushed batch, a finished round); when set, it saves its state and raises
:class:`Preempted`. The launch layer then requeues the task, and the next run resumes from the
saved state. Stages never import the launch layer: this flag is the whole interface.
"""

from __future__ import annotations

import threading

_flag = threading.Event()


class Preempted(Exception):
    """Raised by a stage after it saved its state at a safe point."""


def request() -> None:
    _flag.set()


def requested() -> bool:
    return _flag.is_set()


def clear() -> None:
    _flag.clear()


def raise_if_requested() -> None:
    """Call right after state is durable: leaves the stage if a preemption is pending."""
    if _flag.is_set():
        raise Preempted("preempted after a checkpoint")
