"""FairQueue: the priority policy of the server's admission queue and the cluster's slot table,
checked as data in -> data out (no threads) and against the C++ scheduler's own order."""

from __future__ import annotations

from typing import Any

import pytest

from clara_rt import Priority, PriorityError
from clara_rt._core import Scheduler
from clara_rt.fair_queue import FairQueue
from clara_rt.job import PRIORITY_NAMES, PriorityName

NAMES = ("high", "normal", "low")


def test_immediate_first_then_fifo_within_a_class() -> None:
    q: FairQueue[str] = FairQueue()
    for item, prio in [("l1", "low"), ("n1", "normal"), ("h1", "high"), ("i1", "immediate"),
                       ("h2", "high"), ("i2", Priority.IMMEDIATE)]:
        q.push(prio, item)
    assert q.depth() == {"immediate": 2, "high": 2, "normal": 1, "low": 1} and len(q) == 6
    order = [q.pop() for _ in range(6)]
    assert order[:2] == ["i1", "i2"]
    assert order.index("h1") < order.index("h2")
    assert not q and q.peek() is None
    with pytest.raises(IndexError, match="empty FairQueue"):
        q.pop()


def test_saturated_shares_are_the_weights_and_match_the_scheduler() -> None:
    q: FairQueue[int] = FairQueue()
    sched = Scheduler()
    graph = sched.add_graph(1, [], [-1])
    prio_of: dict[int, str] = {}
    core_prio: dict[int, str] = {}
    for _ in range(70):
        for name in NAMES:
            q.push(name, len(prio_of))
            prio_of[len(prio_of)] = name
            core_prio[sched.submit(graph, Priority.parse(name))] = name
    served = [prio_of[q.pop()] for _ in range(70)]
    assert [served.count(n) for n in NAMES] == [40, 20, 10]  # exactly 4:2:1
    core = []
    task = sched.try_next()
    while task is not None and len(core) < 70:
        core.append(task)
        _, job, node = sched.complete(*task)  # complete() hands this worker the next task
        task = (job, node) if job >= 0 else None
    core_classes = [core_prio[job] for job, _ in core]
    assert served == core_classes  # the same sequence as csrc's ReadyQueue


def test_low_is_never_starved_while_high_keeps_arriving() -> None:
    q: FairQueue[str] = FairQueue()
    q.push("low", "the low one")
    for step in range(100):
        q.push("high", f"h{step}")
        if q.pop() == "the low one":
            break
    else:
        pytest.fail("low never served")
    assert step < 7


def test_peek_and_drop_do_not_charge() -> None:
    q: FairQueue[str] = FairQueue(weights=(1, 1, 1))
    q.push("high", "h")
    q.push("normal", "n")
    assert q.peek() == (Priority.HIGH, "h") and q.peek() == (Priority.HIGH, "h")
    assert q.drop() == "h"  # stale: not charged, so high's turn is not used up
    q.push("high", "h2")
    assert q.pop() == "h2" and q.pop() == "n"


def test_take_out_of_turn_and_ordered() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(3):
        for name in NAMES:
            q.push(name, f"{name[0]}{i}")
    planned = [item for _, item in q.ordered()]
    assert len(planned) == 9 and q.depth()["high"] == 3  # ordered() changes nothing
    assert planned == [q.pop() for _ in range(9)]
    q.push("low", "l")
    q.push("high", "h")
    q.take("l")
    assert q.pop() == "h" and not q
    with pytest.raises(ValueError, match="not queued"):
        q.take("l")


def test_unknown_priority_is_an_error_not_normal() -> None:
    q: FairQueue[str] = FairQueue()
    with pytest.raises(PriorityError, match=r"unknown priority 'urgent'; priorities are: "
                                            r"immediate, high, normal, low") as info:
        q.push("urgent", "x")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="weights must be three ints >= 1"):
        FairQueue(weights=(4, 0, 1))


def test_one_priority_definition() -> None:
    from typing import get_args

    assert PRIORITY_NAMES == ("immediate", "high", "normal", "low")
    assert get_args(PriorityName) == PRIORITY_NAMES
    assert [Priority.parse(n).label for n in PRIORITY_NAMES] == list(PRIORITY_NAMES)


# --- the cluster's slot table uses the same policy ---


def _run(job_id: str, priority: str) -> Any:
    from clara_rt.cluster.run import RayRun, RunSpec

    spec = RunSpec(job_id=job_id, key=("p", 1), name="p", text="", variables={},
                   priority=priority, timeout=None)
    return RayRun(None, spec, {}, "shared-path")  # type: ignore[arg-type]


def test_slot_table_serves_low_while_high_keeps_arriving_and_retries_first() -> None:
    from clara_rt.cluster.slot_table import SlotTable

    table = SlotTable()
    table.update([{"id": "s1", "node_id": "n1", "placement": "n1/cpu", "capacity": 1,
                   "gpus": 0, "memory": 0}])
    low = _run("low", "low")
    table.queue(low, retry=False)
    placed_at = None
    for step in range(30):
        table.queue(_run(f"h{step}", "high"), retry=False)
        table.queue(_run(f"n{step}", "normal"), retry=False)
        [(run, slot)] = table.place_waiting(available=True)  # one slot: one run at a time
        assert slot is not None
        table.release(run)
        run.finished = True
        if run is low:
            placed_at = step
            break
    assert placed_at is not None and placed_at < 7  # 4:2:1: low's turn comes within 7
    imm, again = _run("imm", "immediate"), _run("again", "low")
    table.queue(imm, retry=False)
    table.queue(again, retry=True)
    [(first, _)] = table.place_waiting(available=True)
    assert first is again  # a re-queued run goes before every new one
    table.release(again)
    [(second, _)] = table.place_waiting(available=True)
    assert second is imm
    with pytest.raises(PriorityError, match="unknown priority 'urgent'"):
        table.queue(_run("x", "urgent"), retry=False)
