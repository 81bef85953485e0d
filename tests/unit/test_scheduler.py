"""Scheduler tests, run against the C++ core and the pure-Python reference alike.

Transitions are checked as data in -> data out (no threads), as dask's test_local.py does; only
the GIL-release, shutdown and stress tests use threads, and only against the C++ core.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from clara_rt import Operator, Pipeline, Runtime, _core
from clara_rt._core import (
    PRIORITY_HIGH,
    PRIORITY_IMMEDIATE,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    Scheduler,
    bench_dispatch,
)

from .reference_scheduler import ReferenceScheduler

IMM, HIGH, NORMAL, LOW = PRIORITY_IMMEDIATE, PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW
DIAMOND = [(0, 1), (0, 2), (1, 3), (2, 3)]


@pytest.fixture(params=["core", "reference"])
def make(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Build a scheduler of the implementation under test."""
    return Scheduler if request.param == "core" else ReferenceScheduler


def single(s: Any) -> int:
    return int(s.add_graph(1, [], [-1]))


def chain(s: Any, length: int, resources: list[int] | None = None) -> int:
    edges = [(i, i + 1) for i in range(length - 1)]
    return int(s.add_graph(length, edges, resources or [-1] * length))


def drain(s: Any) -> list[tuple[int, int]]:
    """Pop every ready task without completing any."""
    out = []
    while (task := s.try_next()) is not None:
        out.append(task)
    return out


# --- constants and argument checks ---


def test_priority_constants() -> None:
    assert (IMM, HIGH, NORMAL, LOW) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([(0, 1), (1, 2), (2, 3), (3, 2)], "2 -> 3 -> 2"),
        ([(1, 1)], "1 -> 1"),
        ([(0, 1), (1, 2), (2, 0)], "0 -> 1 -> 2 -> 0"),
    ],
)
def test_cycle_is_reported_closed(
    make: Callable[..., Any], edges: list[tuple[int, int]], cycle: str
) -> None:
    with pytest.raises(ValueError, match=rf"cycle: {cycle}$"):
        make().add_graph(4, edges, [-1] * 4)


@pytest.mark.parametrize(
    ("num_nodes", "edges", "resources", "message"),
    [
        (0, [], [], r"num_nodes must be >= 1, got 0$"),
        (3, [(0, 5)], [-1] * 3, r"edge \(0, 5\): node 5 out of range \[0, 3\)$"),
        (3, [(-1, 2)], [-1] * 3, r"edge \(-1, 2\): node -1 out of range \[0, 3\)$"),
        (3, [(0, 1), (0, 1)], [-1] * 3, r"duplicate edge \(0, 1\)$"),
        (3, [], [-1, -1], r"resources has 2 entries, expected 3 \(one per node, -1 for none\)$"),
        (2, [], [-1, -2], r"resource of node 1 must be >= -1, got -2$"),
    ],
)
def test_add_graph_rejects(
    make: Callable[..., Any],
    num_nodes: int,
    edges: list[tuple[int, int]],
    resources: list[int],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        make().add_graph(num_nodes, edges, resources)


def test_bad_arguments(make: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"weights must be >= 1, got \(4, 0, 1\)$"):
        make(weights=(4, 0, 1))
    s = make()
    g = single(s)
    with pytest.raises(ValueError, match=r"priority must be 0..3 \(immediate, high, normal, low\)"):
        s.submit(g, 4)
    with pytest.raises(ValueError, match=r"unknown graph 7 \(never added, or removed\); "
                                         r"1 graph\(s\) registered"):
        s.submit(7, NORMAL)
    with pytest.raises(ValueError, match=r"resource must be >= 0, got -1$"):
        s.set_resource_limit(-1, 1)
    with pytest.raises(ValueError, match=r"limit must be >= 1, got 0$"):
        s.set_resource_limit(3, 0)
    with pytest.raises(ValueError, match=r"unknown job 12345 "):
        s.complete(12345, 0)
    j = s.submit(g, NORMAL)
    with pytest.raises(ValueError, match=rf"task \(job {j}, node 0\) is not running$"):
        s.complete(j, 0)
    with pytest.raises(ValueError, match=rf"node 1 out of range \[0, 1\) for job {j}$"):
        s.complete(j, 1)
    with pytest.raises(ValueError, match="timeout_s must be a number"):
        s.wait_next(float("nan"))


# --- graph lifetime ---

def test_remove_graph_frees_it_after_its_last_job(make: Callable[..., Any]) -> None:
    s = make()
    g, other = chain(s, 2), single(s)
    j = s.submit(g, NORMAL)
    assert s.try_next() == (j, 0)
    s.remove_graph(g)  # a job of it is running: kept until that job ends
    assert s.stats()["graphs"] == 2
    with pytest.raises(ValueError, match=rf"unknown graph {g} \(never added, or removed\)"):
        s.submit(g, NORMAL)
    with pytest.raises(ValueError, match=rf"unknown graph {g} \(never added, or removed\)$"):
        s.remove_graph(g)
    assert s.complete(j, 0) == (False, j, 1)
    assert s.complete(j, 1) == (True, -1, -1)
    assert s.stats()["graphs"] == 1
    s.remove_graph(other)  # no job: freed at once
    assert s.stats()["graphs"] == 0
    g2 = single(s)
    assert g2 not in (g, other)  # ids are never reused
    j2 = s.submit(g2, LOW)
    assert s.try_next() == (j2, 0) and s.complete(j2, 0) == (True, -1, -1)


def test_remove_graph_of_a_cancelled_job(make: Callable[..., Any]) -> None:
    s = make()
    g = chain(s, 3)
    j = s.submit(g, HIGH)
    assert s.try_next() == (j, 0)
    assert s.cancel(j) is False  # node 0 still runs
    s.remove_graph(g)
    assert s.stats()["graphs"] == 1
    assert s.complete(j, 0) == (True, -1, -1)
    assert s.stats()["graphs"] == 0 and s.stats()["jobs_active"] == 0


# --- readiness ---


def test_chain_runs_in_order_on_one_worker(make: Callable[..., Any]) -> None:
    s = make()
    j = s.submit(chain(s, 3), NORMAL)
    assert s.try_next() == (j, 0)
    assert s.try_next() is None
    assert s.complete(j, 0) == (False, j, 1)
    assert s.complete(j, 1) == (False, j, 2)
    assert s.complete(j, 2) == (True, -1, -1)
    assert s.stats()["jobs_active"] == 0


def test_diamond_fan_out_and_fan_in(make: Callable[..., Any]) -> None:
    s = make()
    j = s.submit(s.add_graph(4, DIAMOND, [-1] * 4), NORMAL)
    assert s.wait_next(0.0) == (j, 0)
    assert s.complete(j, 0) == (False, j, 1)  # first successor first
    assert s.try_next() == (j, 2)
    assert s.try_next() is None
    assert s.complete(j, 2) == (False, -1, -1)  # node 3 still waits for node 1
    assert s.complete(j, 1) == (False, j, 3)
    assert s.complete(j, 3) == (True, -1, -1)
    assert s.stats()["dispatched"] == 4


def test_several_roots_queue_in_order(make: Callable[..., Any]) -> None:
    s = make()
    j = s.submit(s.add_graph(3, [], [-1] * 3), LOW)
    assert s.stats()["ready_low"] == 3
    assert drain(s) == [(j, 0), (j, 1), (j, 2)]


# --- priority policy ---


def test_immediate_is_drained_first(make: Callable[..., Any]) -> None:
    s = make()
    g = single(s)
    low, normal, high = s.submit(g, LOW), s.submit(g, NORMAL), s.submit(g, HIGH)
    imm1, imm2 = s.submit(g, IMM), s.submit(g, IMM)
    assert s.stats()["ready_immediate"] == 2
    order = [job for job, _ in drain(s)]
    assert order == [imm1, imm2, high, normal, low]


def test_immediate_overtakes_running_job_at_next_boundary(make: Callable[..., Any]) -> None:
    s = make()
    busy = s.submit(chain(s, 3), NORMAL)
    assert s.try_next() == (busy, 0)
    urgent = s.submit(single(s), IMM)
    assert s.complete(busy, 0) == (False, urgent, 0)  # not (busy, 1)
    assert s.complete(urgent, 0) == (True, busy, 1)


def test_weighted_shares_are_exact_under_saturation(make: Callable[..., Any]) -> None:
    s = make()
    g = single(s)
    prio_of = {}
    for prio in (LOW, NORMAL, HIGH):
        for _ in range(400):
            prio_of[s.submit(g, prio)] = prio
    order = [prio_of[s.try_next()[0]] for _ in range(700)]
    assert Counter(order) == {HIGH: 400, NORMAL: 200, LOW: 100}
    for start in range(0, 700, 7):  # smooth: every window of 7 is exactly 4:2:1
        assert Counter(order[start : start + 7]) == {HIGH: 4, NORMAL: 2, LOW: 1}


def test_custom_weights(make: Callable[..., Any]) -> None:
    s = make(weights=(1, 1, 3))
    g = single(s)
    prio_of = {s.submit(g, prio): prio for prio in (HIGH, NORMAL, LOW) for _ in range(100)}
    order = [prio_of[s.try_next()[0]] for _ in range(50)]
    assert Counter(order) == {HIGH: 10, NORMAL: 10, LOW: 30}


def test_low_is_never_starved(make: Callable[..., Any]) -> None:
    s = make()
    g = chain(s, 2)
    high_jobs = [s.submit(g, HIGH) for _ in range(50)]
    low = s.submit(g, LOW)
    served: list[int] = []
    task = s.try_next()
    while task is not None and len(served) < 20:
        served.append(task[0])
        _, nj, nn = s.complete(*task)
        task = (nj, nn) if nj >= 0 else s.try_next()
    assert low in served[:5]  # 4:1 between the two non-empty classes
    assert set(served) & set(high_jobs)


def test_depth_first_within_a_class(make: Callable[..., Any]) -> None:
    s = make()
    g = chain(s, 2)
    a, b = s.submit(g, NORMAL), s.submit(g, NORMAL)
    assert s.try_next() == (a, 0)  # roots FIFO
    assert s.complete(a, 0) == (False, a, 1)  # successor goes to the front, ahead of b's root
    assert s.complete(a, 1) == (True, b, 0)


# --- resources ---


def test_resource_limit_parks_and_hands_over(make: Callable[..., Any]) -> None:
    s = make()
    s.set_resource_limit(7, 1)
    g1 = s.add_graph(1, [], [7])
    g2 = s.add_graph(2, [(0, 1)], [-1, 7])  # resources are global across graphs
    a, b, c = s.submit(g1, NORMAL), s.submit(g1, NORMAL), s.submit(g2, NORMAL)
    assert s.try_next() == (a, 0)
    assert s.try_next() == (c, 0)  # b is parked, c's root has no resource
    assert s.try_next() is None
    assert s.complete(c, 0) == (False, -1, -1)  # c's node 1 parks behind b
    st = s.stats()
    assert (st["parked"], st["running"], st["ready_normal"]) == (2, 1, 0)
    assert s.complete(a, 0) == (True, b, 0)
    assert s.stats()["parked"] == 1
    assert s.complete(b, 0) == (True, c, 1)
    assert s.complete(c, 1) == (True, -1, -1)
    assert s.stats()["parked"] == 0


def test_resource_never_runs_beyond_limit(make: Callable[..., Any]) -> None:
    s = make()
    s.set_resource_limit(0, 2)
    g = s.add_graph(4, DIAMOND, [0, 0, 0, -1])
    for i in range(30):
        s.submit(g, (HIGH, NORMAL, LOW)[i % 3])
    running: list[tuple[int, int]] = []
    rng = random.Random(1)
    done = 0
    while done < 30:
        running += drain(s)
        assert sum(1 for _, n in running if n < 3) <= 2
        task = running.pop(rng.randrange(len(running)))
        finished, nj, nn = s.complete(*task)
        done += finished
        if nj >= 0:
            running.append((nj, nn))
    assert s.stats()["dispatched"] == 120


def test_raising_a_limit_releases_parked_tasks(make: Callable[..., Any]) -> None:
    s = make()
    s.set_resource_limit(3, 1)
    g = s.add_graph(1, [], [3])
    jobs = [s.submit(g, NORMAL) for _ in range(4)]
    assert drain(s) == [(jobs[0], 0)]
    assert s.stats()["parked"] == 3
    s.set_resource_limit(3, 3)
    assert drain(s) == [(jobs[1], 0), (jobs[2], 0)]
    assert s.stats()["parked"] == 1


def test_parked_immediate_is_released_first(make: Callable[..., Any]) -> None:
    s = make()
    s.set_resource_limit(1, 1)
    g = s.add_graph(1, [], [1])
    first, low = s.submit(g, NORMAL), s.submit(g, LOW)
    assert drain(s) == [(first, 0)]  # low is parked
    urgent = s.submit(g, IMM)
    assert drain(s) == []
    assert s.stats()["parked"] == 2
    assert s.complete(first, 0) == (True, urgent, 0)  # parked before it, but not immediate
    assert s.complete(urgent, 0) == (True, low, 0)


# --- fail / cancel ---


def test_fail_with_running_task_finishes_on_its_complete(make: Callable[..., Any]) -> None:
    s = make()
    j = s.submit(chain(s, 3), NORMAL)
    assert s.try_next() == (j, 0)
    assert s.fail(j) is False  # a task is still running
    assert s.fail(j) is False  # already stopped
    assert s.complete(j, 0) == (True, -1, -1)  # successors are not released
    assert s.try_next() is None
    assert s.fail(j) is False  # finished: no error
    st = s.stats()
    assert (st["jobs_active"], st["jobs_finished"], st["jobs_failed"]) == (0, 1, 1)


def test_cancel_drops_queued_tasks(make: Callable[..., Any]) -> None:
    s = make()
    g = s.add_graph(4, DIAMOND, [-1] * 4)
    j = s.submit(g, NORMAL)
    other = s.submit(g, NORMAL)
    assert s.complete(*s.try_next()) == (False, j, 1)
    assert s.stats()["ready_normal"] == 2  # (j, 2) and other's root
    assert s.cancel(j) is False
    assert s.stats()["ready_normal"] == 1
    assert s.complete(j, 1) == (True, other, 0)  # (j, 2) was discarded
    assert s.stats()["jobs_cancelled"] == 1


def test_fail_with_nothing_running_frees_the_job_at_once(make: Callable[..., Any]) -> None:
    s = make()
    g = s.add_graph(4, DIAMOND, [-1] * 4)
    j = s.submit(g, HIGH)
    assert s.complete(*s.try_next()) == (False, j, 1)
    assert s.complete(j, 1) == (False, j, 2)
    assert s.complete(j, 2) == (False, j, 3)
    k = s.submit(g, HIGH)
    assert s.fail(k) is True
    st = s.stats()
    assert (st["ready_high"], st["jobs_active"]) == (0, 1)
    assert s.complete(j, 3) == (True, -1, -1)
    with pytest.raises(ValueError, match=rf"unknown job {k} "):
        s.complete(k, 0)


def test_two_running_tasks_last_complete_finishes(make: Callable[..., Any]) -> None:
    s = make()
    j = s.submit(s.add_graph(4, DIAMOND, [-1] * 4), LOW)
    assert s.complete(*s.try_next()) == (False, j, 1)
    assert s.try_next() == (j, 2)
    assert s.cancel(j) is False
    assert s.complete(j, 1) == (False, -1, -1)
    assert s.complete(j, 2) == (True, -1, -1)


def test_fail_returns_a_handed_over_resource_slot(make: Callable[..., Any]) -> None:
    s = make()
    s.set_resource_limit(5, 1)
    g = s.add_graph(1, [], [5])
    a, b, c = (s.submit(g, NORMAL) for _ in range(3))
    assert drain(s) == [(a, 0)]
    urgent = s.submit(single(s), IMM)
    assert s.complete(a, 0) == (True, urgent, 0)  # b now holds the slot, queued
    assert s.stats()["parked"] == 1
    assert s.fail(b) is True  # its slot goes to c
    assert s.stats()["parked"] == 0
    assert drain(s) == [(c, 0)]


def test_job_ids_are_never_reused(make: Callable[..., Any]) -> None:
    s = make()
    g = single(s)
    seen = set()
    for _ in range(5):
        j = s.submit(g, NORMAL)
        assert j >= 0
        assert j not in seen
        seen.add(j)
        s.try_next()
        assert s.complete(j, 0) == (True, -1, -1)
    assert s.stats()["slots"] == 1
    with pytest.raises(ValueError, match="unknown job"):
        s.complete(min(seen), 0)


def test_slots_stay_bounded(make: Callable[..., Any]) -> None:
    s = make()
    g = s.add_graph(4, DIAMOND, [-1] * 4)
    for i in range(10_000):
        jobs = [s.submit(g, NORMAL) for _ in range(3)]
        if i % 2:
            s.cancel(jobs[1])
        for task in drain(s):
            _, nj, nn = s.complete(*task)
            while nj >= 0:
                _, nj, nn = s.complete(nj, nn)
            while (task := s.try_next()) is not None:
                s.complete(*task)
    st = s.stats()
    assert st["jobs_active"] == 0
    assert st["jobs_submitted"] == st["jobs_finished"] == 30_000
    assert st["slots"] <= 3


def test_shutdown(make: Callable[..., Any]) -> None:
    s = make()
    g = single(s)
    j = s.submit(g, NORMAL)
    s.shutdown()
    assert s.wait_next(10.0) is None
    with pytest.raises(RuntimeError, match=r"scheduler is shut down"):
        s.submit(g, NORMAL)
    assert s.try_next() == (j, 0)  # running work can still drain
    assert s.complete(j, 0) == (True, -1, -1)


# --- C++ core only: threads and speed ---


def test_wait_next_times_out() -> None:
    s = Scheduler()
    start = time.perf_counter()
    assert s.wait_next(0.05) is None
    assert 0.04 < time.perf_counter() - start < 2.0
    assert s.wait_next(-1.0) is None


def test_wait_next_releases_the_gil_and_wakes_on_submit_and_shutdown() -> None:
    s = Scheduler()
    g = single(s)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(s.wait_next(30.0)))
    waiter.start()
    spins, deadline = 0, time.perf_counter() + 0.2
    while time.perf_counter() < deadline:  # this thread runs Python while the other waits
        spins += 1
    assert spins > 1000
    assert waiter.is_alive()
    j = s.submit(g, NORMAL)
    waiter.join(5.0)
    assert got == [(j, 0)]

    sleepers = [threading.Thread(target=lambda: got.append(s.wait_next(float("inf"))))]
    sleepers.append(threading.Thread(target=lambda: got.append(s.wait_next(30.0))))
    for t in sleepers:
        t.start()
    time.sleep(0.1)
    start = time.perf_counter()
    s.shutdown()
    for t in sleepers:
        t.join(5.0)
        assert not t.is_alive()
    assert time.perf_counter() - start < 2.0
    assert got[1:] == [None, None]


def test_concurrent_stress_diamonds() -> None:
    s = Scheduler()
    s.set_resource_limit(0, 1)
    g = s.add_graph(4, DIAMOND, [-1, -1, -1, 0])  # node 3 is a shared, single-instance operator
    num_jobs, workers = 2000, 4
    log: list[tuple[str, int, int]] = []
    in_sink = [0, 0]  # [current, max] tasks of resource 0 running at once
    sink_lock = threading.Lock()
    finished = Counter[int]()
    done = threading.Event()
    errors: list[BaseException] = []

    def run(job: int, node: int) -> None:
        while job >= 0:
            log.append(("start", job, node))
            if node == 3:
                with sink_lock:
                    in_sink[0] += 1
                    in_sink[1] = max(in_sink)
                    in_sink[0] -= 1
            log.append(("done", job, node))
            fin, next_job, next_node = s.complete(job, node)
            if fin:
                with sink_lock:
                    finished[job] += 1
                    if finished.total() == num_jobs:
                        done.set()
            job, node = next_job, next_node

    def worker() -> None:
        try:
            while not done.is_set():
                task = s.wait_next(0.05)
                if task is not None:
                    run(*task)
        except BaseException as exc:
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    rng = random.Random(0)
    jobs = [s.submit(g, rng.choice((IMM, HIGH, NORMAL, LOW))) for _ in range(num_jobs)]
    assert done.wait(60.0)
    for t in threads:
        t.join(10.0)
    assert not errors
    assert sorted(finished) == sorted(jobs)
    assert set(finished.values()) == {1}
    starts = Counter((j, n) for kind, j, n in log if kind == "start")
    assert len(starts) == 4 * num_jobs
    assert set(starts.values()) == {1}
    index = {(kind, j, n): i for i, (kind, j, n) in enumerate(log)}
    for j in jobs:
        assert index["start", j, 1] > index["done", j, 0]
        assert index["start", j, 2] > index["done", j, 0]
        assert index["start", j, 3] > max(index["done", j, 1], index["done", j, 2])
    assert in_sink[1] == 1
    st = s.stats()
    assert (st["jobs_active"], st["running"], st["parked"], st["dispatched"]) == (0, 0, 0, 8000)


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_dispatch(threads: int) -> None:
    jobs, length = 50_000, 10
    elapsed = bench_dispatch(jobs, length, threads)
    assert isinstance(elapsed, float)
    assert elapsed > 0
    print(f"bench_dispatch threads={threads}: {jobs * length / elapsed / 1e6:.1f} M dispatches/s")


def test_bench_dispatch_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"threads must be in \[1, 1024\], got 0$"):
        bench_dispatch(1, 1, 0)
    assert _core.__version__


# --- take_own / complete_own: the waiting caller runs its own job (issue 19.3) ---------------


def test_issue_19_take_own_runs_the_whole_job_without_other_jobs() -> None:
    s = Scheduler()
    g = chain(s, 3)
    other = s.submit(g, NORMAL)
    mine = s.submit(g, NORMAL)
    assert s.take_own(mine) == (mine, 0)
    assert s.complete_own(mine, 0) == (False, mine, 1)  # never `other`, though it is older
    assert s.complete_own(mine, 1) == (False, mine, 2)
    assert s.complete_own(mine, 2) == (True, -1, -1)
    assert s.take_own(mine) is None  # finished
    assert s.stats()["ready_normal"] == 1
    assert drain(s) == [(other, 0)]  # the stolen entries are gone, not dispatched twice


def test_issue_19_take_own_yields_to_a_more_urgent_class() -> None:
    s = Scheduler()
    g = single(s)
    normal = s.submit(g, NORMAL)
    urgent = s.submit(g, IMM)
    assert s.take_own(normal) is None  # the immediate task goes first, to a worker
    assert s.take_own(urgent) == (urgent, 0)
    assert s.take_own(normal) == (normal, 0)  # nothing more urgent is ready now


def test_issue_19_take_own_respects_resource_limits() -> None:
    s = Scheduler()
    g = s.add_graph(1, [], [7])
    s.set_resource_limit(7, 1)
    first, second = s.submit(g, NORMAL), s.submit(g, NORMAL)
    assert s.try_next() == (first, 0)
    assert s.take_own(second) is None  # operator at its limit: left for a worker
    assert s.complete(first, 0) == (True, second, 0)  # the worker gets it with the slot


def test_issue_19_take_own_on_stopped_or_unknown_jobs() -> None:
    s = Scheduler()
    g = chain(s, 2)
    job = s.submit(g, NORMAL)
    assert s.take_own(job) == (job, 0)
    assert s.cancel(job) is False  # its task is running
    assert s.complete_own(job, 0) == (True, -1, -1)
    assert s.take_own(job) is None
    assert s.take_own(12345) is None
    with pytest.raises(ValueError, match="unknown job"):
        s.complete_own(job, 1)


def test_issue_19_stolen_entries_do_not_pile_up() -> None:
    s = Scheduler()
    g = s.add_graph(4, DIAMOND, [-1] * 4)
    for _ in range(10_000):
        job = s.submit(g, LOW)
        task = s.take_own(job)
        while task is not None:
            _, _, node = s.complete_own(job, task[1])
            task = None if node < 0 else (job, node)
            if task is None:
                task = s.take_own(job)
    stats = s.stats()
    assert (stats["jobs_finished"], stats["ready_low"], stats["dispatched"]) == (10_000, 0, 40_000)
    assert s.try_next() is None


def test_issue_19_max_running_caps_workers_and_waiting_callers_together() -> None:
    s = Scheduler()
    g = single(s)
    s.set_max_running(1)
    a, b, c = s.submit(g, NORMAL), s.submit(g, NORMAL), s.submit(g, NORMAL)
    assert s.try_next() == (a, 0)
    assert s.try_next() is None  # at the cap: the single worker's slot is taken
    assert s.take_own(b) is None  # a waiting caller does not add a thread either
    assert s.complete(a, 0) == (True, b, 0)  # the slot passes on at once
    assert s.complete(b, 0) == (True, c, 0)
    assert s.complete(c, 0) == (True, -1, -1)
    s.set_max_running(0)  # no cap
    d, e = s.submit(g, NORMAL), s.submit(g, NORMAL)
    assert (s.try_next(), s.take_own(e)) == ((d, 0), (e, 0))
    with pytest.raises(ValueError, match="max_running must be >= 0"):
        s.set_max_running(-1)


def test_issue_19_result_never_runs_more_operators_than_workers() -> None:
    gate, ran_on = threading.Event(), []

    class Gate(Operator):
        def setup(self, spec: Any) -> None:
            spec.input("x", dtype="float32", shape=(-1,))
            spec.output("y", dtype="float32", shape=(-1,))

        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            gate.wait(10)
            outputs["y"] = inputs["x"]

    class Where(Gate):
        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            ran_on.append(threading.get_ident())
            outputs["y"] = inputs["x"]

    blocker, probe = Pipeline("blocker"), Pipeline("probe")
    blocker.add(Gate("gate"))
    probe.add(Where("a"))
    x = np.zeros(4, dtype=np.float32)
    with Runtime(workers=1) as rt:
        held = rt.submit(blocker, {"gate.x": x})
        while rt.stats().running == 0:  # the only worker is inside Gate.compute
            time.sleep(0.001)
        job = rt.submit(probe, {"a.x": x})
        waiter = threading.Thread(target=job.result)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and ran_on == []  # the waiter did not become a second worker
        gate.set()
        waiter.join(10)
        assert job.result()["a.y"] is x and held.done and len(ran_on) == 1
    # With the worker idle, the waiting caller runs its job itself (one thread at a time). The
    # idle worker, woken by the submit, races the caller for the task, so try until it shows.
    me = threading.get_ident()
    with Runtime(workers=1) as rt:
        for _ in range(2000):
            rt.submit(probe, {"a.x": x}).result()
            if ran_on[-1] == me:
                break
    assert me in ran_on


def test_issue_19_ctrl_c_in_an_operator_run_by_result_reaches_the_caller() -> None:
    class Interrupted(Operator):
        def setup(self, spec: Any) -> None:
            spec.input("x", dtype="float32", shape=(-1,))
            spec.output("y", dtype="float32", shape=(-1,))

        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            raise KeyboardInterrupt  # what SIGINT raises on the main thread

    pipe = Pipeline("ctrl-c")
    pipe.add(Interrupted("op"))
    with Runtime(workers=1) as rt:
        gate = threading.Event()
        job = None
        for _ in range(50):  # the caller must win the race with the worker at least once
            job = rt.submit(pipe, {"op.x": np.zeros(2, dtype=np.float32)})
            try:
                job.result()
            except KeyboardInterrupt:
                gate.set()
                break
            except Exception:
                continue  # the worker ran it: an ordinary operator failure
        assert gate.is_set() and job is not None
        assert job.done and job.state.value == "failed"  # settled, nobody waits for ever


# --- the fast per-task calls (plain C API) ---


def test_fast_calls_match_the_bound_methods() -> None:
    """complete/complete_own/try_next/take_own/submit from fast_calls() return what the pybind11
    methods return on a twin scheduler fed the same calls, errors included."""
    fast, slow = Scheduler(), Scheduler()
    complete, complete_own, try_next, take_own, submit = fast.fast_calls()
    g = fast.add_graph(4, DIAMOND, [-1] * 4)
    assert submit(g, NORMAL) == 0 and submit(g, HIGH) == 1
    g = slow.add_graph(4, DIAMOND, [-1] * 4)
    assert slow.submit(g, NORMAL) == 0 and slow.submit(g, HIGH) == 1
    with pytest.raises(ValueError, match=r"unknown graph 9"):
        submit(9, NORMAL)
    with pytest.raises(ValueError, match=r"priority must be 0..3"):
        submit(g, 4)
    assert try_next() == slow.try_next() == (1, 0)
    done = complete(1, 0)
    assert done == slow.complete(1, 0) and done[0] is False and done[1] >= 0
    assert complete(*done[1:]) == slow.complete(*done[1:])
    own = take_own(1)
    assert own is not None and own == slow.take_own(1)
    assert complete_own(*own) == slow.complete_own(*own)
    assert take_own(5) is None and slow.take_own(5) is None
    for call, args in ((complete, (1, 3)), (complete_own, (7, 0))):
        with pytest.raises(ValueError, match=r"not running|unknown job"):
            call(*args)
    with pytest.raises(TypeError, match=r"complete\(\) takes 2 argument"):
        complete(1)
    with pytest.raises(TypeError):
        complete("1", 0)
    assert try_next() == slow.try_next()


def test_fast_calls_keep_their_scheduler_alive() -> None:
    s = Scheduler()
    complete, _, try_next, _, _ = s.fast_calls()
    job = s.submit(single(s), LOW)
    del s
    assert try_next() == (job, 0)
    assert complete(job, 0) == (True, -1, -1)
    assert try_next() is None
