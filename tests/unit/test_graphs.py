"""GraphTable: plans -> scheduler graphs and their operators' lifetime, without threads."""

from __future__ import annotations

import gc
import weakref

from clara_rt._core import Scheduler
from clara_rt.graphs import GraphTable
from tests.ops import Lifecycle, Scale, chain


def test_shared_operator_starts_once_and_stops_with_its_last_plan() -> None:
    sched = Scheduler()
    table = GraphTable(sched)
    shared = Lifecycle("shared", max_concurrency=2)
    p1 = chain(shared, Lifecycle("x"), name="one")
    p2 = chain(shared, name="two")
    g1, g2 = table.register(p1.validate()), table.register(p2.validate())
    assert table.lookup(p1.validate()) == g1 and g1 != g2
    assert shared.events == ["start"] and (table.plans, table.operators) == (2, 2)
    del p1
    gc.collect()
    assert shared.events == ["start"] and (table.plans, table.operators) == (1, 1)
    assert sched.stats()["graphs"] == 1
    del p2
    gc.collect()
    assert shared.events == ["start", "stop"] and (table.plans, table.operators) == (0, 0)
    assert sched.stats()["graphs"] == 0


def test_a_plan_dying_inside_a_release_is_released_by_the_next_lookup() -> None:
    sched = Scheduler()
    table = GraphTable(sched)
    op = Lifecycle("a")
    ref = weakref.ref(op)
    p = chain(op, name="dying")
    table.register(p.validate())
    del op
    with table._lock:  # as if garbage collection ran inside a release
        del p
        gc.collect()
        assert table.plans == 0 and len(table._released) == 1  # queued, not released
    assert ref() is not None and sched.stats()["graphs"] == 1
    other = chain(Scale("b"), name="other")
    table.lookup(other.validate())
    assert ref() is None and sched.stats()["graphs"] == 0 and table.operators == 0


def test_close_detaches_and_hands_back_the_started_operators() -> None:
    table = GraphTable(Scheduler())
    op = Lifecycle("a")
    p = chain(op, name="p")
    table.register(p.validate())
    assert table.close() == [op]
    del p
    gc.collect()
    assert op.events == ["start"]  # the runtime stops what close() returned; nothing else does
