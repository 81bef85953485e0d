"""Where received instances live on disk, and when a series (or study) is complete.

Layout under the adapter's ``storage`` folder::

    <storage>/<calledAE>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   arriving instances
    <storage>/.tmp/                      partial files (written, fsynced, then renamed in place)
    <storage>/.staging/<calledAE>/<group>/data/    a complete series (or study), moved in one rename
    <storage>/.staging/<calledAE>/<group>/group.json   what :class:`SeriesInfo` says about it

:class:`SeriesTracker` remembers, per open group (called AE + study, + series when grouping by
series), when its last instance arrived. A background thread (``clara-rt-dicom-tracker``) looks
every ``interval`` seconds; once ``quiet_time`` has passed without a new instance it renames the
group's folder into ``.staging`` and calls ``on_complete``. An instance that arrives for the same
series afterwards starts a new group in a fresh folder: the rename and every store into the
folder hold the same lock, so no file lands in a folder that is being handed off.

Nothing is kept only in memory: after a crash, folders left in the arrival area are tracked again
when the tracker starts (complete after another quiet time) and everything in ``.staging`` is
still there for the adapter to submit. Partial files in ``.tmp`` are removed at start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.dicom.config import AdapterConfig, CalledAe

__all__ = ["GROUP_FILE", "OnComplete", "SeriesInfo", "SeriesTracker", "StorageLayout",
           "read_group", "safe_part", "write_json"]

logger = logging.getLogger(__name__)

GROUP_FILE = "group.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class SeriesInfo:
    """What was received for one complete group (a series, or a study with ``group-by: study``).

    Attributes:
        called_ae: The called AE title the instances were sent to.
        study_uid: StudyInstanceUID.
        series_uids: SeriesInstanceUID of each series in the group (one with ``group-by: series``).
        modality: Modality of the first instance (``""`` when absent).
        instances: Number of instance files handed off.
        calling_ae: Calling AE title of the first association that sent to the group.
        group_id: Name of the group's folder in the staging area (unique).
    """

    called_ae: str
    study_uid: str
    series_uids: tuple[str, ...]
    modality: str
    instances: int
    calling_ae: str
    group_id: str

    @property
    def series_uid(self) -> str:
        """The (first) SeriesInstanceUID of the group."""
        return self.series_uids[0] if self.series_uids else ""

    def describe(self) -> str:
        """One-line description for logs: AE, series (or study), modality, count, sender."""
        what = (f"series {self.series_uid}" if len(self.series_uids) == 1
                else f"study {self.study_uid} ({len(self.series_uids)} series)")
        return (f"{self.called_ae}: {what}, {self.modality or 'no modality'}, "
                f"{self.instances} instances from {self.calling_ae or 'unknown sender'}")


OnComplete = Callable[[CalledAe, Path, SeriesInfo], None]
"""``on_complete(ae, folder, info)``: ``folder`` is ``.staging/<AE>/<group>/data``."""


def safe_part(uid: str) -> str:
    """Return ``uid`` usable as one path component (UIDs are digits and dots already).

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; leading dots are
    dropped (no ``..``, no hidden names); at most 64 characters are kept. Raises ``ValueError``
    when nothing is left (the SCP refuses such UIDs before they get here).
    """
    part = _SAFE.sub("_", uid.strip().strip("\0")).lstrip(".")[:64]
    if not part:
        raise ValueError(f"UID {uid!r} cannot name a folder")
    return part


class StorageLayout:
    """Paths of the storage folder (see the module docstring); creates the fixed folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.staging = root / ".staging"

    def prepare(self) -> None:
        """Create the folders and delete partial files a crash may have left in ``.tmp``."""
        for folder in (self.root, self.tmp, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def group_folder(self, called_ae: str, study: str, series: str | None) -> Path:
        """The arrival folder of a group: ``<AE>/<study>`` or ``<AE>/<study>/<series>``."""
        folder = self.root / called_ae / safe_part(study)
        return folder if series is None else folder / safe_part(series)

    def staged(self) -> list[Path]:
        """Every staged group folder (``.staging/<AE>/<group>``), oldest first."""
        if not self.staging.is_dir():
            return []
        groups = [g for ae in self.staging.iterdir() if ae.is_dir() for g in ae.iterdir()
                  if (g / "data").is_dir()]
        return sorted(groups, key=lambda g: g.stat().st_mtime)


@dataclass
class _Group:
    folder: Path
    study_uid: str
    series_uids: list[str]
    modality: str
    calling_ae: str
    last: float = field(default_factory=time.monotonic)


class SeriesTracker:
    """Place received files and hand complete groups to ``on_complete``.

    Thread-safe: :meth:`store` is called from the SCP's association threads.

    Args:
        config: The adapter configuration (``quiet-time``, ``group-by``, called AE titles).
        layout: The storage folder.
        on_complete: Called on the tracker thread for each complete group; exceptions are
            logged, and the group stays in the staging area.
        interval: Seconds between two looks at the open groups.
    """

    def __init__(self, config: AdapterConfig, layout: StorageLayout, on_complete: OnComplete,
                 *, interval: float = 0.2) -> None:
        self._config = config
        self._layout = layout
        self._on_complete = on_complete
        self._interval = interval
        self._lock = threading.Lock()
        self._groups: dict[Path, _Group] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Prepare the storage folder, re-track folders left by a previous run, start the thread."""
        self._layout.prepare()
        self._rescan()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clara-rt-dicom-tracker",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread. Open groups stay on disk and are tracked again at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def store(self, tmp_file: Path, called_ae: str, study: str, series: str, sop: str,
              *, modality: str, calling_ae: str) -> Path:
        """Move the fsynced ``tmp_file`` to its place and record the arrival.

        An existing file of the same SOP Instance UID is replaced atomically. Returns the final
        path. Raises ``OSError`` when the rename fails (the caller removes ``tmp_file``).
        """
        by_study = self._config.dicom.group_by == "study"
        group_folder = self._layout.group_folder(called_ae, study, None if by_study else series)
        series_folder = self._layout.group_folder(called_ae, study, series)
        target = series_folder / f"{safe_part(sop)}.dcm"
        with self._lock:
            series_folder.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_file, target)
            folder_fd = os.open(series_folder, os.O_RDONLY)
            group = self._groups.get(group_folder)
            if group is None:
                self._groups[group_folder] = _Group(group_folder, study, [series], modality,
                                                    calling_ae)
            else:
                group.last = time.monotonic()
                if series not in group.series_uids:
                    group.series_uids.append(series)
        try:  # make the rename durable; the folder may have been handed off meanwhile (same inode)
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
        return target

    def open_groups(self) -> int:
        """Return how many groups are waiting for their quiet time."""
        with self._lock:
            return len(self._groups)

    # --- private --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._hand_off_quiet()
            except Exception:  # never let the tracker die: groups would never complete
                logger.exception("series tracker: unexpected error (will try again)")

    def _hand_off_quiet(self) -> None:
        deadline = time.monotonic() - self._config.dicom.quiet_time
        with self._lock:
            quiet = [g for g in self._groups.values() if g.last <= deadline]
            moved = [(group, self._move_to_staging(group)) for group in quiet]
        for group, staged in moved:
            if staged is not None:
                self._complete(group, staged)

    def _move_to_staging(self, group: _Group) -> Path | None:
        """Rename the group's folder into ``.staging`` (caller holds the lock)."""
        del self._groups[group.folder]
        called_ae = group.folder.relative_to(self._layout.root).parts[0]
        tail = safe_part(group.series_uids[0] if len(group.series_uids) == 1
                         else group.study_uid)[-12:]
        staged = (self._layout.staging / called_ae /
                  f"{time.strftime('%Y%m%dT%H%M%S')}-{tail}-{uuid.uuid4().hex[:8]}")
        if not group.folder.is_dir():  # gone (removed by hand): retrying could never succeed
            logger.error("%s: %s (series %s) disappeared before it was complete; not tracked "
                         "any more", called_ae, group.folder, ", ".join(group.series_uids))
            return None
        try:
            staged.mkdir(parents=True)
            self._describe(group, staged)  # before the data: the submitter needs both
            os.rename(group.folder, staged / "data")
        except OSError as exc:
            logger.error("%s: cannot move %s to the staging area %s: %s; trying again after "
                         "another quiet time", called_ae, group.folder, staged, exc)
            shutil.rmtree(staged, ignore_errors=True)
            group.last = time.monotonic()
            self._groups[group.folder] = group
            return None
        parent = group.folder.parent
        if parent != self._layout.root / called_ae:  # series grouping: drop an empty study folder
            with contextlib.suppress(OSError):  # not empty: other series are still arriving
                parent.rmdir()
        return staged

    def _describe(self, group: _Group, staged: Path) -> None:
        """Write ``staged/group.json`` while the files are still in ``group.folder``.

        Staged groups are listed once their ``data`` folder is there, so the description has to
        be in place before the rename that brings the data: the submit thread never sees a group
        without it (unless it could not be written: then it is rebuilt from the files).
        """
        info = SeriesInfo(called_ae=staged.parent.name, study_uid=group.study_uid,
                          series_uids=tuple(group.series_uids), modality=group.modality,
                          instances=sum(1 for _ in group.folder.rglob("*.dcm")),
                          calling_ae=group.calling_ae, group_id=staged.name)
        try:
            write_json(staged / GROUP_FILE, asdict(info))
        except OSError as exc:
            logger.error("%s: cannot write %s: %s (the group is rebuilt from its files later)",
                         info.called_ae, staged / GROUP_FILE, exc)

    def _complete(self, group: _Group, staged: Path) -> None:
        called_ae = staged.parent.name
        data = staged / "data"
        info = read_group(staged)
        ae = self._config.called_ae(called_ae)
        logger.info("complete: %s -> %s", info.describe(), data)
        if ae is None:  # an AE title removed from the configuration since the files arrived
            logger.warning("%s is no longer a configured AE title; %s is left in %s",
                           called_ae, info.describe(), staged)
            return
        try:
            self._on_complete(ae, data, info)
        except Exception:
            logger.exception("%s: handling the complete group %s failed; it stays in %s",
                             called_ae, info.describe(), staged)

    def _rescan(self) -> None:
        """Track again the arrival folders a previous run left (complete after a quiet time)."""
        by_study = self._config.dicom.group_by == "study"
        for ae in self._config.ae_titles:
            base = self._layout.root / ae.name
            if not base.is_dir():
                continue
            for study in (p for p in base.iterdir() if p.is_dir()):
                for folder in [study] if by_study else [p for p in study.iterdir() if p.is_dir()]:
                    header = _first_header(folder)
                    if header is None:
                        continue
                    with self._lock:
                        self._groups[folder] = _Group(
                            folder, header.get("study", study.name),
                            [header.get("series", folder.name)], header.get("modality", ""), "")
                    logger.info("%s: resuming %s left by a previous run", ae.name, folder)


def read_group(staged: Path) -> SeriesInfo:
    """Return the :class:`SeriesInfo` of a staged group, rebuilt from its files if needed."""
    try:
        raw: dict[str, Any] = json.loads((staged / GROUP_FILE).read_text())
        raw["series_uids"] = tuple(raw["series_uids"])
        return SeriesInfo(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        data = staged / "data"
        header = _first_header(data) or {}
        series = sorted({p.parent.name for p in data.rglob("*.dcm") if p.parent != data})
        return SeriesInfo(called_ae=staged.parent.name, study_uid=header.get("study", ""),
                          series_uids=tuple(series) or (header.get("series", ""),),
                          modality=header.get("modality", ""),
                          instances=sum(1 for _ in data.rglob("*.dcm")), calling_ae="",
                          group_id=staged.name)


# --- helpers ----------------------------------------------------------------------------------


def _first_header(folder: Path) -> dict[str, str] | None:
    """Study, series and modality from the first readable ``.dcm`` under ``folder``."""
    import pydicom

    for path in folder.rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["StudyInstanceUID", "SeriesInstanceUID",
                                                "Modality"])
        except Exception:  # a damaged file: try the next one
            continue
        return {"study": str(ds.get("StudyInstanceUID", "")),
                "series": str(ds.get("SeriesInstanceUID", "")),
                "modality": str(ds.get("Modality", ""))}
    return None


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
