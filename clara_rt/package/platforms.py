"""The machine a bundle is for: CPU architecture, oldest glibc, Python version.

``--platform`` takes ``manylinux_x86_64`` / ``manylinux_aarch64`` (glibc: this machine's when
the architecture is this machine's, else 2.28) or names the glibc, ``manylinux_2_31_aarch64``
(``manylinux2014_<arch>`` is glibc 2.17). pip's ``--platform`` does not expand
``manylinux_2_X`` tags to the older ones a glibc also runs, so :meth:`Target.pip_platforms`
lists them all (``manylinux_2_36_x86_64`` ... ``manylinux_2_17_x86_64``, ``manylinux2014``,
which pip expands to ``manylinux2010`` and ``manylinux1``), plus ``linux_<arch>`` for the
clara-rt wheel built on this machine, which has that tag.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass

__all__ = ["ARCHES", "Target", "host_glibc", "parse_platform"]

ARCHES = ("x86_64", "aarch64")
OLDEST_GLIBC = (2, 17)  # manylinux2014, the oldest policy pip still asks for by a 2_X tag
FOREIGN_GLIBC = (2, 28)  # default for another architecture: manylinux_2_28, today's common floor

_PLATFORM = re.compile(r"^manylinux(?:_(?P<major>\d+)_(?P<minor>\d+)|(?P<y2014>2014))?_"
                       r"(?P<arch>[a-z0-9_]+)$")


@dataclass(frozen=True)
class Target:
    """Where a bundle runs.

    Attributes:
        arch: ``x86_64`` or ``aarch64``.
        glibc: The oldest glibc (major, minor) the bundle's wheels may need.
        python: Python (major, minor) of the bundle's wheels and of the venv on the target.
    """

    arch: str
    glibc: tuple[int, int]
    python: tuple[int, int]

    @property
    def platform_tag(self) -> str:
        """``manylinux_2_36_x86_64``: the most recent platform tag the bundle accepts."""
        return f"manylinux_{self.glibc[0]}_{self.glibc[1]}_{self.arch}"

    @property
    def python_version(self) -> str:
        """``3.11``."""
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def python_tag(self) -> str:
        """``cp311``: the interpreter tag of compiled wheels for this Python."""
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def is_host(self) -> bool:
        """Whether a wheel built by this interpreter runs there (same arch, same Python)."""
        return (sys.platform == "linux" and platform.machine() == self.arch
                and sys.version_info[:2] == self.python)

    def pip_platforms(self) -> list[str]:
        """Every ``--platform`` value ``pip download`` needs, newest first."""
        major, newest = self.glibc
        tags = [f"manylinux_{major}_{minor}_{self.arch}"
                for minor in range(newest, OLDEST_GLIBC[1] - 1, -1)]
        return [*tags, f"manylinux2014_{self.arch}", f"linux_{self.arch}"]


def parse_platform(text: str | None, python: str | None = None) -> Target:
    """Turn ``--platform`` and ``--python`` into a :class:`Target` (defaults: this machine).

    Raises:
        ValueError: An unknown platform or architecture, a glibc older than 2.17, a malformed
            Python version, or no glibc found on this machine when one is needed.
    """
    version = _python(python)
    if text is None:
        glibc = host_glibc()
        if sys.platform != "linux" or glibc is None or platform.machine() not in ARCHES:
            raise ValueError(f"this machine ({sys.platform} {platform.machine()}) is not a "
                             "glibc Linux on x86_64 or aarch64: pass --platform "
                             "manylinux_x86_64|manylinux_aarch64 and --clara-rt-wheel")
        return Target(platform.machine(), glibc, version)
    match = _PLATFORM.match(text.strip())
    arch = match.group("arch") if match else ""
    if match is None or arch not in ARCHES:
        raise ValueError(f"unknown platform {text!r}: expected manylinux_x86_64, "
                         "manylinux_aarch64 or manylinux_2_<glibc minor>_<arch>, e.g. "
                         "manylinux_2_31_aarch64")
    if match.group("y2014"):
        glibc = OLDEST_GLIBC
    elif match.group("major"):
        glibc = (int(match.group("major")), int(match.group("minor")))
        if glibc[0] != 2 or glibc < OLDEST_GLIBC:
            raise ValueError(f"platform {text!r}: glibc {glibc[0]}.{glibc[1]} is older than "
                             "2.17 (manylinux2014), the oldest a bundle supports")
    else:
        host = host_glibc()
        glibc = host if host is not None and arch == platform.machine() else FOREIGN_GLIBC
    return Target(arch, glibc, version)


def host_glibc() -> tuple[int, int] | None:
    """This machine's glibc (major, minor), or ``None`` (musl, macOS, Windows)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    match = re.match(r"glibc (\d+)\.(\d+)", found or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _python(text: str | None) -> tuple[int, int]:
    if text is None:
        return (sys.version_info[0], sys.version_info[1])
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if match is None or int(match.group(1)) != 3 or int(match.group(2)) < 11:
        raise ValueError(f"--python expects a version like 3.11 (clara-rt needs 3.11 or "
                         f"newer), got {text!r}")
    return (int(match.group(1)), int(match.group(2)))
