"""The runner contract: what the server and the cluster both need, below both.

``clara_rt.server`` (its job manager and :class:`~clara_rt.server.runners.LocalRunner`) and
``clara_rt.cluster`` (:class:`~clara_rt.cluster.RayRunner` and its node runtimes) meet here,
so that the cluster never imports the server (DESIGN.md, "Which way imports point"):

* :mod:`.protocol`: the :class:`Runner` / :class:`RunHandle` protocols, the
  :class:`PipelineSource` a runner reads pipelines from, and :func:`operator_rows`;
* :mod:`.needs`: a job's resource needs (:class:`JobNeeds`, :func:`memory_bytes`);
* :mod:`.logs`: per-operator log files (:class:`OperatorLogs`, :func:`append_command_logs`);
* :mod:`.outputs`: collecting a job's results into a folder (:func:`collect_outputs`).

It imports the core and :mod:`clara_rt.definition` only.
"""

from __future__ import annotations

from clara_rt.runner.logs import OperatorLogs as OperatorLogs
from clara_rt.runner.logs import append_command_logs as append_command_logs
from clara_rt.runner.needs import JobNeeds as JobNeeds
from clara_rt.runner.needs import memory_bytes as memory_bytes
from clara_rt.runner.outputs import collect_outputs as collect_outputs
from clara_rt.runner.protocol import PipelineSource as PipelineSource
from clara_rt.runner.protocol import RunHandle as RunHandle
from clara_rt.runner.protocol import Runner as Runner
from clara_rt.runner.protocol import operator_rows as operator_rows

__all__ = ["JobNeeds", "OperatorLogs", "PipelineSource", "RunHandle", "Runner",
           "append_command_logs", "collect_outputs", "memory_bytes", "operator_rows"]
