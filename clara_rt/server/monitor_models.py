"""Response bodies of the monitoring routes (``/v1/monitor``, ``/v1/jobs/{id}/trace``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["MonitorOut", "TraceOut"]


class GpuDeviceOut(BaseModel):
    index: int
    name: str
    utilization: float = Field(description="percent of the last sample period a kernel ran")
    memory_used: int = Field(description="bytes")
    memory_total: int = Field(description="bytes")
    temperature: float | None = Field(description="degrees Celsius (None: not reported)")
    power_w: float | None = Field(description="watts (None: not reported)")
    process_memory: int | None = Field(description="bytes this server holds on the GPU")


class GpuOut(BaseModel):
    available: bool
    reason: str | None = Field(description="why GPU metrics are not available")
    devices: list[GpuDeviceOut]


class HostOut(BaseModel):
    cpu_percent: float = Field(description="the machine's CPU use, all cores, 0-100")
    memory_used: int = Field(description="bytes (total - available)")
    memory_total: int
    disk_used: int = Field(description="bytes, file system of the data directory")
    disk_total: int
    disk_free: int
    rss: int = Field(description="resident memory of the server process, bytes")
    threads: int = Field(description="threads of the server process")


class QueuedOut(BaseModel):
    immediate: int
    high: int
    normal: int
    low: int


class JobCountsOut(BaseModel):
    pending: int
    running: int
    stopped: int


class RuntimeOut(BaseModel):
    running: int = Field(description="jobs in the runtime now")
    queued: QueuedOut = Field(description="jobs waiting in the server's queue, per priority")
    busy_fraction: float = Field(description="operator time / (window x workers), 0-1, over "
                                             "the last minute, of finished and running operators")
    jobs: JobCountsOut = Field(description="every recorded job, per state")


class HistoryOut(BaseModel):
    time: float
    cpu_percent: float
    memory_used: int
    gpu_utilization: list[float] = Field(description="one entry per GPU")
    gpu_memory_used: list[int] = Field(description="one entry per GPU, bytes")
    busy_fraction: float


class ClusterOut(BaseModel):
    address: str = Field(description="the Ray cluster (clara-rt serve --cluster)")
    available: bool = Field(description="false while the cluster does not answer")
    nodes: int = Field(description="alive nodes")
    node_runtimes: int = Field(description="clara-rt runtimes ready (one per node and GPU)")
    capacity: int = Field(description="jobs the node runtimes can run at once")
    running: int = Field(description="jobs running on the nodes")
    reason: str | None = Field(description="why the cluster is unavailable")


class MonitorOut(BaseModel):
    time: float = Field(description="Unix seconds of the latest sample")
    gpu: GpuOut
    host: HostOut
    runtime: RuntimeOut
    history: list[HistoryOut] = Field(description="the last samples, oldest first")
    cluster: ClusterOut | None = Field(default=None, description="the Ray cluster jobs run on; "
                                                                 "null without --cluster")


class TraceEventOut(BaseModel):
    name: str
    ph: Literal["X", "M"] = Field(description="X: complete event, M: metadata")
    pid: int
    tid: int
    ts: float = Field(description="microseconds from the job's creation")
    dur: float | None = Field(None, description="microseconds (X events)")
    cat: str | None = Field(None, description="job or operator (X events)")
    args: dict[str, Any]


class TraceOut(BaseModel):
    traceEvents: list[TraceEventOut]  # the Trace Event Format's key
    displayTimeUnit: Literal["ms", "ns"] = "ms"
    otherData: dict[str, Any]
