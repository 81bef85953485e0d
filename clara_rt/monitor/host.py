"""Host metrics through psutil (imported lazily): CPU, memory, the data disk, this process.

``cpu_percent`` is the whole machine's CPU use since the previous sample (all cores, 0-100);
``memory_used`` is ``total - available`` (memory that cannot be handed out without swapping,
which is what "used" should mean; psutil's own ``used`` leaves out caches differently on each
platform). Disk figures are those of the file system holding ``disk_path``. Without psutil only
the disk is measured (``shutil.disk_usage``) and the rest reads 0; that is said once in the log.

Not thread-safe: one sampler belongs to one sampling thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HostSample", "HostSampler"]

log = logging.getLogger("clara_rt.monitor")


@dataclass(frozen=True, slots=True)
class HostSample:
    """The machine and this process at one moment; sizes in bytes."""

    time: float
    cpu_percent: float
    memory_used: int
    memory_total: int
    disk_used: int
    disk_total: int
    disk_free: int
    rss: int
    threads: int


class HostSampler:
    """Reads CPU, memory, disk and this process's resident memory and threads."""

    def __init__(self, disk_path: Path | None = None) -> None:
        self.disk_path = Path(disk_path) if disk_path is not None else Path.cwd()
        self._psutil: Any = None
        self._process: Any = None
        try:
            import psutil
        except ImportError:
            log.info("host metrics: psutil is not installed (pip install 'clara-rt[server]'); "
                     "only the data disk is measured")
            return
        self._psutil = psutil
        self._process = psutil.Process(os.getpid())
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def sample(self) -> HostSample:
        """Read the host now."""
        disk_used = disk_total = disk_free = 0
        try:
            usage = shutil.disk_usage(self.disk_path)
            disk_used, disk_total, disk_free = usage.used, usage.total, usage.free
        except OSError:
            log.debug("disk usage of %s unreadable", self.disk_path, exc_info=True)
        psutil = self._psutil
        if psutil is None:
            return HostSample(time.time(), 0.0, 0, 0, disk_used, disk_total, disk_free, 0, 0)
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            rss = int(self._process.memory_info().rss)
            threads = int(self._process.num_threads())
        return HostSample(time.time(), float(psutil.cpu_percent(interval=None)),
                          int(memory.total - memory.available), int(memory.total),
                          disk_used, disk_total, disk_free, rss, threads)
