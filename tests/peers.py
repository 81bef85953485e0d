"""Real peer servers for tests and benchmarks: Triton and MLServer on 127.0.0.1.

:func:`triton_server` and :func:`mlserver_server` are context managers that start a server on free
loopback ports with the scripts in ``../shared/peers`` (next to the repository; override with
``CLARA_RT_PEERS_DIR``), wait until it and its models are ready, yield a :class:`PeerServer`
with its URLs, and stop it at the end, removing its ``/dev/shm`` leftovers. The servers run from
their own virtual environments, created on first use under ``CLARA_RT_PEERS_CACHE`` (default
``~/.cache/clara-rt/peers``; PyPI must be reachable then):

* Triton: ``nvidia-pytriton==0.7.0`` (its wheel carries ``tritonserver`` 2.51 and the Python
  backend) with ``numpy<2`` (the bundled backend returns empty outputs with numpy 2);
* MLServer: ``mlserver==1.7.1`` and ``onnxruntime``, run with ``MLSERVER_PARALLEL_WORKERS=0``.

When a server cannot be started, :func:`tests.conftest.need_peer` skips the test locally and
fails it in CI (``CLARA_RT_REQUIRE_PEERS=1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need_peer

ROOT = Path(__file__).resolve().parents[1]
TRITON_PACKAGES = ("nvidia-pytriton==0.7.0", "numpy<2")
MLSERVER_PACKAGES = ("mlserver==1.7.1", "onnxruntime")
TRITON_MODELS = ("double", "threshold_mask", "threshold_mask_2d")


@dataclass(frozen=True)
class PeerServer:
    """A running KServe-v2 server: where to reach it and where it logs."""

    name: str
    http_url: str
    grpc_url: str
    metrics_url: str
    pid: int
    log: Path


def peers_dir() -> Path:
    """Return the folder holding the peer scripts (``../shared/peers`` from the repository)."""
    return Path(os.environ.get("CLARA_RT_PEERS_DIR", ROOT.parent / "shared" / "peers"))


@contextlib.contextmanager
def triton_server(models: Path | None = None) -> Iterator[PeerServer]:
    """Run Triton 2.51 (CPU, Python backend) with ``models`` (default: the shared repository).

    The default repository has ``double``, ``threshold_mask`` and ``threshold_mask_2d``.
    """
    scripts = peers_dir() / "triton"
    _need_script(scripts / "start_triton.sh", "Triton")
    venv = _venv("triton", TRITON_PACKAGES)
    logs = Path(tempfile.mkdtemp(prefix="clara-rt-triton-"))
    pid, ports = 0, (0, 0, 0)
    for _ in range(2):  # a free port can be taken between the probe and the start
        ports = _free_ports(3)
        env = {**os.environ, "TRITON_VENV": str(venv), "TRITON_READY_TIMEOUT": "90",
               "TRITON_LOG": str(logs / "triton.log")}
        args = [str(scripts / "start_triton.sh"), *map(str, ports)]
        proc = _run([*args, *([str(models)] if models else [])], env, 150)
        if proc.returncode == 0:
            pid = int(proc.stdout.split()[-1])
            break
    if not pid:
        need_peer(False, f"Triton server (start_triton.sh failed: {_tail(proc.stderr)})")
    try:
        yield PeerServer("triton", f"http://127.0.0.1:{ports[0]}", f"grpc://127.0.0.1:{ports[1]}",
                         f"http://127.0.0.1:{ports[2]}", pid, logs / "triton.log")
    finally:
        _run([str(scripts / "stop_triton.sh"), str(pid)], dict(os.environ), 60)
        _clean_shm(f"triton_py_{ports[0]}_")
        _clean_shm(f"clara_rt_{os.getpid()}_")
        shutil.rmtree(logs, ignore_errors=True)


@contextlib.contextmanager
def mlserver_server(models: Path | None = None) -> Iterator[PeerServer]:
    """Run MLServer 1.7.1 with ``models`` (default: the shared ``mlserver_models``).

    The default models are ``doubler``, ``classifier`` and ``onnx_classifier``.
    """
    script = peers_dir() / "start_mlserver.sh"
    _need_script(script, "MLServer")
    venv = _venv("mlserver", MLSERVER_PACKAGES)
    work = Path(tempfile.mkdtemp(prefix="clara-rt-mlserver-"))
    (work / "metrics").mkdir()
    env = {**os.environ, "MLSERVER_BIN": str(venv / "bin" / "mlserver"), "READY_TIMEOUT": "60",
           "MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_METRICS_DIR": str(work / "metrics")}
    pid, ports = 0, (0, 0, 0)
    for _ in range(2):
        ports = _free_ports(3)
        proc = _run([str(script), *map(str, ports), str(models or peers_dir() / "mlserver_models"),
                     str(work / "mlserver.log")], env, 120)
        if proc.returncode == 0:
            pid = int(proc.stdout.split()[-1])
            break
    if not pid:
        shutil.rmtree(work, ignore_errors=True)
        need_peer(False, f"MLServer (start_mlserver.sh failed: {_tail(proc.stderr)})")
    try:
        yield PeerServer("mlserver", f"http://127.0.0.1:{ports[0]}",
                         f"grpc://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[2]}", pid,
                         work / "mlserver.log")
    finally:
        _stop(pid)
        _clean_shm(f"clara_rt_{os.getpid()}_")
        shutil.rmtree(work, ignore_errors=True)


# --- private ------------------------------------------------------------------------------


def _venv(name: str, packages: tuple[str, ...]) -> Path:
    """Return the cached venv ``name`` with ``packages``, creating it (once, under a lock)."""
    cache = Path(os.environ.get("CLARA_RT_PEERS_CACHE",
                                Path.home() / ".cache" / "clara-rt" / "peers"))
    cache.mkdir(parents=True, exist_ok=True)
    root, marker = cache / name, cache / name / ".clara-rt-packages"
    wanted = "\n".join(packages)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same venv
        if marker.exists() and marker.read_text() == wanted:
            return root
        shutil.rmtree(root, ignore_errors=True)
        steps = [[sys.executable, "-m", "venv", str(root)],
                 [str(root / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                  *(["--no-deps"] if name == "triton" else []), *packages]]
        for step in steps:
            proc = _run(step, dict(os.environ), 900)
            if proc.returncode:
                shutil.rmtree(root, ignore_errors=True)
                need_peer(False, f"{name} server venv ({' '.join(step[:3])}... failed: "
                                 f"{_tail(proc.stderr)})")
        marker.write_text(wanted)
    return root


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 1, "", str(exc))


def _need_script(path: Path, what: str) -> None:
    if not path.exists():
        need_peer(False, f"{what} ({path} not found; set CLARA_RT_PEERS_DIR)")


def _free_ports(n: int) -> tuple[int, ...]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its reaper may be slow


def _stop(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _clean_shm(prefix: str) -> None:
    for path in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def _tail(text: str, lines: int = 8) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"
