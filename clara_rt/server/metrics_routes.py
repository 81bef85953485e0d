"""Monitoring routes: ``/metrics`` (Prometheus), ``/v1/monitor`` (JSON), ``/v1/jobs/{id}/trace``.

* ``GET /metrics``: Prometheus text exposition format 0.0.4, built at each scrape by a collector
  on a registry of this server's own (never the process-wide default registry, so several
  servers in one process do not clash). Every name starts with ``clara_rt_`` and carries its
  unit; see :data:`METRICS` for the list.
* ``GET /v1/monitor``: the latest GPU and host sample, the runtime's state and the last samples
  (the web console polls it).
* ``GET /v1/jobs/{id}/trace``: the job's timeline as Chrome trace JSON (open it in Perfetto).

The routes are on :data:`router`. :func:`~clara_rt.server.job_monitor.start_monitor` (also
importable from here) makes the server's :class:`~clara_rt.monitor.Monitor` that they read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response

from clara_rt import __version__
from clara_rt.arrays import transfer_counters
from clara_rt.job import PRIORITY_NAMES
from clara_rt.monitor import Monitor
from clara_rt.monitor.trace import Span, chrome_trace, spans_from_rows
from clara_rt.server.deps import ServerDep
from clara_rt.server.job_monitor import start_monitor
from clara_rt.server.monitor_models import MonitorOut, TraceOut

__all__ = ["CLUSTER_METRICS", "CONTENT_TYPE", "METRICS", "cluster_snapshot", "job_trace",
           "monitor_snapshot", "router", "start_monitor"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("pending", "running", "stopped")

#: Every metric family ``/metrics`` may expose: name (as exposed) -> (type, labels).
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clara_rt_build_info": ("info", ("version",)),
    "clara_rt_gpu_available": ("gauge", ()),
    "clara_rt_gpu_nvml_info": ("info", ("available", "reason", "driver")),
    "clara_rt_gpu_device_info": ("info", ("gpu", "name")),
    "clara_rt_gpu_utilization_ratio": ("gauge", ("gpu",)),
    "clara_rt_gpu_memory_used_bytes": ("gauge", ("gpu",)),
    "clara_rt_gpu_memory_total_bytes": ("gauge", ("gpu",)),
    "clara_rt_gpu_temperature_celsius": ("gauge", ("gpu",)),
    "clara_rt_gpu_power_watts": ("gauge", ("gpu",)),
    "clara_rt_gpu_process_memory_bytes": ("gauge", ("gpu",)),
    "clara_rt_host_cpu_utilization_ratio": ("gauge", ()),
    "clara_rt_host_memory_used_bytes": ("gauge", ()),
    "clara_rt_host_memory_total_bytes": ("gauge", ()),
    "clara_rt_data_disk_used_bytes": ("gauge", ()),
    "clara_rt_data_disk_free_bytes": ("gauge", ()),
    "clara_rt_data_disk_total_bytes": ("gauge", ()),
    "clara_rt_process_resident_memory_bytes": ("gauge", ()),
    "clara_rt_process_threads": ("gauge", ()),
    "clara_rt_jobs": ("gauge", ("state", "priority")),
    "clara_rt_running_jobs": ("gauge", ()),
    "clara_rt_queue_depth": ("gauge", ("priority",)),
    "clara_rt_job_latency_seconds": ("histogram", ("pipeline", "status")),
    "clara_rt_operator_duration_seconds": ("histogram", ("pipeline", "operator")),
    "clara_rt_hop_latency_seconds": ("histogram", ("pipeline", "operator")),
    "clara_rt_worker_busy_ratio": ("gauge", ()),
    "clara_rt_worker_busy_seconds_total": ("counter", ()),
    "clara_rt_workers": ("gauge", ()),
    "clara_rt_transfer_bytes_total": ("counter", ("direction",)),
    "clara_rt_transfers_total": ("counter", ("direction",)),
}

#: The families ``/metrics`` adds when jobs run on a Ray cluster (``clara-rt serve --cluster``).
CLUSTER_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clara_rt_cluster_available": ("gauge", ()),
    "clara_rt_cluster_info": ("info", ("address", "reason")),
    "clara_rt_cluster_nodes": ("gauge", ()),
    "clara_rt_cluster_node_runtimes": ("gauge", ()),
    "clara_rt_cluster_capacity_jobs": ("gauge", ()),
}

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown job", "content": {
    "application/json": {"schema": {"type": "object", "required": ["detail"],
                                    "properties": {"detail": {"type": "string"}}}}}}}
_PROMETHEUS_MISSING = ("/metrics needs prometheus-client (pip install 'clara-rt[server]')")


router = APIRouter()


@router.get("/metrics", tags=["monitoring"], response_class=Response,
            responses={200: {"description": "Prometheus text format 0.0.4",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       503: {"description": "prometheus-client is not installed",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    """Every metric in the Prometheus text exposition format (version 0.0.4)."""
    try:
        from prometheus_client import generate_latest
    except ImportError:
        return Response(_PROMETHEUS_MISSING, status_code=503, media_type="text/plain")
    return Response(generate_latest(_registry_of(request.app)), media_type=CONTENT_TYPE)


@router.get("/v1/monitor", response_model=MonitorOut, tags=["monitoring"])
def monitor(s: ServerDep) -> dict[str, Any]:
    """GPUs, host, runtime state and the last samples (what the console shows)."""
    return monitor_snapshot(s)


@router.get("/v1/jobs/{job_id}/trace", response_model=TraceOut,
            response_model_exclude_none=True, tags=["jobs"], responses=_NOT_FOUND)
def trace(job_id: str, response: Response, s: ServerDep) -> dict[str, Any]:
    """The job's timeline as Chrome trace JSON (Trace Event Format): open it in Perfetto
    (ui.perfetto.dev) or chrome://tracing."""
    record = s.jobs.status(job_id)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="job-{record["id"]}-trace.json"')
    return job_trace(record)


def monitor_snapshot(server: Any) -> dict[str, Any]:
    """The body of ``GET /v1/monitor``."""
    gpu, host, _ = server.monitor.latest()
    counts = server.store.count_jobs()
    jobs = dict.fromkeys(STATES, 0)
    for (state, _priority), n in counts.items():
        jobs[state] = jobs.get(state, 0) + n
    return {
        "time": host.time,
        "gpu": {"available": gpu.available, "reason": gpu.reason, "devices": [
            {"index": d.index, "name": d.name, "utilization": d.utilization,
             "memory_used": d.memory_used, "memory_total": d.memory_total,
             "temperature": d.temperature, "power_w": d.power_w,
             "process_memory": d.process_memory} for d in gpu.devices]},
        "host": {"cpu_percent": host.cpu_percent, "memory_used": host.memory_used,
                 "memory_total": host.memory_total, "disk_used": host.disk_used,
                 "disk_total": host.disk_total, "disk_free": host.disk_free, "rss": host.rss,
                 "threads": host.threads},
        "runtime": {"running": server.jobs.running, "queued": server.jobs.queue_depth(),
                    "busy_fraction": server.monitor.runtime.busy_fraction(),
                    "jobs": {state: jobs[state] for state in STATES}},
        "history": server.monitor.history(),
        "cluster": cluster_snapshot(server),
    }


def cluster_snapshot(server: Any) -> dict[str, Any] | None:
    """The Ray cluster as the server's runner sees it (``None`` without ``--cluster``)."""
    if server.config.cluster is None:
        return None
    state = server.runner.cluster_state()
    return {"address": state.address, "available": state.available, "nodes": state.nodes,
            "node_runtimes": state.slots, "capacity": state.capacity,
            "running": state.running, "reason": state.reason}


def job_trace(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Chrome trace of a server job record (times from the job's creation).

    The ``job`` lane shows ``queued`` (created to submitted to the runtime) and ``run``
    (submitted to stopped, or to ``now`` while it runs); the operators follow on worker lanes.
    """
    now = time.time() if now is None else now
    created, started, stopped = record["created"], record.get("started"), record.get("stopped")

    def ns(t: float) -> int:
        return round((float(t) - float(created)) * 1e9)

    job: list[Span] = []
    queued_until = started if started is not None else stopped if stopped is not None else now
    job.append(Span("queued", 0, ns(queued_until), "waited" if started is not None
                    else record.get("state", "pending")))
    if started is not None:
        job.append(Span("run", ns(started), ns(stopped if stopped is not None else now),
                        record.get("status", "healthy") if stopped is not None else "running"))
    offset = ns(started) if started is not None else 0
    spans = spans_from_rows(record.get("operators") or (), offset_ns=offset)
    return chrome_trace(spans, title=f"job {record['id']} ({record['pipeline']})", job=job,
                        metadata={"job": record["id"], "name": record["name"],
                                  "pipeline": record["pipeline"], "state": record["state"],
                                  "status": record["status"], "created": created,
                                  "clara_rt_version": __version__})


# --- Prometheus -----------------------------------------------------------------------------


def _registry_of(app: Any) -> Any:
    """The application's own registry (made at the first scrape; several servers in one
    process do not clash)."""
    registry = getattr(app.state, "prometheus_registry", None)
    if registry is None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(lambda: app.state.server))
        app.state.prometheus_registry = registry
    return registry


class _Collector:
    """Builds every metric family from the server's state at each scrape."""

    def __init__(self, server: Callable[[], Any]) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        server = self._server()
        gpu, host, _ = server.monitor.latest()
        yield InfoMetricFamily("clara_rt_build", "clara-rt version",
                               value={"version": __version__})
        yield from _gpu_families(gpu)
        for name, doc, value in (
                ("host_cpu_utilization_ratio", "CPU use of the machine, all cores (0-1)",
                 host.cpu_percent / 100.0),
                ("host_memory_used_bytes", "memory in use (total - available)", host.memory_used),
                ("host_memory_total_bytes", "memory of the machine", host.memory_total),
                ("data_disk_used_bytes", "used space on the data directory's file system",
                 host.disk_used),
                ("data_disk_free_bytes", "free space on the data directory's file system",
                 host.disk_free),
                ("data_disk_total_bytes", "size of the data directory's file system",
                 host.disk_total),
                ("process_resident_memory_bytes", "resident memory of the server process",
                 host.rss),
                ("process_threads", "threads of the server process", host.threads)):
            yield GaugeMetricFamily(f"clara_rt_{name}", doc, value=value)
        yield from _job_families(server)
        yield from _runtime_families(server.monitor)
        yield from _cluster_families(server)


def _gpu_families(gpu: Any) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

    yield GaugeMetricFamily("clara_rt_gpu_available",
                            "1 when GPU metrics are read through NVML, else 0",
                            value=1 if gpu.available else 0)
    yield InfoMetricFamily("clara_rt_gpu_nvml", "NVML state: why GPU metrics are missing",
                           value={"available": str(gpu.available).lower(),
                                  "reason": gpu.reason or "", "driver": gpu.driver or ""})
    # The families are exposed without samples when there is no GPU, so that dashboards and
    # alerts can name them everywhere.
    info = InfoMetricFamily("clara_rt_gpu_device", "GPU names", labels=["gpu", "name"])
    families = {
        "utilization_ratio": GaugeMetricFamily(
            "clara_rt_gpu_utilization_ratio", "fraction of the last period a kernel ran",
            labels=["gpu"]),
        "memory_used_bytes": GaugeMetricFamily("clara_rt_gpu_memory_used_bytes",
                                               "GPU memory in use", labels=["gpu"]),
        "memory_total_bytes": GaugeMetricFamily("clara_rt_gpu_memory_total_bytes",
                                                "GPU memory", labels=["gpu"]),
        "temperature_celsius": GaugeMetricFamily("clara_rt_gpu_temperature_celsius",
                                                 "GPU temperature", labels=["gpu"]),
        "power_watts": GaugeMetricFamily("clara_rt_gpu_power_watts", "GPU power draw",
                                         labels=["gpu"]),
        "process_memory_bytes": GaugeMetricFamily(
            "clara_rt_gpu_process_memory_bytes", "GPU memory held by the server process",
            labels=["gpu"]),
    }
    for d in gpu.devices:
        gpu_label = [str(d.index)]
        info.add_metric([str(d.index), d.name], {})
        for key, value in (("utilization_ratio", d.utilization / 100.0),
                           ("memory_used_bytes", d.memory_used),
                           ("memory_total_bytes", d.memory_total),
                           ("temperature_celsius", d.temperature),
                           ("power_watts", d.power_w),
                           ("process_memory_bytes", d.process_memory)):
            if value is not None:
                families[key].add_metric(gpu_label, value)
    yield info
    yield from families.values()


def _job_families(server: Any) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    counts = server.store.count_jobs()
    jobs = GaugeMetricFamily("clara_rt_jobs", "recorded jobs per state and priority",
                             labels=["state", "priority"])
    for state in STATES:
        for priority in PRIORITY_NAMES:
            jobs.add_metric([state, priority], counts.get((state, priority), 0))
    yield jobs
    yield GaugeMetricFamily("clara_rt_running_jobs", "jobs in the runtime now",
                            value=server.jobs.running)
    queue = GaugeMetricFamily("clara_rt_queue_depth",
                              "jobs waiting in the server's queue per priority",
                              labels=["priority"])
    for priority, n in server.jobs.queue_depth().items():
        queue.add_metric([priority], n)
    yield queue


def _runtime_families(monitor: Monitor) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    runtime = monitor.runtime
    for name, doc, table in (
            ("clara_rt_job_latency_seconds", "jobs from creation to stop, per pipeline and "
             "status", runtime.job_histograms()),
            ("clara_rt_operator_duration_seconds", "operator run times",
             runtime.operator_histograms()),
            ("clara_rt_hop_latency_seconds", "gap between an operator's last producer ending "
             "and its start", runtime.hop_histograms())):
        yield _histogram(name, doc, ["pipeline", "status" if "job" in name else "operator"],
                         table)
    yield GaugeMetricFamily("clara_rt_worker_busy_ratio",
                            f"operator time / (window x workers) over the last "
                            f"{runtime.window:g} s, of finished and running operators",
                            value=runtime.busy_fraction())
    yield CounterMetricFamily("clara_rt_worker_busy_seconds",
                              "operator seconds of finished jobs (rate / workers = busy ratio)",
                              value=runtime.busy_seconds)
    yield GaugeMetricFamily("clara_rt_workers", "runtime worker threads", value=runtime.workers)
    counters = transfer_counters()
    moved = CounterMetricFamily("clara_rt_transfer_bytes", "bytes copied between host and GPU",
                                labels=["direction"])
    copies = CounterMetricFamily("clara_rt_transfers", "copies between host and GPU",
                                 labels=["direction"])
    moved.add_metric(["host_to_device"], counters.host_to_device_bytes)
    moved.add_metric(["device_to_host"], counters.device_to_host_bytes)
    copies.add_metric(["host_to_device"], counters.host_to_device)
    copies.add_metric(["device_to_host"], counters.device_to_host)
    yield moved
    yield copies


def _cluster_families(server: Any) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

    cluster = cluster_snapshot(server)
    if cluster is None:
        return
    yield GaugeMetricFamily("clara_rt_cluster_available",
                            "1 while the Ray cluster answers, else 0 (jobs then wait)",
                            value=int(cluster["available"]))
    yield InfoMetricFamily("clara_rt_cluster", "the Ray cluster and why it is unavailable",
                           value={"address": cluster["address"],
                                  "reason": cluster["reason"] or ""})
    yield GaugeMetricFamily("clara_rt_cluster_nodes", "alive nodes of the Ray cluster",
                            value=cluster["nodes"])
    yield GaugeMetricFamily("clara_rt_cluster_node_runtimes",
                            "clara-rt runtimes ready on the nodes (one per node and per GPU)",
                            value=cluster["node_runtimes"])
    yield GaugeMetricFamily("clara_rt_cluster_capacity_jobs",
                            "jobs the node runtimes can run at once", value=cluster["capacity"])


def _histogram(name: str, doc: str, labels: list[str], table: dict[tuple[str, str], Any]) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, snap in sorted(table.items()):
        family.add_metric(list(key), [("+Inf" if le == float("inf") else repr(le), n)
                                      for le, n in snap.buckets], snap.sum)
    return family
