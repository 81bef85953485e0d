"""Soak a real ``clara-rt serve``: many small jobs of several pipelines, sampling the server
process (RSS, threads, open files) from /proc as they go. Used by the short soak test in
tests/integration and the long one under benchmarks/."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Sample", "pipeline_yaml", "run_jobs", "sample"]


@dataclass(frozen=True)
class Sample:
    """The server process after ``jobs`` jobs."""

    jobs: int
    rss_kib: int
    threads: int
    fds: int
    seconds: float


def pipeline_yaml(name: str, command: bool = False) -> str:
    """Two folder operators (Python, or a command then Python): small, real jobs."""
    first = ('  container:\n    command: ["/bin/sh", "-c", "cp -r /input/. /output/"]\n'
             if command else '  clara-rt:\n    operator: "tests.ops:FolderWork"\n')
    return (f"api-version: 0.4.0\nname: {name}\noperators:\n- name: first\n{first}"
            "  input:\n  - path: /input\n  output:\n  - path: /output\n"
            "- name: second\n  clara-rt:\n    operator: \"tests.ops:FolderWork\"\n"
            "  input:\n  - from: first\n    path: /input\n  output:\n  - path: /output\n")


def sample(pid: int, jobs: int, t0: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmRSS:"))
    return Sample(jobs, rss, len(os.listdir(f"/proc/{pid}/task")),
                  len(os.listdir(f"/proc/{pid}/fd")), time.monotonic() - t0)


def run_jobs(client: Any, pipelines: list[str], payload: str, count: int, *, start: int = 0,
             batch: int = 16, variants: int = 48) -> None:
    """Create ``count`` jobs round robin over ``pipelines`` (``variants`` distinct variable
    sets, so builds churn through the server's cache), ``batch`` at a time; wait for each and
    fail on any that is not healthy."""
    for first in range(start, start + count, batch):
        ids = []
        for i in range(first, min(first + batch, start + count)):
            job = client.create_job(pipelines[i % len(pipelines)], [payload],
                                    variables={"N": str(i % variants)})
            ids.append(job["id"])
        for job_id in ids:
            done = client.wait_job(job_id, timeout=60, poll=0.02)
            if done["status"] != "healthy":
                raise AssertionError(f"job {job_id} ended {done['status']}: {done['error']}")
            client.delete_job(job_id)  # results and records go: what is left is the server's
