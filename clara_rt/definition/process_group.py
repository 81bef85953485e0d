"""Command processes tied to the life of the process that started them.

Each command runs in a process group (a session) of its own, so cancel, timeout and the end of
the command signal everything it started. Two more guards keep a crash from leaving work behind:

* ``PR_SET_PDEATHSIG`` (Linux): the command's first process gets SIGKILL as soon as the thread
  that started it dies, which includes ``kill -9`` of the server.
* Its group id is written to ``<operator folder>/command.pgid`` while it runs. The command's own
  children do not get the death signal, so a restarted server calls :func:`reap_stale_groups` on
  the job's workspace before running the job again: every process of a recorded group whose
  environment still names that operator folder is killed. The environment check keeps a group id
  reused by some other program (after a reboot) safe from us.
* A process that left the group (``setsid``, a daemon's double fork) is found by the same
  environment entry (``NVIDIA_CLARA_WORKSPACE=<operator folder>``) when the command ends and at
  restart, and killed. Only one that also clears its environment escapes; closing that needs a
  PID namespace or cgroup per command, which this process does not set up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["PGID_FILE", "kill_group", "reap_stale_groups", "start_group", "terminate"]

PGID_FILE = "command.pgid"
_KILL_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1
_MARKER = b"NVIDIA_CLARA_WORKSPACE="


def start_group(argv: list[str], env: dict[str, str], folder: Path, stdout: int | IO[bytes],
                stderr: int | IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``folder`` in a new session, dying with this thread where possible.

    Its group id goes to ``folder/command.pgid`` (removed by :func:`kill_group`).
    """
    proc = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=stderr, start_new_session=True,
                            preexec_fn=_death_signal())  # prctl only: safe after fork
    with contextlib.suppress(OSError):
        (folder / PGID_FILE).write_text(f"{proc.pid}\n")
    return proc


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after a grace period."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_group(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """SIGKILL whatever is left of the group (as a container's end would) and forget it.

    Processes that left the group (``setsid``, a daemon's double fork) but still carry the
    operator folder in their environment are killed too.
    """
    _signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()
    _kill_marked(_markers(folder))
    with contextlib.suppress(OSError):
        (folder / PGID_FILE).unlink()


def reap_stale_groups(workspace: Path, timeout: float = 5.0) -> list[int]:
    """Kill command processes a dead process left running under ``workspace``.

    Looks for ``<workspace>/<operator>/command.pgid``; kills the processes of each recorded
    group that still carry that operator folder in their environment, waits until they are gone
    (at most ``timeout`` seconds) and removes the records.

    Returns:
        The ids of the processes killed.
    """
    killed: list[int] = []
    for record in sorted(workspace.glob(f"*/{PGID_FILE}")):
        try:
            pgid = int(record.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            record.unlink(missing_ok=True)
            continue
        markers = _markers(record.parent)
        for pid in _group_members(pgid):
            if any(_environ_has(pid, marker) for marker in markers):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        killed += _kill_marked(markers)  # those that left the group (setsid)
        record.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    return killed


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` setting PR_SET_PDEATHSIG to SIGKILL (``None`` off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(137)

    return preexec


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl`` (looked up once: ``find_library`` may run ``ldconfig``), or ``None``."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        pass
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group outlives its leader while children remain; Linux never reuses its id meanwhile.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _markers(folder: Path) -> set[bytes]:
    return {b"\x00" + _MARKER + os.fsencode(str(path)) + b"\x00"
            for path in (folder.absolute(), folder.resolve())}


def _kill_marked(markers: set[bytes]) -> list[int]:
    """SIGKILL every other process whose environment names the operator folder; their ids."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if any(_environ_has(pid, marker) for marker in markers):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        return marker in b"\x00" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
