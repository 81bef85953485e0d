"""Monitoring of a real ``clara-rt serve`` with real jobs: /metrics parsed with the Prometheus
text parser, /v1/monitor, the job trace, the Grafana dashboard's queries."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clara_rt.client import Client
from tests.integration.test_server_api import folder_pipeline, raw
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")
parser = pytest.importorskip("prometheus_client.parser")

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "examples" / "grafana" / "clara-rt-dashboard.json"
PRIORITIES = ("immediate", "high", "normal", "low")


@dataclass
class Ran:
    server: ServerProcess
    client: Client
    jobs: dict[str, dict[str, Any]]  # final records by id
    idle: dict[str, Any]  # created, never started
    queued_metrics: str  # /metrics while jobs waited behind the slow one
    busy_while_slow: float  # clara_rt_worker_busy_ratio while the slow job ran, nothing ended


def metrics_text(server: ServerProcess) -> tuple[str, str]:
    """The body of ``GET /metrics`` and its content type."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body[:500]
        return body, response.getheader("content-type") or ""
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def value(table: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float | None:
    return table.get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    data = tmp_path_factory.mktemp("monitoring") / "data"
    with ServerProcess(data, "--workers", "2", "--max-running", "1",
                       "--monitor-interval", "0.2") as server:
        client = server.client()
        client.create_pipeline(folder_pipeline("mon", seconds=0.05))
        client.create_pipeline(folder_pipeline("mon-slow", seconds=1.5))
        client.create_pipeline(folder_pipeline("mon-fail", fail=True))
        payload = client.create_payload([Path(__file__)])["id"]
        slow = client.create_job("mon-slow", [payload], priority="normal")
        wait_for(lambda: client.get_job(slow["id"])["state"] == "running", 10, "slow job")
        # The server runs one job at a time: these wait behind the slow one.
        created = [client.create_job("mon", [payload], priority=p)
                   for p in ("normal", "normal", "normal", "high", "high")]
        created.append(client.create_job("mon-fail", [payload], priority="low"))
        queued_metrics, _ = metrics_text(server)
        busy = wait_for(lambda: _busy_while_running(server, client, slow["id"]), 5,
                        "a busy ratio above 0 while the slow job runs")
        idle = client.create_job("mon", [payload], priority="immediate", start=False)
        jobs = {j["id"]: client.wait_job(j["id"], timeout=30) for j in [slow, *created]}
        # The stop of the last job is counted right after it is recorded: wait for it.
        wait_for(lambda: value(samples(metrics_text(server)[0]),
                               "clara_rt_job_latency_seconds_count", pipeline="mon-fail",
                               status="faulted") == 1, 10, "the last job's metrics")
        time.sleep(0.5)  # a few more monitor samples
        yield Ran(server, client, jobs, idle, queued_metrics, busy)


def _busy_while_running(server: ServerProcess, client: Any, job_id: str) -> float | None:
    busy = value(samples(metrics_text(server)[0]), "clara_rt_worker_busy_ratio")
    assert client.get_job(job_id)["state"] == "running", "the slow job ended first"
    return busy or None


def test_metrics_content_type_and_every_family_is_documented(ran: Ran) -> None:
    from clara_rt.server.metrics_routes import METRICS

    text, ctype = metrics_text(ran.server)
    assert ctype.startswith("text/plain; version=0.0.4")
    exposed = {}
    for family in parser.text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        exposed[name] = family
        assert name.startswith("clara_rt_")
    assert set(exposed) == set(METRICS)
    for name, (kind, labels) in METRICS.items():
        if kind in ("gauge", "counter", "histogram"):
            assert exposed[name].type == kind, name
        for sample in exposed[name].samples:
            assert set(sample.labels) - {"le"} == set(labels), (name, sample)


def test_a_running_operator_counts_as_busy_before_its_job_ends(ran: Ran) -> None:
    """One worker of two ran the slow operator: the ratio rose above 0 while no job had ended,
    and stays within what one busy worker can give."""
    assert 0 < ran.busy_while_slow <= 0.5


def test_job_counts_by_state_and_priority_match_the_store(ran: Ran) -> None:
    table = samples(metrics_text(ran.server)[0])
    expected = {(state, p): 0 for state in ("pending", "running", "stopped") for p in PRIORITIES}
    expected[("stopped", "normal")] = 4
    expected[("stopped", "high")] = 2
    expected[("stopped", "low")] = 1
    expected[("pending", "immediate")] = 1  # created, not started
    for (state, priority), n in expected.items():
        assert value(table, "clara_rt_jobs", state=state, priority=priority) == n, (state,
                                                                                  priority)
    assert value(table, "clara_rt_running_jobs") == 0
    for priority in PRIORITIES:
        assert value(table, "clara_rt_queue_depth", priority=priority) == 0


def test_queue_depth_while_jobs_wait(ran: Ran) -> None:
    table = samples(ran.queued_metrics)
    assert value(table, "clara_rt_running_jobs") == 1
    assert value(table, "clara_rt_queue_depth", priority="normal") == 3
    assert value(table, "clara_rt_queue_depth", priority="high") == 2
    assert value(table, "clara_rt_queue_depth", priority="low") == 1
    assert value(table, "clara_rt_queue_depth", priority="immediate") == 0
    assert value(table, "clara_rt_jobs", state="pending", priority="normal") == 3


def test_latency_histograms_count_every_finished_job_and_operator(ran: Ran) -> None:
    table = samples(metrics_text(ran.server)[0])
    statuses = {j["id"]: (j["pipeline"], j["status"]) for j in ran.jobs.values()}
    assert sorted(statuses.values()).count(("mon", "healthy")) == 5
    for pipeline, status, n in (("mon", "healthy", 5), ("mon-slow", "healthy", 1),
                                ("mon-fail", "faulted", 1)):
        labels = {"pipeline": pipeline, "status": status}
        assert value(table, "clara_rt_job_latency_seconds_count", **labels) == n
        assert value(table, "clara_rt_job_latency_seconds_bucket", le="+Inf", **labels) == n
        total = sum(j["stopped"] - j["created"] for j in ran.jobs.values()
                    if (j["pipeline"], j["status"]) == (pipeline, status))
        assert value(table, "clara_rt_job_latency_seconds_sum", **labels) == pytest.approx(
            total, rel=1e-6)
    # finished jobs x operators (the failing job's second operator never ran)
    for pipeline, operator, n in (("mon", "first", 5), ("mon", "second", 5),
                                  ("mon-slow", "first", 1), ("mon-slow", "second", 1),
                                  ("mon-fail", "first", 1)):
        labels = {"pipeline": pipeline, "operator": operator}
        assert value(table, "clara_rt_operator_duration_seconds_count", **labels) == n
        assert value(table, "clara_rt_hop_latency_seconds_count", **labels) == (
            n if operator == "second" else None)
    assert value(table, "clara_rt_operator_duration_seconds_count", pipeline="mon-fail",
                 operator="second") is None
    slow_first = value(table, "clara_rt_operator_duration_seconds_sum", pipeline="mon-slow",
                       operator="first")
    assert slow_first is not None and 1.5 <= slow_first < 5.0
    # Buckets are cumulative and end at the count.
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in table.items()
                     if name == "clara_rt_operator_duration_seconds_bucket"
                     and dict(labels)["pipeline"] == "mon" and dict(labels)["operator"] == "first")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == 5
    assert buckets[0][0] > 0 and buckets[-1][0] == float("inf")
    busy = value(table, "clara_rt_worker_busy_seconds_total")
    assert busy is not None and busy >= 1.5 + 5 * 0.05  # only "first" waits
    ratio = value(table, "clara_rt_worker_busy_ratio")
    assert ratio is not None and 0 < ratio <= 1
    assert value(table, "clara_rt_workers") == 2


def test_gpu_not_available_is_reported_once(ran: Ran) -> None:
    table = samples(metrics_text(ran.server)[0])
    if value(table, "clara_rt_gpu_available") == 1:
        pytest.skip("this machine has a usable GPU (tested in tests/unit/test_monitor.py)")
    assert value(table, "clara_rt_gpu_available") == 0
    info = [dict(labels) for (name, labels) in table if name == "clara_rt_gpu_nvml_info"]
    assert len(info) == 1 and info[0]["available"] == "false"
    reason = info[0]["reason"]
    assert reason.startswith(("NVML", "nvidia-ml-py is not installed"))
    log = ran.server.log()
    assert log.count("GPU metrics not available") == 1
    assert log.count(reason) == 1, log[-3000:]
    assert not [n for (n, _) in table if n == "clara_rt_gpu_utilization_ratio"]
    # Transfers between host and GPU: none without a GPU.
    for direction in ("host_to_device", "device_to_host"):
        assert value(table, "clara_rt_transfer_bytes_total", direction=direction) == 0


def test_host_metrics(ran: Ran) -> None:
    table = samples(metrics_text(ran.server)[0])
    total = value(table, "clara_rt_host_memory_total_bytes")
    used = value(table, "clara_rt_host_memory_used_bytes")
    assert total and used and 0 < used < total
    disk_total = value(table, "clara_rt_data_disk_total_bytes")
    disk_used = value(table, "clara_rt_data_disk_used_bytes")
    disk_free = value(table, "clara_rt_data_disk_free_bytes")
    assert disk_total and disk_used and disk_free and disk_used + disk_free <= disk_total
    rss = value(table, "clara_rt_process_resident_memory_bytes")
    assert rss and rss > 10 << 20
    threads = value(table, "clara_rt_process_threads")
    assert threads and threads >= 4  # main, 2 workers, dispatch, finish, monitor...
    cpu = value(table, "clara_rt_host_cpu_utilization_ratio")
    assert cpu is not None and 0.0 <= cpu <= 1.0


def test_monitor_json_shape(ran: Ran) -> None:
    status, body = raw(ran.server, "GET", "/v1/monitor")
    assert status == 200
    snap = json.loads(body)
    assert set(snap) == {"time", "gpu", "host", "runtime", "history", "cluster"}
    assert snap["cluster"] is None  # no --cluster (tests/integration/test_cluster.py has one)
    assert isinstance(snap["time"], float) and abs(snap["time"] - time.time()) < 60
    assert set(snap["gpu"]) == {"available", "reason", "devices"}
    if not snap["gpu"]["available"]:
        assert snap["gpu"]["reason"] and snap["gpu"]["devices"] == []
    for device in snap["gpu"]["devices"]:
        assert set(device) == {"index", "name", "utilization", "memory_used", "memory_total",
                               "temperature", "power_w", "process_memory"}
    assert set(snap["host"]) == {"cpu_percent", "memory_used", "memory_total", "disk_used",
                                 "disk_total", "disk_free", "rss", "threads"}
    assert all(isinstance(v, int) for k, v in snap["host"].items() if k != "cpu_percent")
    runtime = snap["runtime"]
    assert set(runtime) == {"running", "queued", "busy_fraction", "jobs"}
    assert runtime["queued"] == dict.fromkeys(PRIORITIES, 0)
    assert runtime["jobs"] == {"pending": 1, "running": 0, "stopped": 7}
    assert runtime["running"] == 0 and 0 < runtime["busy_fraction"] <= 1
    history = snap["history"]
    assert 5 <= len(history) <= 120  # sampled every 0.2 s
    for entry in history:
        assert set(entry) == {"time", "cpu_percent", "memory_used", "gpu_utilization",
                              "gpu_memory_used", "busy_fraction"}
        assert len(entry["gpu_utilization"]) == len(snap["gpu"]["devices"])
    times = [h["time"] for h in history]
    assert times == sorted(times) and times[-1] - times[0] >= 0.5


def test_job_trace_endpoint(ran: Ran) -> None:
    job = next(j for j in ran.jobs.values() if j["pipeline"] == "mon-slow")
    status, body = raw(ran.server, "GET", f"/v1/jobs/{job['id']}/trace")
    assert status == 200
    trace = json.loads(body)
    assert trace["displayTimeUnit"] == "ms" and trace["otherData"]["job"] == job["id"]
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    by_name = {e["name"]: e for e in events}
    assert set(by_name) == {"queued", "run", "first", "second"}
    for event in events:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(event)
    assert by_name["run"]["dur"] == pytest.approx((job["stopped"] - job["started"]) * 1e6,
                                                  abs=1)
    row = next(r for r in job["operators"] if r["name"] == "first")
    assert by_name["first"]["dur"] == pytest.approx(row["duration_ms"] * 1000, abs=1)
    assert by_name["first"]["ts"] >= by_name["run"]["ts"]
    assert by_name["second"]["ts"] >= by_name["first"]["ts"] + by_name["first"]["dur"]
    assert by_name["first"]["tid"] == by_name["second"]["tid"] != by_name["run"]["tid"]
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    assert {e["args"]["name"] for e in meta if e["name"] == "thread_name"} == {
        "job", "worker lane 1"}
    status, body = raw(ran.server, "GET", "/v1/jobs/no-such-job/trace")
    assert status == 404 and "no-such-job" in json.loads(body)["detail"]
    # A job that never ran: only its time in the queue.
    status, body = raw(ran.server, "GET", f"/v1/jobs/{ran.idle['id']}/trace")
    assert status == 200
    names = [e["name"] for e in json.loads(body)["traceEvents"] if e["ph"] == "X"]
    assert names == ["queued"]


def test_grafana_dashboard_names_only_exposed_metrics(ran: Ran) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    text, _ = metrics_text(ran.server)
    allowed = set()
    for family in parser.text_string_to_metric_families(text):
        allowed.add(family.name)
        allowed.update(f"{family.name}{suffix}" for suffix in {
            "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count")}.get(family.type, ()))
    exprs = list(_queries(dashboard))
    assert len(exprs) >= 20
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\b(clara_rt_[a-z0-9_]+)\b", expr))
        assert names, expr
        unknown = names - allowed
        assert not unknown, f"{expr}: not exposed: {sorted(unknown)}"
        used |= names
    # The panels the issue asks for.
    for name in ("clara_rt_jobs", "clara_rt_queue_depth", "clara_rt_job_latency_seconds_bucket",
                 "clara_rt_operator_duration_seconds_bucket", "clara_rt_gpu_utilization_ratio",
                 "clara_rt_gpu_memory_used_bytes", "clara_rt_host_cpu_utilization_ratio",
                 "clara_rt_host_memory_used_bytes", "clara_rt_data_disk_free_bytes",
                 "clara_rt_worker_busy_ratio"):
        assert name in used, name
    datasources = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert datasources and datasources[0]["query"] == "prometheus"


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL string of a dashboard: panel targets' ``expr`` and variable queries."""
    if isinstance(node, dict):
        for key, item in node.items():
            if key in ("expr", "definition") and isinstance(item, str):
                yield item
            else:
                yield from _queries(item)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)
