"""The server's runner on a Ray cluster (``clara-rt serve --cluster ADDRESS``).

::

    server process                                 child process            Ray cluster
    JobManager --prepare/start--> RayRunner ==socket==> bridge (driver) ---> NodeRuntime actor
      queue, priorities,          slots, capacity,      ray.init, actors,     per node / GPU:
      records (SQLite)            re-queue, cancel      object store          Runtime, pipelines

**Slots.** The bridge (:mod:`.bridge`) keeps one actor per alive node and per GPU and reports
the ready ones: id, placement (``IP/node-id[/gpuN]``), capacity (its runtime's workers), GPUs,
node memory. The runner counts the jobs it has sent to each slot and never sends more than the
capacity; GPU jobs (``requests: gpu``) go to GPU slots, one at a time per GPU, and the memory
requests of the jobs on a node add up to at most the node's memory. The job manager asks
:meth:`RayRunner.has_capacity` before it takes a job off its queue, so jobs wait in the server's
queue, in priority order, while every slot is busy.

**Transports** (:mod:`.transport`): ``shared-path`` when the job's folders lie under the
shared path (``--cluster-shared-path``), else ``object-store``.

**Failures.** A job whose actor or node dies is re-queued once, ahead of new jobs, on another
node; a second loss fails it with both reasons. A job that runs past its timeout and whose node
does not stop it within ``grace`` seconds is failed as timed out and its actor replaced (by the
bridge). When the bridge process ends (the cluster went away, or Ray stopped the driver) every
job it had is failed as ``cluster unavailable: ...``, new jobs wait (``has_capacity`` is false),
and a new bridge is started with a growing delay until the cluster answers again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import clara_rt
from clara_rt.cluster.address import check_address
from clara_rt.cluster.run import (
    ClusterError,
    ClusterState,
    ClusterUnavailableError,
    RayRun,
    RunSpec,
    Slot,
)
from clara_rt.cluster.transport import transport_for
from clara_rt.definition.schema import parse_definition
from clara_rt.job import JobState
from clara_rt.server.admission import JobNeeds
from clara_rt.server.config import ServerConfig
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.runners import RunHandle

__all__ = ["ClusterError", "ClusterState", "ClusterUnavailableError", "RayRun", "RayRunner",
           "RunSpec"]

log = logging.getLogger("clara_rt.cluster")

PRIORITIES = ("immediate", "high", "normal", "low")
_UNAVAILABLE_AFTER = 10.0  # seconds without word from the bridge: the cluster counts as gone
_KILL_AFTER = 30.0  # ... and then the bridge is replaced
_CONNECT_TIMEOUT = 90.0  # seconds a new bridge may take to report for the first time


class _Bridge:
    """The bridge child process and our end of its socket."""

    def __init__(self, settings: dict[str, Any], env: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(clara_rt.__file__).resolve().parents[1])
        environ = {**os.environ, **env}
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, environ.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clara_rt.cluster.bridge", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=environ, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.started = self.heard = time.monotonic()
        self.connected = False
        self._lock = threading.Lock()
        self.send(settings)

    def send(self, message: Any) -> bool:
        with self._lock:
            try:
                self.conn.send(message)
                return True
            except (OSError, ValueError):
                return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


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
                 pipelines: PipelineRegistry | None = None) -> None:
        self.address = check_address(address)
        self._shared_path = None if shared_path is None else Path(shared_path).resolve()
        self._settings = {"address": self.address, "workers": workers,
                          "services": dict(services or {}), "grace": grace,
                          "refresh": refresh}
        self._env = dict(env or {})
        self._pipelines = pipelines
        self._lock = threading.Condition()
        self._bridge: _Bridge | None = None
        self._next_spawn = 0.0
        self._backoff = 1.0
        self._available = False
        self._nodes = 0
        self._reason: str | None = "connecting"
        self._slots: dict[str, Slot] = {}
        self._node_memory: dict[str, int] = {}
        self._runs: dict[str, RayRun] = {}
        self._waiting: list[tuple[int, int, int, RayRun]] = []
        self._seq = itertools.count()
        self._requests: dict[int, Future[Any]] = {}
        self._checked: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._closing = False
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []
        self._supervisor = threading.Thread(target=self._supervise, name="clara-rt-cluster",
                                            daemon=True)
        self._supervisor.start()

    @classmethod
    def for_server(cls, config: ServerConfig, pipelines: PipelineRegistry) -> RayRunner:
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
        spec = RunSpec(job["id"], key, record["name"], text, variables, job["priority"],
                       job["timeout"], self._pipelines.needs(record["id"]))

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
            if not self._available or not self._slots or self._waiting_runs():
                return False
            if any(self._fits_now(s, needs) for s in self._slots.values()):
                return True
            return not any(_could_fit(s, needs) for s in self._slots.values())

    def close(self) -> None:
        """Stop the bridge (its actors go with it) and fail what is still running."""
        with self._lock:
            self._closing = True
            bridge = self._bridge
            self._lock.notify_all()
        self._stop.set()
        self._supervisor.join(timeout=10.0)
        if bridge is not None:
            bridge.send(("close",))
            try:
                bridge.proc.wait(15.0)
            except subprocess.TimeoutExpired:
                bridge.kill()
                bridge.proc.wait(10.0)
        for reader in self._readers:
            reader.join(timeout=10.0)

    # --- for ClusterRuntime and the metrics -----------------------------------------------

    def start_run(self, spec: RunSpec, input_dir: Path, workspace: Path) -> RayRun:
        """Queue a job for the first slot that fits; return its handle at once."""
        transport = transport_for(self._shared_path, input_dir, workspace)
        message = {"job_id": spec.job_id, "key": spec.key, "name": spec.name,
                   "text": spec.text, "variables": spec.variables, "priority": spec.priority,
                   "timeout": spec.timeout, "transport": transport,
                   "input": str(input_dir), "workspace": str(workspace)}
        run = RayRun(self, spec, message, transport)
        with self._lock:
            if self._closing:
                raise ClusterUnavailableError("the cluster runner is closed")
            if spec.job_id in self._runs:
                raise ValueError(f"job {spec.job_id} is already running on the cluster")
            self._runs[spec.job_id] = run
            self._queue(run, retry=False)
            effects = self._drain()
        _apply(effects)
        run.started = True
        return run

    def cluster_state(self) -> ClusterState:
        """The runner's view of the cluster now."""
        with self._lock:
            return ClusterState(
                self.address, self._available, self._nodes, len(self._slots),
                sum(s.capacity for s in self._slots.values()),
                sum(1 for r in self._runs.values() if r.slot is not None),
                self._waiting_runs(), None if self._available else self._reason)

    def wait_ready(self, timeout: float) -> ClusterState:
        """Wait until the cluster is available with at least one slot.

        Raises:
            ClusterUnavailableError: Not within ``timeout`` seconds (with the last reason).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not (self._available and self._slots):
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    raise ClusterUnavailableError(
                        f"the Ray cluster at {self.address} is not ready after {timeout:g} s: "
                        f"{self._reason or 'no node runtime has started'}")
                self._lock.wait(min(left, 0.5))
        return self.cluster_state()

    # --- placement (under _lock) ----------------------------------------------------------

    def _waiting_runs(self) -> int:
        return sum(1 for entry in self._waiting if not entry[-1].finished)

    def _queue(self, run: RayRun, *, retry: bool) -> None:
        rank = PRIORITIES.index(run.spec.priority) if run.spec.priority in PRIORITIES else 2
        heapq.heappush(self._waiting, (0 if retry else 1, rank, next(self._seq), run))

    def _drain(self) -> list[Callable[[], None]]:
        """Send every waiting run that fits somewhere; fail those that never can."""
        effects: list[Callable[[], None]] = []
        kept = []
        while self._waiting:
            entry = heapq.heappop(self._waiting)
            run = entry[-1]
            if run.finished:
                continue
            slot = self._pick(run)
            if slot is not None:
                effects.append(self._assign(run, slot))
            elif self._available and self._slots and not any(
                    _could_fit(s, run.spec.needs) for s in self._slots.values()
                    if s.node_id not in run.excluded):
                effects.append(self._finish(run, JobState.FAILED, self._no_node(run), None))
            else:
                kept.append(entry)
        for entry in kept:
            heapq.heappush(self._waiting, entry)
        self._lock.notify_all()
        return effects

    def _pick(self, run: RayRun) -> Slot | None:
        needs = run.spec.needs
        fits = [s for s in self._slots.values()
                if s.node_id not in run.excluded and self._fits_now(s, needs)]
        if not fits:
            return None
        # Least loaded first; CPU jobs keep off GPU slots; then the one used least recently.
        return min(fits, key=lambda s: (s.running / s.capacity,
                                        s.gpus if not needs.gpus else 0, s.last))

    def _fits_now(self, slot: Slot, needs: JobNeeds) -> bool:
        if slot.running >= slot.capacity:
            return False
        if needs.gpus and (slot.gpus < needs.gpus or slot.gpu_running):
            return False
        used = self._node_memory.get(slot.node_id, 0)
        return not (needs.memory and slot.memory and used + needs.memory > slot.memory)

    def _assign(self, run: RayRun, slot: Slot) -> Callable[[], None]:
        slot.running += 1
        slot.gpu_running += 1 if run.spec.needs.gpus else 0
        slot.last = time.monotonic()
        self._node_memory[slot.node_id] = (self._node_memory.get(slot.node_id, 0)
                                           + run.spec.needs.memory)
        run.slot = slot
        run.attempt += 1
        run.placement = slot.placement
        run._state = JobState.RUNNING
        bridge = self._bridge
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

    def _release(self, run: RayRun) -> None:
        slot, run.slot = run.slot, None
        if slot is None:
            return
        slot.running -= 1
        slot.gpu_running -= 1 if run.spec.needs.gpus else 0
        self._node_memory[slot.node_id] = (self._node_memory.get(slot.node_id, 0)
                                           - run.spec.needs.memory)

    def _finish(self, run: RayRun, state: JobState, error: str | None,
                rows: list[dict[str, Any]] | None) -> Callable[[], None]:
        if run.finished:
            return _nothing
        run.finished = True
        self._runs.pop(run.job_id, None)
        self._release(run)
        return lambda: run._end(state, error, rows)

    def _no_node(self, run: RayRun) -> str:
        if run.losses:
            return f"{run.losses[-1]}; no other node of the cluster can run it"
        largest = max(self._slots.values(), key=lambda s: (s.gpus, s.memory))
        return (f"no node of the cluster can run it: it requests "
                f"{run.spec.needs.describe()}; the largest node runtime offers "
                f"{largest.memory / (1 << 30):.2f} GiB of memory and {largest.gpus} GPU(s)")

    # --- events from the bridge -----------------------------------------------------------

    def _on_message(self, bridge: _Bridge, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "rows":
            with self._lock:
                future = self._requests.pop(message[1], None)
            if future is not None:
                future.set_result(message[2])
            return
        with self._lock:
            if bridge is not self._bridge:
                return
            if kind == "status":
                effects = self._on_status(bridge, message[1])
            else:
                effects = self._on_job_event(kind, *message[1:])
        _apply(effects)

    def _on_status(self, bridge: _Bridge, info: dict[str, Any]) -> list[Callable[[], None]]:
        self._available = bool(info["available"])
        self._nodes = int(info["nodes"])
        self._reason = info.get("reason")
        if not self._available:
            return []
        if not bridge.connected:
            log.info("cluster %s: connected", self.address)
        bridge.connected = True
        self._backoff = 1.0
        listed = {s["id"]: s for s in info["slots"]}
        for slot_id in [k for k in self._slots if k not in listed]:
            del self._slots[slot_id]  # its unfinished runs are reported lost by the bridge
        for slot_id, s in listed.items():
            if slot_id not in self._slots:
                self._slots[slot_id] = Slot(slot_id, s["node_id"], s["placement"],
                                             max(1, int(s["capacity"])), int(s["gpus"]),
                                             int(s["memory"]))
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
        self._release(run)
        run.losses.append(reason)
        if run.cancel_requested:
            return [self._finish(run, JobState.CANCELLED, "canceled", None)]
        if len(run.losses) >= 2:
            return [self._finish(run, JobState.FAILED,
                                 f"{reason} (twice; the first time: {run.losses[0]})", None)]
        run.excluded.add(str(info["node_id"]))
        run.placement = "re-queued"
        run._state = JobState.PENDING
        self._queue(run, retry=True)
        note = f"{reason}: re-queued once on another node"
        return [lambda: run._note(note)]

    # --- cancel and operator rows ---------------------------------------------------------

    def _cancel(self, run: RayRun) -> None:
        with self._lock:
            if run.finished:
                return
            run.cancel_requested = True
            if run.slot is None:  # waiting here: stop it now
                effects = [self._finish(run, JobState.CANCELLED, "canceled", None),
                           *self._drain()]
            else:
                bridge = self._bridge
                effects = [] if bridge is None else [
                    lambda: _send(bridge, ("cancel", run.job_id))]
        _apply(effects)

    def _request_rows(self, job_id: str) -> Future[Any] | None:
        future: Future[Any] = Future()
        with self._lock:
            bridge = self._bridge
            if bridge is None:
                return None
            request = next(self._seq)
            self._requests[request] = future
        if not bridge.send(("rows", request, job_id)):
            with self._lock:
                self._requests.pop(request, None)
            return None
        return future

    # --- the bridge process ---------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                bridge = self._bridge
                if bridge is None:
                    if time.monotonic() >= self._next_spawn and not self._closing:
                        self._spawn()
                    continue
                silent = time.monotonic() - bridge.heard
                if bridge.connected and silent > _UNAVAILABLE_AFTER and self._available:
                    self._available = False
                    self._reason = (f"no word from the Ray cluster at {self.address} for "
                                    f"{silent:.0f} s")
                    log.warning("cluster %s: %s", self.address, self._reason)
            limit = _KILL_AFTER if bridge.connected else _CONNECT_TIMEOUT
            if silent > limit:
                log.error("cluster %s: the driver process gave no word for %.0f s; replacing it",
                          self.address, silent)
                bridge.kill()

    def _spawn(self) -> None:
        """Start a bridge (under _lock)."""
        try:
            bridge = _Bridge(self._settings, self._env)
        except OSError as exc:
            self._reason = f"the Ray driver process could not start: {exc}"
            self._next_spawn = time.monotonic() + self._backoff
            self._backoff = min(30.0, self._backoff * 2)
            return
        self._bridge = bridge
        reader = threading.Thread(target=self._read, args=(bridge,),
                                  name="clara-rt-cluster-reader", daemon=True)
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        reader.start()

    def _read(self, bridge: _Bridge) -> None:
        reason = None
        while True:
            try:
                message = bridge.conn.recv()
            except (EOFError, OSError):
                break
            bridge.heard = time.monotonic()
            if message[0] == "status" and not message[1]["available"]:
                reason = str(message[1]["reason"])
            try:
                self._on_message(bridge, message)
            except Exception:
                log.exception("cluster %s: handling %r failed", self.address, message[0])
        bridge.conn.close()
        try:
            code = bridge.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            bridge.kill()
            code = bridge.proc.wait(10.0)
        self._bridge_ended(bridge, reason or f"the connection to the Ray cluster at "
                                             f"{self.address} was lost (the driver process "
                                             f"ended with status {code})")

    def _bridge_ended(self, bridge: _Bridge, reason: str) -> None:
        with self._lock:
            if self._bridge is not bridge:
                return
            self._bridge = None
            self._available = False
            self._slots.clear()
            self._reason = reason
            self._next_spawn = time.monotonic() + self._backoff
            self._backoff = min(30.0, self._backoff * 2)
            error = ("the cluster runner was closed" if self._closing
                     else f"cluster unavailable: {reason}")
            effects = [self._finish(run, JobState.FAILED, error, None)
                       for run in list(self._runs.values())]
            self._waiting.clear()
            requests, self._requests = self._requests, {}
            self._lock.notify_all()
        if not self._closing:
            log.error("cluster %s: %s; jobs it ran failed, new jobs wait; reconnecting in "
                      "%.0f s", self.address, reason, self._next_spawn - time.monotonic())
        for future in requests.values():
            future.set_result(None)
        _apply(effects)


def _could_fit(slot: Slot, needs: JobNeeds) -> bool:
    """Whether the slot could ever run a job with ``needs`` (when idle)."""
    return ((not needs.gpus or slot.gpus >= needs.gpus)
            and (not needs.memory or not slot.memory or needs.memory <= slot.memory))


def _apply(effects: list[Callable[[], Any]]) -> None:
    for effect in effects:
        try:
            effect()
        except Exception:
            log.exception("cluster runner: a callback failed")


def _send(bridge: _Bridge, message: tuple[Any, ...]) -> None:
    bridge.send(message)


def _nothing() -> None:
    return None
