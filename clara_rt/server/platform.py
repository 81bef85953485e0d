"""The platform server's parts for one data directory (:class:`Server`), apart from HTTP.

:func:`~clara_rt.server.app.create_app` makes one :class:`Server` when the application starts
and keeps it on ``app.state.server``, where the routers reach it through
:data:`~clara_rt.server.deps.ServerDep`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from clara_rt.runner.logs import OperatorLogs
from clara_rt.runner.protocol import Runner
from clara_rt.server.config import ServerConfig
from clara_rt.server.datalock import DataLock
from clara_rt.server.environ import forget_secret
from clara_rt.server.events import EventHub
from clara_rt.server.job_monitor import start_monitor
from clara_rt.server.jobs import JobManager
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.retention import Retention
from clara_rt.server.runners import LocalRunner
from clara_rt.server.store import Store

__all__ = ["Server"]


class Server:
    """The server's parts for one data directory: records, pipelines, jobs, retention."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        config.data.mkdir(parents=True, exist_ok=True)
        self.lock = DataLock(config.data)  # before anything is touched: one server per folder
        forget_secret(config.token)  # not in /proc/<pid>/environ for commands to read (16.2)
        for folder in (config.tmp_dir, config.payloads_dir, config.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _clear_tmp(config.tmp_dir)  # uploads a dead server left half-received
        self.store = Store(config.db_path)
        self.events = EventHub()
        self.operator_logs = OperatorLogs()
        self.pipelines = PipelineRegistry(config, self.store)
        self.monitor = start_monitor(self)  # before jobs: it counts every end
        self.runner = _runner(config, self.pipelines, self.operator_logs)
        self.jobs = JobManager(_job_limits(config), self.store, self.pipelines, self.events,
                               self.runner)
        self.monitor.runtime.running = self.jobs.running_operator_starts
        self.retention = Retention(config, self.store)
        self.started = time.time()

    def close(self) -> None:
        self.monitor.close()
        self.retention.stop()
        self.jobs.close()
        self.store.close()
        self.lock.release()


def _runner(config: ServerConfig, pipelines: PipelineRegistry, logs: OperatorLogs) -> Runner:
    """This process's runtime, or a Ray cluster's node runtimes with ``--cluster``."""
    if config.cluster is None:
        return LocalRunner(config, pipelines, logs)  # logs observe this process's runtime
    from clara_rt.cluster.ray_runner import RayRunner  # imports no Ray: its driver is a child

    return RayRunner.for_server(config, pipelines)


def _job_limits(config: ServerConfig) -> ServerConfig:
    """On a cluster, the default limits (this machine's memory and GPUs, 2 x its workers) do not
    describe where jobs run: the runner's per-node capacity does. Explicit limits still apply."""
    if config.cluster is None:
        return config
    return dataclasses.replace(
        config, max_running=config.max_running or 1 << 30,
        memory_budget=None if config.memory_budget == -1 else config.memory_budget,
        gpu_jobs=None if config.gpu_jobs == -1 else config.gpu_jobs)


def _clear_tmp(tmp: Path) -> None:
    for entry in tmp.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
