"""The edge bundle as a user makes, moves and installs it (issue: edge deployment).

* ``clara-rt package examples/ct-lung-seg/pipeline.yaml -o DIR`` with the real pip (wheels are
  cached between runs in ``~/.cache/clara-rt/pip``); ``--check`` passes, then names a damaged
  file.
* ``sh install.sh`` into a fresh prefix with pip cut off from every index and from this
  machine's pip configuration: the wheelhouse alone must do.
* The services as systemd would start them (no systemd here): the ``ExecStart``/``ExecStartPost``
  lines of the installed units, with ``EnvironmentFile`` variables substituted, in a clean
  environment. dcmtk ``storescu`` sends a chest CT to the adapter, the job runs on the server,
  the DICOM SEG reaches a dcmtk ``storescp`` (the user's PACS); SIGTERM stops both with status 0
  and the data directory survives a restart.
* Footprint of the installed server: no GPU, inference or imaging package imported when idle;
  cold start (process start to ``/health``) and idle RSS are printed next to the checkout's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from clara_rt.bench import checkout_env, process_rss_mb, server_footprint
from clara_rt.client import Client
from tests.conftest import need_peer
from tests.data.chest_dicom import write_chest_series
from tests.dicom_peers import echoscu, storescp, storescu
from tests.dicom_peers import free_port as free_dicom_port
from tests.footprint import heavy_in, server_modules
from tests.server_process import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
PIP_CACHE = Path.home() / ".cache" / "clara-rt" / "pip"
SHAPE = (24, 64, 64)
TOKEN = "edge-token"
AE_TITLE = "CT-LUNG-SEG"
TARGET_RSS_MB = 80.0
ARTIFACTS = ROOT / "test-artifacts" / "edge"
MEASURED: dict[str, float] = {}  # printed and written to ARTIFACTS by the last test
# What systemd gives a service: no PYTHONPATH, no virtualenv, nothing of the user's shell.
SERVICE_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                    "HOME": str(Path.home())}


@pytest.fixture(autouse=True, scope="module")
def _need_tools() -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None
              and importlib.util.find_spec("fastapi") is not None,
              "pynetdicom and FastAPI (pip install 'clara-rt[server,dicom-net]')")
    need_peer(shutil.which("sha256sum") is not None, "sha256sum (coreutils)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clara-rt package`` of ct-lung-seg for this machine (real pip, cached wheels)."""
    folder = tmp_path_factory.mktemp("package") / "ct-lung-seg"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "clara_rt.cli", "package", str(CT_LUNG_SEG), "-o", str(folder)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**checkout_env(), "PIP_CACHE_DIR": str(PIP_CACHE)})
    if proc.returncode != 0 and re.search(r"NewConnectionError|Network is unreachable|"
                                          r"Temporary failure in name resolution", proc.stderr):
        need_peer(False, "a package index for pip download")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    MEASURED["package_s"] = time.monotonic() - started
    print(f"\n[edge] clara-rt package: {MEASURED['package_s']:.1f} s\n{proc.stderr}"
          f"{proc.stdout}")
    assert re.search(r"^clara-rt: \d+ wheels, [\d.]+ MB in", proc.stderr, re.M), proc.stderr
    return folder


@pytest.fixture(scope="module")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sh install.sh --prefix PREFIX`` with pip unable to reach anything but the wheelhouse."""
    prefix = tmp_path_factory.mktemp("edge") / "opt"
    started = time.monotonic()
    proc = subprocess.run(["sh", str(bundle / "install.sh"), "--prefix", str(prefix)],
                          env=_offline_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    MEASURED["install_s"] = time.monotonic() - started
    print(f"\n[edge] sh install.sh: {MEASURED['install_s']:.1f} s\n{proc.stderr}")
    assert "systemctl enable --now clara-rt.service clara-rt-dicom.service" in proc.stderr
    check = subprocess.run([str(prefix / "venv" / "bin" / "clara-rt"), "package", "--check",
                            str(bundle)], env=SERVICE_BASE_ENV, capture_output=True, text=True,
                           timeout=120, check=False)
    assert check.returncode == 0 and check.stdout.startswith(f"OK: {bundle}: "), check.stderr
    return prefix


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chest") / "series"
    write_chest_series(folder, shape=SHAPE)
    return folder


def test_bundle_holds_what_the_pipeline_needs_and_nothing_else(bundle: Path) -> None:
    result = _clara("package", "--check", str(bundle))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {bundle}: ")
    assert "(pipeline ct-lung-seg, clara-rt 0.1.0, Python" in result.stdout
    archive = bundle.with_name(bundle.name + ".tar.gz")
    assert _clara("package", "--check", str(archive)).returncode == 0
    names = {p.name.split("-")[0].lower() for p in (bundle / "wheelhouse").glob("*.whl")}
    assert {"clara_rt", "numpy", "scipy", "fastapi", "uvicorn", "pynetdicom"} <= names
    assert not names & {"onnxruntime", "cupy_cuda12x", "torch", "tritonclient", "pytest",
                        "mypy", "playwright"}
    MEASURED["bundle_mb"] = sum(p.stat().st_size for p in bundle.rglob("*")
                                if p.is_file()) / (1 << 20)
    MEASURED["archive_mb"] = archive.stat().st_size / (1 << 20)
    MEASURED["wheels"] = float(len(names))


def test_check_names_a_damaged_file(bundle: Path) -> None:
    unit = bundle / "systemd" / "clara-rt.service"
    original = unit.read_bytes()
    unit.write_bytes(original.replace(b"Restart=on-failure", b"Restart=on-abort!!"))
    try:
        result = _clara("package", "--check", str(bundle))
    finally:
        unit.write_bytes(original)
    assert result.returncode == 1
    assert result.stderr == (f"clara-rt: error: {bundle}: 1 problem(s):\n"
                             "  changed: systemd/clara-rt.service (sha256 differs)\n")
    assert _clara("package", "--check", str(bundle)).returncode == 0


def test_installed_services_turn_a_ct_series_into_a_seg_at_the_pacs(
        installed: Path, bundle: Path, chest: Path, tmp_path: Path) -> None:
    port, dicom_port = free_port(), free_dicom_port()
    _edit(installed / "etc" / "server.env", {r"(?m)^CLARA_RT_PORT=.*$": f"CLARA_RT_PORT={port}",
                                             r"(?m)^CLARA_RT_TOKEN=$": f"CLARA_RT_TOKEN={TOKEN}"})
    server_unit = _unit(installed / "etc" / "systemd" / "clara-rt.service")
    dicom_unit = _unit(installed / "etc" / "systemd" / "clara-rt-dicom.service")
    with storescp(tmp_path / "pacs") as pacs_port:
        _point_adapter_at(installed / "etc" / "adapter.yaml", dicom_port, pacs_port)
        with _service(server_unit, "ExecStart", tmp_path / "serve.log") as serve:
            cold = _wait_health(port, serve)
            post = _run_line(server_unit, "ExecStartPost")
            assert post.returncode == 0, post.stdout + post.stderr
            assert post.stdout.startswith("PIPELINE_ID: "), post.stdout
            time.sleep(1.0)
            registered_mb = process_rss_mb(serve.proc.pid)  # idle, holding its pipeline
            assert registered_mb <= TARGET_RSS_MB, f"{registered_mb:.1f} MB with ct-lung-seg"
            with _service(dicom_unit, "ExecStart", tmp_path / "dicom.log") as adapter:
                wait_for(lambda: echoscu(dicom_port, called="CLARA").returncode == 0, 30,
                         f"the adapter to listen:\n{_tail(tmp_path / 'dicom.log')}")
                started = time.monotonic()
                sent = storescu(dicom_port, chest, called=AE_TITLE)
                assert sent.returncode == 0, sent.stderr
                seg = wait_for(lambda: _seg_in(tmp_path / "pacs"), 120,
                               f"a SEG at the PACS:\n{_tail(tmp_path / 'dicom.log')}\n"
                               f"{_tail(tmp_path / 'serve.log')}")
                latency = time.monotonic() - started
                busy_mb = process_rss_mb(serve.proc.pid)
                assert _stop(adapter) == 0, _tail(tmp_path / "dicom.log")
            assert _stop(serve) == 0, _tail(tmp_path / "serve.log")
    ct = pydicom.dcmread(next(chest.glob("*.dcm")))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == ct.StudyInstanceUID
    assert "DICOM adapter stopped" in _tail(tmp_path / "dicom.log")
    MEASURED.update({"unit_cold_start_s": cold, "unit_registered_rss_mb": registered_mb,
                     "unit_after_job_rss_mb": busy_mb, "storescu_to_seg_s": latency})
    # The data directory outlives the process: a restart still knows the pipeline and the job.
    data = installed / "var" / "data"
    assert (data / "clara-rt.db").is_file()
    with _service(server_unit, "ExecStart", tmp_path / "serve-2.log") as serve:
        _wait_health(port, serve)
        client = Client(f"http://127.0.0.1:{port}", TOKEN, timeout=10)
        [job] = client.list_jobs()
        assert (job["pipeline"], job["state"], job["status"]) == (
            "ct-lung-seg", "stopped", "healthy")
        assert [p["name"] for p in client.list_pipelines()] == ["ct-lung-seg"]
        assert _stop(serve) == 0


def test_reinstalling_keeps_edited_settings_and_the_data(installed: Path, bundle: Path,
                                                        tmp_path: Path) -> None:
    """An upgrade is running install.sh again over the same prefix: the venv is replaced, the
    user's edited settings stay (the bundle's version is put beside them as ``.new``), and the
    jobs and results under ``var/`` are untouched. Runs after the services test, which edited
    ``server.env`` and left a finished job."""
    env_file = installed / "etc" / "server.env"
    edited = env_file.read_text()
    assert f"CLARA_RT_TOKEN={TOKEN}" in edited
    database = installed / "var" / "data" / "clara-rt.db"
    before = database.read_bytes()
    proc = subprocess.run(["sh", str(bundle / "install.sh"), "--prefix", str(installed)],
                          env=_offline_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"replacing {installed}/venv" in proc.stderr
    assert f"kept {env_file}; this bundle's version is {env_file}.new" in proc.stderr
    assert env_file.read_text() == edited
    assert "CLARA_RT_TOKEN=\n" in (installed / "etc" / "server.env.new").read_text()
    assert database.read_bytes() == before
    found = re.search(r"(?m)^CLARA_RT_PORT=(\d+)$", edited)
    assert found is not None, edited
    port = int(found.group(1))
    unit = _unit(installed / "etc" / "systemd" / "clara-rt.service")
    with _service(unit, "ExecStart", tmp_path / "serve.log") as serve:
        _wait_health(port, serve)
        [job] = Client(f"http://127.0.0.1:{port}", TOKEN, timeout=10).list_jobs()
        assert job["status"] == "healthy"
        assert _stop(serve) == 0


def test_an_installed_clara_rt_needs_a_wheel_to_package(installed: Path, bundle: Path,
                                                        tmp_path: Path) -> None:
    proc = subprocess.run([str(installed / "venv" / "bin" / "clara-rt"), "package",
                           str(bundle / "pipeline" / "pipeline.yaml"), "-o", str(tmp_path / "b")],
                          env=SERVICE_BASE_ENV, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 1
    assert "clara-rt is not installed from a source checkout" in proc.stderr, proc.stderr
    assert "--clara-rt-wheel PATH" in proc.stderr and not (tmp_path / "b").exists()


def test_installed_server_footprint(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    python = str(installed / "venv" / "bin" / "python")
    env = {**SERVICE_BASE_ENV}
    modules, imported_from = server_modules(python, env, cwd=installed)
    assert imported_from.startswith(str(installed / "venv")), imported_from  # not the checkout
    assert any(m.startswith("clara_rt.server") for m in modules)
    assert heavy_in(modules) == []
    command = [str(installed / "venv" / "bin" / "clara-rt"), "serve", "--log-level", "warning"]
    bundle_runs = [server_footprint(command, env=env) for _ in range(3)]
    checkout_runs = [server_footprint([sys.executable, "-m", "clara_rt.cli", "serve",
                                       "--log-level", "warning"]) for _ in range(3)]
    MEASURED.update({
        "bundle_idle_rss_mb": statistics.median(r.rss_mb for r in bundle_runs),
        "bundle_cold_start_s": statistics.median(r.ready_s for r in bundle_runs),
        "checkout_idle_rss_mb": statistics.median(r.rss_mb for r in checkout_runs),
        "checkout_cold_start_s": statistics.median(r.ready_s for r in checkout_runs),
        "venv_mb": sum(p.stat().st_size for p in (installed / "venv").rglob("*")
                       if p.is_file() and not p.is_symlink()) / (1 << 20)})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "measurements.json").write_text(json.dumps(MEASURED, indent=2) + "\n")
    with capsys.disabled():
        print("\n[edge] " + ", ".join(f"{k} {v:.2f}" for k, v in MEASURED.items()))
    assert MEASURED["bundle_idle_rss_mb"] <= TARGET_RSS_MB


# --- helpers ------------------------------------------------------------------------------------


def _offline_env() -> dict[str, str]:
    """This environment with pip cut off from every index and from this machine's pip
    configuration: only the bundle's wheelhouse can serve."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull,
                  "PYTHON": getattr(sys, "_base_executable", sys.executable)}


def _clara(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *args], capture_output=True,
                          text=True, timeout=120, env=checkout_env(), check=False)


def _unit(path: Path) -> dict[str, list[str]]:
    """The ``Key=value`` lines of a unit file (repeated keys keep every value)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def _environment(unit: dict[str, list[str]]) -> dict[str, str]:
    """The environment systemd gives the unit: the base plus its ``EnvironmentFile``."""
    env = dict(SERVICE_BASE_ENV)
    for path in unit.get("EnvironmentFile", []):
        for line in Path(path).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return env


def _command(unit: dict[str, list[str]], key: str) -> list[str]:
    """``ExecStart``-style line -> argv, as systemd expands it: ``${X}`` inside a word, and a
    lone ``$X`` split at whitespace into zero or more words."""
    env = _environment(unit)
    [line] = unit[key]
    argv: list[str] = []
    for word in shlex.split(line):
        if re.fullmatch(r"\$[A-Za-z_]\w*", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def _run_line(unit: dict[str, list[str]], key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(unit, key), env=_environment(unit), capture_output=True,
                          text=True, timeout=120, cwd=unit["WorkingDirectory"][0], check=False)


@dataclass(frozen=True)
class _Running:
    proc: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the process was started


@contextlib.contextmanager
def _service(unit: dict[str, list[str]], key: str, log: Path) -> Iterator[_Running]:
    """Start a unit's ``ExecStart`` as systemd would; kill it at the end if still running."""
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(_command(unit, key), env=_environment(unit),
                                cwd=unit["WorkingDirectory"][0], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield _Running(proc, started)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_health(port: int, running: _Running) -> float:
    """Seconds from the process start to the first answer of ``/health``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, f"exited with {running.proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return time.monotonic() - running.started
        except OSError:
            time.sleep(0.02)
    raise AssertionError("the installed server did not answer /health within 60 s")


def _stop(running: _Running) -> int:
    """SIGTERM (the units' KillSignal) and wait; the exit status."""
    running.proc.send_signal(signal.SIGTERM)
    return running.proc.wait(timeout=60)


def _edit(path: Path, replacements: dict[str, str]) -> None:
    text = path.read_text()
    for pattern, value in replacements.items():
        text, count = re.subn(pattern, value, text)
        assert count == 1, f"{pattern!r} not found in {path}"
    path.write_text(text)


def _point_adapter_at(path: Path, port: int, pacs_port: int) -> None:
    """What the user does in etc/adapter.yaml: the port, and the commented destination filled
    in and switched on."""
    text = path.read_text()
    head, mark, tail = text.partition("# destinations:")
    assert mark, text
    head = re.sub(r"(?m)^  port: \d+", f"  port: {port}", head)
    head = re.sub(r"(?m)^  quiet-time: \d+", "  quiet-time: 1", head)
    head = head.replace("destinations: []", "destinations: [PACS]")
    tail = re.sub(r"(?m)^# ?", "", mark + tail)
    tail = (tail.replace("ae-title: PACS", "ae-title: PEERSCP")
            .replace("host: 192.0.2.10", "host: 127.0.0.1").replace("port: 104",
                                                                    f"port: {pacs_port}"))
    path.write_text(head + tail)


def _seg_in(folder: Path) -> pydicom.Dataset | None:
    for path in folder.glob("*.dcm"):
        try:
            found = pydicom.dcmread(path)
        except Exception:  # still being written
            continue
        if found.Modality == "SEG":
            return found
    return None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
