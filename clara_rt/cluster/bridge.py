"""The Ray driver of a cluster runner: a child process of the server (``python -m
clara_rt.cluster.bridge FD``).

Why a separate process: Ray terminates a driver that has lost the cluster's GCS for 60 s ("The
program will terminate"), and a driver attached with a ``HOST:PORT`` address dies with the
raylet of its machine. With the driver here, the server survives Ray going away: the runner
(:mod:`clara_rt.cluster.ray_runner`) sees this process end, fails the jobs that were running
with the reason, and starts a new bridge that reconnects once the cluster is back. Ray is never
imported into the server process.

The bridge

* connects (``ray.init(address)``), then every ``refresh`` seconds reads ``ray.nodes()`` and
  keeps one :class:`~clara_rt.cluster.node_actor.NodeRuntime` actor per alive node, one per GPU
  on nodes with GPUs, each pinned with ``NodeAffinitySchedulingStrategy(soft=False)``; an actor
  counts (is a *slot*) once it has answered ``ready()``. It reports the slots and the node count
  to the server after every pass (which is also its heartbeat);
* runs each job it is sent on the slot the server chose: for the object store it packs the input
  folder (:func:`~clara_rt.cluster.transport.pack`) and ``ray.put`` s it, and when the job ends
  it unpacks the results into the job's workspace and appends the operator logs;
* reports each job's end: ``done`` (with the runtime's state, error and operator rows), ``lost``
  (the actor or its node died: Ray raised ``RayActorError``, ``NodeDiedError``,
  ``WorkerCrashedError`` or ``ObjectLostError``; the server re-queues the job once) or ``hung``
  (no answer within the job's timeout plus ``grace``: the actor is killed with ``ray.kill`` and
  replaced, the job is failed as timed out);
* forwards cancels and answers operator-state requests.

Messages are pickled tuples on a socket pair (:class:`multiprocessing.connection.Connection`):

* server -> bridge: ``("run", job_id, attempt, slot_id, spec)``, ``("cancel", job_id)``,
  ``("rows", request_id, job_id)``, ``("close",)``;
* bridge -> server: ``("status", info)``, ``("done", job_id, attempt, result)``,
  ``("lost", job_id, attempt, info)``, ``("hung", job_id, attempt, info)``,
  ``("rows", request_id, rows)``.

The bridge exits when the server's end of the socket closes, on ``close``, and when it cannot
reach the cluster (it reports why first).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clara_rt.cluster.transport import OBJECT_STORE, RESULTS_DIR, pack, unpack

__all__ = ["Bridge", "main"]

log = logging.getLogger("clara_rt.cluster.bridge")

_START_TIMEOUT = 120.0  # seconds an actor may take to answer ready() before it is replaced
_FAILURES_TO_EXIT = 3  # consecutive failed ray.nodes() calls that mean the cluster is gone


@dataclass(eq=False)
class _Slot:
    """A node actor: ready (``info`` set) or starting."""

    id: str
    node_id: str
    key: str  # "cpu" or "gpuN"
    placement: str
    actor: Any
    capacity: int
    gpus: int
    memory: int
    since: float = field(default_factory=time.monotonic)
    ready: bool = False
    killed_reason: str | None = None


@dataclass(eq=False)
class _Flight:
    """A job sent to a slot and not yet answered."""

    job_id: str
    attempt: int
    slot: _Slot
    spec: dict[str, Any]
    deadline: float | None
    ref: Any = None


class Bridge:
    """The driver side of the cluster runner (one per server connection).

    Args:
        conn: The connection to the server.
        settings: ``address``, ``workers`` (per actor; ``None``: the actor's CPU share),
            ``services``, ``grace`` (seconds after a job's timeout before its actor counts as
            hung), ``refresh`` (seconds between passes over the nodes).
    """

    def __init__(self, conn: Connection, settings: dict[str, Any]) -> None:
        self._conn = conn
        self._settings = settings
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._flights: dict[str, _Flight] = {}
        self._early_cancels: set[str] = set()
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, retry at)
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="clara-rt-bridge")
        self._stop = threading.Event()
        self._generation = itertools.count()
        self._placements: dict[str, str] = {}  # every slot id ever used -> its placement
        self._nodes = 0
        self._actor_class: Any = None

    def serve(self) -> int:
        """Connect, then handle the server's messages until it closes; return an exit status."""
        address = self._settings["address"]
        try:
            self._connect()
        except Exception as exc:
            log.error("cannot connect to the Ray cluster at %s: %s", address, exc)
            self._send(("status", {"available": False, "nodes": 0, "slots": [],
                                   "reason": f"cannot connect to the Ray cluster at {address}: "
                                             f"{type(exc).__name__}: {exc}"}))
            return 3
        refresher = threading.Thread(target=self._refresh_loop, name="clara-rt-bridge-refresh",
                                     daemon=True)
        refresher.start()
        while not self._stop.is_set():
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "close":
                break
            try:
                self._handle(message)
            except Exception:
                log.exception("bridge: message %r failed", message[:2])
        self._shutdown()
        return 0

    # --- connection and nodes -----------------------------------------------------------

    def _connect(self) -> None:
        import ray

        from clara_rt.cluster.node_actor import NodeRuntime

        address = self._settings["address"]
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True,
                                  "namespace": "clara-rt"}
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
        self._actor_class = ray.remote(NodeRuntime)

    def _refresh_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                import ray

                nodes = [n for n in ray.nodes() if n.get("Alive")]
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("bridge: ray.nodes() failed (%d): %s", failures, exc)
                if failures >= _FAILURES_TO_EXIT:
                    self._send(("status", {"available": False, "nodes": 0, "slots": [],
                                           "reason": f"lost the Ray cluster at "
                                                     f"{self._settings['address']}: {exc}"}))
                    self._stop.set()
                    self._conn.close()  # the server sees the end and starts a new bridge
                    return
                self._stop.wait(float(self._settings["refresh"]))
                continue
            try:
                self._reconcile(nodes)
                self._check_deadlines()
            except Exception:
                log.exception("bridge: reconciling the node actors failed")
            self._send_status(len(nodes))
            self._stop.wait(float(self._settings["refresh"]))

    def _reconcile(self, nodes: list[dict[str, Any]]) -> None:
        """Drop actors of nodes that left; start actors for alive nodes that lack them."""
        alive = {n["NodeID"]: n for n in nodes}
        with self._lock:
            gone = [s for s in self._slots.values() if s.node_id not in alive]
            have = {(s.node_id, s.key) for s in self._slots.values()}
        for slot in gone:
            self._drop(slot, "its node left the cluster")
        now = time.monotonic()
        for node_id, node in alive.items():
            resources = node.get("Resources") or {}
            gpus = int(resources.get("GPU", 0))
            keys = [f"gpu{i}" for i in range(gpus)] or ["cpu"]
            for key in keys:
                if (node_id, key) in have:
                    continue
                _, retry_at = self._failures.get((node_id, key), (0, 0.0))
                if now >= retry_at:
                    self._start_actor(node, key, max(1, gpus))
        with self._lock:
            stuck = [s for s in self._slots.values()
                     if not s.ready and now - s.since > _START_TIMEOUT]
        for slot in stuck:
            self._drop(slot, f"it did not start within {_START_TIMEOUT:.0f} s")
            self._failed_start(slot)

    def _start_actor(self, node: dict[str, Any], key: str, actors_on_node: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        resources = node.get("Resources") or {}
        share = float(resources.get("CPU", 0.0)) / actors_on_node
        workers = self._settings["workers"] or max(1, int(share))
        num_cpus = min(float(workers), share)
        gpu = key.startswith("gpu")
        node_id = str(node["NodeID"])
        ip = str(node.get("NodeManagerAddress") or "?")
        placement = f"{ip}/{node_id[:8]}" + (f"/{key}" if gpu else "")
        slot_id = f"{node_id}:{key}:{next(self._generation)}"
        actor = self._actor_class.options(
            num_cpus=num_cpus, num_gpus=1 if gpu else 0, max_restarts=0, max_task_retries=0,
            max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote({"workers": workers, "placement": placement,
                  "services": self._settings["services"]})
        slot = _Slot(slot_id, node_id, key, placement, actor, workers, 1 if gpu else 0,
                     int(resources.get("memory", 0)))
        with self._lock:
            self._slots[slot_id] = slot
            self._placements[slot_id] = placement
        future = actor.ready.remote().future()
        future.add_done_callback(lambda f: self._later(self._started, slot, f))

    def _started(self, slot: _Slot, future: Future[Any]) -> None:
        try:
            info = future.result()
        except Exception as exc:
            log.warning("bridge: the runtime for node %s did not start: %s", slot.placement,
                        _short(exc))
            self._drop(slot, "it did not start")
            self._failed_start(slot)
            return
        with self._lock:
            if self._slots.get(slot.id) is not slot:
                return
            slot.ready = True
            self._failures.pop((slot.node_id, slot.key), None)
        log.info("bridge: runtime ready on %s (pid %s, %d workers, GPUs %s)", slot.placement,
                 info.get("pid"), slot.capacity, info.get("gpu_ids"))
        self._send_status(None)

    def _failed_start(self, slot: _Slot) -> None:
        count, _ = self._failures.get((slot.node_id, slot.key), (0, 0.0))
        delay = min(60.0, float(self._settings["refresh"]) * 2 ** count)
        self._failures[(slot.node_id, slot.key)] = (count + 1, time.monotonic() + delay)

    def _drop(self, slot: _Slot, why: str) -> None:
        """Forget a slot and kill its actor (its unanswered jobs then fail as lost)."""
        import ray

        with self._lock:
            if self._slots.pop(slot.id, None) is None:
                return
        log.warning("bridge: dropping the runtime on %s: %s", slot.placement, why)
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception as exc:  # already dead, or the cluster is going away
            log.debug("bridge: ray.kill(%s): %s", slot.placement, exc)

    def _send_status(self, nodes: int | None) -> None:
        with self._lock:
            if nodes is not None:
                self._nodes = nodes
            slots = [{"id": s.id, "node_id": s.node_id, "placement": s.placement,
                      "capacity": s.capacity, "gpus": s.gpus, "memory": s.memory}
                     for s in self._slots.values() if s.ready]
            count = self._nodes
        self._send(("status", {"available": True, "nodes": count, "slots": slots,
                               "reason": None}))

    # --- jobs ---------------------------------------------------------------------------

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "run":
            _, job_id, attempt, slot_id, spec = message
            self._later(self._run, job_id, attempt, slot_id, spec)
        elif kind == "cancel":
            self._cancel(message[1])
        elif kind == "rows":
            self._later(self._rows, message[1], message[2])
        else:
            log.error("bridge: unknown message %r", kind)

    def _run(self, job_id: str, attempt: int, slot_id: str, spec: dict[str, Any]) -> None:
        import ray

        with self._lock:
            slot = self._slots.get(slot_id)
            placement = self._placements.get(slot_id, slot_id.split(":")[0][:8])
        if slot is None:
            self._send(("lost", job_id, attempt, {
                "reason": f"the runtime on node {placement} was gone before the job started",
                "node_id": slot_id.split(":")[0], "placement": placement}))
            return
        timeout = spec["timeout"]
        grace = float(self._settings["grace"])
        flight = _Flight(job_id, attempt, slot, spec,
                         None if timeout is None else time.monotonic() + timeout + grace)
        try:
            payload = None
            if spec["transport"] == OBJECT_STORE:
                payload = ray.put(pack({"input": Path(spec["input"])}))
            flight.ref = slot.actor.run.remote(spec, payload)
        except Exception as exc:
            self._send(("done", job_id, attempt, {
                "state": "failed", "rows": [], "placement": slot.placement,
                "error": f"the job could not be sent to node {slot.placement}: "
                         f"{type(exc).__name__}: {_short(exc)}"}))
            return
        with self._lock:
            self._flights[job_id] = flight
            cancel = job_id in self._early_cancels
            self._early_cancels.discard(job_id)
        if cancel:
            slot.actor.cancel.remote(job_id)
        flight.ref.future().add_done_callback(
            lambda f: self._later(self._landed, flight, f))

    def _landed(self, flight: _Flight, future: Future[Any]) -> None:
        from ray.exceptions import (
            NodeDiedError,
            ObjectLostError,
            RayActorError,
            WorkerCrashedError,
        )

        with self._lock:
            if self._flights.get(flight.job_id) is not flight:
                return  # already reported (hung)
            del self._flights[flight.job_id]
        slot = flight.slot
        try:
            result = future.result()
        except (RayActorError, NodeDiedError, WorkerCrashedError, ObjectLostError) as exc:
            reason = slot.killed_reason or f"node {slot.placement} died while running the job"
            self._drop(slot, f"{type(exc).__name__}: {_short(exc)}")
            self._send(("lost", flight.job_id, flight.attempt, {
                "reason": reason, "detail": f"{type(exc).__name__}: {_short(exc)}",
                "node_id": slot.node_id, "placement": slot.placement}))
            return
        except Exception as exc:
            result = {"state": "failed", "rows": [], "files": None,
                      "error": f"the runtime on node {slot.placement} raised "
                               f"{type(exc).__name__}: {_short(exc)}"}
        result["placement"] = slot.placement
        files = result.pop("files", None)
        if files is not None:
            workspace = Path(flight.spec["workspace"])
            try:
                unpack(files, {"output": workspace / RESULTS_DIR,
                               "logs": workspace.parent / "logs"}, append=("logs",))
            except (OSError, ValueError) as exc:
                result.update(state="failed", error=f"results could not be saved: {exc}")
        self._send(("done", flight.job_id, flight.attempt, result))

    def _check_deadlines(self) -> None:
        """Kill and replace the actor of a job that ran past its timeout plus the grace."""
        now = time.monotonic()
        with self._lock:
            late = [f for f in self._flights.values()
                    if f.deadline is not None and now > f.deadline]
            for flight in late:
                del self._flights[flight.job_id]
        for flight in late:
            slot = flight.slot
            slot.killed_reason = (f"the runtime on node {slot.placement} was killed and replaced "
                                  f"because job {flight.job_id} hung past its timeout")
            self._drop(slot, f"job {flight.job_id} hung past its timeout")
            self._send(("hung", flight.job_id, flight.attempt, {
                "placement": slot.placement,
                "reason": f"the job ran past its timeout ({flight.spec['timeout']:g} s) and node "
                          f"{slot.placement} did not stop it within "
                          f"{float(self._settings['grace']):g} s more; its runtime was killed "
                          "and replaced"}))

    def _cancel(self, job_id: str) -> None:
        with self._lock:
            flight = self._flights.get(job_id)
            if flight is None:
                self._early_cancels.add(job_id)
                return
        try:
            flight.slot.actor.cancel.remote(job_id)
        except Exception as exc:
            log.warning("bridge: cancel of job %s failed: %s", job_id, _short(exc))

    def _rows(self, request_id: int, job_id: str) -> None:
        import ray

        with self._lock:
            flight = self._flights.get(job_id)
        rows = None
        if flight is not None:
            try:
                rows = ray.get(flight.slot.actor.operator_states.remote(job_id), timeout=2.0)
            except Exception as exc:
                log.debug("bridge: operator states of job %s: %s", job_id, _short(exc))
        self._send(("rows", request_id, rows))

    # --- helpers ------------------------------------------------------------------------

    def _later(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the pool (Ray's callbacks must not block); nothing once the
        bridge shuts down."""
        try:
            self._pool.submit(fn, *args)
        except RuntimeError:  # the pool is shut down: the bridge is exiting
            log.debug("bridge: %s after shutdown, dropped", getattr(fn, "__name__", fn))

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):  # the server is gone: stop
                self._stop.set()

    def _shutdown(self) -> None:
        import ray

        self._stop.set()
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        refs = []
        for slot in slots:
            with suppress(Exception):
                refs.append(slot.actor.shutdown.remote())
        if refs:
            with suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=5.0)
        for slot in slots:
            with suppress(Exception):  # already dead, or the cluster is gone
                ray.kill(slot.actor, no_restart=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with suppress(Exception):
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the bridge process: ``python -m clara_rt.cluster.bridge FD``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=os.environ.get("CLARA_RT_BRIDGE_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = Connection(int(args[0]))
    try:
        settings = conn.recv()
    except (EOFError, OSError):
        return 2
    return Bridge(conn, settings).serve()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
