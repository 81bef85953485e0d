"""A small pure-Python scheduler with the same API and policy as ``clara_rt._core.Scheduler``.

The unit tests run against both, so this file is the executable spec of the C++ core
(csrc/scheduler.hpp explains the design). Single-threaded: ``wait_next`` only polls.

Policy: ``immediate`` is served first; high/normal/low by smooth weighted round robin among the
non-empty classes. New roots go to the back of their class; successors and tasks released by a
resource go to the front. A task whose resource is at its limit is parked; a completing task of
that resource hands its slot to the first parked task (immediate ones first). Stopped jobs leave
stale queue entries that are skipped when popped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

PRIORITY_IMMEDIATE, PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = range(4)

_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_WAITING, _READY, _READY_RESERVED, _PARKED, _RUNNING, _DONE = range(6)


@dataclass
class _Graph:
    num_nodes: int
    successors: list[list[int]]
    in_degrees: list[int]
    roots: list[int]
    resources: list[int]
    id: int = -1
    jobs: int = 0
    removed: bool = False


@dataclass
class _Resource:
    limit: float = math.inf
    in_use: int = 0
    parked: int = 0
    parked_immediate: deque[tuple[int, int]] = field(default_factory=deque)
    parked_other: deque[tuple[int, int]] = field(default_factory=deque)


@dataclass
class _Job:
    id: int = -1
    generation: int = 0
    active: bool = False
    stopped: bool = False
    priority: int = PRIORITY_NORMAL
    graph: _Graph | None = None
    remaining: int = 0
    running: int = 0
    queued: int = 0
    parked: int = 0
    pending: list[int] = field(default_factory=list)
    state: list[int] = field(default_factory=list)


class ReferenceScheduler:
    """Pure-Python twin of ``clara_rt._core.Scheduler`` (see the module docstring)."""

    def __init__(self, weights: tuple[int, int, int] = (4, 2, 1)) -> None:
        if any(w < 1 for w in weights):
            raise ValueError(f"weights must be >= 1, got ({', '.join(map(str, weights))})")
        self._weights = list(weights)
        self._current = [0, 0, 0]
        self._queues: list[deque[tuple[int, int]]] = [deque() for _ in range(4)]
        self._live = [0, 0, 0, 0]
        self._graphs: dict[int, _Graph] = {}
        self._next_graph = 0
        self._resources: dict[int, _Resource] = {}
        self._slots: list[_Job] = []
        self._free: list[int] = []
        self._shutdown = False
        self._counters = dict.fromkeys(
            ("dispatched", "jobs_submitted", "jobs_finished", "jobs_failed", "jobs_cancelled"), 0
        )
        self._running = 0
        self._parked = 0

    # --- public API ---

    def add_graph(self, num_nodes: int, edges: list[tuple[int, int]], resources: list[int]) -> int:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        if len(resources) != num_nodes:
            raise ValueError(
                f"resources has {len(resources)} entries, expected {num_nodes} "
                "(one per node, -1 for none)"
            )
        for node, resource in enumerate(resources):
            if resource < -1:
                raise ValueError(f"resource of node {node} must be >= -1, got {resource}")
        successors: list[list[int]] = [[] for _ in range(num_nodes)]
        in_degrees = [0] * num_nodes
        for src, dst in edges:
            for node in (src, dst):
                if not 0 <= node < num_nodes:
                    raise ValueError(
                        f"edge ({src}, {dst}): node {node} out of range [0, {num_nodes})"
                    )
            successors[src].append(dst)
            in_degrees[dst] += 1
        for src, succ in enumerate(successors):
            seen: set[int] = set()
            for dst in succ:
                if dst in seen:
                    raise ValueError(f"duplicate edge ({src}, {dst})")
                seen.add(dst)
        _check_acyclic(successors)
        roots = [n for n in range(num_nodes) if in_degrees[n] == 0]
        for resource in resources:
            if resource >= 0:
                self._resources.setdefault(resource, _Resource())
        gid = self._next_graph
        self._next_graph += 1
        self._graphs[gid] = _Graph(num_nodes, successors, in_degrees, roots, list(resources), gid)
        return gid

    def remove_graph(self, graph: int) -> None:
        g = self._graphs.get(graph)
        if g is None or g.removed:
            raise ValueError(f"unknown graph {graph} (never added, or removed)")
        g.removed = True
        if g.jobs == 0:
            del self._graphs[graph]

    def set_resource_limit(self, resource: int, limit: int) -> None:
        if resource < 0:
            raise ValueError(f"resource must be >= 0, got {resource}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        r = self._resources.setdefault(resource, _Resource())
        r.limit = limit
        released = []
        while r.in_use < limit and (task := self._take_parked(r)) is not None:
            r.in_use += 1
            released.append(task)
        for job_id, node in reversed(released):  # each goes to the front: keep the batch FIFO
            self._push(self._slots[job_id & _SLOT_MASK].priority, (job_id, node), front=True)

    def submit(self, graph: int, priority: int) -> int:
        if not 0 <= priority < 4:
            raise ValueError(
                f"priority must be 0..3 (immediate, high, normal, low), got {priority}"
            )
        if self._shutdown:
            raise RuntimeError("scheduler is shut down; submit() is no longer allowed")
        found = self._graphs.get(graph)
        if found is None or found.removed:
            raise ValueError(
                f"unknown graph {graph} (never added, or removed); "
                f"{len(self._graphs)} graph(s) registered"
            )
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._slots)
            self._slots.append(_Job())
        job = self._slots[slot]
        g = found
        g.jobs += 1
        job.id = ((job.generation & 0x7FFFFFFF) << _SLOT_BITS) | slot
        job.active, job.stopped, job.priority, job.graph = True, False, priority, g
        job.remaining, job.running, job.parked = g.num_nodes, 0, 0
        job.pending = list(g.in_degrees)
        job.state = [_WAITING] * g.num_nodes
        for root in g.roots:
            job.state[root] = _READY
            self._push(priority, (job.id, root), front=False)
        job.queued = len(g.roots)
        self._counters["jobs_submitted"] += 1
        return job.id

    def try_next(self) -> tuple[int, int] | None:
        return self._pop_task()

    def wait_next(self, timeout_s: float) -> tuple[int, int] | None:
        if math.isnan(timeout_s):
            raise ValueError("timeout_s must be a number, got nan")
        return None if self._shutdown else self._pop_task()

    def complete(self, job_id: int, node: int) -> tuple[bool, int, int]:
        job = self._find_job(job_id)
        if job is None:
            raise ValueError(f"unknown job {job_id} (never submitted, or already finished)")
        assert job.graph is not None
        if not 0 <= node < job.graph.num_nodes:
            raise ValueError(
                f"node {node} out of range [0, {job.graph.num_nodes}) for job {job_id}"
            )
        if job.state[node] != _RUNNING:
            raise ValueError(f"task (job {job_id}, node {node}) is not running")
        job.state[node] = _DONE
        job.running -= 1
        self._running -= 1
        job.remaining -= 1
        resource = job.graph.resources[node]
        if resource >= 0:
            self._release_resource(self._resources[resource])
        if not job.stopped:
            for succ in reversed(job.graph.successors[node]):
                job.pending[succ] -= 1
                if job.pending[succ] == 0:
                    job.state[succ] = _READY
                    job.queued += 1
                    self._push(job.priority, (job_id, succ), front=True)
        finished = job.remaining == 0 or (job.stopped and job.running == 0)
        if finished:
            self._free_slot(job)
        task = self._pop_task() or (-1, -1)
        return finished, task[0], task[1]

    def fail(self, job: int) -> bool:
        return self._stop(job, "jobs_failed")

    def cancel(self, job: int) -> bool:
        return self._stop(job, "jobs_cancelled")

    def shutdown(self) -> None:
        self._shutdown = True

    def stats(self) -> dict[str, int]:
        return {
            "jobs_active": sum(s.active for s in self._slots),
            "ready_immediate": self._live[0],
            "ready_high": self._live[1],
            "ready_normal": self._live[2],
            "ready_low": self._live[3],
            "parked": self._parked,
            "running": self._running,
            **self._counters,
            "slots": len(self._slots),
            "graphs": len(self._graphs),
        }

    # --- internals ---

    def _find_job(self, job_id: int) -> _Job | None:
        if job_id < 0 or (job_id & _SLOT_MASK) >= len(self._slots):
            return None
        job = self._slots[job_id & _SLOT_MASK]
        return job if job.active and job.id == job_id else None

    def _live_job(self, job_id: int) -> _Job | None:
        job = self._find_job(job_id)
        return job if job is not None and not job.stopped else None

    def _push(self, priority: int, task: tuple[int, int], *, front: bool) -> None:
        if front:
            self._queues[priority].appendleft(task)
        else:
            self._queues[priority].append(task)
        self._live[priority] += 1

    def _select(self) -> tuple[int, list[int]] | None:
        if self._live[PRIORITY_IMMEDIATE]:
            return PRIORITY_IMMEDIATE, []
        candidates = [i for i in range(3) if self._live[i + 1]]
        if not candidates:
            return None
        best = max(candidates, key=lambda i: (self._current[i] + self._weights[i], -i))
        return best + 1, candidates

    def _commit(self, priority: int, candidates: list[int]) -> None:
        for i in candidates:
            self._current[i] += self._weights[i]
        if candidates:
            self._current[priority - 1] -= sum(self._weights[i] for i in candidates)

    def _pop_task(self) -> tuple[int, int] | None:
        while (selected := self._select()) is not None:
            priority, candidates = selected
            job_id, node = self._queues[priority].popleft()
            job = self._live_job(job_id)
            if job is None or job.state[node] not in (_READY, _READY_RESERVED):
                continue
            assert job.graph is not None
            self._live[priority] -= 1
            job.queued -= 1
            if job.state[node] == _READY and job.graph.resources[node] >= 0:
                r = self._resources[job.graph.resources[node]]
                if r.in_use >= r.limit:
                    job.state[node] = _PARKED
                    job.parked += 1
                    r.parked += 1
                    self._parked += 1
                    lot = r.parked_immediate if priority == PRIORITY_IMMEDIATE else r.parked_other
                    lot.append((job_id, node))
                    continue
                r.in_use += 1
            self._commit(priority, candidates)
            job.state[node] = _RUNNING
            job.running += 1
            self._running += 1
            self._counters["dispatched"] += 1
            return job_id, node
        return None

    def _take_parked(self, r: _Resource) -> tuple[int, int] | None:
        for lot in (r.parked_immediate, r.parked_other):
            while lot:
                job_id, node = lot.popleft()
                job = self._live_job(job_id)
                if job is None:
                    continue
                job.state[node] = _READY_RESERVED
                job.parked -= 1
                job.queued += 1
                r.parked -= 1
                self._parked -= 1
                return job_id, node
        return None

    def _release_resource(self, r: _Resource) -> None:
        task = self._take_parked(r)
        if task is None:
            r.in_use -= 1
        else:
            self._push(self._slots[task[0] & _SLOT_MASK].priority, task, front=True)

    def _stop(self, job_id: int, counter: str) -> bool:
        job = self._live_job(job_id)
        if job is None:
            return False
        assert job.graph is not None
        job.stopped = True
        self._counters[counter] += 1
        self._live[job.priority] -= job.queued
        if self._live[job.priority] == 0:
            self._queues[job.priority].clear()
        job.queued = 0
        self._parked -= job.parked
        job.parked = 0
        resources = job.graph.resources
        for node, state in enumerate(job.state):
            if state == _PARKED:
                self._resources[resources[node]].parked -= 1
        for node, state in enumerate(job.state):
            if state == _READY_RESERVED:
                self._release_resource(self._resources[resources[node]])
        idle = job.running == 0
        if idle:
            self._free_slot(job)
        return idle

    def _free_slot(self, job: _Job) -> None:
        assert job.graph is not None
        job.graph.jobs -= 1
        if job.graph.jobs == 0 and job.graph.removed:
            del self._graphs[job.graph.id]
        job.graph = None
        job.active = False
        job.generation += 1
        self._free.append(job.id & _SLOT_MASK)
        self._counters["jobs_finished"] += 1


def _check_acyclic(successors: list[list[int]]) -> None:
    """Raise ValueError naming the first cycle a depth-first search from node 0 meets."""
    white, gray, black = 0, 1, 2
    color = [white] * len(successors)
    for start in range(len(successors)):
        if color[start] != white:
            continue
        color[start] = gray
        path: list[list[int]] = [[start, 0]]
        while path:
            node, index = path[-1]
            if index == len(successors[node]):
                color[node] = black
                path.pop()
                continue
            path[-1][1] += 1
            succ = successors[node][index]
            if color[succ] == white:
                color[succ] = gray
                path.append([succ, 0])
            elif color[succ] == gray:
                cycle = [n for n, _ in path[[n for n, _ in path].index(succ) :]] + [succ]
                raise ValueError("graph has a cycle: " + " -> ".join(map(str, cycle)))
