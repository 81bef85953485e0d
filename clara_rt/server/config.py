"""Settings of ``clara-rt serve``: where data lives, who may write, limits and retention."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MAX_TIMEOUT", "ServerConfig"]

GIB = 1 << 30
MAX_TIMEOUT = 7 * 86400.0  # the longest job timeout a request or the server may set: a week


@dataclass(frozen=True)
class ServerConfig:
    """Everything the platform server needs; the CLI flags of ``clara-rt serve`` map 1:1.

    Attributes:
        data: Data directory: ``clara-rt.db`` (SQLite, WAL), ``pipelines/``, ``payloads/``,
            ``jobs/<id>/{output,work,logs}``, ``tmp/``.
        host: Address to bind; loopback unless a deployment says otherwise.
        port: TCP port of the HTTP API.
        token: When set, every write (POST/PUT/PATCH/DELETE) needs
            ``Authorization: Bearer <token>`` (checked before the request's body is read).
        workers: Runtime worker threads (``None``: one per core).
        max_running: Jobs admitted to the runtime at once (``None``: twice the workers);
            ``immediate`` jobs are admitted beyond it. The rest wait in the server's queue,
            ordered by priority then age.
        on_restart: What a job that was running when the server died becomes: ``"fail"``
            (stopped, faulted, "interrupted") or ``"requeue"`` (pending again, once).
        default_timeout: Seconds a job may run when its request names none (``None``: no limit).
        max_timeout: Largest timeout a job may ask for (``None``: :data:`MAX_TIMEOUT`, a week).
        max_payload_bytes: Largest upload (unpacked size for archives); larger answers 413.
        max_files: Most files and folders one upload may hold; more answers 413.
        min_free_bytes: Uploads are refused (507) while the data disk has less free space.
        retention_days: Results and payloads of finished jobs older than this are deleted
            (``None``: kept until deleted by hand).
        disk_threshold: When the data disk is fuller than this fraction, the oldest finished
            jobs' results and unused payloads are deleted until it is not.
        cleanup_interval: Seconds between retention passes.
        services: Service name -> URL for every pipeline (``--service triton=URL``).
        shutdown_grace: Seconds running jobs get to finish when the server stops.
        memory_budget: Bytes the memory requests of running jobs may add up to (``-1``: 80 %
            of physical memory; ``None``: no limit). See :mod:`clara_rt.server.admission`.
        gpu_jobs: Jobs requesting a GPU that may run at once (``-1``: one per GPU NVML reports,
            no limit without NVML; ``None``: no limit).
        monitor_interval: Seconds between samples of GPU and host metrics (``/metrics``,
            ``/v1/monitor``).
        cluster: Run jobs on this Ray cluster instead of in this process (``ray://HOST:PORT``,
            ``HOST:PORT``, ``auto`` or ``local``; see :mod:`clara_rt.cluster`). ``workers`` then
            sets each node runtime's threads, and without ``max_running`` the cluster's free
            capacity alone limits running jobs.
        cluster_shared_path: A folder holding ``data`` that every node mounts at the same path:
            jobs read and write their files there directly instead of through Ray's object
            store.
        cluster_grace: Seconds after a job's timeout before its node runtime counts as hung
            (then it is killed and replaced, the job failed as timed out).
    """

    data: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    workers: int | None = None
    max_running: int | None = None
    on_restart: str = "fail"
    default_timeout: float | None = None
    max_timeout: float | None = None
    max_payload_bytes: int | None = 20 * GIB
    max_files: int | None = 10_000
    min_free_bytes: int = 64 << 20
    retention_days: float | None = None
    disk_threshold: float = 0.95
    cleanup_interval: float = 300.0
    services: dict[str, str] = field(default_factory=dict)
    shutdown_grace: float = 30.0
    monitor_interval: float = 5.0
    memory_budget: int | None = -1
    gpu_jobs: int | None = -1
    cluster: str | None = None
    cluster_shared_path: Path | None = None
    cluster_grace: float = 30.0

    def __post_init__(self) -> None:
        if self.on_restart not in ("fail", "requeue"):
            raise ValueError(f"on_restart must be 'fail' or 'requeue', not {self.on_restart!r}")
        if not 0.0 < self.disk_threshold <= 1.0:
            raise ValueError(f"disk_threshold must be in (0, 1], not {self.disk_threshold}")
        for name in ("default_timeout", "max_timeout", "retention_days"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise ValueError(f"{name} must be positive and finite, not {value}")
        for name in ("default_timeout", "max_timeout"):
            value = getattr(self, name)
            if value is not None and value > MAX_TIMEOUT:
                raise ValueError(f"{name} {value} s is above {MAX_TIMEOUT:.0f} s (7 days)")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"max_files must be at least 1, not {self.max_files}")
        if not 0.0 < self.monitor_interval < math.inf:
            raise ValueError(f"monitor_interval must be positive seconds, not "
                             f"{self.monitor_interval}")
        if self.cluster is not None:
            from clara_rt.cluster.address import check_address

            check_address(self.cluster)
        if self.cluster_shared_path is not None and self.cluster is None:
            raise ValueError("a cluster shared path needs a cluster (--cluster ADDRESS)")
        if self.cluster_shared_path is not None and not self.data.resolve().is_relative_to(
                self.cluster_shared_path.resolve()):
            raise ValueError(f"the data directory {self.data} must lie under the cluster's "
                             f"shared path {self.cluster_shared_path}")
        if not self.cluster_grace > 0:
            raise ValueError(f"cluster_grace must be positive seconds, not {self.cluster_grace}")
        if (self.default_timeout is not None and self.max_timeout is not None
                and self.default_timeout > self.max_timeout):
            raise ValueError(f"default_timeout {self.default_timeout} s is above max_timeout "
                             f"{self.max_timeout} s")

    @property
    def running_limit(self) -> int:
        """Jobs admitted to the runtime at once."""
        if self.max_running is not None:
            return self.max_running
        return 2 * (self.workers or os.cpu_count() or 1)

    # Folders of the data directory.
    @property
    def db_path(self) -> Path:
        return self.data / "clara-rt.db"

    @property
    def pipelines_dir(self) -> Path:
        return self.data / "pipelines"

    @property
    def payloads_dir(self) -> Path:
        return self.data / "payloads"

    @property
    def jobs_dir(self) -> Path:
        return self.data / "jobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data / "tmp"
