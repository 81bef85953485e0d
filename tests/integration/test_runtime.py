"""Runtime end to end on real threads and real arrays (NumPy here; CuPy where a GPU is)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from clara_rt import (
    JobCancelledError,
    JobState,
    JobTimeoutError,
    Operator,
    OperatorError,
    Pipeline,
    PipelineError,
    PortTypeError,
    PriorityError,
    Runtime,
    RuntimeClosedError,
    run,
)
from clara_rt.arrays import data_pointer
from tests.ops import (
    Add,
    Fail,
    Lifecycle,
    Passthrough,
    Record,
    Scale,
    Sleep,
    Source,
    chain,
    vec,
)


class Gate(Operator):
    """Block until ``event`` is set, then forward."""

    def __init__(self, name: str, event: threading.Event) -> None:
        super().__init__(name)
        self.event = event

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        assert self.event.wait(10)
        outputs["out"] = inputs["in"]


def diamond(name: str = "diamond") -> Pipeline:
    p = Pipeline(name)
    src, left, right, merge = (p.add(Source("src")), p.add(Scale("l", factor=2.0)),
                               p.add(Scale("r", factor=3.0)), p.add(Add("m")))
    p.connect(src, "out", left, "in")
    p.connect(src, "out", right, "in")
    p.connect(left, "out", merge, "a")
    p.connect(right, "out", merge, "b")
    return p


# --- the DESIGN.md contract -------------------------------------------------------------------


def test_design_example(xp: ModuleType) -> None:
    p = Pipeline("demo")
    a, b = p.add(Scale("a", factor=2.0)), p.add(Scale("b", factor=0.5))
    p.connect(a, "out", b, "in")
    volume = xp.arange(6, dtype=xp.float32)
    with Runtime(workers=2) as rt:
        job = rt.submit(p, {"a.in": volume}, priority="normal", timeout=60)
        out = job.result()
    assert list(out) == ["b.out"]
    assert xp.allclose(out["b.out"], volume)
    assert job.state is JobState.SUCCEEDED and job.done and job.error is None
    t = job.timings
    assert set(t) == {"a", "b"}
    assert t["a"][0] <= t["a"][1] <= t["b"][0] <= t["b"][1]
    stats = job.stats()
    assert stats.operators_run == 2 and stats.run_ns is not None and stats.run_ns > 0


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_inline_and_threaded_agree(workers: int) -> None:
    with Runtime(workers=workers) as rt:
        out = rt.run(diamond(), {"src.in": vec(5, 1.0)})
    assert np.array_equal(out["m.out"], vec(5, 5.0))


def test_run_helper_and_default_workers() -> None:
    assert np.array_equal(run(diamond(), {"src.in": vec(3, 2.0)})["m.out"], vec(3, 10.0))
    with Runtime() as rt:
        import os

        assert rt.workers == (os.cpu_count() or 1)


# --- zero copy ---------------------------------------------------------------------------------


def test_zero_copy_chain_fan_out_fan_in(xp: ModuleType) -> None:
    p = Pipeline("zc")
    src = p.add(Passthrough("src"))
    left, right = p.add(Passthrough("left")), p.add(Passthrough("right"))
    merge = p.add(_Pair("merge"))
    p.connect(src, "out", left, "in")
    p.connect(src, "out", right, "in")
    p.connect(left, "out", merge, "a")
    p.connect(right, "out", merge, "b")
    volume = xp.ones(1024, dtype=xp.float32)
    with Runtime(workers=2) as rt:
        out = rt.run(p, {"src.in": volume})
    a, b = out["merge.a"], out["merge.b"]
    assert a is volume and b is volume
    assert data_pointer(a) == data_pointer(volume)
    assert src.seen == left.seen == right.seen == [id(volume)]


class _Pair(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32")
        spec.input("b", dtype="float32")
        spec.output("a", dtype="float32")
        spec.output("b", dtype="float32")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["a"], outputs["b"] = inputs["a"], inputs["b"]


class _Writer(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32")
        spec.output("out", dtype="float32")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        inputs["in"][0] = 42.0  # breaks the read-only contract on purpose
        outputs["out"] = inputs["in"]


def test_freeze_shared_makes_fan_out_read_only() -> None:
    p = Pipeline("freeze")
    src = p.add(Passthrough("src"))
    w, other = p.add(_Writer("w")), p.add(Passthrough("other"))
    p.connect(src, "out", w, "in")
    p.connect(src, "out", other, "in")
    with Runtime(workers=0, freeze_shared=True) as rt:
        job = rt.submit(p, {"src.in": vec()})
        with pytest.raises(OperatorError, match=r"operator 'w' failed .*read-only"):
            job.result()
    data = vec()
    with Runtime(workers=0) as rt:
        rt.run(p, {"src.in": data})
    assert data[0] == 42.0  # without freezing, the write goes through (contract, not copy)


# --- failures and type errors ------------------------------------------------------------------


def test_failure_fails_only_its_job_and_workers_survive() -> None:
    bad = chain(Source("s"), Fail("explode"), Scale("after"), name="bad")
    good = diamond("good")
    with Runtime(workers=2) as rt:
        jobs = [rt.submit(bad if i % 3 == 0 else good, {"s.in" if i % 3 == 0 else "src.in":
                                                         vec(4, float(i))}) for i in range(60)]
        for i, job in enumerate(jobs):
            if i % 3 == 0:
                with pytest.raises(OperatorError) as info:
                    job.result()
                err = info.value
                assert err.operator == "explode" and err.job_id == job.id
                assert isinstance(err.__cause__, ValueError)
                assert "boom from Fail" in err.traceback and "Traceback" in err.traceback
                assert job.state is JobState.FAILED
                assert "after" not in job.timings
                assert _op_states(job) == {"s": "succeeded", "explode": "failed",
                                           "after": "not_run"}
            else:
                assert np.array_equal(job.result()["m.out"], vec(4, 5.0 * i))
        assert rt.stats().jobs_active == 0
        assert np.array_equal(rt.run(good, {"src.in": vec(2, 1.0)})["m.out"], vec(2, 5.0))


class _Emit(Operator):
    def __init__(self, name: str, value: Any, port: str = "out") -> None:
        super().__init__(name)
        self.value, self.port = value, port

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,), device="cpu")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        if self.port:
            outputs[self.port] = self.value


@pytest.mark.parametrize(
    ("value", "port", "error", "message"),
    [
        (np.zeros(3, np.int16), "out", PortTypeError,
         r"operator 'emit' emitted a bad value on output 'out' \(job [0-9a-f]{32}\): "
         r"expected dtype float32, got int16; the port is array float32\[\*\] cpu"),
        (np.zeros((2, 2), np.float32), "out", PortTypeError,
         r"expected 1-d shape \(\*\), got 2-d shape \(2, 2\)"),
        ([1.0, 2.0], "out", PortTypeError, r"expected an array, got list"),
        (vec(), "oops", PipelineError,
         r"operator 'emit' emitted unknown output 'oops'.*outputs are: out"),
        (vec(), "", PipelineError, r"operator 'emit' did not emit output\(s\) out"),
    ],
)
def test_runtime_port_type_errors(value: Any, port: str, error: type, message: str) -> None:
    p = chain(_Emit("emit", value, port), Scale("next"))
    with Runtime(workers=1) as rt:
        job = rt.submit(p, {"emit.in": vec()})
        with pytest.raises(error, match=message):
            job.result()
        assert job.state is JobState.FAILED and "next" not in job.timings


class _Sym(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=("N",))
        spec.input("b", dtype="float32", shape=("N",))
        spec.output("out", dtype="float32", shape=("N",))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = inputs["a"]


def test_symbolic_dimensions_must_agree_within_an_operator() -> None:
    p = Pipeline("sym")
    p.add(_Sym("s"))
    with Runtime(workers=0) as rt:
        assert rt.run(p, {"s.a": vec(3), "s.b": vec(3)})["s.out"].shape == (3,)
        job = rt.submit(p, {"s.a": vec(3), "s.b": vec(4)})
        with pytest.raises(PortTypeError,
                           match=r"dimension 'N' is 3 on port 'a' but 4 on port 'b'"):
            job.result()


def test_payload_errors() -> None:
    p = diamond()
    with Runtime(workers=0) as rt:
        with pytest.raises(PipelineError, match=r"missing src.in; its open inputs are: src.in"):
            rt.submit(p, {})
        with pytest.raises(PipelineError, match=r"unknown src.inn; its open inputs are: src.in"):
            rt.submit(p, {"src.in": vec(), "src.inn": vec()})
        with pytest.raises(PortTypeError,
                           match=r"payload 'src.in' .*expected dtype float32, got float64"):
            rt.submit(p, {"src.in": np.zeros(3)})
        with pytest.raises(PriorityError, match=r"unknown priority 'urgent'; priorities are: "
                                                r"immediate, high, normal, low"):
            rt.submit(p, {"src.in": vec()}, priority="urgent")


# --- cancel, timeout, close --------------------------------------------------------------------


def test_cancel_mid_pipeline() -> None:
    first = Sleep("first", seconds=5.0)
    p = chain(Source("s"), first, Scale("second"), Scale("third"))
    with Runtime(workers=2) as rt:
        job = rt.submit(p, {"s.in": vec()})
        _wait_for(lambda: first.active == 1)
        assert job.state is JobState.RUNNING
        t0 = time.monotonic()
        assert job.cancel() is True
        assert job.wait(2.0)
        assert time.monotonic() - t0 < 1.0  # the running operator saw context.cancelled
        assert job.state is JobState.CANCELLED
        assert set(job.timings) == {"s", "first"}
        assert _op_states(job) == {"s": "succeeded", "first": "cancelled", "second": "not_run",
                                   "third": "not_run"}
        with pytest.raises(JobCancelledError, match=rf"job {job.id} \('chain'\) was cancelled"):
            job.result()
        assert job.cancel() is False


def _op_states(job: Any) -> dict[str, str]:
    return {row["name"]: row["state"] for row in job.operator_states()}


def test_cancel_pending_job_never_runs() -> None:
    gate = threading.Event()
    with Runtime(workers=1) as rt:
        blocker = rt.submit(chain(Source("g0"), Gate("gate", gate)), {"g0.in": vec()})
        log: list[tuple[int, str]] = []
        job = rt.submit(chain(Record("r", log)), {"r.in": vec()})
        assert job.state is JobState.PENDING
        assert job.cancel()
        assert job.state is JobState.CANCELLED  # nothing of it was running: finished at once
        assert _op_states(job) == {"r": "not_run"}
        gate.set()
        blocker.result()
    assert log == []


def test_timeout_stops_job() -> None:
    p = chain(Source("s"), Sleep("slow", seconds=10.0), Scale("after"))
    with Runtime(workers=1) as rt:
        t0 = time.monotonic()
        job = rt.submit(p, {"s.in": vec()}, timeout=0.2)
        with pytest.raises(JobTimeoutError, match=r"ran past its timeout") as info:
            job.result()
        assert isinstance(info.value, TimeoutError)
        assert 0.15 < time.monotonic() - t0 < 2.0
        assert job.state is JobState.TIMED_OUT
        assert _op_states(job) == {"s": "succeeded", "slow": "timed_out", "after": "not_run"}
        quick = rt.submit(chain(Scale("q")), {"q.in": vec()}, timeout=5)
        assert quick.result() and quick.state is JobState.SUCCEEDED
    with pytest.raises(ValueError, match=r"timeout must be > 0"):
        Runtime(workers=0).submit(p, {"s.in": vec()}, timeout=0)


def test_result_wait_timeout() -> None:
    gate = threading.Event()
    with Runtime(workers=1) as rt:
        job = rt.submit(chain(Source("s"), Gate("g", gate)), {"s.in": vec()})
        with pytest.raises(TimeoutError, match=r"still (pending|running) after 0.05 s"):
            job.result(timeout=0.05)
        gate.set()
        assert job.result(timeout=5)


def test_close_drains_then_stops_operators() -> None:
    op = Lifecycle("life")
    p = chain(Source("s"), Sleep("z", seconds=0.05), op)
    rt = Runtime(workers=2)
    jobs = [rt.submit(p, {"s.in": vec()}) for _ in range(4)]
    rt.close()
    assert all(j.state is JobState.SUCCEEDED for j in jobs)
    assert op.events == ["start", "stop"]
    with pytest.raises(RuntimeClosedError, match=r"this Runtime is closed"):
        rt.submit(p, {"s.in": vec()})
    rt.close()  # idempotent


def test_close_cancel() -> None:
    p = chain(Source("s"), Sleep("z", seconds=0.3))
    rt = Runtime(workers=1)
    jobs = [rt.submit(p, {"s.in": vec()}) for _ in range(5)]
    _wait_for(lambda: jobs[0].state is JobState.RUNNING)
    t0 = time.monotonic()
    rt.close(cancel=True)
    assert time.monotonic() - t0 < 1.0
    assert all(j.state is JobState.CANCELLED for j in jobs)


def test_start_failure_is_raised_from_submit() -> None:
    class BadStart(Scale):
        def start(self) -> None:
            raise RuntimeError("no model file")

    with Runtime(workers=0) as rt, pytest.raises(OperatorError,
                                                 match=r"operator 'bs' failed in start\(\)"):
        rt.submit(chain(BadStart("bs")), {"bs.in": vec()})


# --- priorities --------------------------------------------------------------------------------


def test_immediate_overtakes_backlog_at_next_operator_boundary() -> None:
    gate = threading.Event()
    log: list[tuple[int, str]] = []
    normal = chain(Source("n0"), Gate("gate", gate), Record("n1", log), Record("n2", log),
                   name="normal")
    backlog_p = chain(Record("b1", log), Record("b2", log), name="backlog")
    urgent = chain(Record("i1", log), Record("i2", log), Record("i3", log), name="urgent")
    with Runtime(workers=1) as rt:
        running = rt.submit(normal, {"n0.in": vec()})
        _wait_for(lambda: running.state is JobState.RUNNING)
        backlog = [rt.submit(backlog_p, {"b1.in": vec()}) for _ in range(1000)]
        imm = rt.submit(urgent, {"i1.in": vec()}, priority="immediate")
        gate.set()
        imm.result()
        for job in [running, *backlog]:
            job.result()
    names = [name for _, name in log]
    # the gate was the running operator: its job's next operator waits for the immediate job
    assert names[:3] == ["i1", "i2", "i3"], names[:6]
    assert len(names) == 3 + 2 + 2000


def test_weighted_shares_under_saturation() -> None:
    gate = threading.Event()
    log: list[tuple[int, str]] = []
    pipes = {prio: chain(Record(prio, log), name=prio) for prio in ("high", "normal", "low")}
    with Runtime(workers=1) as rt:
        blocker = rt.submit(chain(Source("s"), Gate("g", gate)), {"s.in": vec()},
                            priority="immediate")
        _wait_for(lambda: blocker.state is JobState.RUNNING)
        jobs = [rt.submit(pipes[prio], {f"{prio}.in": vec()}, priority=prio)
                for _ in range(700) for prio in ("low", "normal", "high")]
        gate.set()
        for job in jobs:
            job.result()
    first = Counter(name for _, name in log[:700])
    for prio, share in (("high", 400), ("normal", 200), ("low", 100)):
        assert abs(first[prio] - share) <= 0.1 * share, first
    assert Counter(name for _, name in log[:70])["low"] >= 5  # low is never starved
    assert len(log) == 2100


# --- concurrency limits ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "peak"), [({"thread_safe": False}, 1),
                                              ({"max_concurrency": 2}, 2)])
def test_concurrency_limits(kwargs: dict[str, Any], peak: int) -> None:
    op = Sleep("limited", seconds=0.03, **kwargs)
    p = chain(Source("s"), op)
    with Runtime(workers=4) as rt:
        for job in [rt.submit(p, {"s.in": vec()}) for _ in range(12)]:
            job.result()
    assert op.calls == 12
    assert op.peak == peak


def test_unlimited_operator_runs_in_parallel() -> None:
    op = Sleep("free", seconds=0.05)
    p = chain(Source("s"), op)
    with Runtime(workers=4) as rt:
        for job in [rt.submit(p, {"s.in": vec()}) for _ in range(8)]:
            job.result()
    assert op.peak >= 2


# --- stress and leaks --------------------------------------------------------------------------


def test_stress_many_concurrent_fan_out_fan_in_jobs() -> None:
    p1, p2 = diamond("d1"), _wide("wide", 6)
    with Runtime(workers=4) as rt:
        jobs = []
        for i in range(1500):
            if i % 2:
                jobs.append((rt.submit(p1, {"src.in": vec(8, i)}, priority=("high", "normal",
                                                                             "low")[i % 3]),
                             "m.out", 5.0 * i))
            else:
                jobs.append((rt.submit(p2, {"src.in": vec(8, i)}), "sum.out", 21.0 * i))
        for job, key, expected in jobs:
            assert np.array_equal(job.result(timeout=60)[key], vec(8, expected)), job
        assert rt.stats().jobs_active == 0


def _wide(name: str, width: int) -> Pipeline:
    """src fans out to ``width`` scalers (x1..xN), summed pairwise back into one value."""
    p = Pipeline(name)
    src = p.add(Source("src"))
    layer = []
    for k in range(width):
        op = p.add(Scale(f"x{k}", factor=float(k + 1)))
        p.connect(src, "out", op, "in")
        layer.append(op)
    n = 0
    while len(layer) > 1:
        nxt = []
        for a, b in zip(layer[::2], layer[1::2], strict=False):
            add = p.add(Add(f"add{n}"))
            n += 1
            p.connect(a, "out", add, "a")
            p.connect(b, "out", add, "b")
            nxt.append(add)
        if len(layer) % 2:
            nxt.append(layer[-1])
        layer = nxt
    final = p.add(Passthrough("sum"))
    p.connect(layer[0], "out", final, "in")
    return p


def test_no_thread_or_memory_leak_over_10000_jobs_of_one_pipeline() -> None:
    """Per-job state is released. One pipeline is reused on purpose, so this cannot see a
    per-pipeline leak; releasing pipelines no one references has its own test."""
    import gc
    import tracemalloc

    p = diamond("leak")
    data = vec(4, 1.0)
    with Runtime(workers=2) as rt:
        threads = threading.active_count()
        _run_batch(rt, p, data, 2000)  # warm up caches and free lists
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            _run_batch(rt, p, data, 10_000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = rt._sched.stats()
        assert threading.active_count() == threads
        assert stats["jobs_active"] == 0 and rt.stats().jobs_active == 0
        assert stats["slots"] <= 4096, stats
        assert not rt._jobs
    assert grown < 512 * 1024, f"memory grew by {grown} bytes over 10,000 jobs of one pipeline"


def _run_batch(rt: Runtime, p: Pipeline, data: np.ndarray, n: int) -> None:
    window: list[Any] = []
    for _ in range(n):
        window.append(rt.submit(p, {"src.in": data}))
        if len(window) >= 256:
            for job in window:
                job.result()
            window.clear()
    for job in window:
        job.result()


def _wait_for(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


class _Exit(Scale):
    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        raise SystemExit(3)


def test_system_exit_in_operator_fails_job_not_worker() -> None:
    with Runtime(workers=1) as rt:
        job = rt.submit(chain(_Exit("quit")), {"quit.in": vec()})
        with pytest.raises(OperatorError, match=r"operator 'quit' failed .*SystemExit: 3"):
            job.result(timeout=5)
        assert rt.run(chain(Scale("ok")), {"ok.in": vec()})["ok.out"] is not None


class _Touch(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32")
        spec.output("file", kind="path")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        target = context.workspace / f"{self.name}-{context.job_id}.txt"
        target.write_text("done")
        outputs["file"] = target


def test_workspace_reaches_operators(tmp_path: Any) -> None:
    with Runtime(workers=1) as rt:
        out = rt.run(chain(_Touch("touch")), {"touch.in": vec()}, workspace=tmp_path / "job")
        assert out["touch.file"].read_text() == "done"
        assert out["touch.file"].parent == tmp_path / "job"
        ctx_job = rt.submit(chain(Scale("plain")), {"plain.in": vec()})
        ctx_job.result()
        assert ctx_job.context.workspace is None


# --- identity and lifetime ---------------------------------------------------------------------


class _Stops(Scale):
    stopped: list[str] = []

    def stop(self) -> None:
        _Stops.stopped.append(self.name)


def test_pipelines_nobody_references_are_released() -> None:
    import gc
    import weakref

    _Stops.stopped = []
    kept = chain(_Stops("k1"), _Stops("k2"), name="kept")
    with Runtime(workers=2) as rt:
        assert rt.run(kept, {"k1.in": vec()})
        refs = []
        for i in range(300):
            ops = [_Stops(f"op{j}", factor=2.0) for j in range(3)]
            refs += [weakref.ref(op) for op in ops]
            job = rt.submit(chain(*ops, name=f"p{i}"), {"op0.in": vec(2, float(i))})
            assert np.array_equal(job.result()["op2.out"], vec(2, 8.0 * i))
            del ops, job
        gc.collect()
        assert sum(ref() is not None for ref in refs) == 0  # no operator of them is alive
        assert len(_Stops.stopped) == 900  # each stopped once
        stats = rt.stats()
        assert (stats.pipelines, stats.graphs, stats.operators) == (1, 1, 2)
        assert rt.run(kept, {"k1.in": vec()})  # the runtime still works, the kept one too
        late = rt.run(chain(Scale("late", factor=2.0)), {"late.in": vec()})
        assert np.array_equal(late["late.out"], vec(4, 2.0))
    assert sorted(_Stops.stopped[900:]) == ["k1", "k2"]  # close stopped the kept pipeline


def test_a_finished_job_keeps_its_pipeline_until_dropped() -> None:
    import gc
    import weakref

    with Runtime(workers=1) as rt:
        op = Scale("a")
        ref = weakref.ref(op)
        job = rt.submit(chain(op, name="one"), {"a.in": vec()}, timeout=60)
        del op
        gc.collect()
        assert ref() is not None and job.result()["a.out"] is not None  # the job holds it
        assert job.operator_states()[0]["state"] == "succeeded"
        del job  # the pending deadline holds the job weakly
        gc.collect()
        assert ref() is None and rt.stats().graphs == 0


class _Who(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", kind="stream")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = (context.job_id, context.job_name)


def test_job_identity_is_public_and_settable() -> None:
    p = chain(_Who("who"), name="ident")
    with Runtime(workers=1) as rt:
        job = rt.submit(p, {"who.in": vec()}, job_id="job-42", name="scan of bob")
        assert (job.id, job.name) == ("job-42", "scan of bob")
        assert job.result()["who.out"] == ("job-42", "scan of bob")
        assert job.stats().id == "job-42" and "job-42" in repr(job)
        a, b = rt.submit(p, {"who.in": vec()}), rt.submit(p, {"who.in": vec()})
        assert a.id != b.id and len(a.id) == 32 and int(a.id, 16) >= 0
        assert a.result()["who.out"] == (a.id, f"ident-{a.id}")


# --- observers -----------------------------------------------------------------------------------


def test_observers_see_tasks_and_job_ends_and_cannot_break_a_job() -> None:
    from clara_rt import RuntimeObserver

    events: list[tuple[str, ...]] = []
    threads: list[str] = []

    class Watch(RuntimeObserver):
        def task_started(self, job: Any, operator: Any) -> None:
            events.append(("start", job.id, operator.name))
            threads.append(threading.current_thread().name)

        def task_ended(self, job: Any, operator: Any, error: BaseException | None) -> None:
            events.append(("end", job.id, operator.name, type(error).__name__))
            threads.append(threading.current_thread().name)

        def job_ended(self, job: Any) -> None:
            events.append(("job", job.id, job.state.value,
                           ",".join(r["state"] for r in job.operator_states())))

    class Broken(RuntimeObserver):
        def task_started(self, job: Any, operator: Any) -> None:
            raise RuntimeError("observer bug")

    watch = Watch()
    with Runtime(workers=1) as rt:
        rt.add_observer(Broken())
        rt.add_observer(watch)
        ok = rt.submit(chain(Scale("a"), Scale("b")), {"a.in": vec()}, job_id="ok")
        assert ok.result()
        bad = rt.submit(chain(Fail("f"), Scale("g"), name="bad"), {"f.in": vec()}, job_id="bad")
        assert bad.wait(5) and bad.state is JobState.FAILED
        rt.remove_observer(watch)
        rt.run(chain(Scale("quiet")), {"quiet.in": vec()})
    assert events == [
        ("start", "ok", "a"), ("end", "ok", "a", "NoneType"),
        ("start", "ok", "b"), ("end", "ok", "b", "NoneType"),
        ("job", "ok", "succeeded", "succeeded,succeeded"),
        ("start", "bad", "f"), ("end", "bad", "f", "ValueError"),
        ("job", "bad", "failed", "failed,not_run"),
    ]
    assert threads[0::2] == threads[1::2]  # a task ends on the thread it started on
