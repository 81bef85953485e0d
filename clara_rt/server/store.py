"""The platform server's records in SQLite (WAL): pipelines, payloads, jobs, their history, exports.

One connection shared by every thread behind a lock: SQLite serialises writers anyway, and the
server's write rate (jobs and payloads, not operator dispatches) is far below what one connection
sustains. ``synchronous=FULL`` makes a committed row survive a power cut as well as ``kill -9``.

Rows come back as plain dicts; JSON columns (``payloads``, ``variables``, ``operators``) are
decoded. Times are Unix seconds (float).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

__all__ = ["Store", "new_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, api_version TEXT NOT NULL,
    operators TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS payloads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, files INTEGER NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, deleted REAL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, pipeline_id TEXT NOT NULL, pipeline TEXT NOT NULL,
    payloads TEXT NOT NULL, priority TEXT NOT NULL, variables TEXT NOT NULL, timeout REAL,
    state TEXT NOT NULL, status TEXT NOT NULL, queued INTEGER NOT NULL, error TEXT,
    created REAL NOT NULL, started REAL, stopped REAL, attempts INTEGER NOT NULL DEFAULT 0,
    operators TEXT NOT NULL DEFAULT '[]', results_deleted REAL, placement TEXT,
    transport TEXT, device TEXT);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
CREATE INDEX IF NOT EXISTS jobs_pipeline ON jobs(pipeline_id, created);
CREATE TABLE IF NOT EXISTS job_history (
    job_id TEXT NOT NULL, time REAL NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL,
    note TEXT);
CREATE INDEX IF NOT EXISTS job_history_job ON job_history(job_id, time);
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, file TEXT NOT NULL, destination TEXT NOT NULL,
    state TEXT NOT NULL, retries INTEGER NOT NULL, error TEXT, created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS exports_job ON exports(job_id);
"""

_JSON_COLUMNS = ("payloads", "variables", "operators")
_JOB_UPDATABLE = frozenset({"state", "status", "queued", "error", "started", "stopped",
                            "attempts", "operators", "results_deleted", "timeout", "placement",
                            "transport"})
# Columns added after the first release: (table, column, declaration), added when missing.
_MIGRATIONS = (("jobs", "placement", "TEXT"), ("jobs", "transport", "TEXT"),
               ("jobs", "device", "TEXT"))


def new_id() -> str:
    """A new record id: 32 lowercase hex digits, as Clara's job and payload ids."""
    return uuid.uuid4().hex


class Store:
    """SQLite-backed records of one data directory (``<data>/clara-rt.db``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            for table, column, declaration in _MIGRATIONS:
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of writes (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # may fail too (disk full): then roll back
            except BaseException:
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_decode(row) for row in self._db.execute(sql, tuple(args)).fetchall()]

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    # --- pipelines ----------------------------------------------------------------------

    def add_pipeline(self, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO pipelines VALUES (:id, :name, :api_version, :operators, "
                       ":created, :updated)", _encode(record))

    def replace_pipeline(self, pipeline_id: str, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE pipelines SET api_version=:api_version, operators=:operators, "
                       "updated=:updated WHERE id=:id", _encode({**record, "id": pipeline_id}))

    def pipeline(self, ref: str) -> dict[str, Any] | None:
        """The pipeline whose id or name is ``ref``."""
        return self._one("SELECT * FROM pipelines WHERE id=? OR name=?", (ref, ref))

    def pipelines(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM pipelines ORDER BY created")

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM pipelines WHERE id=?", (pipeline_id,))

    # --- payloads -----------------------------------------------------------------------

    def add_payload(self, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO payloads VALUES (:id, :name, :files, :size, :created, NULL)",
                       record)

    def payload(self, payload_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM payloads WHERE id=? AND deleted IS NULL", (payload_id,))

    def payloads(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM payloads WHERE deleted IS NULL ORDER BY created")

    def mark_payload_deleted(self, payload_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE payloads SET deleted=? WHERE id=?", (time.time(), payload_id))

    def payload_in_use(self, payload_id: str) -> list[str]:
        """Ids of unfinished jobs that read the payload."""
        rows = self._all("SELECT id, payloads FROM jobs WHERE state != 'stopped'")
        return [row["id"] for row in rows if payload_id in row["payloads"]]

    # --- jobs ---------------------------------------------------------------------------

    def add_job(self, record: dict[str, Any], note: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, name, pipeline_id, pipeline, payloads, priority, "
                "variables, timeout, state, status, queued, error, created, device) VALUES (:id, "
                ":name, :pipeline_id, :pipeline, :payloads, :priority, :variables, :timeout, "
                ":state, :status, :queued, :error, :created, :device)",
                _encode({"device": None, **record}))
            db.execute("INSERT INTO job_history VALUES (?, ?, ?, ?, ?)",
                       (record["id"], record["created"], record["state"], record["status"],
                        note))

    def update_job(self, job_id: str, note: str | None = None, **fields: Any) -> None:
        """Change a job's columns; a change of state or status is added to its history."""
        unknown = set(fields) - _JOB_UPDATABLE
        if unknown:
            raise KeyError(f"not updatable job columns: {sorted(unknown)}")
        encoded = _encode(fields)
        sets = ", ".join(f"{key}=:{key}" for key in encoded)
        with self.transaction() as db:
            if encoded:
                db.execute(f"UPDATE jobs SET {sets} WHERE id=:job_id",
                           {**encoded, "job_id": job_id})
            if "state" in fields or note is not None:
                row = db.execute("SELECT state, status FROM jobs WHERE id=?", (job_id,)).fetchone()
                db.execute("INSERT INTO job_history VALUES (?, ?, ?, ?, ?)",
                           (job_id, time.time(), row["state"], row["status"], note))

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM jobs WHERE id=?", (job_id,))

    def jobs(self, *, state: str | None = None, status: str | None = None,
             pipeline: str | None = None, priority: str | None = None,
             since: float | None = None, until: float | None = None,
             limit: int = 1000) -> list[dict[str, Any]]:
        """Jobs matching every filter given, newest first."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("state", state), ("status", status), ("priority", priority)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if pipeline is not None:
            where.append("(pipeline_id=? OR pipeline=?)")
            args += [pipeline, pipeline]
        if since is not None:
            where.append("created>=?")
            args.append(since)
        if until is not None:
            where.append("created<=?")
            args.append(until)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return self._all(sql + " ORDER BY created DESC LIMIT ?", [*args, limit])

    def history(self, job_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT time, state, status, note FROM job_history WHERE job_id=? "
                         "ORDER BY time, rowid", (job_id,))

    def delete_job(self, job_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM job_history WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM exports WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def count_jobs(self) -> dict[tuple[str, str], int]:
        """(state, priority) -> number of jobs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, priority, COUNT(*) FROM jobs GROUP BY state, priority").fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def count_jobs_of(self, pipeline_id: str) -> dict[str, Any]:
        """Jobs of a pipeline per state, and when the last one stopped."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*), MAX(stopped) FROM jobs WHERE "
                                    "pipeline_id=? GROUP BY state", (pipeline_id,)).fetchall()
        counts: dict[str, Any] = {"pending": 0, "running": 0, "stopped": 0, "last_stopped": None}
        for state, count, last in rows:
            counts[state] = count
            if state == "stopped":
                counts["last_stopped"] = last
        return counts

    # --- exports (the results service) --------------------------------------------------

    def add_export(self, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO exports VALUES (:id, :job_id, :file, :destination, :state, "
                       ":retries, :error, :created, :updated)", record)

    def update_export(self, export_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{key}=:{key}" for key in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE exports SET {sets}, updated=:updated WHERE id=:export_id",
                       {**fields, "updated": time.time(), "export_id": export_id})

    def export(self, export_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM exports WHERE id=?", (export_id,))

    def exports(self, *, job_id: str | None = None,
                state: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if job_id is not None:
            where.append("job_id=?")
            args.append(job_id)
        if state is not None:
            where.append("state=?")
            args.append(state)
        sql = "SELECT * FROM exports" + (" WHERE " + " AND ".join(where) if where else "")
        return self._all(sql + " ORDER BY created", args)


def _encode(record: dict[str, Any]) -> dict[str, Any]:
    return {key: json.dumps(value) if key in _JSON_COLUMNS else value
            for key, value in record.items()}


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for key in _JSON_COLUMNS:
        if key in record and isinstance(record[key], str):
            record[key] = json.loads(record[key])
    return record
