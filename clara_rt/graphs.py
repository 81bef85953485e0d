"""GraphTable: a runtime's compiled plans, their C++ graphs and started operators, and their
release once nobody references a plan any more.

A runtime registers each :class:`~clara_rt.plan.Plan` once (``register``): its operators are
started (``start()``, once per operator however many plans share it), its graph is added to the
scheduler, and a ``weakref.finalize`` is attached to the plan. Jobs hold their plan, and a
pipeline holds its plan, so a plan dies only when the pipeline is dropped and its last job is
gone; the finalizer then queues the plan's release and performs it at once unless the dying
thread is inside a release already (garbage collection can run anywhere): the graph is removed
from the scheduler (``Scheduler.remove_graph``, which frees it after its last job) and every
operator no other live plan uses is stopped (``stop()``) and forgotten. Whatever was queued is
also released on the next ``lookup`` (every submit makes one). ``close`` detaches every finalizer
and returns the operators still started, for the runtime to stop.

Locks: the runtime's lock is held around ``register`` (against concurrent registration and
close); this table's own lock guards the started-operator counts and resource ids, and is the
only lock a release takes, so a finalizer never waits on the runtime.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
import weakref
from collections import deque
from typing import Any

from clara_rt import _core
from clara_rt.errors import OperatorError, SchedulerError
from clara_rt.operator import Operator
from clara_rt.plan import Plan

__all__ = ["GraphTable", "stop_operator"]

log = logging.getLogger("clara_rt")


class GraphTable:
    """Plans -> scheduler graphs for one runtime, with their operators' start/stop."""

    def __init__(self, sched: _core.Scheduler) -> None:
        self._sched = sched
        # id(plan) -> (weak plan, graph id, its finalizer); entries leave when the plan dies
        self._graphs: dict[int, tuple[weakref.ref[Plan], int, weakref.finalize[Any, Any]]] = {}
        # id(op) -> [op, number of live plans using it]: started operators, for stop()
        self._started: dict[int, list[Any]] = {}
        self._resources: dict[int, int] = {}  # id(op) -> scheduler resource id
        self._free_resources: list[int] = []  # resource ids of released operators, for reuse
        self._released: deque[tuple[int, tuple[Operator, ...]]] = deque()  # dead plans
        self._lock = threading.Lock()  # guards _started, _resources and the release

    @property
    def plans(self) -> int:
        """Live plans registered."""
        return len(self._graphs)

    @property
    def operators(self) -> int:
        """Operators started and not released."""
        return len(self._started)

    def lookup(self, plan: Plan) -> int | None:
        """The graph id of ``plan`` if it is registered (no lock: a dict read). Releases what
        a finalizer could only queue (it fired inside a release) first."""
        if self._released:
            self.release_dead(blocking=True)
        entry = self._graphs.get(id(plan))
        if entry is not None and entry[0]() is plan:
            return entry[1]
        return None

    def register(self, plan: Plan) -> int:
        """Start the plan's operators, add its graph, watch it die; return the graph id.

        Raises:
            OperatorError: an operator's ``start()`` raised (those this call started are
                forgotten again, so a later submit retries them).
            SchedulerError: the scheduler refused the graph.
        """
        found = self.lookup(plan)
        if found is not None:
            return found
        ops = tuple(node.operator for node in plan.nodes)
        with self._lock:
            self._start_operators(ops)
            resources = [self._resource_for(op) for op in ops]
            try:
                graph = self._sched.add_graph(len(ops), list(plan.edges), resources)
            except (ValueError, RuntimeError) as exc:
                self._forget_operators(ops)
                raise SchedulerError(f"pipeline '{plan.name}': {exc}") from exc
            finalizer = weakref.finalize(plan, _plan_died, weakref.ref(self), id(plan), graph,
                                         ops)
            self._graphs[id(plan)] = (weakref.ref(plan), graph, finalizer)
        return graph

    def close(self) -> list[Operator]:
        """Detach every finalizer (nothing is released after this) and return the operators
        still started, for the caller to stop."""
        with self._lock:
            for _, _, finalizer in list(self._graphs.values()):
                finalizer.detach()
            self._graphs.clear()
            self._released.clear()
            started, self._started = self._started, {}
        return [op for op, _ in started.values()]

    def release_dead(self, *, blocking: bool) -> None:
        """Remove the graphs of plans that died and stop the operators nobody uses any more.

        A garbage-collection callback may land on a thread that is inside this very method:
        it then only queues (``blocking=False`` fails to take the lock) and the loop here, or
        the next registration, picks the plan up.
        """
        while self._released:
            if not self._lock.acquire(blocking):
                return
            unused: list[Operator] = []
            try:
                while self._released:
                    graph, ops = self._released.popleft()
                    with contextlib.suppress(ValueError):  # removed already
                        self._sched.remove_graph(graph)
                    unused += self._forget_operators(ops)
            finally:
                self._lock.release()
            for op in unused:
                stop_operator(op)

    # --- operators (table lock held) -----------------------------------------------------

    def _start_operators(self, ops: tuple[Operator, ...]) -> None:
        """Start the operators not started yet and count one more user of each (table lock
        held); if one raises, undo this call's counts and raise."""
        done: list[Operator] = []
        for op in ops:
            entry = self._started.get(id(op))
            if entry is None:
                try:
                    op.start()
                except Exception as exc:
                    self._forget_operators(tuple(done))
                    raise OperatorError(f"operator '{op.name}' failed in start(): {exc!r}",
                                        operator=op.name, job_id=None,
                                        traceback=traceback.format_exc()) from exc
                entry = self._started[id(op)] = [op, 0]
            entry[1] += 1
            done.append(op)

    def _forget_operators(self, ops: tuple[Operator, ...]) -> list[Operator]:
        """Count one user less of each operator (table lock held); return those left unused,
        which are forgotten here and must be stopped by the caller (outside the lock)."""
        unused = []
        for op in ops:
            entry = self._started.get(id(op))
            if entry is None:  # closed meanwhile, or counted already
                continue
            entry[1] -= 1
            if entry[1] == 0:
                del self._started[id(op)]
                rid = self._resources.pop(id(op), None)
                if rid is not None:
                    self._free_resources.append(rid)
                unused.append(op)
        return unused

    def _resource_for(self, op: Operator) -> int:
        limit = op.concurrency_limit()
        if limit is None:
            return -1
        rid = self._resources.get(id(op))
        if rid is None:
            rid = self._free_resources.pop() if self._free_resources else len(self._resources)
            self._resources[id(op)] = rid
            self._sched.set_resource_limit(rid, limit)
        return rid


def stop_operator(op: Operator) -> None:
    """Call ``op.stop()``; an exception is logged, never raised."""
    try:
        op.stop()
    except Exception:
        log.exception("operator '%s' raised in stop()", op.name)


def _plan_died(table_ref: weakref.ref[GraphTable], key: int, graph: int,
               ops: tuple[Operator, ...]) -> None:
    """``weakref.finalize`` callback of a plan: queue its release and try to do it now."""
    table = table_ref()
    if table is None:
        return
    entry = table._graphs.get(key)
    if entry is not None and entry[1] == graph:
        del table._graphs[key]
    table._released.append((graph, ops))
    table.release_dead(blocking=False)
