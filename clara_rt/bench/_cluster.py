"""The ``cluster`` scenario: ``ct-lung-seg`` jobs through Ray node runtimes vs in-process.

On this machine the scenario starts a Ray cluster of its own
(:class:`~clara_rt.cluster.LocalCluster`: a head, later a second node, ``node_cpus`` CPUs each,
token authentication, nothing shared with another Ray) and drives it with
:class:`~clara_rt.cluster.ClusterRuntime` over Ray Client, as ``clara-rt serve --cluster``
does. Each node runtime has ``workers`` threads. Jobs read a chest CT phantom
(:func:`~clara_rt.bench._chest.chest_series`) and write their results to disk.

1. **Per-job overhead**: ``sequential`` jobs one at a time, submit to results on disk; on the
   in-process :class:`~clara_rt.Runtime` (the baseline, same worker count, results written by
   :func:`~clara_rt.runner.outputs.collect_outputs`) and on a one-node cluster. The difference of
   the means is what going through Ray costs per job: the driver process, Ray Client, packing
   the payload into the object store, the actor call, results back.
2. **Throughput**: ``jobs`` jobs submitted at once, jobs/s from the first submit to the last
   result; in-process, on one node, then on two nodes (the second node joins, both warmed).

Every system runs one warm-up job per runtime first (imports, numba compilation). Both nodes
run on this machine and share its cores with Ray's own processes, so two nodes can only beat
one by what the cores allow: on a 2-core machine the ratio says how little Ray's plumbing
takes from the second node, not how a second machine would scale.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from clara_rt.bench._chest import chest_series
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import checkout_env

__all__ = ["cluster"]

_PIPELINE = Path(__file__).resolve().parents[2] / "examples" / "ct-lung-seg" / "pipeline.yaml"


def cluster(jobs: int = 12, *, sequential: int = 5, shape: tuple[int, int, int] = (32, 128, 128),
            workers: int = 1, node_cpus: int = 1, timeout: float = 600.0, repeat: int = 1,
            progress: Progress | None = None) -> BenchRecord:
    """Run ``ct-lung-seg`` in-process, on one Ray node and on two; report jobs/s and overhead.

    Args:
        jobs: Jobs per throughput run (each system).
        sequential: Jobs run one at a time for the per-job latency (each system but 2 nodes).
        shape: Phantom shape (slices, rows, columns).
        workers: Worker threads of each node runtime and of the in-process baseline.
        node_cpus: CPUs each Ray node offers (``ray start --num-cpus``).
        timeout: Seconds any one job may take before the run is abandoned.
        repeat: Accepted for the CLI's ``--repeat``; ignored.
        progress: Called with one-line progress messages.

    Raises:
        FileNotFoundError: Ray is not installed (``pip install 'clara-rt[cluster]'``).
        TimeoutError: A job did not finish within ``timeout``.
    """
    del repeat
    say = progress or _quiet
    input_dir = chest_series(shape)
    text = _PIPELINE.read_text(encoding="utf-8")
    say(f"cluster: in-process baseline ({workers} worker(s))")
    local = _in_process(text, input_dir, jobs, sequential, workers, timeout)
    ray = _on_ray(text, input_dir, jobs, sequential, workers, node_cpus, timeout, say)
    overhead_ms = (ray["latency"] - local["latency"]) * 1e3
    figures = {
        "in-process Runtime": {"jobs_per_s": local["rate"], "job_ms": local["latency"] * 1e3},
        "Ray, 1 node": {"jobs_per_s": ray["rate1"], "job_ms": ray["latency"] * 1e3,
                        "overhead_ms": overhead_ms},
        "Ray, 2 nodes": {"jobs_per_s": ray["rate2"]},
    }
    return BenchRecord(
        scenario="cluster",
        title=f"ct-lung-seg {shape[0]}x{shape[1]}x{shape[2]}: jobs/s on 1 vs 2 Ray nodes of "
              f"this machine, per-job overhead of Ray vs the in-process runtime",
        machine=machine_info(),
        params={"jobs": jobs, "sequential": sequential, "shape": list(shape),
                "workers": workers, "node_cpus": node_cpus, "transport": "object-store"},
        figures=figures,
        ratios={"2 nodes / 1 node (jobs/s)": _ratio(ray["rate2"], ray["rate1"]),
                "Ray 1 node / in-process (jobs/s)": _ratio(ray["rate1"], local["rate"]),
                "in-process / Ray (job latency)": _ratio(local["latency"], ray["latency"])},
        targets=(Target("Ray overhead per job", overhead_ms, 250.0, "ms"),),
        notes="Both nodes share this machine's cores with Ray's own processes: the 2-node "
              "ratio is bounded by the cores, not by clara-rt. Overhead = mean latency of "
              "sequential jobs on one node minus in-process (payload and results through the "
              "object store, Ray Client, the driver process).")


def _in_process(text: str, input_dir: Path, jobs: int, sequential: int, workers: int,
                timeout: float) -> dict[str, float]:
    from clara_rt.definition import parse_definition
    from clara_rt.definition.build import build_pipeline
    from clara_rt.executor import Runtime
    from clara_rt.runner.outputs import collect_outputs

    built = build_pipeline(parse_definition("ct-lung-seg.yaml", text=text, environ={}))
    payload = built.payload_for(input_dir)
    scratch = Path(tempfile.mkdtemp(prefix="clara-rt-bench-cluster-"))
    try:
        with Runtime(workers=workers) as rt:
            def one(tag: str) -> Any:
                job = rt.submit(built.pipeline, payload, workspace=scratch / f"w-{tag}")
                return job, tag

            def finish(job: Any, tag: str) -> None:
                if not job.wait(timeout):
                    raise TimeoutError(f"in-process job unfinished after {timeout} s")
                collect_outputs(job.result(), scratch / f"o-{tag}", scratch / f"w-{tag}",
                                overwrite=True)

            finish(*one("warm"))
            start = time.perf_counter()
            for i in range(sequential):
                finish(*one(f"s{i}"))
            latency = (time.perf_counter() - start) / sequential
            start = time.perf_counter()
            running = [one(f"t{i}") for i in range(jobs)]
            for job, tag in running:
                finish(job, tag)
            rate = jobs / (time.perf_counter() - start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"latency": latency, "rate": rate}


def _on_ray(text: str, input_dir: Path, jobs: int, sequential: int, workers: int,
            node_cpus: int, timeout: float, say: Progress) -> dict[str, float]:
    from clara_rt.cluster.local import LocalCluster
    from clara_rt.cluster.runtime import ClusterRuntime

    with LocalCluster(env=checkout_env()) as local:
        say(f"cluster: starting a Ray head ({node_cpus} CPU(s))")
        local.start_head(num_cpus=node_cpus)
        assert local.client_address is not None
        with ClusterRuntime(local.client_address, workers=workers, env=local.env,
                            connect_timeout=timeout) as rt:
            def batch(n: int) -> float:
                start = time.perf_counter()
                running = [rt.submit(text, input_dir) for _ in range(n)]
                for job in running:
                    job.result(timeout)
                return time.perf_counter() - start

            batch(1)  # warm-up
            say(f"cluster: {sequential} sequential jobs on 1 node")
            latency = sum(batch(1) for _ in range(sequential)) / sequential
            say(f"cluster: {jobs} jobs on 1 node")
            rate1 = jobs / batch(jobs)
            say("cluster: adding a second node")
            local.add_node(num_cpus=node_cpus)
            rt.wait_for_slots(2, timeout=timeout)
            batch(2)  # one warm-up job per node: both runtimes are idle, each takes one
            say(f"cluster: {jobs} jobs on 2 nodes")
            rate2 = jobs / batch(jobs)
    return {"latency": latency, "rate1": rate1, "rate2": rate2}
