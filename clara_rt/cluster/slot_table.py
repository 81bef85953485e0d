"""The runner's count of the cluster's slots (ready node runtimes) and of the runs waiting for
one: :class:`SlotTable`.

A slot runs at most ``capacity`` jobs at once; a GPU job (``requests: gpu``) needs a GPU slot
and has it to itself; the memory requests of the jobs on a node add up to at most the node's
memory. Waiting runs are placed in order: re-queued runs first, then by the runtime's priority
policy (:class:`~clara_rt.fair_queue.FairQueue`: immediate first, then high/normal/low 4:2:1,
first come first served within a class; an unknown priority is an error). A run goes to the
least loaded slot that fits; CPU jobs keep off GPU slots, and among equals the slot used least
recently wins.

Plain data, not thread-safe: :class:`~.ray_runner.RayRunner` calls it under its lock.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from clara_rt.cluster.run import RayRun, Slot
from clara_rt.fair_queue import FairQueue
from clara_rt.job import PRIORITY_NAMES
from clara_rt.runner.needs import JobNeeds

__all__ = ["PRIORITIES", "SlotTable"]

PRIORITIES = PRIORITY_NAMES  # the one list, from clara_rt.job (kept under this name)


class SlotTable:
    """The ready slots, what runs on each, and the runs waiting for one."""

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._node_memory: dict[str, int] = {}
        self._retries: deque[RayRun] = deque()  # re-queued runs: placed before new ones
        self._waiting: FairQueue[RayRun] = FairQueue()

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def capacity(self) -> int:
        """Jobs the slots can run at once."""
        return sum(s.capacity for s in self._slots.values())

    def waiting(self) -> int:
        """Runs waiting for a slot (and not finished meanwhile)."""
        return sum(1 for run in self._runs() if not run.finished)

    def has_capacity(self, needs: JobNeeds) -> bool:
        """Whether a job with ``needs`` can be placed now, or no slot could ever run it.

        False while there are no slots, while runs wait and while every slot that could run it
        is full.
        """
        if not self._slots or self.waiting():
            return False
        if any(self._fits_now(s, needs) for s in self._slots.values()):
            return True
        return not any(_could_fit(s, needs) for s in self._slots.values())

    def update(self, listed: list[dict[str, Any]]) -> None:
        """Take the bridge's list of ready slots: forget those not in it, add the new ones."""
        by_id = {s["id"]: s for s in listed}
        for slot_id in [k for k in self._slots if k not in by_id]:
            del self._slots[slot_id]  # its unfinished runs are reported lost by the bridge
        for slot_id, s in by_id.items():
            if slot_id not in self._slots:
                self._slots[slot_id] = Slot(slot_id, s["node_id"], s["placement"],
                                            max(1, int(s["capacity"])), int(s["gpus"]),
                                            int(s["memory"]))

    def clear(self) -> None:
        """Forget every slot and every waiting run (the bridge ended)."""
        self._slots.clear()
        self._retries.clear()
        self._waiting.clear()

    def queue(self, run: RayRun, *, retry: bool) -> None:
        """Let ``run`` wait for a slot; a re-queued run (``retry``) goes before new ones."""
        if retry:
            self._retries.append(run)
        else:
            self._waiting.push(run.spec.priority, run)  # PriorityError on an unknown priority

    def place_waiting(self, available: bool) -> list[tuple[RayRun, Slot | None]]:
        """Place every waiting run that fits a slot now; keep the others waiting.

        Returns:
            In queue order, ``(run, slot)`` for each run placed (``run.slot`` is set and the
            slot counts it) and ``(run, None)`` for each run that no slot outside
            ``run.excluded`` could ever run (only while the cluster is ``available``).
        """
        placed: list[tuple[RayRun, Slot | None]] = []
        for run in list(self._runs()):
            if run.finished:
                self._forget(run, served=False)
                continue
            slot = self._pick(run)
            if slot is not None:
                self._take(run, slot)
                self._forget(run, served=True)
                placed.append((run, slot))
            elif available and self._slots and not any(
                    _could_fit(s, run.spec.needs) for s in self._slots.values()
                    if s.node_id not in run.excluded):
                self._forget(run, served=False)
                placed.append((run, None))
        return placed

    def _runs(self) -> list[RayRun]:
        """Waiting runs in placement order: re-queued ones, then by the priority policy."""
        return [*self._retries, *(run for _, run in self._waiting.ordered())]

    def _forget(self, run: RayRun, *, served: bool) -> None:
        if run in self._retries:
            self._retries.remove(run)
        elif served:
            self._waiting.take(run)  # a dispatch of its class: charged to the round robin
        else:
            self._waiting.discard(run)

    def release(self, run: RayRun) -> None:
        """Take ``run`` off its slot, if it has one."""
        slot, run.slot = run.slot, None
        if slot is None:
            return
        slot.running -= 1
        slot.gpu_running -= 1 if run.spec.needs.gpus else 0
        self._node_memory[slot.node_id] = (self._node_memory.get(slot.node_id, 0)
                                           - run.spec.needs.memory)

    def no_node_reason(self, run: RayRun) -> str:
        """Why no slot can run ``run`` (there is at least one slot)."""
        if run.losses:
            return f"{run.losses[-1]}; no other node of the cluster can run it"
        largest = max(self._slots.values(), key=lambda s: (s.gpus, s.memory))
        return (f"no node of the cluster can run it: it requests "
                f"{run.spec.needs.describe()}; the largest node runtime offers "
                f"{largest.memory / (1 << 30):.2f} GiB of memory and {largest.gpus} GPU(s)")

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

    def _take(self, run: RayRun, slot: Slot) -> None:
        slot.running += 1
        slot.gpu_running += 1 if run.spec.needs.gpus else 0
        slot.last = time.monotonic()
        self._node_memory[slot.node_id] = (self._node_memory.get(slot.node_id, 0)
                                           + run.spec.needs.memory)
        run.slot = slot


def _could_fit(slot: Slot, needs: JobNeeds) -> bool:
    """Whether the slot could ever run a job with ``needs`` (when idle)."""
    return ((not needs.gpus or slot.gpus >= needs.gpus)
            and (not needs.memory or not slot.memory or needs.memory <= slot.memory))
