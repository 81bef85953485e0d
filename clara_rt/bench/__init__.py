"""Benchmark scenarios behind ``clara-rt bench`` and ``benchmarks/run_all.py``.

Every scenario measures clara-rt *and* a baseline in the same process and the same run, and
reports their ratio: on a shared machine absolute times are noise, ratios are not. Scenarios:

* :func:`hops` -- per-hop latency of a chain of no-op operators, one job in flight; baseline:
  one thread per stage joined by ``queue.Queue``.
* :func:`throughput` -- jobs/s and operator dispatches/s with many jobs in flight; baselines: the
  queue chain and dask's threaded scheduler.
* :func:`core` -- dispatches/s of the C++ scheduler alone; baseline: the same loop driven from
  Python through the bindings.
* :func:`construct` -- time to build and validate a chain pipeline; baseline: a plain
  dict-of-successors graph and its topological sort.
* :func:`idle_rss` -- resident memory of a fresh process with a Runtime; baseline: numpy only.
  :func:`server_footprint` measures one server process (cold start to ``/health``, idle RSS),
  e.g. the ``clara-rt serve`` of an installed edge bundle.
* :func:`startup` -- process start to first operator of a 10-operator YAML pipeline run by
  ``clara-rt run`` (cold), and Runtime + build + first job in-process (warm); baselines: a bare
  interpreter, ``import numpy``, a queue-thread chain.
* :func:`priority` -- latency of immediate / high jobs behind 1,000 queued normal ``ct-lung-seg``
  jobs, and per-class shares under saturation vs the configured 4:2:1 weights.
* :func:`e2e` -- the ``ct-lung-seg`` job (DICOM series -> lungs -> DICOM SEG) cold (new process)
  and warm; baseline: the same steps as a MONAI Deploy App SDK 0.5.1 app in a venv the scenario
  creates (:func:`monai_venv`), calling the same segmentation functions; peak RSS of both.
* :func:`load` -- many jobs of mixed priority (``immediate=1,high=2,normal=5,low=2``) through
  ``clara-rt serve`` (a given server, or one started on a temp data dir), latency and queue
  wait per priority, throughput; baseline: the same jobs on an in-process Runtime (no HTTP, no
  database), whose difference is the server's cost per job.
* :func:`cluster` -- ``ct-lung-seg`` jobs/s on one vs two Ray nodes started on this machine,
  and the per-job overhead of going through Ray; baseline: the in-process Runtime.
* :func:`quick_guard` -- the ``--quick`` regression guard: small runs whose ratios are compared
  with ``benchmarks/baseline_ratios.json`` (fails only below half the recorded ratio).

Each returns a frozen :class:`BenchRecord`; :func:`format_table` renders it. Ratios are always
oriented so that **a value above 1 means clara-rt is better**: baseline/clara-rt for times and
memory, clara-rt/baseline for rates.

Not thread-safe: run one scenario at a time (they start and stop their own threads).

Modules (private; import from ``clara_rt.bench``): ``_record`` (:class:`BenchRecord`,
:class:`Target`, :func:`machine_info`, :func:`format_table`), ``_workload`` (:class:`NoopOp`,
:func:`chain_pipeline`), ``_baselines`` (:class:`QueueChain`, :func:`dask_stream` and the other
baselines), one module per scenario (``_hops``, ``_throughput``, ``_dispatch`` for ``core``,
``_construct``, ``_rss``, ``_startup``, ``_priority``, ``_e2e`` with ``_monai_app``, ``_load``
with ``_load_server`` and ``_load_local``; ``_chest`` writes their DICOM phantom), ``_quick``
(the regression guard), and ``_scenarios`` (:data:`SCENARIOS`, :func:`run_scenario`).
"""

from __future__ import annotations

from clara_rt.bench._baselines import QueueChain as QueueChain
from clara_rt.bench._baselines import dask_order_baseline as dask_order_baseline
from clara_rt.bench._baselines import dask_stream as dask_stream
from clara_rt.bench._baselines import loaded_scheduler as loaded_scheduler
from clara_rt.bench._baselines import python_drain as python_drain
from clara_rt.bench._baselines import toposort_baseline as toposort_baseline
from clara_rt.bench._branches import branches as branches
from clara_rt.bench._cluster import cluster as cluster
from clara_rt.bench._construct import construct as construct
from clara_rt.bench._dicom import dicom as dicom
from clara_rt.bench._dicom import pydicom_loop as pydicom_loop
from clara_rt.bench._dispatch import core as core
from clara_rt.bench._dispatch import dispatch as dispatch
from clara_rt.bench._e2e import e2e as e2e
from clara_rt.bench._e2e import seg_voxels as seg_voxels
from clara_rt.bench._hops import hops as hops
from clara_rt.bench._inference import inference as inference
from clara_rt.bench._kernels import kernels as kernels
from clara_rt.bench._load import load as load
from clara_rt.bench._load import parse_mix as parse_mix
from clara_rt.bench._load import priority_sequence as priority_sequence
from clara_rt.bench._monai_app import monai_venv as monai_venv
from clara_rt.bench._priority import priority as priority
from clara_rt.bench._quick import QUICK as QUICK
from clara_rt.bench._quick import GuardRow as GuardRow
from clara_rt.bench._quick import format_guard as format_guard
from clara_rt.bench._quick import quick_guard as quick_guard
from clara_rt.bench._record import BenchRecord as BenchRecord
from clara_rt.bench._record import Progress as Progress
from clara_rt.bench._record import Target as Target
from clara_rt.bench._record import format_table as format_table
from clara_rt.bench._record import machine_info as machine_info
from clara_rt.bench._rss import ServerFootprint as ServerFootprint
from clara_rt.bench._rss import idle_rss as idle_rss
from clara_rt.bench._rss import process_rss_mb as process_rss_mb
from clara_rt.bench._rss import server_footprint as server_footprint
from clara_rt.bench._scenarios import SCENARIOS as SCENARIOS
from clara_rt.bench._scenarios import run_scenario as run_scenario
from clara_rt.bench._startup import startup as startup
from clara_rt.bench._throughput import clara_stream as clara_stream
from clara_rt.bench._throughput import throughput as throughput
from clara_rt.bench._workload import NoopOp as NoopOp
from clara_rt.bench._workload import chain_pipeline as chain_pipeline
from clara_rt.bench._workload import checkout_env as checkout_env

__all__ = [
    "QUICK",
    "SCENARIOS",
    "BenchRecord",
    "GuardRow",
    "NoopOp",
    "Progress",
    "QueueChain",
    "ServerFootprint",
    "Target",
    "branches",
    "chain_pipeline",
    "checkout_env",
    "clara_stream",
    "cluster",
    "construct",
    "core",
    "dask_order_baseline",
    "dask_stream",
    "dicom",
    "e2e",
    "format_guard",
    "format_table",
    "hops",
    "idle_rss",
    "inference",
    "kernels",
    "load",
    "loaded_scheduler",
    "machine_info",
    "monai_venv",
    "parse_mix",
    "priority",
    "priority_sequence",
    "process_rss_mb",
    "pydicom_loop",
    "python_drain",
    "quick_guard",
    "run_scenario",
    "seg_voxels",
    "server_footprint",
    "startup",
    "throughput",
    "toposort_baseline",
]
