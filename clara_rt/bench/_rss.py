"""The ``rss`` scenario: resident memory of a fresh process with clara-rt loaded."""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, _quiet, _ratio, machine_info
from clara_rt.bench._workload import checkout_env

_RSS_SNIPPETS = {
    "numpy (baseline)": "import numpy",
    "clara-rt import": "import clara_rt",
    "clara-rt Runtime()": "import clara_rt\nrt = clara_rt.Runtime()",
}
_RSS_PRINT = ("\nimport re\nwith open('/proc/self/status') as f:\n"
              "    print(re.search(r'VmRSS:\\s+(\\d+)', f.read()).group(1))\n")


def idle_rss(*, repeat: int = 3, progress: Progress | None = None) -> BenchRecord:
    """Measure resident memory (VmRSS) of a fresh interpreter after each import / setup.

    Runs ``sys.executable -c`` with: ``import numpy`` (baseline), ``import clara_rt``, and
    ``import clara_rt; rt = Runtime()`` (one worker per CPU, idle); with FastAPI installed, also
    an idle ``clara-rt serve`` against a one-route FastAPI + uvicorn app (its baseline). Median
    of ``repeat`` runs.
    Linux only (reads ``/proc/self/status``).

    Args:
        repeat: Processes per snippet.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    figures: dict[str, dict[str, float]] = {}
    say(f"rss: {len(_RSS_SNIPPETS)} snippets x {repeat} processes")
    for name, snippet in _RSS_SNIPPETS.items():
        tail = "\nrt.close()\n" if "rt =" in snippet else ""
        kb = [_subprocess_int(snippet + _RSS_PRINT + tail) for _ in range(repeat)]
        figures[name] = {"rss_mb": float(np.median(kb)) / 1024}
    base = figures["numpy (baseline)"]["rss_mb"]
    for fig in figures.values():
        fig["delta_mb"] = fig["rss_mb"] - base
    rt_mb = figures["clara-rt Runtime()"]["rss_mb"]
    ratios = {"numpy / clara-rt Runtime() rss_mb": _ratio(base, rt_mb)}
    if importlib.util.find_spec("fastapi") and importlib.util.find_spec("uvicorn"):
        say("rss: idle clara-rt serve vs a one-route FastAPI app")
        hello = [server_footprint([sys.executable, "-c", _HELLO_APP]).rss_mb
                 for _ in range(repeat)]
        serve = [server_footprint([sys.executable, "-m", "clara_rt.cli", "serve", "--log-level",
                                   "warning"]).rss_mb for _ in range(repeat)]
        figures["FastAPI+uvicorn hello app (baseline)"] = {"rss_mb": float(np.median(hello))}
        figures["clara-rt serve (idle)"] = {"rss_mb": float(np.median(serve))}
        for name in ("FastAPI+uvicorn hello app (baseline)", "clara-rt serve (idle)"):
            figures[name]["delta_mb"] = figures[name]["rss_mb"] - base
        ratios["hello app / clara-rt serve rss_mb"] = _ratio(float(np.median(hello)),
                                                             float(np.median(serve)))
    return BenchRecord(
        scenario="rss",
        title=f"idle VmRSS of a fresh process, median of {repeat}",
        machine=machine_info(),
        params={"repeat": repeat},
        figures=figures,
        ratios=ratios,
        notes="delta_mb is against the numpy-only process; clara-rt imports numpy itself.")


@dataclass(frozen=True)
class ServerFootprint:
    """What :func:`server_footprint` measured of one server process.

    Attributes:
        rss_mb: VmRSS 1 s after ``/health`` first answered, in MiB.
        ready_s: Seconds from starting the process to the first answer of ``/health``.
    """

    rss_mb: float
    ready_s: float


def server_footprint(command: list[str], *, env: dict[str, str] | None = None,
                     timeout: float = 60.0) -> ServerFootprint:
    """Start an HTTP server child on a free port; its cold start and idle memory.

    ``command`` is a ``clara-rt serve`` (``--port`` and a temporary ``--data`` are appended) or
    a ``python -c`` app that takes the port as its argument. ``env`` defaults to
    :func:`checkout_env` (this checkout's clara-rt); pass the environment of an installed one to
    measure that instead. Linux only (reads ``/proc/<pid>/status``).

    Raises:
        RuntimeError: The server exited or did not answer within ``timeout`` seconds.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        args = ([*command, str(port)] if "-c" in command
                else [*command, "--port", str(port), "--data", data])
        started = time.monotonic()
        proc = subprocess.Popen(args, env=checkout_env() if env is None else env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = started + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{' '.join(args)} did not start") from None
                    time.sleep(0.02)
            ready = time.monotonic() - started
            time.sleep(1.0)
            return ServerFootprint(rss_mb=process_rss_mb(proc.pid), ready_s=ready)
        finally:
            proc.terminate()
            proc.wait(30)


def process_rss_mb(pid: int) -> float:
    """VmRSS of process ``pid`` in MiB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"VmRSS:\s+(\d+)", status.read())
    if match is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return int(match.group(1)) / 1024


# --- private ------------------------------------------------------------------------------

_HELLO_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _subprocess_int(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=checkout_env(), timeout=120).stdout
    match = re.search(r"(\d+)\s*$", out)
    if match is None:
        raise RuntimeError(f"no number in the output of the rss probe: {out!r}")
    return int(match.group(1))
