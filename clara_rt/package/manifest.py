"""``bundle.json`` and ``SHA256SUMS``: what a bundle holds, and the check that it still does.

``bundle.json`` names the target (clara-rt version, Python, platform), the pipeline and the
extras, and lists every other file with its sha256 and size. ``SHA256SUMS`` (the
``sha256sum -c`` format) lists every file but itself and ``bundle.json``, so that ``install.sh``
can verify the bundle with coreutils before any Python package is installed.

:func:`check_bundle` verifies a bundle folder, or its ``.tar.gz`` without unpacking it: every
listed file is present with its hash and size, and nothing else is there. What ``install.sh``
creates inside the folder (``venv/``, ``etc/``, ``var/``) is not part of the bundle and is
skipped.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["INSTALLED", "MANIFEST", "SUMS", "CheckResult", "check_bundle", "file_digest",
           "write_manifest"]

MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
INSTALLED = ("venv", "etc", "var")
"""Top-level folders ``install.sh`` creates in the bundle folder (its default prefix)."""
FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check_bundle`.

    Attributes:
        path: The folder or archive checked.
        files: Files listed in ``bundle.json``.
        size: Their total size in bytes.
        problems: One line per problem (``changed: PATH``, ``missing: PATH``, ``extra: PATH``),
            empty when the bundle is intact.
        manifest: ``bundle.json`` as read (empty when unreadable).
    """

    path: Path
    files: int
    size: int
    problems: tuple[str, ...]
    manifest: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems


def file_digest(stream: IO[bytes]) -> tuple[str, int]:
    """Return (sha256 hex, size) of everything ``stream`` holds."""
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def write_manifest(root: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under ``root``; write ``SHA256SUMS`` then ``bundle.json``.

    Args:
        root: The bundle folder, complete but for these two files.
        info: The manifest's other fields (target, pipeline, extras...).

    Returns:
        The manifest written.
    """
    files = {rel: _digest(root / rel) for rel in _walk(root) if rel not in (MANIFEST, SUMS)}
    (root / SUMS).write_text("".join(f"{entry['sha256']}  {rel}\n"
                                     for rel, entry in files.items()), encoding="utf-8")
    files[SUMS] = _digest(root / SUMS)
    manifest = {"format": FORMAT, **info, "files": dict(sorted(files.items()))}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def check_bundle(path: Path) -> CheckResult:
    """Verify a bundle folder or ``.tar.gz`` against its ``bundle.json``; never raises for a
    damaged bundle (the damage is in ``problems``)."""
    if path.is_dir():
        manifest = _read_manifest(path / MANIFEST)
        present = set(_walk(path)) - {MANIFEST}
        listed = _listed(manifest)
        digests = {rel: _digest(path / rel) for rel in present if rel in listed}
        return _compare(path, manifest, digests, present, [])
    if path.is_file():
        return _check_archive(path)
    return CheckResult(path, 0, 0, (f"no such bundle: {path}",), {})


# --- private --------------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[str]:
    """Relative POSIX paths of every file and link under ``root``, but not install output."""
    for entry in sorted(root.rglob("*")):
        rel = entry.relative_to(root)
        if rel.parts[0] in INSTALLED or (entry.is_dir() and not entry.is_symlink()):
            continue
        yield rel.as_posix()


def _digest(path: Path) -> dict[str, Any]:
    if path.is_symlink() or not path.is_file():
        return {"sha256": "", "size": -1}  # never listed as such: reported as changed
    with path.open("rb") as stream:
        sha256, size = file_digest(stream)
    return {"sha256": sha256, "size": size}


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return _parse_manifest(path.read_bytes())
    except OSError:
        return {}


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        found = json.loads(data)
    except ValueError:
        return {}
    return found if isinstance(found, dict) and isinstance(found.get("files"), dict) else {}


def _listed(manifest: dict[str, Any]) -> dict[str, Any]:
    files: dict[str, Any] = manifest.get("files", {})
    return files


def _compare(path: Path, manifest: dict[str, Any], digests: dict[str, dict[str, Any]],
             present: Iterable[str], problems: list[str]) -> CheckResult:
    if not manifest:
        problems.append(f"{MANIFEST} is missing or unreadable: not a clara-rt bundle")
        return CheckResult(path, 0, 0, tuple(problems), {})
    listed = _listed(manifest)
    present = set(present)
    for rel, want in listed.items():
        if rel not in present:
            problems.append(f"missing: {rel}")
        elif digests.get(rel) != {"sha256": want.get("sha256"), "size": want.get("size")}:
            got = digests.get(rel, {})
            why = ("not a regular file" if got.get("size") == -1 else
                   f"size {got.get('size')} instead of {want.get('size')}"
                   if got.get("size") != want.get("size") else "sha256 differs")
            problems.append(f"changed: {rel} ({why})")
    problems += [f"extra: {rel}" for rel in sorted(present - set(listed))]
    size = sum(int(entry.get("size", 0)) for entry in listed.values())
    return CheckResult(path, len(listed), size, tuple(problems), manifest)


def _check_archive(path: Path) -> CheckResult:
    digests: dict[str, dict[str, Any]] = {}
    present: set[str] = set()
    problems: list[str] = []
    manifest: dict[str, Any] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/", 1)
                if len(parts) < 2 or member.isdir():
                    continue
                rel = parts[1]
                if rel.split("/")[0] in INSTALLED:
                    continue
                present.add(rel)
                stream = tar.extractfile(member) if member.isfile() else None
                if stream is None:
                    digests[rel] = {"sha256": "", "size": -1}
                elif rel == MANIFEST:
                    manifest = _parse_manifest(stream.read())
                else:
                    sha256, size = file_digest(stream)
                    digests[rel] = {"sha256": sha256, "size": size}
    except (OSError, tarfile.TarError, EOFError) as exc:
        problems.append(f"cannot read {path}: {exc}")
    present.discard(MANIFEST)
    return _compare(path, manifest, digests, present, problems)
