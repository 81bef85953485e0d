"""The server's runner on a Ray cluster (``clara-rt serve --cluster ADDRESS``).

::

    server process                                 child process            Ray cluster
    JobManager --prepare/start--> RayRunner ==socket==> bridge (driver) ---> NodeRuntime actor
      queue, priorities,          slots, capacity,      ray.init, actors,     per node / GPU:
      records (SQLite)            re-queue, cancel      object store          Runtime, pipelines

**Slots.** The bridge (:mod:`.bridge`) keeps one actor per alive node and per GPU and reports
the ready ones: id, placement (``IP/node-id[/gpuN]``), capacity (its runtime's workers), GPUs,
node memory. The runner counts the jobs it has sent to each slot (:mod:`.slot_table`) and never
sends more than the capacity; GPU jobs (``requests: gpu``) go to GPU slots, one at a time per
GPU, and the memory requests of the jobs on a node add up to at most the node's memory. The job
manager asks :meth:`RayRunner.has_capacity` before it takes a job off its queue, so jobs wait in
the server's queue, in priority order, while every slot is busy.

**Transports** (:mod:`.transport`): ``shared-path`` when the job's folders lie under the
shared path (``--cluster-shared-path``), else ``object-store``.

**Failures.** A job whose actor or node dies is re-queued once, ahead of new jobs, on another
node; a second loss fails it with both reasons. A job that runs past its timeout and whose node
does not stop it within ``grace`` seconds is failed as timed out and its actor replaced (by the
bridge). When the bridge process ends (the cluster went away, or Ray stopped the driver) every
job it had is failed as ``cluster unavailable: ...``, new jobs wait (``has_capacity`` is false),
and a new bridge is started with a growing delay until the cluster answers again
(:mod:`.bridge_process`).

**Threads.** State changes under one lock; the callbacks they cause (a run's end, its notes,
messages to the bridge) are collected as *effects* and called after the lock is released.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from clara_rt.cluster.address import check_address
from clara_rt.cluster.bridge_process import BridgeProcess, BridgeSupervisor
from clara_rt.cluster.run import (
    ClusterError,
    ClusterState,
    ClusterUnavailableError,
    RayRun,
    RunSpec,
    Slot,
)
from clara_rt.cluster.slot_table import SlotTable
from clara_rt.cluster.transport import transport_for
from clara_rt.definition.schema import parse_definition
from clara_rt.job import JobState
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.protocol import PipelineSource, RunHandle

__all__ = ["ClusterError", "ClusterSettings", "ClusterState", "ClusterUnavailableError", "RayRun",
           "RayRunner", "RunSpec"]

log = logging.getLogger("clara_rt.cluster")


class ClusterSettings(Protocol):
    """What :meth:`RayRunner.for_server` reads of a server's settings (its ``ServerConfig``)."""

    @property
    def cluster(self) -> str | None: ...

    @property
    def cluster_shared_path(self) -> Path | None: ...

    @property
    def workers(self) -> int | None: ...

    @property
    def services(self) -> dict[str, str]: ...

    @property
    def cluster_grace(self) -> float: ...


class RayRunner:
    """Runs jobs on the node runtimes of a Ray cluster (see the module docstring).

    Args:
        address: ``ray://HOST:PORT``, ``HOST:PORT``, ``auto`` or ``local``
            (:data:`~clara_rt.cluster.address.ADDRESS_HELP`).
        shared_path: A folder mounted at the same path on every node; jobs whose input and
            workspace lie under it use the ``shared-path`` transport.
        workers: Worker threads of each node runtime (``None``: its share of the node's CPUs).
        services: Service name -> URL for every pipeline (``--service``).
        grace: Seconds after a job's timeout before its node runtime counts as hung.
        refresh: Seconds between the bridge's passes over the cluster's nodes.
        env: Extra environment of the driver process (``RAY_AUTH_TOKEN``, ...).
        pipelines: The server's pipelines (needed by :meth:`prepare` only).
    """

    def __init__(self, address: str, *, shared_path: Path | None = None,
                 workers: int | None = None, services: Mapping[str, str] | None = None,
                 grace: float = 30.0, refresh: float = 2.0,
                 env: Mapping[str, str] | None = None,
                 pipelines: PipelineSource | None = None) -> None:
        self.address = check_address(address)
        self._shared_path = None if shared_path is None else Path(shared_path).resolve()
        self._pipelines = pipelines
        self._lock = threading.Condition()
        self._table = SlotTable()
        self._runs: dict[str, RayRun] = {}
        self._request_ids = itertools.count()
        self._requests: dict[int, Future[Any]] = {}
        self._checked: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        settings = {"address": self.address, "workers": workers,
                    "services": dict(services or {}), "grace": grace, "refresh": refresh}
        self._supervisor = BridgeSupervisor(settings, dict(env or {}), self._lock,
                                            self._on_message, self._bridge_ended)
        self._supervisor.start()

    @classmethod
    def for_server(cls, config: ClusterSettings, pipelines: PipelineSource) -> RayRunner:
        """The runner ``clara-rt serve --cluster`` uses."""
        assert config.cluster is not None
        return cls(config.cluster, shared_path=config.cluster_shared_path,
                   workers=config.workers, services=config.services, grace=config.cluster_grace,
                   pipelines=pipelines)

    # --- the Runner protocol --------------------------------------------------------------

    def prepare(self, job: dict[str, Any]) -> Callable[[Path, Path], RunHandle]:
        """Check the server job's pipeline and variables; return the function that starts it.

        Raises:
            NotFound: The pipeline was deleted.
            DefinitionError: A variable is missing.
        """
        if self._pipelines is None:
            raise ValueError("this RayRunner has no pipeline registry; use start_run()")
        record = self._pipelines.get(job["pipeline_id"])
        text = self._pipelines.definition_text(record["id"])
        variables = dict(job["variables"])
        key = (record["id"], record["updated"])
        checked = (*key, tuple(sorted(variables.items())))
        if checked not in self._checked:
            parse_definition(f"{record['name']}.yaml", text=text, variables=variables,
                             environ={})
            self._checked[checked] = None
            while len(self._checked) > 256:
                self._checked.popitem(last=False)
        spec = RunSpec(job_id=job["id"], key=key, name=record["name"], text=text,
                       variables=variables, priority=job["priority"], timeout=job["timeout"],
                       needs=self._pipelines.needs(record["id"]), job_name=job["name"])

        def start(input_dir: Path, workspace: Path) -> RunHandle:
            return self.start_run(spec, input_dir, workspace)

        return start

    def has_capacity(self, needs: JobNeeds) -> bool:
        """Whether a job with ``needs`` can be sent to a node now.

        False while the cluster is unavailable, while re-queued jobs wait, and while every
        slot that could run it is full. True also when no slot could ever run it (it then
        fails at once with the reason instead of waiting for ever).
        """
        with self._lock:
            return self._supervisor.available and self._table.has_capacity(needs)

    def close(self) -> None:
        """Stop the bridge (its actors go with it) and fail what is still running."""
        self._supervisor.close()

    # --- for ClusterRuntime and the metrics -----------------------------------------------

    def start_run(self, spec: RunSpec, input_dir: Path, workspace: Path) -> RayRun:
        """Queue a job for the first slot that fits; return its handle at once."""
        transport = transport_for(self._shared_path, input_dir, workspace)
        message = {"job_id": spec.job_id, "key": spec.key, "name": spec.name,
                   "text": spec.text, "variables": spec.variables, "priority": spec.priority,
                   "timeout": spec.timeout, "transport": transport, "job_name": spec.job_name,
                   "input": str(input_dir), "workspace": str(workspace)}
        run = RayRun(self, spec, message, transport)
        with self._lock:
            if self._supervisor.closing:
                raise ClusterUnavailableError("the cluster runner is closed")
            if spec.job_id in self._runs:
                raise ValueError(f"job {spec.job_id} is already running on the cluster")
            self._runs[spec.job_id] = run
            self._table.queue(run, retry=False)
            effects = self._drain()
        _apply(effects)
        run.started = True
        return run

    def cluster_state(self) -> ClusterState:
        """The runner's view of the cluster now."""
        with self._lock:
            link = self._supervisor
            return ClusterState(
                self.address, link.available, link.nodes, len(self._table),
                self._table.capacity,
                sum(1 for r in self._runs.values() if r.slot is not None),
                self._table.waiting(), None if link.available else link.reason)

    def wait_ready(self, timeout: float) -> ClusterState:
        """Wait until the cluster is available with at least one slot.

        Raises:
            ClusterUnavailableError: Not within ``timeout`` seconds (with the last reason).
        """
        deadline = time.monotonic() + timeout
        link = self._supervisor
        with self._lock:
            while not (link.available and self._table):
                left = deadline - time.monotonic()
                if left <= 0 or link.closing:
                    raise ClusterUnavailableError(
                        f"the Ray cluster at {self.address} is not ready after {timeout:g} s: "
                        f"{link.reason or 'no node runtime has started'}")
                self._lock.wait(min(left, 0.5))
        return self.cluster_state()

    # --- placement (under _lock) ----------------------------------------------------------

    def _drain(self) -> list[Callable[[], None]]:
        """Send every waiting run that fits somewhere; fail those that never can."""
        effects: list[Callable[[], None]] = []
        for run, slot in self._table.place_waiting(self._supervisor.available):
            if slot is None:
                error = self._table.no_node_reason(run)
                effects.append(self._finish(run, JobState.FAILED, error, None))
            else:
                effects.append(self._assign(run, slot))
        self._lock.notify_all()
        return effects

    def _assign(self, run: RayRun, slot: Slot) -> Callable[[], None]:
        run.attempt += 1
        run.placement = slot.placement
        run._state = JobState.RUNNING
        bridge = self._supervisor.bridge
        message = ("run", run.job_id, run.attempt, slot.id, run.message)
        announce = run.started

        def send() -> None:
            if bridge is None or not bridge.send(message):
                log.warning("job %s: the cluster connection closed while it was sent",
                            run.job_id)  # the bridge's end fails it
            if announce:
                run._note(f"running on {slot.placement} (payload and results by "
                          f"{run.transport})")

        return send

    def _finish(self, run: RayRun, state: JobState, error: str | None,
                rows: list[dict[str, Any]] | None) -> Callable[[], None]:
        if run.finished:
            return _nothing
        run.finished = True
        self._runs.pop(run.job_id, None)
        self._table.release(run)
        return lambda: run._end(state, error, rows)

    # --- events from the bridge -----------------------------------------------------------

    def _on_message(self, bridge: BridgeProcess, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "rows":
            with self._lock:
                future = self._requests.pop(message[1], None)
            if future is not None:
                future.set_result(message[2])
            return
        with self._lock:
            if bridge is not self._supervisor.bridge:
                return
            if kind == "status":
                effects = self._on_status(bridge, message[1])
            else:
                effects = self._on_job_event(kind, *message[1:])
        _apply(effects)

    def _on_status(self, bridge: BridgeProcess, info: dict[str, Any]
                   ) -> list[Callable[[], None]]:
        if not self._supervisor.note_status(bridge, info):
            return []
        self._table.update(info["slots"])
        return self._drain()

    def _on_job_event(self, kind: str, job_id: str, attempt: int, info: dict[str, Any]
                      ) -> list[Callable[[], None]]:
        run = self._runs.get(job_id)
        if run is None or run.attempt != attempt or run.finished:
            return []
        if kind == "done":
            run.placement = info.get("placement") or run.placement
            state = JobState(info["state"])
            effects = [self._finish(run, state, info.get("error"), info.get("rows"))]
        elif kind == "hung":
            effects = [self._finish(run, JobState.TIMED_OUT, info["reason"], None)]
        else:  # lost
            effects = self._lost(run, info)
        return effects + self._drain()

    def _lost(self, run: RayRun, info: dict[str, Any]) -> list[Callable[[], None]]:
        reason = str(info["reason"])
        log.warning("job %s: %s (%s)", run.job_id, reason, info.get("detail"))
        self._table.release(run)
        run.losses.append(reason)
        if run.cancel_requested:
            return [self._finish(run, JobState.CANCELLED, "canceled", None)]
        if len(run.losses) >= 2:
            return [self._finish(run, JobState.FAILED,
                                 f"{reason} (twice; the first time: {run.losses[0]})", None)]
        run.excluded.add(str(info["node_id"]))
        run.placement = "re-queued"
        run._state = JobState.PENDING
        self._table.queue(run, retry=True)
        note = f"{reason}: re-queued once on another node"
        return [lambda: run._note(note)]

    def _bridge_ended(self, bridge: BridgeProcess, reason: str) -> None:
        with self._lock:
            if not self._supervisor.forget(bridge, reason):
                return
            error = ("the cluster runner was closed" if self._supervisor.closing
                     else f"cluster unavailable: {reason}")
            effects = [self._finish(run, JobState.FAILED, error, None)
                       for run in list(self._runs.values())]
            self._table.clear()
            requests, self._requests = self._requests, {}
            self._lock.notify_all()
        if not self._supervisor.closing:
            log.error("cluster %s: %s; jobs it ran failed, new jobs wait; reconnecting in "
                      "%.0f s", self.address, reason, self._supervisor.retry_in())
        for future in requests.values():
            future.set_result(None)
        _apply(effects)

    # --- cancel and operator rows (called by RayRun) --------------------------------------

    def _cancel(self, run: RayRun) -> None:
        with self._lock:
            if run.finished:
                return
            run.cancel_requested = True
            if run.slot is None:  # waiting here: stop it now
                effects = [self._finish(run, JobState.CANCELLED, "canceled", None),
                           *self._drain()]
            else:
                bridge = self._supervisor.bridge
                effects = [] if bridge is None else [
                    lambda: _send(bridge, ("cancel", run.job_id))]
        _apply(effects)

    def _request_rows(self, job_id: str) -> Future[Any] | None:
        future: Future[Any] = Future()
        with self._lock:
            bridge = self._supervisor.bridge
            if bridge is None:
                return None
            request = next(self._request_ids)
            self._requests[request] = future
        if not bridge.send(("rows", request, job_id)):
            with self._lock:
                self._requests.pop(request, None)
            return None
        return future


def _apply(effects: list[Callable[[], Any]]) -> None:
    for effect in effects:
        try:
            effect()
        except Exception:
            log.exception("cluster runner: a callback failed")


def _send(bridge: BridgeProcess, message: tuple[Any, ...]) -> None:
    bridge.send(message)


def _nothing() -> None:
    return None
