"""The jobs the bridge (:mod:`.bridge`) has sent to a node actor and not yet answered:
:class:`JobFlights`, one :class:`Flight` per job.

A job is run on the slot the server chose (:mod:`.actor_slots`): for the object store its input
folder is packed (:func:`~clara_rt.cluster.transport.pack`) and ``ray.put``; when the actor
answers, the results are unpacked into the job's workspace and the operator logs appended.
Each job's end goes to the server as ``done`` (the runtime's state, error and operator rows),
``lost`` (the actor or its node died: ``RayActorError``, ``NodeDiedError``,
``WorkerCrashedError`` or ``ObjectLostError``; the slot is dropped) or ``hung`` (no answer
within the job's timeout plus ``grace``: the actor is killed and replaced). Cancels are
forwarded to the actor, also when they arrive before the job was sent; operator-state requests
are answered from the job's actor.

Runs in the bridge process only: it imports Ray. Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_rt.cluster.actor_slots import ActorSlot, ActorSlots, short_error
from clara_rt.cluster.transport import OBJECT_STORE, RESULTS_DIR, pack, unpack

__all__ = ["Flight", "JobFlights"]

log = logging.getLogger("clara_rt.cluster.bridge")


@dataclass(eq=False)
class Flight:
    """A job sent to a slot and not yet answered."""

    job_id: str
    attempt: int
    slot: ActorSlot
    spec: dict[str, Any]
    deadline: float | None
    ref: Any = None


class JobFlights:
    """The bridge's jobs in flight, by job id.

    Args:
        settings: The bridge's settings (``grace``).
        slots: The bridge's node actors.
        send: Sends a message to the server.
        later: ``later(fn, *args)`` runs ``fn(*args)`` on the bridge's thread pool.
    """

    def __init__(self, settings: dict[str, Any], slots: ActorSlots,
                 send: Callable[[tuple[Any, ...]], None], later: Callable[..., None]) -> None:
        self._grace = float(settings["grace"])
        self._slots = slots
        self._send = send
        self._later = later
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._early_cancels: set[str] = set()

    def run(self, job_id: str, attempt: int, slot_id: str, spec: dict[str, Any]) -> None:
        """Send a job to the actor of ``slot_id``; its end is reported when the actor answers."""
        import ray

        slot, placement = self._slots.get(slot_id)
        if slot is None:
            self._send(("lost", job_id, attempt, {
                "reason": f"the runtime on node {placement} was gone before the job started",
                "node_id": slot_id.split(":")[0], "placement": placement}))
            return
        timeout = spec["timeout"]
        flight = Flight(job_id, attempt, slot, spec,
                        None if timeout is None else time.monotonic() + timeout + self._grace)
        try:
            payload = None
            if spec["transport"] == OBJECT_STORE:
                payload = ray.put(pack({"input": Path(spec["input"])}))
            flight.ref = slot.actor.run.remote(spec, payload)
        except Exception as exc:
            self._send(("done", job_id, attempt, {
                "state": "failed", "rows": [], "placement": slot.placement,
                "error": f"the job could not be sent to node {slot.placement}: "
                         f"{type(exc).__name__}: {short_error(exc)}"}))
            return
        with self._lock:
            self._flights[job_id] = flight
            cancel = job_id in self._early_cancels
            self._early_cancels.discard(job_id)
        if cancel:
            slot.actor.cancel.remote(job_id)
        flight.ref.future().add_done_callback(
            lambda f: self._later(self._landed, flight, f))

    def cancel(self, job_id: str) -> None:
        """Forward a cancel to the job's actor (or keep it until the job is sent)."""
        with self._lock:
            flight = self._flights.get(job_id)
            if flight is None:
                self._early_cancels.add(job_id)
                return
        try:
            flight.slot.actor.cancel.remote(job_id)
        except Exception as exc:
            log.warning("bridge: cancel of job %s failed: %s", job_id, short_error(exc))

    def rows(self, request_id: int, job_id: str) -> None:
        """Answer an operator-state request (``None`` when the job's actor cannot tell)."""
        import ray

        with self._lock:
            flight = self._flights.get(job_id)
        rows = None
        if flight is not None:
            try:
                rows = ray.get(flight.slot.actor.operator_states.remote(job_id), timeout=2.0)
            except Exception as exc:
                log.debug("bridge: operator states of job %s: %s", job_id, short_error(exc))
        self._send(("rows", request_id, rows))

    def check_deadlines(self) -> None:
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
            self._slots.drop(slot, f"job {flight.job_id} hung past its timeout")
            self._send(("hung", flight.job_id, flight.attempt, {
                "placement": slot.placement,
                "reason": f"the job ran past its timeout ({flight.spec['timeout']:g} s) and node "
                          f"{slot.placement} did not stop it within {self._grace:g} s more; "
                          "its runtime was killed and replaced"}))

    def _landed(self, flight: Flight, future: Future[Any]) -> None:
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
            self._slots.drop(slot, f"{type(exc).__name__}: {short_error(exc)}")
            self._send(("lost", flight.job_id, flight.attempt, {
                "reason": reason, "detail": f"{type(exc).__name__}: {short_error(exc)}",
                "node_id": slot.node_id, "placement": slot.placement}))
            return
        except Exception as exc:
            result = {"state": "failed", "rows": [], "files": None,
                      "error": f"the runtime on node {slot.placement} raised "
                               f"{type(exc).__name__}: {short_error(exc)}"}
        result["placement"] = slot.placement
        _save_files(result, Path(flight.spec["workspace"]))
        self._send(("done", flight.job_id, flight.attempt, result))


def _save_files(result: dict[str, Any], workspace: Path) -> None:
    """Unpack the results a node sent back (object store) into the job's workspace."""
    files = result.pop("files", None)
    if files is None:
        return
    try:
        unpack(files, {"output": workspace / RESULTS_DIR, "logs": workspace.parent / "logs"},
               append=("logs",))
    except (OSError, ValueError) as exc:
        result.update(state="failed", error=f"results could not be saved: {exc}")
