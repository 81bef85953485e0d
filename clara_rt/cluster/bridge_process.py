"""The bridge child process as the server sees it: :class:`BridgeProcess` starts one
(``python -m clara_rt.cluster.bridge FD``, :mod:`.bridge`) and talks to it over a socket pair;
:class:`BridgeSupervisor` keeps one running for a :class:`~.ray_runner.RayRunner`.

**Availability.** The supervisor says whether the cluster answers: a bridge's ``status`` report
sets it (with the node count, or the reason it is unavailable); no word for 10 s makes it
unavailable, and no word for 30 s (90 s until it first reports the cluster available) gets the
bridge killed. When a bridge ends, the runner is told why and a new one starts after a delay
that doubles each time (1 s up to 30 s) until a bridge reports the cluster available again.

**Threads and lock.** One supervising thread (``clara-rt-cluster``) and one reader thread per
bridge (``clara-rt-cluster-reader``). The supervisor's state (``bridge``, ``available``,
``nodes``, ``reason``, ``closing``) is guarded by the runner's lock, which it shares; the
runner's callbacks are called without it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import clara_rt

__all__ = ["BridgeProcess", "BridgeSupervisor"]

log = logging.getLogger("clara_rt.cluster")

_UNAVAILABLE_AFTER = 10.0  # seconds without word from the bridge: the cluster counts as gone
_KILL_AFTER = 30.0  # ... and then the bridge is replaced
_CONNECT_TIMEOUT = 90.0  # seconds a new bridge may take to report for the first time


class BridgeProcess:
    """The bridge child process and our end of its socket.

    Args:
        settings: Sent to the bridge first (``address``, ``workers``, ``services``, ``grace``,
            ``refresh``; see :class:`~clara_rt.cluster.bridge.Bridge`).
        env: Extra environment of the child process.

    Raises:
        OSError: The process could not be started.
    """

    def __init__(self, settings: dict[str, Any], env: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(clara_rt.__file__).resolve().parents[1])
        environ = {**os.environ, **env}
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, environ.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clara_rt.cluster.bridge", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=environ, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            theirs.close()
        self.address = str(settings["address"])
        self.conn = Connection(ours.detach())
        self.started = self.heard = time.monotonic()
        self.connected = False
        self._lock = threading.Lock()
        self.send(settings)

    def send(self, message: Any) -> bool:
        """Send a message (thread-safe); return False when the connection is closed."""
        with self._lock:
            try:
                self.conn.send(message)
                return True
            except (OSError, ValueError):
                return False

    def listen(self, handle: Callable[[tuple[Any, ...]], None]) -> str:
        """Pass each message to ``handle`` until the connection closes, then reap the process.

        Returns:
            Why the bridge ended: the reason of its last "unavailable" status, else the
            process's exit status.
        """
        reason = None
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            self.heard = time.monotonic()
            if message[0] == "status" and not message[1]["available"]:
                reason = str(message[1]["reason"])
            try:
                handle(message)
            except Exception:
                log.exception("cluster %s: handling %r failed", self.address, message[0])
        self.conn.close()
        code = self._reap()
        return reason or (f"the connection to the Ray cluster at {self.address} was lost "
                          f"(the driver process ended with status {code})")

    def stop(self) -> None:
        """Ask the bridge to close (its actors go with it); kill it after 15 s."""
        self.send(("close",))
        try:
            self.proc.wait(15.0)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(10.0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def _reap(self) -> int:
        try:
            return self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait(10.0)


class BridgeSupervisor:
    """Keeps one bridge process running and says whether the cluster answers through it.

    Args:
        settings: Sent to each new bridge (see :class:`BridgeProcess`).
        env: Extra environment of the bridge processes.
        lock: The runner's lock; guards this object's state too.
        on_message: ``on_message(bridge, message)`` for each message of a bridge.
        on_ended: ``on_ended(bridge, reason)`` once a bridge's connection closed and its
            process ended.
    """

    def __init__(self, settings: dict[str, Any], env: Mapping[str, str],
                 lock: threading.Condition,
                 on_message: Callable[[BridgeProcess, tuple[Any, ...]], None],
                 on_ended: Callable[[BridgeProcess, str], None]) -> None:
        self.address = str(settings["address"])
        self.bridge: BridgeProcess | None = None
        self.available = False
        self.nodes = 0
        self.reason: str | None = "connecting"
        self.closing = False
        self._settings = settings
        self._env = env
        self._lock = lock
        self._on_message = on_message
        self._on_ended = on_ended
        self._next_spawn = 0.0
        self._backoff = 1.0
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._supervise, name="clara-rt-cluster",
                                        daemon=True)

    def start(self) -> None:
        """Start supervising: the first bridge starts within 0.25 s."""
        self._thread.start()

    def note_status(self, bridge: BridgeProcess, info: dict[str, Any]) -> bool:
        """Take a bridge's status report (under the lock); return whether the cluster is
        available."""
        self.available = bool(info["available"])
        self.nodes = int(info["nodes"])
        self.reason = info.get("reason")
        if not self.available:
            return False
        if not bridge.connected:
            log.info("cluster %s: connected", self.address)
        bridge.connected = True
        self._backoff = 1.0
        return True

    def forget(self, bridge: BridgeProcess, reason: str) -> bool:
        """Forget a bridge that ended and schedule the next (under the lock).

        Returns:
            False when ``bridge`` is not the current one (nothing changes).
        """
        if self.bridge is not bridge:
            return False
        self.bridge = None
        self.available = False
        self.reason = reason
        self._retry_later()
        return True

    def retry_in(self) -> float:
        """Seconds until the next bridge starts."""
        return self._next_spawn - time.monotonic()

    def close(self) -> None:
        """Stop supervising, stop the bridge and wait for its reader (not under the lock)."""
        with self._lock:
            self.closing = True
            bridge = self.bridge
            self._lock.notify_all()
        self._stop.set()
        self._thread.join(timeout=10.0)
        if bridge is not None:
            bridge.stop()
        for reader in self._readers:
            reader.join(timeout=10.0)

    def _supervise(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                bridge = self.bridge
                if bridge is None:
                    if time.monotonic() >= self._next_spawn and not self.closing:
                        self._spawn()
                    continue
                silent = time.monotonic() - bridge.heard
                if bridge.connected and silent > _UNAVAILABLE_AFTER and self.available:
                    self.available = False
                    self.reason = (f"no word from the Ray cluster at {self.address} for "
                                   f"{silent:.0f} s")
                    log.warning("cluster %s: %s", self.address, self.reason)
            limit = _KILL_AFTER if bridge.connected else _CONNECT_TIMEOUT
            if silent > limit:
                log.error("cluster %s: the driver process gave no word for %.0f s; replacing it",
                          self.address, silent)
                bridge.kill()

    def _spawn(self) -> None:
        """Start a bridge (under the lock)."""
        try:
            bridge = BridgeProcess(self._settings, self._env)
        except OSError as exc:
            self.reason = f"the Ray driver process could not start: {exc}"
            self._retry_later()
            return
        self.bridge = bridge
        reader = threading.Thread(target=self._read, args=(bridge,),
                                  name="clara-rt-cluster-reader", daemon=True)
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        reader.start()

    def _read(self, bridge: BridgeProcess) -> None:
        reason = bridge.listen(lambda message: self._on_message(bridge, message))
        self._on_ended(bridge, reason)

    def _retry_later(self) -> None:
        self._next_spawn = time.monotonic() + self._backoff
        self._backoff = min(30.0, self._backoff * 2)
