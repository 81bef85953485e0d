"""What a job reports is what happened (issue 17.1, 17.2): operator final states and job identity,
under ``clara-rt run`` and a real ``clara-rt serve``, with real command operators."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, checkout_env, wait_for

ECHO_IDS = """\
api-version: 0.4.0
name: {name}
operators:
- name: ids
  container:
    command: ["/bin/sh", "-c",
             "echo $NVIDIA_CLARA_JOBID'|'$NVIDIA_CLARA_JOBNAME'|'${{{{JOB_ID}}}} > /output/ids.txt"]
  input:
  - path: /input
  output:
  - path: /output
"""

NAP = """\
api-version: 0.4.0
name: {name}
operators:
- name: before
  container:
    command: ["/bin/sh", "-c", "echo ready > /output/ready.txt"]
  input:
  - path: /input
  output:
  - path: /output
- name: nap
  container:
    command: ["/bin/sh", "-c", "sleep 30"]
  input:
  - from: before
    path: /input
  output:
  - path: /output
- name: after
  container:
    command: ["/bin/sh", "-c", "true"]
  input:
  - from: nap
    path: /input
  output:
  - path: /output
"""


def _run(tmp: Path, yaml_text: str, *args: str) -> tuple[int, dict[str, Any]]:
    definition = tmp / "pipeline.yaml"
    definition.write_text(yaml_text)
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / "x.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "clara_rt.cli", "run", str(definition), "--input",
         str(tmp / "in"), "--output", str(tmp / "out"), "--overwrite", "--json", *args],
        capture_output=True, text=True, env=checkout_env(), timeout=120)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _states(record: dict[str, Any]) -> dict[str, str]:
    return {row["name"]: row["state"] for row in record["operators"]}


def test_run_timeout_reports_the_killed_operator_as_timed_out(tmp_path: Path) -> None:
    t0 = time.monotonic()
    trace = tmp_path / "trace.json"
    code, report = _run(tmp_path, NAP.format(name="nap"), "--timeout", "2", "--trace", str(trace))
    assert time.monotonic() - t0 < 20  # the command was stopped, not waited for
    assert code == 1 and report["state"] == "timed_out"
    assert _states(report) == {"before": "succeeded", "nap": "timed_out", "after": "not_run"}
    spans = {e["name"]: e["args"]["state"] for e in json.loads(trace.read_text())["traceEvents"]
             if e.get("ph") == "X" and e["name"] in ("before", "nap", "after")}
    assert spans == {"before": "succeeded", "nap": "timed_out"}  # the trace agrees
    assert "ran past its timeout" in report["error"] and report["job"] in report["error"]


def test_run_gives_each_run_its_own_id_and_takes_one(tmp_path: Path) -> None:
    seen = []
    for _ in range(2):
        code, report = _run(tmp_path, ECHO_IDS.format(name="echo"))
        assert code == 0, report
        job_id, job_name, token = _ids(tmp_path)
        assert job_id == token == report["job"] and job_name == f"echo-{job_id}"
        assert len(job_id) == 32 and job_id != "0"
        seen.append(job_id)
    assert seen[0] != seen[1]
    code, report = _run(tmp_path, ECHO_IDS.format(name="echo"), "--job-id", "study-7",
                        "--job-name", "chest of bob")
    assert code == 0 and (report["job"], report["name"]) == ("study-7", "chest of bob")
    assert _ids(tmp_path) == ["study-7", "chest of bob", "study-7"]


def _ids(tmp: Path) -> list[str]:
    [found] = list((tmp / "out").rglob("ids.txt"))
    return found.read_text().strip().split("|")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pytest.importorskip("fastapi")
    data = tmp_path_factory.mktemp("truth") / "data"
    with ServerProcess(data, "--workers", "2") as proc:
        yield proc


def test_server_jobs_get_the_server_id_and_name(server: ServerProcess, tmp_path: Path) -> None:
    client = server.client()
    client.create_pipeline(ECHO_IDS.format(name="echo"), replace=True)
    (tmp_path / "x.txt").write_text("x")
    payload = client.create_payload([tmp_path / "x.txt"])
    job = client.create_job("echo", [payload["id"]], name="scan-42", start=True)
    done = client.wait_job(job["id"], timeout=60)
    assert done["status"] == "healthy", done
    out = client.download_results(job["id"], tmp_path / "results")
    [ids] = list(out.rglob("ids.txt"))
    assert ids.read_text().strip().split("|") == [job["id"], "scan-42", job["id"]]


def test_server_job_cancelled_mid_operator(server: ServerProcess, tmp_path: Path) -> None:
    client = server.client()
    client.create_pipeline(NAP.format(name="nap"), replace=True)
    (tmp_path / "x.txt").write_text("x")
    payload = client.create_payload([tmp_path / "x.txt"])
    job = client.create_job("nap", [payload["id"]], start=True)
    seen: list[dict[str, Any]] = []

    def follow() -> None:
        for record in client.events(job["id"]):
            seen.append(record)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    wait_for(lambda: _states(client.get_job(job["id"])).get("nap") == "running", 30,
             "the nap operator to run")
    client.cancel_job(job["id"])
    done = client.wait_job(job["id"], timeout=30)
    assert (done["state"], done["status"]) == ("stopped", "canceled")
    assert _states(done) == {"before": "succeeded", "nap": "cancelled", "after": "not_run"}
    watcher.join(10)
    final = [r for r in seen if r.get("state") == "stopped"]
    assert final, seen
    assert _states(final[-1]) == _states(done)  # SSE says what the REST record says
