"""One server per data directory: an exclusive ``flock`` on ``<data>/clara-rt.lock``.

Two servers on one folder would clear each other's uploads in progress and re-mark each other's
running jobs as interrupted. The lock is taken before the server touches anything in the folder
and is held for the process's life; the kernel drops it when the process dies (also on
``kill -9``), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["DataDirectoryBusy", "DataLock"]

LOCK_NAME = "clara-rt.lock"


class DataDirectoryBusy(RuntimeError):
    """Another process (a running ``clara-rt serve``) holds the data directory.

    Stop that server, or give this one another ``--data`` folder.
    """


class DataLock:
    """Hold ``<data>/clara-rt.lock`` exclusively until :meth:`release`.

    Raises:
        DataDirectoryBusy: Another process holds it.
    """

    def __init__(self, data: Path) -> None:
        self.path = data / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirectoryBusy(
                f"the data directory {data} is in use by another clara-rt serve (pid "
                f"{holder}); stop it first or use another --data folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Let another server have the folder (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
