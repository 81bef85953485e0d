"""The ``load`` scenario (Clara's ``cpload``): many jobs of mixed priority against a server.

Against ``clara-rt serve`` (``host``, or a server this scenario starts on a temporary data
directory when ``host`` is ``None``):

1. the pipeline is registered (``definition``, replacing one of the same name; default: the
   ``ct-lung-seg`` reference pipeline) or named (``pipeline``, already registered);
2. the input folder (default: a chest CT phantom, :func:`clara_rt.bench._chest.chest_series`)
   is uploaded once as a payload (or once per job with ``payload_per_job``);
3. one warm-up job runs (not counted: imports, numba compilation, model loading);
4. ``jobs`` jobs are created and started by ``concurrency`` client threads, job ``i`` not before
   ``i * delay`` seconds, with priorities in the proportions of ``mix`` in a seeded shuffle
   (:func:`priority_sequence`: the same sequence for the same arguments);
5. the server's records give each job's latency (``created -> stopped``) and queue wait
   (``created -> started``, i.e. until the server handed it to its runtime), per priority.

**Baseline**: the same jobs, same priority sequence and pacing, on an in-process
:class:`~clara_rt.Runtime` with the server's worker count, the pipeline built by
:func:`clara_rt.definition.build.build_pipeline`, and each result written to disk by
:func:`~clara_rt.runner.outputs.collect_outputs` on one finishing thread as the server does; no
HTTP, no SQLite, no admission queue. Its queue wait is submit -> first operator. The difference
in mean latency, and the ratio of throughputs, is what the server costs per job.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._chest import chest_series
from clara_rt.bench._load_local import run_in_process
from clara_rt.bench._load_server import run_server, serving
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.job import PRIORITY_NAMES

__all__ = ["DEFAULT_MIX", "load", "parse_mix", "priority_sequence"]

PRIORITIES = PRIORITY_NAMES
DEFAULT_MIX = "immediate=1,high=2,normal=5,low=2"


def parse_mix(text: str) -> dict[str, float]:
    """``"immediate=1,high=2,normal=5,low=2"`` -> weights per priority (others 0).

    Raises:
        ValueError: An unknown priority, a weight that is not a non-negative number, or no
            positive weight at all.
    """
    weights = dict.fromkeys(PRIORITIES, 0.0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise ValueError(f"--mix expects PRIORITY=WEIGHT,... with priorities "
                             f"{', '.join(PRIORITIES)}; got {item!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"--mix: weight of {name} is not a number: {value!r}") from None
        if not weight >= 0:
            raise ValueError(f"--mix: weight of {name} must be >= 0, got {value}")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise ValueError(f"--mix needs at least one positive weight, got {text!r}")
    return weights


def priority_sequence(n: int, mix: Mapping[str, float], seed: int = 0) -> list[str]:
    """``n`` priorities in the proportions of ``mix`` (largest remainder), shuffled with
    ``seed``: deterministic for the same arguments."""
    total = sum(mix.values())
    exact = {p: n * mix.get(p, 0.0) / total for p in PRIORITIES}
    counts = {p: int(v) for p, v in exact.items()}
    by_remainder = sorted(PRIORITIES, key=lambda p: (-(exact[p] - counts[p]),
                                                     PRIORITIES.index(p)))
    for p in by_remainder[: n - sum(counts.values())]:
        counts[p] += 1
    sequence = [p for p in PRIORITIES for _ in range(counts[p])]
    random.Random(seed).shuffle(sequence)
    return sequence


def load(jobs: int = 40, *, host: str | None = None, token: str | None = None,
         pipeline: str | None = None, definition: Path | None = None,
         input_dir: Path | None = None, mix: str | Mapping[str, float] = DEFAULT_MIX,
         delay: float = 0.0, concurrency: int = 4, payload_per_job: bool = False,
         baseline: bool = True, workers: int = 2, seed: int = 0, timeout: float = 600.0,
         shape: tuple[int, int, int] = (32, 128, 128), repeat: int = 1,
         progress: Progress | None = None) -> BenchRecord:
    """Submit ``jobs`` jobs of mixed priority to a server, wait for all, report per priority.

    Args:
        jobs: Jobs submitted (after one warm-up job).
        host: Server URL; ``None`` starts ``clara-rt serve --workers workers`` on a temporary
            data directory for the run.
        token: Bearer token of ``host``.
        pipeline: Name or id of a pipeline registered on ``host`` (its definition is fetched
            for the baseline).
        definition: Pipeline YAML to register (replacing a pipeline of the same name). Default
            when neither is given: ``examples/ct-lung-seg/pipeline.yaml``.
        input_dir: The jobs' input folder; default (ct-lung-seg only): a chest CT phantom of
            ``shape``.
        mix: Weights per priority, ``"immediate=1,high=2,normal=5,low=2"`` or a mapping.
        delay: Seconds between submissions (job ``i`` is created at ``i * delay`` at the
            earliest); 0 submits as fast as the client threads can.
        concurrency: Client threads creating jobs (and uploading with ``payload_per_job``).
        payload_per_job: Upload the input for every job instead of once.
        baseline: Also run the jobs on an in-process Runtime (the ratio's denominator).
        workers: Worker threads of the local server and of the baseline Runtime (give the
            remote server's count with ``host``).
        seed: Seed of the priority shuffle.
        timeout: Seconds to wait for all jobs (then the rest are cancelled and TimeoutError).
        shape: Phantom shape (slices, rows, columns) for the default input.
        repeat: Accepted for the CLI's ``--repeat``; ignored.
        progress: Called with one-line progress messages.

    Raises:
        ValueError: Inconsistent arguments (bad mix, a missing input folder...).
        clara_rt.client.ClientError: A request failed (server unreachable, 401, 404...).
        TimeoutError: The jobs did not all stop within ``timeout``.
    """
    del repeat
    say = progress or _quiet
    weights = parse_mix(mix) if isinstance(mix, str) else dict(mix)
    sequence = priority_sequence(jobs, weights, seed)
    default = pipeline is None and definition is None
    definition, input_dir = _definition_and_input(host, pipeline, definition, input_dir, shape)
    with serving(host, workers, say) as url:
        pipeline, text, server = _on_server(
            url, token, pipeline, definition, input_dir, sequence, delay=delay,
            concurrency=concurrency, payload_per_job=payload_per_job, baseline=baseline,
            timeout=timeout, say=say)
    local, note = None, ""
    if baseline:
        local, note = _in_process(text, pipeline, input_dir, sequence, delay=delay,
                                  workers=workers, timeout=timeout, say=say)
    return _record(server, local, sequence, params={
        "jobs": jobs, "host": host or "local", "pipeline": pipeline,
        "input": str(input_dir), "mix": {p: w for p, w in weights.items() if w},
        "delay_s": delay, "concurrency": concurrency, "payload_per_job": payload_per_job,
        "workers": workers, "seed": seed, "shape": list(shape) if default else None,
        "upload_s": server["upload_s"], "sequence": sequence}, note=note)


# --- the steps of load ----------------------------------------------------------------------


def _definition_and_input(host: str | None, pipeline: str | None, definition: Path | None,
                          input_dir: Path | None,
                          shape: tuple[int, int, int]) -> tuple[Path | None, Path]:
    """The definition to register (default: ct-lung-seg) and the input folder (default: a
    chest CT phantom of ``shape``, for the default pipeline only)."""
    if host is None and pipeline is not None and definition is None:
        raise ValueError("a local server starts empty: give --definition X.yaml (or --host "
                         "with a server where the pipeline is registered)")
    default = pipeline is None and definition is None
    if default:
        from clara_rt.bench._priority import _pipeline_yaml

        definition = _pipeline_yaml()
    if input_dir is None:
        if not default:
            raise ValueError("--input DIR is required with --pipeline or --definition")
        input_dir = chest_series(shape)
    if not input_dir.is_dir():
        raise ValueError(f"input folder {input_dir} does not exist or is not a folder")
    return definition, input_dir


def _on_server(url: str, token: str | None, pipeline: str | None, definition: Path | None,
               input_dir: Path, sequence: list[str], *, delay: float, concurrency: int,
               payload_per_job: bool, baseline: bool, timeout: float,
               say: Progress) -> tuple[str, str, dict[str, Any]]:
    """Register (or name) the pipeline on ``url`` and run the jobs there.

    Returns:
        The pipeline's name, its definition text (for the baseline) and the server run.
    """
    from clara_rt.client import Client

    client = Client(url, token, timeout=120.0)
    if definition is not None:
        record = client.create_pipeline(definition.read_text(encoding="utf-8"),
                                        replace=True)
        pipeline = str(record["name"])
        text = definition.read_text(encoding="utf-8")
    else:
        assert pipeline is not None
        text = client.pipeline_definition(pipeline) if baseline else ""
    say(f"load: pipeline '{pipeline}' on {url}; {len(sequence)} jobs ({_counts(sequence)}), "
        f"concurrency {concurrency}, delay {delay} s")
    server = run_server(client, pipeline, input_dir, sequence, delay=delay,
                        concurrency=concurrency, payload_per_job=payload_per_job,
                        timeout=timeout, say=say)
    return pipeline, text, server


def _in_process(text: str, pipeline: str, input_dir: Path, sequence: list[str], *,
                delay: float, workers: int, timeout: float,
                say: Progress) -> tuple[dict[str, Any] | None, str]:
    """The baseline run, or ``None`` and a note saying why it was skipped."""
    say(f"load: baseline: the same {len(sequence)} jobs on an in-process "
        f"Runtime(workers={workers})")
    try:
        return run_in_process(text, pipeline, input_dir, sequence, delay=delay,
                              workers=workers, timeout=timeout), ""
    except Exception as exc:  # e.g. a pipeline needing a service the server was given
        note = f"baseline skipped: {type(exc).__name__}: {exc}. "
        say(f"load: {note}")
        return None, note


# --- the record -----------------------------------------------------------------------------


def _record(server: dict[str, Any], local: dict[str, Any] | None, sequence: list[str], *,
            params: dict[str, Any], note: str) -> BenchRecord:
    records = server["records"]
    s_lat = [r["stopped"] - r["created"] for r in records]
    s_wait = [None if r["started"] is None else r["started"] - r["created"] for r in records]
    s_ok = [r["status"] == "healthy" for r in records]
    s_wall = max(r["stopped"] for r in records) - min(r["created"] for r in records)
    figures: dict[str, dict[str, float]] = {}
    figures.update(_rows("server", sequence, s_lat, s_wait, s_ok, s_wall))
    ratios: dict[str, float] = {}
    failed = sum(not ok for ok in s_ok)
    if local is not None:
        figures.update(_rows("in-process", sequence, local["latency"], local["wait"],
                             local["healthy"], local["wall"]))
        failed += sum(not ok for ok in local["healthy"])
        s_all, l_all = figures["server: all"], figures["in-process: all"]
        figures["server overhead"] = {
            "mean_ms": s_all["mean_ms"] - l_all["mean_ms"],
            "p50_ms": s_all["p50_ms"] - l_all["p50_ms"],
            "wall_per_job_ms": (s_all["wall_s"] - l_all["wall_s"]) * 1e3 / len(sequence)}
        ratios = {"server / in-process jobs/s": _ratio(s_all["jobs_per_s"],
                                                       l_all["jobs_per_s"]),
                  "in-process / server mean latency": _ratio(l_all["mean_ms"],
                                                             s_all["mean_ms"])}
    return BenchRecord(
        scenario="load",
        title=f"{len(sequence)} jobs of '{params['pipeline']}' ({_counts(sequence)}) through "
              f"clara-rt serve ({params['host']}) vs the same jobs on an in-process Runtime",
        machine=machine_info(), params=params, figures=figures, ratios=ratios,
        targets=(Target("failed jobs", float(failed), 0.0, "jobs"),),
        notes=note + "latency = created -> stopped (server clock) or submit -> results written "
              "(in-process); wait = created -> handed to the runtime (server) or submit -> "
              "first operator (in-process). Priorities apply in the server's queue (at most "
              "2 x workers jobs admitted) and at every operator dispatch. Ratios above 1 "
              "would mean the server beats the in-process Runtime; below 1 is its cost.")


def _rows(system: str, sequence: list[str], latency: list[float],
          wait: list[float | None], healthy: list[bool],
          wall: float) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for prio in (*PRIORITIES, "all"):
        idx = [i for i, p in enumerate(sequence) if prio in ("all", p)]
        if not idx:
            continue
        lat = np.asarray([latency[i] for i in idx]) * 1e3
        waits = np.asarray([w for i in idx if (w := wait[i]) is not None] or [np.nan]) * 1e3
        ok = sum(healthy[i] for i in idx)
        row = {"jobs": float(len(idx)), "healthy": float(ok), "failed": float(len(idx) - ok),
               "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
               "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
               "mean_ms": float(lat.mean()),
               "wait_p50_ms": float(np.percentile(waits, 50)),
               "wait_p99_ms": float(np.percentile(waits, 99))}
        if prio == "all":
            row.update(jobs_per_s=len(idx) / wall if wall > 0 else float("inf"), wall_s=wall)
        rows[f"{system}: {prio}"] = row
    return rows


def _counts(sequence: list[str]) -> str:
    return ", ".join(f"{sequence.count(p)} {p}" for p in PRIORITIES if p in sequence)


