"""Resource admission: jobs whose ``requests:`` do not fit the budget, or the memory free right
now, wait their turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_rt.client import ClientError
from clara_rt.server.admission import Admission, FreeMemory, JobNeeds, memory_bytes
from clara_rt.server.config import ServerConfig
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")


def pipeline(name: str, memory: str, seconds: float, requests: str = "") -> str:
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: work
  requests: {{memory: {memory}{requests}}}
  clara-rt:
    operator: "tests.ops:FolderWork"
    args: {{seconds: {seconds}}}
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.mark.parametrize(("value", "expected"), [
    (512, 512 << 20), ("512Mi", 512 << 20), ("8Gi", 8 << 30), ("2G", 2 * 10**9),
    ("1.5Gi", 3 << 29), ("100k", 100_000)])
def test_memory_requests_in_clara_and_kubernetes_units(value: int | str, expected: int) -> None:
    assert memory_bytes(value) == expected


def test_a_bad_memory_request_is_refused_with_the_file(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as server:
        with pytest.raises(ClientError) as err:
            server.client().create_pipeline(pipeline("bad", "lots", 0))
        assert err.value.status == 422
        assert "'lots' is not a size" in str(err.value)


def test_jobs_that_do_not_fit_the_memory_budget_wait(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", "--workers", "2", "--memory-budget", "1G") as server:
        client = server.client()
        client.create_pipeline(pipeline("big", "700Mi", 1.0))
        client.create_pipeline(pipeline("huge", "2Gi", 0))
        payload = client.create_payload([Path(__file__)])
        first = client.create_job("big", [payload["id"]])
        second = client.create_job("big", [payload["id"]])
        wait_for(lambda: client.get_job(first["id"])["state"] == "running", 10, "first job")
        waiting = client.get_job(second["id"])
        assert waiting["state"] == "pending"
        assert any("waiting for resources" in (h["note"] or "") for h in waiting["history"])
        done = [client.wait_job(j["id"], 30) for j in (first, second)]
        assert all(j["status"] == "healthy" for j in done)
        assert done[1]["started"] >= done[0]["stopped"]  # never both at once
        with pytest.raises(ClientError) as err:
            client.create_job("huge", [payload["id"]])
        assert err.value.status == 422 and "--memory-budget" in str(err.value)


def test_needs_add_memory_and_take_the_largest_gpu_request() -> None:
    class Op:
        def __init__(self, requests: dict[str, object]) -> None:
            self.requests = requests

    needs = JobNeeds.of([Op({"memory": 1024, "gpu": 1, "gpu-memory": "1Gi"}),
                         Op({"memory": "1Gi", "gpu-memory": 512}), Op({})])
    assert needs == JobNeeds(memory=2 << 30, gpus=1, gpu_memory=3 << 29)
    assert ServerConfig(data=Path("x")).memory_budget == -1  # 80 % of RAM by default


def test_a_job_waits_for_memory_the_host_does_not_have_free_now(tmp_path: Path) -> None:
    """Within the budget (set far above this machine) but more than MemAvailable: the job is
    accepted and waits, saying how much is free, instead of running the host out of memory;
    jobs behind it wait in priority order until it is cancelled."""
    free = FreeMemory().host()
    assert free is not None and free > 0
    beyond = f"{(free + (4 << 30)) >> 20}Mi"
    with ServerProcess(tmp_path / "data", "--memory-budget", "1T") as server:
        client = server.client()
        client.create_pipeline(pipeline("beyond", beyond, 0))
        client.create_pipeline(pipeline("small", "1Mi", 0))
        payload = client.create_payload([Path(__file__)])
        big = client.create_job("beyond", [payload["id"]])
        small = client.create_job("small", [payload["id"]])
        wait_for(lambda: any("is free on this host now" in (h["note"] or "")
                             for h in client.get_job(big["id"])["history"]), 10, "a note")
        assert client.get_job(big["id"])["state"] == "pending"
        assert client.get_job(small["id"])["state"] == "pending"
        client.cancel_job(big["id"])
        assert client.wait_job(small["id"], 30)["status"] == "healthy"
        assert client.get_job(big["id"])["status"] == "canceled"


def test_gpu_memory_needs_a_gpu_request(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as server:
        with pytest.raises(ClientError) as err:
            server.client().create_pipeline(pipeline("g", "1Mi", 0, ", gpu-memory: 1Gi"))
        assert err.value.status == 422
        assert "'gpu-memory' is requested but no operator requests a GPU" in str(err.value)
        with pytest.raises(ClientError) as err:
            server.client().create_pipeline(pipeline("g", "1Mi", 0, ", gpu-memory: lots"))
        assert err.value.status == 422
        assert "operator 'work': 'gpu-memory': memory request 'lots' is not a size" in str(
            err.value)


def test_without_nvml_gpu_memory_is_not_measured() -> None:
    """No GPU here: a gpu-memory request is admitted on the GPU job count alone (and the server
    says nothing it cannot know)."""
    free = FreeMemory()
    if free.gpus() is not None:
        pytest.skip("a GPU is present: test_gpu_memory_is_measured runs instead")
    admission = Admission(None, None, free)
    needs = JobNeeds(gpus=1, gpu_memory=1 << 50)
    assert admission.never_fits(needs) is None and admission.wait_reason(needs) is None


@pytest.mark.gpu
def test_gpu_memory_is_measured() -> None:
    """NVML's free memory plus CuPy's pooled free blocks decide; more than the largest GPU has is
    refused outright."""
    import cupy

    free = FreeMemory(every=0.0)
    total = free.total_gpu()
    assert total is not None
    admission = Admission(None, None, free)
    assert "more than the largest GPU here has" in str(
        admission.never_fits(JobNeeds(gpus=1, gpu_memory=total + 1)))
    before = free.gpus()
    assert before is not None
    block = cupy.empty(256 << 20, dtype=cupy.uint8)
    del block  # back to the pool: not free for NVML, free for this process
    pool = cupy.get_default_memory_pool()
    assert pool.free_bytes() >= 256 << 20
    after = free.gpus()
    assert after is not None
    device = cupy.cuda.runtime.getDevice()
    assert after[device] >= before[device] - (64 << 20)  # the pool's blocks count as free
    almost_all = JobNeeds(gpus=1, gpu_memory=max(after) + (1 << 30))
    assert "of GPU memory; the most free on one GPU now" in str(
        admission.wait_reason(almost_all))
    assert admission.wait_reason(JobNeeds(gpus=1, gpu_memory=64 << 20)) is None
    pool.free_all_blocks()


def test_saturated_server_shares_by_priority_and_immediate_overtakes(tmp_path: Path) -> None:
    # One job admitted at a time: the server's queue decides the order (4:2:1, immediate first).
    with ServerProcess(tmp_path / "data", "--workers", "1", "--max-running", "1") as server:
        client = server.client()
        client.create_pipeline(pipeline("blocker", "1Mi", 2.0))
        client.create_pipeline(pipeline("quick", "1Mi", 0.02))
        payload = client.create_payload([Path(__file__)])
        blocker = client.create_job("blocker", [payload["id"]])
        wait_for(lambda: client.get_job(blocker["id"])["state"] == "running", 10, "the blocker")
        jobs = {}
        for i in range(12):  # high and normal arrive ahead of and around the low ones
            jobs[f"high{i}"] = client.create_job("quick", [payload["id"]], priority="high")
            if i % 2 == 0:
                jobs[f"normal{i}"] = client.create_job("quick", [payload["id"]],
                                                       priority="normal")
            if i in (1, 2):
                jobs[f"low{i}"] = client.create_job("quick", [payload["id"]], priority="low")
        jobs["immediate"] = client.create_job("quick", [payload["id"]], priority="immediate")
        assert client.get_job(blocker["id"])["state"] == "running"  # all queued behind it
        done = {name: client.wait_job(job["id"], 60) for name, job in jobs.items()}
        assert all(job["status"] == "healthy" for job in done.values())
        order = sorted(done, key=lambda name: done[name]["started"])
        assert order[0] == "immediate"  # created last, admitted first
        served = order[1:]
        # Low progresses while high and normal still wait: a low job within the first 7 turns
        # (4 high, 2 normal, 1 low), long before the 12 high jobs are through.
        first_low = min(served.index(n) for n in served if n.startswith("low"))
        assert first_low < 7, served
        last_high = max(served.index(n) for n in served if n.startswith("high"))
        assert first_low < last_high
        assert [n for n in served if n.startswith("high")] == [f"high{i}" for i in range(12)]
