"""Run a Clara operator that has only a ``container.command``, as a subprocess on this host.

Clara Deploy ran each operator in its own container, with every ``input``/``output`` ``path``
mounted as a volume. clara-rt runs the command directly instead and maps each container path to
a folder in the job's workspace (``Runtime.submit(..., workspace=DIR)``)::

    <workspace>/<operator>/                 the operator's folder: its working directory
                                            and HOME
        stdout.log, stderr.log              what the command printed (the last
                                            CLARA_RT_LOG_LIMIT bytes of each, see logtail.py)
        .tmp/                               its TMPDIR
        command.pgid                        its process group while it runs (see process_group.py)
        <output port>/                      one empty folder per output port, emitted downstream

Inputs are the folders received on the input ports (an upstream operator's output folder, or
the job's input folder from the payload). Every container path in the command's arguments and
in the ``variables`` values is rewritten to its host folder before the command starts. The
command runs in a process group of its own; whatever it leaves running there is killed when it
exits, as the end of its container would, and it dies with the process that started it.

The command's environment is built from scratch (nothing of this process's environment is passed
on but ``PATH`` and ``CUDA_VISIBLE_DEVICES``; see :class:`CommandOperator`), so no server secret
reaches it. Job values in the command are data, never shell text (see ``_argv.py``).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import selectors
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clara_rt.definition._argv import (
    VAR_PREFIX,
    code_problem,
    fill_argument,
    fill_script,
    script_index,
)
from clara_rt.definition.logtail import TailLog, log_limit
from clara_rt.definition.process_group import kill_group, start_group, terminate
from clara_rt.errors import JobCancelledError, PipelineError
from clara_rt.job import Context
from clara_rt.operator import Inputs, Operator, OperatorSpec, Outputs
from clara_rt.ports import PortSpec

__all__ = ["CommandOperator"]

log = logging.getLogger("clara_rt.command")

_JOB_ID_TOKEN = "${{JOB_ID}}"
_POLL_S = 0.02
_STDERR_TAIL_LINES = 20
_PATH_CHARS = r"-\w.~"  # characters that continue a path component (besides "/")
_SHELL_UNSAFE = re.compile(r"[^\w@%+=:,./-]")  # as shlex.quote decides what needs quoting
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSED_ON = ("CUDA_VISIBLE_DEVICES",)  # taken from this process's environment when set


class CommandOperator(Operator):
    """A Clara operator run as a subprocess, with its folder ports mapped into the workspace.

    The command's environment is exactly this (nothing else of ``os.environ``, so no token or
    other secret of the server reaches it):

    * ``PATH`` (this process's, or a system default), ``CUDA_VISIBLE_DEVICES`` and the
      variables named in ``CLARA_RT_COMMAND_ENV`` (``A,B``) when they are set here,
      ``HOME`` (the operator's folder), ``TMPDIR`` (``<operator folder>/.tmp``),
      ``LANG`` and ``LC_ALL`` (``C.UTF-8``);
    * the operator's ``variables`` (container paths rewritten), then its service
      ``connections`` (e.g. ``NVIDIA_CLARA_TRTISURI``);
    * ``CLARA_VAR_<NAME>`` for each job value in ``values``;

    * ``NVIDIA_CLARA_JOBID``: the job id; ``NVIDIA_CLARA_JOBNAME``: the job's name (default
      ``<pipeline>-<job id>``)
      (the names Clara Deploy's pipeline driver gave operator containers).
    * ``NVIDIA_CLARA_INPUTPATHS`` / ``NVIDIA_CLARA_OUTPUTPATHS``: ``port:host_path`` pairs
      joined by ``;``, following the ``name:path`` convention Clara operators parse
      (``value.split(":")[1]`` for a single port); the paths are host folders, not mount points.
    * ``NVIDIA_CLARA_WORKSPACE``: the operator's folder (clara-rt's own; Clara had no such name).

    Args:
        name: Operator name, unique in its pipeline.
        command: The program and its arguments (no shell unless the command is one, such as
            ``["/bin/sh", "-c", "tool -i /input"]``). ``${{JOB_ID}}`` becomes the job id.
        inputs: ``(port, container path)`` per input folder, e.g. ``("input", "/input/")``.
        outputs: ``(port, container path)`` per output folder.
        variables: Environment variables from the definition's ``variables:``.
        connections: Environment variables naming services, e.g. the Triton URL.
        timeout: Seconds the command may run before it is killed (``None``: no limit).
        source: ``"file:line"`` of the definition, quoted in error messages.
        values: Job values behind the ``${{NAME}}`` tokens left in ``command``: each reaches
            the command as data (an argument, or ``"$CLARA_VAR_NAME"`` in a shell script).
        log_limit: Bytes kept of stdout and of stderr (their tail); ``None``:
            ``CLARA_RT_LOG_LIMIT`` or 4 MiB.

    Raises:
        PipelineError: an empty command, a container path that is not absolute or is
            declared twice, or a job value in interpreter code (``python -c "...${{V}}"``).
    """

    def __init__(self, name: str, /, *, command: Sequence[str],
                 inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]],
                 variables: Mapping[str, str] | None = None,
                 connections: Mapping[str, str] | None = None,
                 timeout: float | None = None, source: str = "",
                 values: Mapping[str, str] | None = None, log_limit: int | None = None) -> None:
        super().__init__(name)
        if isinstance(command, str) or not command:
            raise PipelineError(f"operator '{name}': command must be a non-empty list of "
                                f"strings, got {command!r}{_where(source)}")
        if timeout is not None and not timeout > 0:
            raise PipelineError(f"operator '{name}': timeout must be > 0 seconds or None, "
                                f"got {timeout!r}{_where(source)}")
        self.command = tuple(str(arg) for arg in command)
        self.input_paths = tuple((port, _container_path(name, path, source))
                                 for port, path in inputs)
        self.output_paths = tuple((port, _container_path(name, path, source))
                                  for port, path in outputs)
        self.variables = {str(k): str(v) for k, v in (variables or {}).items()}
        self.connections = {str(k): str(v) for k, v in (connections or {}).items()}
        self.timeout = timeout
        self.source = source
        self.values = {str(k): str(v) for k, v in (values or {}).items()}
        problem = code_problem(self.command, self.values)
        if problem is not None:
            raise PipelineError(f"operator '{name}': {problem}{_where(source)}")
        self.log_limit = log_limit
        declared = [path for _, path in (*self.input_paths, *self.output_paths)]
        twice = sorted({path for path in declared if declared.count(path) > 1})
        if twice:
            raise PipelineError(f"operator '{name}' declares container path "
                                f"{', '.join(twice)} more than once{_where(source)}")
        # Longest first, so that /app/in/lung is replaced before /app/in can claim its prefix.
        alternatives = "|".join(re.escape(p) for p in sorted(declared, key=len, reverse=True))
        alternatives = alternatives or "(?!)"  # no folders: match nothing
        self._pattern = re.compile(f"(?<![{_PATH_CHARS}/])(?:{alternatives})(?![{_PATH_CHARS}])")

    def setup(self, spec: OperatorSpec) -> None:
        """Declare one folder (``kind="path"``) port per declared input and output."""
        for port, path in self.input_paths:
            spec.input(PortSpec(port, kind="path", description=f"mounted at {path}"))
        for port, path in self.output_paths:
            spec.output(PortSpec(port, kind="path", description=f"mounted at {path}"))

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Run the command once for this job and emit each output port's folder.

        Raises:
            RuntimeError: no workspace, an unusable folder, the executable was not found, or
                the command exited with a non-zero status (message has the stderr tail).
            TimeoutError: the command ran past ``timeout`` (it was killed).
            JobCancelledError: the job was stopped while the command ran (it was killed).
        """
        folder = self._operator_folder(context)
        in_hosts = self._input_folders(inputs)
        out_hosts = {port: _fresh_folder(self.name, folder / port) for port, _ in
                     self.output_paths}
        hosts = {path: in_hosts[port] for port, path in self.input_paths if port in in_hosts}
        hosts.update({path: out_hosts[port] for port, path in self.output_paths})
        job_id = str(context.job_id)
        self._check_shell_safe(hosts, job_id)
        argv = self._argv(hosts, job_id)
        env = self._environment(context, hosts, in_hosts, out_hosts, folder)
        real = folder.resolve()
        self._run(argv, env, folder, context)
        self._check_outputs_stayed(real, folder, out_hosts)
        for port, host in out_hosts.items():
            outputs.emit(port, host)

    # --- private --------------------------------------------------------------------------

    def _operator_folder(self, context: Context) -> Path:
        if context.workspace is None:
            raise RuntimeError(
                f"operator '{self.name}' runs a command and needs a job workspace to map its "
                f"folders into; submit the job with Runtime.submit(..., workspace=DIR) or run "
                f"it with `clara-rt run --output DIR`{_where(self.source)}")
        folder = Path(context.workspace).absolute() / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _input_folders(self, inputs: Inputs) -> dict[str, Path]:
        folders: dict[str, Path] = {}
        for port, _ in self.input_paths:
            value = inputs.get(port)
            if value is None:
                continue
            host = Path(os.fspath(value)).absolute()
            if not host.exists():
                raise RuntimeError(f"input '{port}' of operator '{self.name}' is {host}, which "
                                   f"does not exist{_where(self.source)}")
            folders[port] = host
        return folders

    def _check_outputs_stayed(self, real: Path, folder: Path, out_hosts: Mapping[str, Path]
                              ) -> None:
        """Refuse outputs the command swapped for links (issue 16.1): results are collected
        from real folders inside the operator's folder only, never from where a link points."""
        moved = [port for port, host in out_hosts.items()
                 if host.is_symlink() or not host.is_dir() or host.resolve() != real / port]
        if folder.resolve() != real or moved:
            raise RuntimeError(
                f"the command of operator '{self.name}' replaced its folder or its output "
                f"folder(s) {', '.join(moved) or '(all)'} with a link or a file; results are "
                f"only collected from real folders{_where(self.source)}")

    def _argv(self, hosts: Mapping[str, Path], job_id: str) -> list[str]:
        script = script_index(self.command)
        return [self._rewrite(fill_script(arg, self.values) if i == script
                              else fill_argument(arg, self.values), hosts, job_id)
                for i, arg in enumerate(self.command)]

    def _rewrite(self, text: str, hosts: Mapping[str, Path], job_id: str) -> str:
        text = text.replace(_JOB_ID_TOKEN, job_id)
        return self._pattern.sub(lambda m: str(hosts.get(m.group(0), m.group(0))), text)

    def _check_shell_safe(self, hosts: Mapping[str, Path], job_id: str) -> None:
        # A folder pasted into a `sh -c` script is split at spaces and expanded by the shell.
        index = script_index(self.command)
        if index is None:
            return
        script = self.command[index].replace(_JOB_ID_TOKEN, job_id)
        used = {m.group(0) for m in self._pattern.finditer(script)}
        unsafe = sorted(str(hosts[p]) for p in used
                        if p in hosts and _SHELL_UNSAFE.search(str(hosts[p])))
        if unsafe:
            raise RuntimeError(f"operator '{self.name}' pastes folders into a shell script, but "
                               f"{', '.join(unsafe)} holds spaces or shell characters; use "
                               f"plain folder names for the workspace and inputs"
                               f"{_where(self.source)}")

    def _environment(self, context: Context, hosts: Mapping[str, Path],
                     in_hosts: Mapping[str, Path], out_hosts: Mapping[str, Path],
                     folder: Path) -> dict[str, str]:
        job_id = str(context.job_id)
        tmp = folder / ".tmp"
        tmp.mkdir(exist_ok=True)
        env = {"PATH": os.environ.get("PATH") or _DEFAULT_PATH, "HOME": str(folder),
               "TMPDIR": str(tmp), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        env.update({k: os.environ[k] for k in _passed_on() if k in os.environ})
        env.update({k: self._rewrite(v, hosts, job_id) for k, v in self.variables.items()})
        env.update(self.connections)
        env.update({VAR_PREFIX + k: self._rewrite(v, hosts, job_id)
                    for k, v in self.values.items()})
        env.update({
            "NVIDIA_CLARA_JOBID": job_id,
            "NVIDIA_CLARA_JOBNAME": getattr(context, "job_name", f"{context.pipeline}-{job_id}"),
            "NVIDIA_CLARA_INPUTPATHS": ";".join(f"{p}:{h}" for p, h in in_hosts.items()),
            "NVIDIA_CLARA_OUTPUTPATHS": ";".join(f"{p}:{h}" for p, h in out_hosts.items()),
            "NVIDIA_CLARA_WORKSPACE": str(folder),
        })
        return env

    def _run(self, argv: list[str], env: dict[str, str], folder: Path,
             context: Context) -> None:
        started = time.monotonic()
        limit = log_limit() if self.log_limit is None else self.log_limit
        logs = _Pump(TailLog(folder / "stdout.log", limit), TailLog(folder / "stderr.log", limit))
        try:
            proc = self._start(argv, env, folder)
            try:
                logs.attach(proc)
                status = self._wait(proc, context, started, logs)
            finally:
                kill_group(proc, folder)  # what the command left behind, as a container's end
                logs.drain(0.5)           # would; its pipes close with it
        finally:
            logs.close()
        seconds = time.monotonic() - started
        log.info("operator '%s' job %s: %s exited with status %d in %.3f s", self.name,
                 context.job_id, shlex.join(argv), status, seconds)
        if status != 0:
            raise RuntimeError(
                f"command of operator '{self.name}' exited with status {status}"
                f"{_where(self.source)}: {shlex.join(argv)}; last lines of stderr:\n"
                f"{_tail(folder / 'stderr.log')}")

    def _start(self, argv: list[str], env: dict[str, str],
               folder: Path) -> subprocess.Popen[bytes]:
        try:
            # A session of its own: cancel and timeout signal the whole process group, so the
            # children of `sh -c` die with it.
            return start_group(argv, env, folder, subprocess.PIPE, subprocess.PIPE)
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"command of operator '{self.name}'{_where(self.source)}: executable "
                f"'{argv[0]}' not found; give an absolute path or put its folder on PATH "
                f"(PATH={env.get('PATH', '')})") from exc
        except PermissionError as exc:
            raise RuntimeError(f"command of operator '{self.name}'{_where(self.source)}: "
                               f"'{argv[0]}' is not executable (chmod +x)") from exc

    def _wait(self, proc: subprocess.Popen[bytes], context: Context, started: float,
              logs: _Pump) -> int:
        deadline = None if self.timeout is None else started + self.timeout
        while True:
            logs.step(_POLL_S)
            status = proc.poll()
            if status is not None:
                return status
            if context.cancelled:
                terminate(proc)
                raise JobCancelledError(f"job {context.job_id} was stopped while operator "
                                        f"'{self.name}' ran its command; the command was killed")
            if deadline is not None and time.monotonic() > deadline:
                terminate(proc)
                raise TimeoutError(f"command of operator '{self.name}' ran past its timeout "
                                   f"of {self.timeout} s and was killed{_where(self.source)}")


class _Pump:
    """Moves what a command prints from its pipes into tail-capped log files, on the caller's
    thread (no reader threads), so a command printing without end costs bounded disk and memory.
    """

    def __init__(self, out: TailLog, err: TailLog) -> None:
        self._logs = (out, err)
        self._selector = selectors.DefaultSelector()

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        for pipe, target in zip((proc.stdout, proc.stderr), self._logs, strict=True):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                self._selector.register(pipe, selectors.EVENT_READ, target)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for output and write what came."""
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self._selector.select(timeout):
            try:
                data = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if data:
                key.data.write(data)
            else:
                self._selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def drain(self, timeout: float) -> None:
        """Copy what is still in the pipes (until they close or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while self._selector.get_map() and time.monotonic() < deadline:
            self.step(_POLL_S)

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        for target in self._logs:
            target.close()


def _passed_on() -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` and the names listed in ``CLARA_RT_COMMAND_ENV`` (never a
    ``CLARA_RT_TOKEN*``): what commands get of this process's environment."""
    named = [n.strip() for n in os.environ.get("CLARA_RT_COMMAND_ENV", "").split(",")]
    return [*_PASSED_ON, *(n for n in named if n and not n.startswith("CLARA_RT_TOKEN"))]


def _where(source: str) -> str:
    return f" ({source})" if source else ""


def _container_path(operator: str, path: Any, source: str) -> str:
    """Return ``path`` normalised (no trailing slash), or raise if it cannot be mounted."""
    if not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) == "/":
        raise PipelineError(f"operator '{operator}': container path must be an absolute folder "
                            f"below /, got {path!r}{_where(source)}")
    return posixpath.normpath(path)


def _fresh_folder(operator: str, folder: Path) -> Path:
    """Create ``folder``; refuse one that already holds files (another run's results)."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise RuntimeError(f"output folder {folder} of operator '{operator}' is not empty; "
                           f"give each job a fresh workspace")
    return folder


def _tail(path: Path, lines: int = _STDERR_TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """Return the last ``lines`` lines of a log file (reads at most its last ``max_bytes``)."""
    with open(path, "rb") as f:
        f.seek(max(f.seek(0, os.SEEK_END) - max_bytes, 0))
        data = f.read()
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) if text else "(stderr was empty)"
