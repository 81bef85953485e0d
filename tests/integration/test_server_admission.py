"""Resource admission: jobs whose ``requests: memory`` do not fit the budget wait their turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_rt.client import ClientError
from clara_rt.server.admission import JobNeeds, memory_bytes
from clara_rt.server.config import ServerConfig
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")


def pipeline(name: str, memory: str, seconds: float) -> str:
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: work
  requests: {{memory: {memory}}}
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

    needs = JobNeeds.of([Op({"memory": 1024, "gpu": 1}), Op({"memory": "1Gi"}), Op({})])
    assert needs == JobNeeds(memory=2 << 30, gpus=1)
    assert ServerConfig(data=Path("x")).memory_budget == -1  # 80 % of RAM by default
