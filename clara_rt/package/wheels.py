"""The wheelhouse: a wheel of clara-rt and every wheel it needs, for the target, from pip.

* :func:`build_clara_rt_wheel` runs ``pip wheel --no-deps`` on the source checkout clara-rt is
  installed from (editable installs and ``PYTHONPATH`` checkouts have one). The C++ extension
  is compiled for this machine, so this only serves a target with this architecture and Python;
  other targets need ``--clara-rt-wheel`` built there.
* :func:`check_wheel` reads a wheel's file name and refuses one for another target.
* :func:`download` runs ``pip download --only-binary=:all: --platform ... --python-version ...
  --implementation cp`` for ``clara-rt[extras] @ file://...whl``, so pip resolves the same
  dependencies the wheel declares, for the target's tags.

pip runs as ``sys.executable -m pip`` with the machine's pip configuration (index, mirror,
cache); its output is kept and its last lines are the message of a :class:`PackageError`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clara_rt.errors import PackageError
from clara_rt.package.platforms import Target

__all__ = ["WheelName", "build_clara_rt_wheel", "buildable_source", "check_wheel", "download",
           "needed_glibc", "source_tree"]

_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-(?P<python>[^-]+)-"
                    r"(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$")
_TAIL = 25  # lines of pip's output shown when it fails
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel's file name (PEP 427)."""

    name: str
    version: str
    python: tuple[str, ...]
    abi: tuple[str, ...]
    platforms: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        """Split ``numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl``.

        Raises:
            PackageError: Not a wheel file name.
        """
        match = _WHEEL.match(filename)
        if match is None:
            raise PackageError(f"{filename} is not a wheel file name (name-version-python-abi-"
                               "platform.whl)")
        return cls(match.group("name").lower().replace("_", "-"), match.group("version"),
                   *(tuple(match.group(part).split(".")) for part in ("python", "abi",
                                                                     "platform")))

    @property
    def portable(self) -> bool:
        """Whether it runs on any machine of its architecture: pure, or a manylinux tag."""
        return any(p == "any" or p.startswith("manylinux") for p in self.platforms)


def needed_glibc(paths: Sequence[Path]) -> tuple[int, int]:
    """The oldest glibc that runs every wheel: each manylinux wheel's oldest tag, and for a
    wheel without one (clara-rt built here) the newest ``GLIBC_2.x`` symbol version its shared
    libraries ask for."""
    needed = (2, 17)
    for path in paths:
        wheel = WheelName.parse(path.name)
        if "any" in wheel.platforms:
            continue
        tagged = [_LEGACY.get(p.split("_")[0]) or _glibc_of(p) for p in wheel.platforms]
        known = [g for g in tagged if g is not None]
        needed = max(needed, min(known) if known else _linked_glibc(path))
    return needed


def source_tree() -> Path | None:
    """The source checkout of the running clara-rt (``pyproject.toml`` + ``csrc/``), or None."""
    import clara_rt

    root = Path(clara_rt.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and (root / "setup.py").is_file() and (root / "csrc").is_dir()):
        return None
    if not re.search(r'(?m)^name\s*=\s*"clara-rt"', pyproject.read_text(encoding="utf-8")):
        return None
    return root


def buildable_source(target: Target) -> Path:
    """The source checkout to build the clara-rt wheel for ``target`` from.

    Raises:
        PackageError: The target is another machine (the C++ extension cannot be
            cross-compiled), or clara-rt is not installed from a source checkout.
    """
    if not target.is_host:
        here = f"{sys.platform} {_machine()}, Python {sys.version_info[0]}.{sys.version_info[1]}"
        raise PackageError(
            f"the bundle is for {target.arch}, Python {target.python_version} but this is {here}: "
            "clara-rt's C++ extension cannot be cross-compiled; build the wheel on the target "
            "(pip wheel --no-deps /path/to/clara-rt) and pass --clara-rt-wheel PATH")
    root = source_tree()
    if root is None:
        raise PackageError("clara-rt is not installed from a source checkout, so its wheel cannot "
                           "be built here: pass --clara-rt-wheel PATH (pip wheel --no-deps on a "
                           "checkout)")
    return root


def build_clara_rt_wheel(root: Path, dest: Path) -> Path:
    """Build the clara-rt wheel of the checkout ``root`` into ``dest``; return its path.

    Raises:
        PackageError: The build failed (with pip's last lines).
    """
    with tempfile.TemporaryDirectory(prefix="clara-rt-wheel-") as out:
        _pip(["wheel", "--no-deps", "--wheel-dir", out, str(root)], "building the clara-rt wheel")
        [built] = Path(out).glob("clara_rt-*.whl")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(built, dest / built.name))


def check_wheel(path: Path, target: Target) -> WheelName:
    """Check that ``path`` is a clara-rt wheel for ``target``.

    Raises:
        PackageError: Missing, not clara-rt, or built for another Python or architecture.
    """
    if not path.is_file():
        raise PackageError(f"--clara-rt-wheel {path}: no such file")
    wheel = WheelName.parse(path.name)
    if wheel.name != "clara-rt":
        raise PackageError(f"--clara-rt-wheel {path}: a wheel of {wheel.name}, not clara-rt")
    if target.python_tag not in wheel.python:
        raise PackageError(f"--clara-rt-wheel {path}: built for {'.'.join(wheel.python)}, the "
                           f"bundle is for Python {target.python_version} ({target.python_tag})")
    if not any(p.endswith(f"_{target.arch}") for p in wheel.platforms):
        raise PackageError(f"--clara-rt-wheel {path}: built for {'.'.join(wheel.platforms)}, "
                           f"the bundle is for {target.arch}")
    return wheel


def download(wheel: Path, extras: Sequence[str], requirements: Sequence[str], target: Target,
             dest: Path) -> list[Path]:
    """Download every wheel ``clara-rt[extras]`` (and ``requirements``) needs into ``dest``.

    Returns:
        The wheels in ``dest`` afterwards, sorted.

    Raises:
        PackageError: pip failed (its last lines), or a dependency has only a wheel tied to the
            machine it was built on (``linux_<arch>``, not manylinux).
    """
    platforms = [arg for tag in target.pip_platforms() for arg in ("--platform", tag)]
    spec = f"clara-rt[{','.join(extras)}] @ {wheel.resolve().as_uri()}"
    _pip(["download", "--only-binary=:all:", *platforms, "--python-version",
          target.python_version, "--implementation", "cp", "--dest", str(dest), spec,
          *requirements], f"downloading the wheels for {target.platform_tag}")
    found = sorted(dest.glob("*.whl"))
    tied = [p.name for p in found if p.name != wheel.name and not WheelName.parse(p.name).portable]
    if tied:
        raise PackageError(f"not portable to another machine (no manylinux tag): "
                           f"{', '.join(tied)}; remove them from the index pip uses")
    return found


# --- private --------------------------------------------------------------------------------


def _pip(args: list[str], what: str) -> None:
    """Run ``python -m pip ARGS``; on failure raise with the last lines of its output."""
    command = [sys.executable, "-m", "pip", *args]
    tail: deque[str] = deque(maxlen=_TAIL)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
    except OSError as exc:
        raise PackageError(f"{what}: cannot run pip: {exc}") from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
    if proc.returncode != 0:
        shown = "\n".join(f"  | {line}" for line in tail)
        raise PackageError(f"{what} failed: pip exited with status {proc.returncode}; its last "
                           f"lines:\n{shown}\n  (command: {' '.join(command)})")


def _glibc_of(tag: str) -> tuple[int, int] | None:
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _linked_glibc(path: Path) -> tuple[int, int]:
    found = [(2, 17)]
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            if name.endswith(".so") or ".so." in name:
                found += [(int(a), int(b)) for a, b in
                          re.findall(rb"GLIBC_(\d+)\.(\d+)", wheel.read(name))]
    return max(found)


def _machine() -> str:
    import platform

    return platform.machine()
