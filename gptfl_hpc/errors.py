"""The one error type a user sees: a single line that names the problem and the fix."""

from __future__ import annotations

import errno
from typing import Iterator, Optional

#: errno of a write refused for lack of space or of quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class UserError(Exception):
    """Bad input from the user (config, paths, command line).

    The CLI prints ``gptfl: error: <message>`` on one line and exits with code 2.
    Raise it before anything is written.
    """

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: multi-line messages would break the contract with scripts.
        super().__init__(" ".join(str(message).split()))


class DiskFull(UserError):
    """A write refused for lack of space (``ENOSPC``) or quota (``EDQUOT``).

    ``needed_bytes`` is what the write that failed still lacked: the bytes planned for the file (a
    shard's HDF5 image, the tensors of a checkpoint, a JSON document; for a file of unknown size,
    what had been written when the disk refused more) minus the space free once its partial copy
    was removed (``os.statvfs``). It is shown rounded up to whole MB (10^6 bytes), at least 1: the
    later writes of the same stage need more, and a quota's limit is not visible to ``statvfs``.
    """

    def __init__(self, path: object, needed_bytes: int = 0):
        self.path = str(path)
        self.needed_bytes = max(0, int(needed_bytes))
        megabytes = max(1, -(-self.needed_bytes // 1_000_000))
        super().__init__(f"no space left on device writing {self.path}: free space (about {megabytes} MB "
                         "more is needed) and run the same command again")

    def __reduce__(self):  # pickled with its own arguments, not the message
        return type(self), (self.path, self.needed_bytes)


def refused_for_space(error: BaseException) -> bool:
    """Whether ``error`` or an exception in its chain is an ``ENOSPC``/``EDQUOT`` ``OSError``."""
    return any(isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS for link in _chain(error))


def disk_full_error(error: BaseException) -> Optional[DiskFull]:
    """The ``DiskFull`` that ``error`` stands for: one in its chain, or one made from an
    ``ENOSPC``/``EDQUOT`` ``OSError`` in its chain (a write outside ``gptfl_hpc.durable``: a log,
    a lock file, a folder); else None."""
    for link in _chain(error):
        if isinstance(link, DiskFull):
            return link
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            return DiskFull(link.filename or "the run directory")
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: Optional[BaseException] = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__
