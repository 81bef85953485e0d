"""The Clara-CLI-style client verbs as a user runs them, against a real ``clara-rt serve``.

``create pipeline``, ``create job -f``, ``start job``, ``wait job``, ``list``, ``describe``,
``download``, ``logs`` and ``cancel job`` run as subprocesses against one server (with a token)
started for the module; the config file, a wrong token and a server that is not running are
checked the same way.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from clara_rt.bench import checkout_env
from tests.data.chest_dicom import write_chest_series
from tests.server_process import ServerProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
TOKEN = "s3cret-token"
SLOW_YAML = """\
api-version: 0.4.0
name: {name}
operators:
- name: sleeper
  description: naps for 30 s (a job to cancel)
  container:
    image: busybox
    tag: latest
    command: ["sh", "-c", "echo napping; sleep 30"]
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("client") / "data"
    with ServerProcess(data, "--workers", "2", token=TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chest") / "series"
    write_chest_series(folder)
    return folder


def clara(*args: str | Path, server: ServerProcess | None = None, cwd: Path = ROOT,
          env: dict[str, str] | None = None, timeout: float = 120
          ) -> subprocess.CompletedProcess[str]:
    """``clara-rt ARGS``; with ``server``: ``--host`` and ``--token`` of that server."""
    full = [str(a) for a in args]
    if server is not None:
        full += ["--host", server.url, "--token", TOKEN]
    base = checkout_env()
    for key in ("CLARA_RT_HOST", "CLARA_RT_TOKEN"):
        base.pop(key, None)
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *full], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def field(stdout: str, key: str) -> str:
    match = re.search(rf"^{key}:\s*(\S.*)$", stdout, re.MULTILINE)
    assert match, f"no {key}: in\n{stdout}"
    return match.group(1).strip()


def rows(table: str) -> list[list[str]]:
    """A table's lines split into cells (two or more spaces apart), header first."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines() if line.strip()]


def slow_pipeline(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SLOW_YAML.format(name=name))
    return path


def test_create_start_wait_list_download_logs(server: ServerProcess, chest: Path,
                                              tmp_path: Path) -> None:
    out = ok(clara("create", "pipeline", "-p", CT_LUNG_SEG, server=server))
    pipeline_id = field(out, "PIPELINE_ID")
    assert re.fullmatch(r"[0-9a-f]{32}", pipeline_id)
    assert field(out, "PIPELINE_NAME") == "ct-lung-seg"
    again = clara("create", "pipeline", "-p", CT_LUNG_SEG, server=server)
    assert again.returncode == 1 and "409" in again.stderr and "--replace" in again.stderr
    ok(clara("create", "pipeline", "-p", CT_LUNG_SEG, "--replace", server=server))

    created = clara("create", "job", "-p", "ct-lung-seg", "-n", "chest-1", "-f", chest,
                    "--priority", "high", server=server)
    out = ok(created)
    job_id, payload_id = field(out, "JOB_ID"), field(out, "PAYLOAD_ID")
    assert re.search(r"uploaded 64 files \(.+\) in [\d.]+ s", created.stderr), created.stderr
    assert f"clara-rt start job -j {job_id}" in created.stderr

    pending = rows(ok(clara("list", "jobs", "--state", "pending", server=server)))
    assert pending[0] == ["JOB ID", "NAME", "PIPELINE", "PRIORITY", "STATE", "STATUS",
                          "CREATED", "DURATION"]
    assert [job_id, "chest-1", "ct-lung-seg", "high", "pending", "healthy"] == pending[1][:6]
    assert pending[1][7] == "-"  # not started: no duration

    started = ok(clara("start", "job", "-j", job_id, server=server))
    assert field(started, "JOB_ID") == job_id
    twice = clara("start", "job", "-j", job_id, server=server)
    assert twice.returncode == 1 and "already started" in twice.stderr

    waited = ok(clara("wait", "job", "-j", job_id, "--timeout", "120", server=server))
    assert field(waited, "STATE") == "stopped" and field(waited, "STATUS") == "healthy"

    listed = rows(ok(clara("list", "jobs", server=server)))
    mine = next(r for r in listed if r[0] == job_id)
    assert mine[:6] == [job_id, "chest-1", "ct-lung-seg", "high", "stopped", "healthy"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", mine[6])
    assert re.fullmatch(r"[\d.]+s|\d+m\d\ds", mine[7])
    records = json.loads(ok(clara("list", "jobs", "--pipeline", "ct-lung-seg", "--json",
                                  server=server)))
    assert [r["id"] for r in records] == [job_id]
    assert records[0]["payloads"] == [payload_id]
    assert rows(ok(clara("list", "jobs", "--state", "running", server=server))) == [listed[0]]

    described = ok(clara("describe", "job", "-j", job_id, server=server))
    assert field(described, "STATUS") == "healthy" and field(described, "ERROR") == "-"
    assert re.search(r"^\s+seg-writer\s+succeeded\s+\+[\d.]+s\s+[\d.]+m?s$", described,
                     re.MULTILINE), described
    assert re.search(r"running\s+healthy\s+submitted to the runtime", described)

    # download into ./<job id> (the default), then one file into a chosen folder
    fetched = clara("download", job_id, server=server, cwd=tmp_path)
    paths = ok(fetched).split()
    dest = tmp_path / job_id
    assert str(Path(job_id) / "seg-writer" / "seg.dcm") in paths
    seg = pydicom.dcmread(dest / "seg-writer" / "seg.dcm")
    assert seg.Modality == "SEG"
    assert (dest / "nifti-writer" / "path.nii.gz").stat().st_size > 0
    assert "downloaded" in fetched.stderr
    one = ok(clara("download", job_id, tmp_path / "one", "--file", "seg-writer/seg.dcm",
                   server=server))
    assert one.split() == [str(tmp_path / "one" / "seg-writer" / "seg.dcm")]
    assert pydicom.dcmread(tmp_path / "one" / "seg-writer" / "seg.dcm").Modality == "SEG"

    log = ok(clara("logs", job_id, "seg-writer", server=server))
    assert "operator 'seg-writer' started" in log and "operator 'seg-writer' finished" in log
    bad = clara("logs", job_id, "nope", server=server)
    assert bad.returncode == 1 and "has no operator 'nope'" in bad.stderr

    pipelines = rows(ok(clara("list", "pipelines", server=server)))
    assert [pipeline_id, "ct-lung-seg", "0.5.0", "7"] == next(
        r for r in pipelines if r[1] == "ct-lung-seg")[:4]
    payloads = rows(ok(clara("list", "payloads", server=server)))
    assert [payload_id, "chest-1", "64"] == next(r for r in payloads if r[0] == payload_id)[:3]
    about = ok(clara("describe", "pipeline", "-p", "ct-lung-seg", server=server))
    assert field(about, "JOBS") == "pending 0, running 0, stopped 1"


def test_cancel_running_and_pending_jobs(server: ServerProcess, tmp_path: Path) -> None:
    ok(clara("create", "pipeline", "-p", slow_pipeline(tmp_path, "slow"), server=server))
    note = tmp_path / "note.txt"
    note.write_text("hello\n")
    out = ok(clara("create", "job", "-p", "slow", "-f", note, "--start", server=server))
    job_id = field(out, "JOB_ID")
    client = server.client()
    wait_for(lambda: [op["state"] for op in client.get_job(job_id)["operators"]] == ["running"],
             30, "the sleeper to start")  # no operator rows until the job is dispatched
    canceled = ok(clara("cancel", "job", "-j", job_id, server=server))
    assert field(canceled, "JOB_ID") == job_id
    waited = clara("wait", "job", "-j", job_id, "--timeout", "20", server=server)
    assert waited.returncode == 1, waited.stderr  # stopped, but not healthy
    assert field(waited.stdout, "STATE") == "stopped"
    assert field(waited.stdout, "STATUS") == "canceled"
    listed = rows(ok(clara("list", "jobs", "--status", "canceled", server=server)))
    assert job_id in [r[0] for r in listed[1:]]
    assert "napping" in ok(clara("logs", job_id, "sleeper", server=server))
    again = clara("cancel", "job", "-j", job_id, server=server)
    assert again.returncode == 1 and "already stopped" in again.stderr

    # a job never started is canceled where it waits
    out = ok(clara("create", "job", "-p", "slow", "-f", note, server=server))
    idle = ok(clara("cancel", "job", "-j", field(out, "JOB_ID"), "--json", server=server))
    record: dict[str, Any] = json.loads(idle)
    assert (record["state"], record["status"]) == ("stopped", "canceled")


def test_config_file_then_wrong_token(server: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".clara-rt").mkdir(parents=True)
    config = home / ".clara-rt" / "config.yaml"
    config.write_text(f"host: {server.url}\ntoken: {TOKEN}\n")
    env = {"HOME": str(home)}
    out = ok(clara("create", "pipelines", "-p", slow_pipeline(tmp_path, "from-config"),
                   env=env))
    assert field(out, "PIPELINE_NAME") == "from-config"
    assert "from-config" in ok(clara("list", "pipelines", env=env))

    config.write_text(f"host: {server.url}\ntoken: wrong\n")
    refused = clara("create", "pipeline", "-p", slow_pipeline(tmp_path, "refused"), env=env)
    assert refused.returncode == 1
    assert "clara-rt: error:" in refused.stderr and "401" in refused.stderr
    assert "hint:" in refused.stderr and "--token" in refused.stderr
    assert "CLARA_RT_TOKEN" in refused.stderr and "config.yaml" in refused.stderr
    assert "Traceback" not in refused.stderr
    # --token and $CLARA_RT_TOKEN win over the file
    ok(clara("create", "pipeline", "-p", slow_pipeline(tmp_path, "by-env"),
             env={**env, "CLARA_RT_TOKEN": TOKEN}))
    ok(clara("create", "pipeline", "-p", slow_pipeline(tmp_path, "by-flag"), "--token",
             TOKEN, env=env))

    config.write_text("host: [not, a, url\n")
    broken = clara("list", "jobs", env=env)
    assert broken.returncode == 2 and "config.yaml" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_server_not_running_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list", "jobs"], ["wait", "job", "-j", "x"],
                 ["create", "job", "-p", "ct-lung-seg", "-f", str(CT_LUNG_SEG)],
                 ["download", "x", str(tmp_path / "d")]):
        proc = clara(*args, "--host", url)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.startswith(f"clara-rt: error: cannot reach the clara-rt server at "
                                      f"{url}"), proc.stderr
        assert "clara-rt serve" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = clara("create")
    assert proc.returncode == 2 and "usage: clara-rt create" in proc.stderr
    proc = clara("create", "job", "-p", "x", "-f", tmp_path / "missing", "--host",
                 "http://127.0.0.1:1")
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    proc = clara("list", "jobs", "--state", "sleeping")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
