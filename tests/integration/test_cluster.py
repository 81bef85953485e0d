"""Scale-out on a real local Ray cluster: a head and a second node (``ray start`` processes of
this test), ``clara-rt serve --cluster ray://...`` in a child process and ``ClusterRuntime``
in this one. Jobs spread over both nodes, a node killed mid-job, Ray going away and coming
back.

The cluster uses token authentication with a fresh token and a temporary folder of its own, and
the test kills exactly the processes it started (``LocalCluster.stop``), never ``ray stop``.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clara_rt.bench import checkout_env
from clara_rt.client import Client
from clara_rt.cluster.local import LocalCluster
from tests.conftest import need_peer
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")


PAYLOAD = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)) * 40}


def work_pipeline(name: str, seconds: float, stubborn: bool = False) -> str:
    """One folder operator of tests.ops: waits ``seconds`` (``stubborn``: deaf to cancels and
    timeouts), then lists its input's files."""
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: work
  clara-rt:
    operator: "tests.ops:FolderWork"
    args: {{seconds: {seconds}, stubborn: {str(stubborn).lower()}}}
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A head and one more node with two CPUs each: the server's node runtimes (one worker,
    one CPU each) leave room for those of ``ClusterRuntime``."""
    need_peer(importlib.util.find_spec("ray") is not None, "ray (pip install 'clara-rt[cluster]')")
    with LocalCluster(env=checkout_env()) as local:
        local.start_head(num_cpus=2)
        local.add_node(num_cpus=2)
        yield local


@pytest.fixture(scope="module")
def payload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("payload")
    for rel, data in PAYLOAD.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def server(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    assert cluster.client_address is not None
    data = tmp_path_factory.mktemp("server") / "data"
    with ServerProcess(data, "--cluster", cluster.client_address, "--workers", "1",
                       "--cluster-grace", "1", "--monitor-interval", "0.5",
                       env=cluster.env) as proc:
        wait_for(lambda: (monitor(proc.client()) or {}).get("node_runtimes") == 2, 60,
                 "two node runtimes ready")
        yield proc


def monitor(client: Client) -> dict[str, Any] | None:
    cluster: dict[str, Any] | None = client._json("GET", "/v1/monitor")["cluster"]
    return cluster


def get_text(server: ServerProcess, path: str) -> str:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:
        text: str = response.read().decode()
        return text


def metrics(server: ServerProcess) -> dict[str, float]:
    from prometheus_client import parser

    text = get_text(server, "/metrics")
    return {s.name: s.value for family in parser.text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("clara_rt_cluster")}


def summary(client: Client, job_id: str, dest: Path) -> dict[str, Any]:
    client.download_results(job_id, dest)
    found = list(dest.rglob("summary.json"))
    assert len(found) == 1, sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    result: dict[str, Any] = json.loads(found[0].read_text())
    return result


def node_of(placement: str) -> str:
    """The node part of a placement (``IP/node-id[/gpuN]``)."""
    return "/".join(placement.split("/")[:2])


@pytest.mark.timeout(150)
def test_jobs_spread_over_both_nodes_by_object_store(server: ServerProcess, payload_dir: Path,
                                                     tmp_path: Path) -> None:
    client = server.client()
    values = metrics(server)
    assert values["clara_rt_cluster_available"] == 1
    assert values["clara_rt_cluster_nodes"] == 2
    assert values["clara_rt_cluster_node_runtimes"] == 2
    assert values["clara_rt_cluster_capacity_jobs"] == 2
    client.create_pipeline(work_pipeline("spread", 1.0))
    payload = client.create_payload(payload_dir)
    jobs = [client.create_job("spread", [payload["id"]]) for _ in range(4)]
    peak = 0
    while True:  # never more jobs on the cluster than its two one-worker runtimes run
        records = [client.get_job(j["id"]) for j in jobs]
        peak = max(peak, sum(r["state"] == "running" for r in records))
        if all(r["state"] == "stopped" for r in records):
            break
        time.sleep(0.1)
    assert peak <= 2
    assert [r["status"] for r in records] == ["healthy"] * 4, records
    assert {r["transport"] for r in records} == {"object-store"}
    assert len({node_of(r["placement"]) for r in records}) == 2, [
        (r["placement"], r["started"], r["stopped"], [h["note"] for h in r["history"]])
        for r in records]
    for r in records:
        assert summary(client, r["id"], tmp_path / r["id"])["files"] == sorted(PAYLOAD)
        assert "work sees 2 input files" in client.logs(r["id"], "work")  # logs came back too
        assert any("payload and results by object-store" in (h["note"] or "")
                   for h in r["history"])
    page = get_text(server, "/console")
    assert "Jobs run on the Ray cluster" in page and "2 node(s)" in page


@pytest.mark.timeout(120)
def test_runtime_cluster_keyword_runs_by_shared_path(cluster: LocalCluster, payload_dir: Path,
                                                     tmp_path: Path) -> None:
    from clara_rt.cluster import ClusterRuntime

    shared = tmp_path / "shared"
    (shared / "payload").mkdir(parents=True)
    for rel, data in PAYLOAD.items():
        (shared / "payload" / rel).parent.mkdir(parents=True, exist_ok=True)
        (shared / "payload" / rel).write_bytes(data)
    assert cluster.client_address is not None
    with ClusterRuntime(cluster.client_address, workers=1, shared_path=shared,
                        scratch=shared / "scratch", env=cluster.env, connect_timeout=60) as rt:
        rt.wait_for_slots(2, timeout=60)
        jobs = [rt.submit(work_pipeline("py", 0.5), shared / "payload", output=tmp_path / f"o{i}")
                for i in range(2)]
        for i, job in enumerate(jobs):
            out = job.result(timeout=60)
            assert out == tmp_path / f"o{i}"
            assert json.loads((out / "work" / "out" / "summary.json").read_text())["files"] == (
                sorted(PAYLOAD))
            assert job.transport == "shared-path"
        assert len({node_of(j.placement) for j in jobs}) == 2
        # object store when the payload is not under the shared path
        job = rt.submit(work_pipeline("py", 0.0), payload_dir, output=tmp_path / "o3")
        assert (job.result(timeout=60) / "work" / "out" / "summary.json").is_file()
        assert job.transport == "object-store"


@pytest.mark.timeout(90)
def test_a_runtime_hung_past_the_timeout_is_killed_and_replaced(server: ServerProcess,
                                                                payload_dir: Path) -> None:
    client = server.client()
    client.create_pipeline(work_pipeline("hang", 20.0, stubborn=True))
    job = client.create_job("hang", [client.create_payload(payload_dir)["id"]], timeout=1)
    started = time.monotonic()
    record = client.wait_job(job["id"], timeout=30)
    assert time.monotonic() - started < 15  # timeout 1 s + grace 1 s + the bridge's 2 s pass
    assert record["status"] == "timed-out", record
    assert "its runtime was killed and replaced" in record["history"][-1]["note"]
    wait_for(lambda: (monitor(client) or {}).get("node_runtimes") == 2, 60,
             "the replacement runtime ready")


@pytest.mark.timeout(150)
def test_node_killed_mid_job_requeues_it_once_on_the_other_node(
        server: ServerProcess, cluster: LocalCluster, payload_dir: Path, tmp_path: Path) -> None:
    client = server.client()
    client.create_pipeline(work_pipeline("slow", 4.0))
    payload = client.create_payload(payload_dir)
    jobs = [client.create_job("slow", [payload["id"]]) for _ in range(2)]
    records = wait_for(lambda: _running_on_two_nodes(client, jobs), 30, "both jobs running")
    time.sleep(1.0)  # the operators are mid-way through their 4 s
    assert all(client.get_job(j["id"])["state"] == "running" for j in jobs)
    cluster.kill_node(cluster.nodes[1])
    killed_at = time.monotonic()
    done = [client.wait_job(j["id"], timeout=90) for j in jobs]
    assert [r["status"] for r in done] == ["healthy", "healthy"], done
    moved = [r for r in done if any("re-queued" in (h["note"] or "") for h in r["history"])]
    assert len(moved) == 1, [r["history"] for r in done]
    stayed = next(r for r in done if r is not moved[0])
    first = next(r for r in records if r["id"] == moved[0]["id"])
    assert node_of(first["placement"]) != node_of(moved[0]["placement"])
    assert node_of(moved[0]["placement"]) == node_of(stayed["placement"])
    assert moved[0]["stopped"] > stayed["stopped"]  # it ran again after the survivor's job
    assert summary(client, moved[0]["id"], tmp_path / "moved")["files"] == sorted(PAYLOAD)
    note = next(h["note"] for h in moved[0]["history"] if "re-queued" in (h["note"] or ""))
    assert "died while running the job" in note
    print(f"node death noticed and the job re-queued; all done {time.monotonic() - killed_at:.1f}"
          " s after the kill")
    wait_for(lambda: metrics(server)["clara_rt_cluster_nodes"] == 1, 30, "one node left")


@pytest.mark.timeout(120)
def test_server_survives_ray_going_away(server: ServerProcess, cluster: LocalCluster,
                                        payload_dir: Path) -> None:
    client = server.client()
    cluster.stop()
    wait_for(lambda: metrics(server)["clara_rt_cluster_available"] == 0, 60,
             "the cluster reported unavailable", poll=0.5)
    assert client.health()["status"] == "ok"
    state = monitor(client)
    assert state is not None and state["available"] is False and state["reason"]
    page = get_text(server, "/console/metrics")
    assert "unavailable" in page
    client.create_pipeline(work_pipeline("later", 0.0))
    job = client.create_job("later", [client.create_payload(payload_dir)["id"]])
    time.sleep(1.0)
    assert client.get_job(job["id"])["state"] == "pending"  # waits for the cluster to return
    # The cluster comes back where it was (same ports and token): the server reconnects by
    # itself and the waiting job runs.
    assert cluster.address is not None and cluster.client_address is not None
    port = int(cluster.address.rsplit(":", 1)[1])
    client_port = int(cluster.client_address.rsplit(":", 1)[1])
    with LocalCluster(env=checkout_env(), token=cluster.env["RAY_AUTH_TOKEN"]) as back:
        back.start_head(num_cpus=2, port=port, client_port=client_port)
        wait_for(lambda: metrics(server)["clara_rt_cluster_available"] == 1, 90,
                 "the server to reconnect", poll=0.5)
        done = client.wait_job(job["id"], 60)
        assert (done["status"], done["transport"]) == ("healthy", "object-store"), done
        assert metrics(server)["clara_rt_cluster_nodes"] == 1


def _running_on_two_nodes(client: Client, jobs: list[dict[str, Any]]
                          ) -> list[dict[str, Any]] | None:
    records = [client.get_job(j["id"]) for j in jobs]
    if all(r["state"] == "running" and r["placement"] for r in records) and len(
            {node_of(r["placement"]) for r in records}) == 2:
        return records
    return None
