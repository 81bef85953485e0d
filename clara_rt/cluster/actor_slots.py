"""The node actors the bridge (:mod:`.bridge`) keeps: :class:`ActorSlots`, one
:class:`ActorSlot` per actor.

Every pass over the cluster's alive nodes (:meth:`ActorSlots.reconcile`) drops the actors of
nodes that left and starts one :class:`~clara_rt.cluster.node_actor.NodeRuntime` actor per node
that lacks one, one per GPU on nodes with GPUs, each pinned with
``NodeAffinitySchedulingStrategy(soft=False)``. An actor counts (is a *slot*) once it has
answered ``ready()``; one that fails to start, or takes longer than 120 s, is dropped and tried
again after a delay that doubles with each failure (``refresh`` seconds up to 60 s). The ready
slots go to the server in each ``status`` report (:meth:`ActorSlots.report`).

Runs in the bridge process only: it imports Ray. Thread-safe.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActorSlot", "ActorSlots", "short_error"]

log = logging.getLogger("clara_rt.cluster.bridge")

_START_TIMEOUT = 120.0  # seconds an actor may take to answer ready() before it is replaced


@dataclass(eq=False)
class ActorSlot:
    """A node actor: ready (it answered ``ready()``) or starting."""

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


class ActorSlots:
    """The node actors of the bridge, by slot id.

    Args:
        settings: The bridge's settings (``workers``, ``services``, ``refresh``).
        send: Sends a message to the server.
        later: ``later(fn, *args)`` runs ``fn(*args)`` on the bridge's thread pool.
    """

    def __init__(self, settings: dict[str, Any], send: Callable[[tuple[Any, ...]], None],
                 later: Callable[..., None]) -> None:
        self.actor_class: Any = None
        """``ray.remote(NodeRuntime)``; set once the bridge is connected."""
        self._settings = settings
        self._send = send
        self._later = later
        self._lock = threading.Lock()
        self._slots: dict[str, ActorSlot] = {}
        self._placements: dict[str, str] = {}  # every slot id ever used -> its placement
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, retry at)
        self._generation = itertools.count()
        self._nodes = 0

    def get(self, slot_id: str) -> tuple[ActorSlot | None, str]:
        """The slot (``None`` once dropped) and its placement (also after it was dropped)."""
        with self._lock:
            return (self._slots.get(slot_id),
                    self._placements.get(slot_id, slot_id.split(":")[0][:8]))

    def reconcile(self, nodes: list[dict[str, Any]]) -> None:
        """Drop actors of nodes that left; start actors for alive nodes that lack them."""
        alive = {n["NodeID"]: n for n in nodes}
        with self._lock:
            gone = [s for s in self._slots.values() if s.node_id not in alive]
            have = {(s.node_id, s.key) for s in self._slots.values()}
        for slot in gone:
            self.drop(slot, "its node left the cluster")
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
            self.drop(slot, f"it did not start within {_START_TIMEOUT:.0f} s")
            self._failed_start(slot)

    def drop(self, slot: ActorSlot, why: str) -> None:
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

    def report(self, nodes: int | None) -> None:
        """Send the server the ready slots and the node count (``None``: the last one)."""
        with self._lock:
            if nodes is not None:
                self._nodes = nodes
            slots = [{"id": s.id, "node_id": s.node_id, "placement": s.placement,
                      "capacity": s.capacity, "gpus": s.gpus, "memory": s.memory}
                     for s in self._slots.values() if s.ready]
            count = self._nodes
        self._send(("status", {"available": True, "nodes": count, "slots": slots,
                               "reason": None}))

    def shutdown(self) -> None:
        """Shut every actor down (5 s at most), then kill it; forget them all."""
        import ray

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
        actor = self.actor_class.options(
            num_cpus=num_cpus, num_gpus=1 if gpu else 0, max_restarts=0, max_task_retries=0,
            max_concurrency=1000,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote({"workers": workers, "placement": placement,
                  "services": self._settings["services"]})
        slot = ActorSlot(slot_id, node_id, key, placement, actor, workers, 1 if gpu else 0,
                         int(resources.get("memory", 0)))
        with self._lock:
            self._slots[slot_id] = slot
            self._placements[slot_id] = placement
        future = actor.ready.remote().future()
        future.add_done_callback(lambda f: self._later(self._started, slot, f))

    def _started(self, slot: ActorSlot, future: Future[Any]) -> None:
        try:
            info = future.result()
        except Exception as exc:
            log.warning("bridge: the runtime for node %s did not start: %s", slot.placement,
                        short_error(exc))
            self.drop(slot, "it did not start")
            self._failed_start(slot)
            return
        with self._lock:
            if self._slots.get(slot.id) is not slot:
                return
            slot.ready = True
            self._failures.pop((slot.node_id, slot.key), None)
        log.info("bridge: runtime ready on %s (pid %s, %d workers, GPUs %s)", slot.placement,
                 info.get("pid"), slot.capacity, info.get("gpu_ids"))
        self.report(None)

    def _failed_start(self, slot: ActorSlot) -> None:
        count, _ = self._failures.get((slot.node_id, slot.key), (0, 0.0))
        delay = min(60.0, float(self._settings["refresh"]) * 2 ** count)
        self._failures[(slot.node_id, slot.key)] = (count + 1, time.monotonic() + delay)


def short_error(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
