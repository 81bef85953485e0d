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

The node actors are kept by :class:`~clara_rt.cluster.actor_slots.ActorSlots`, the jobs sent to
them by :class:`~clara_rt.cluster.job_flights.JobFlights`; :class:`Bridge` connects, runs the
refresh pass and the message loop. The server's side of this process is
:mod:`clara_rt.cluster.bridge_process`.

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

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

from clara_rt.cluster.actor_slots import ActorSlots
from clara_rt.cluster.job_flights import JobFlights

__all__ = ["Bridge", "main"]

log = logging.getLogger("clara_rt.cluster.bridge")

_FAILURES_TO_EXIT = 3  # consecutive failed ray.nodes() calls that mean the cluster is gone


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
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="clara-rt-bridge")
        self._stop = threading.Event()
        self._slots = ActorSlots(settings, self._send, self._later)
        self._flights = JobFlights(settings, self._slots, self._send, self._later)

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
        self._slots.actor_class = ray.remote(NodeRuntime)

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
                self._slots.reconcile(nodes)
                self._flights.check_deadlines()
            except Exception:
                log.exception("bridge: reconciling the node actors failed")
            self._slots.report(len(nodes))
            self._stop.wait(float(self._settings["refresh"]))

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "run":
            _, job_id, attempt, slot_id, spec = message
            self._later(self._flights.run, job_id, attempt, slot_id, spec)
        elif kind == "cancel":
            self._flights.cancel(message[1])
        elif kind == "rows":
            self._later(self._flights.rows, message[1], message[2])
        else:
            log.error("bridge: unknown message %r", kind)

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
        self._slots.shutdown()
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


if __name__ == "__main__":
    sys.exit(main())
