"""The job database: every SQL statement of the job service, behind one small store class.

The seam is :class:`JobStore` (a Protocol) and :func:`open_job_store`, which picks the backend from
the location it is given: a file path is SQLite (standard library, WAL mode, one host), a
``postgresql://`` URL is PostgreSQL (:mod:`geoloom.workflows.jobs_postgres`, a shared server).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sqlite3
import threading
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

from geoloom.platform.errors import RunError

#: Where a job is in its life; the last three are final.
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
#: The environment variable that names the job database.
JOBS_DB_ENV = "GEOLOOM_JOBS_DB"


def now_utc() -> str:
    """The time now, as the job database records it (ISO 8601, UTC, seconds)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job: who asked for which request into which folder, its state, tile counts and times."""

    id: str
    user: str
    request: dict[str, Any]
    out: str
    state: str = "queued"
    tiles_total: int = 0
    tiles_done: int = 0
    tiles_failed: int = 0
    error: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    overwrite: bool = False
    resume: bool = False

    @property
    def final(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.state in FINAL_STATES

    @property
    def fraction(self) -> float:
        """Share of the tiles with an outcome (0 before the plan is known)."""
        return (self.tiles_done + self.tiles_failed) / self.tiles_total if self.tiles_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the HTTP API's job); :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """The job :meth:`to_dict` wrote; unknown keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class JobStore(Protocol):
    """Where jobs live: what the service and its HTTP API need from a database."""

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job (its ``id`` and ``created`` are set here)."""

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""

    def list(self, *, states: tuple[str, ...] | None = None, user: str | None = None) -> list[JobRecord]:
        """Jobs, oldest first, optionally only in some states or of one user."""

    def update(self, job_id: str, **fields: Any) -> None:
        """Change some columns of a job."""

    def close(self) -> None:
        """Release the database."""


#: The columns of the job table, in the order of :class:`JobRecord`'s fields.
JOB_COLUMNS = ("id", "user", "request", "out", "state", "tiles_total", "tiles_done", "tiles_failed", "error",
               "created", "started", "finished", "overwrite", "resume")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    request TEXT NOT NULL,
    out TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    tiles_total INTEGER NOT NULL DEFAULT 0,
    tiles_done INTEGER NOT NULL DEFAULT 0,
    tiles_failed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    overwrite INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""


class SqliteJobStore:
    """Jobs in one SQLite file (WAL mode: readers never wait for the service's writes).

    ``exclusive``: hold the file for one service (a second service on the same file is refused, so
    no job runs twice); readers open it without.
    """

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path).expanduser().absolute()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create the folder of the job database {self.path} ({exc}); give --db PATH") from None
        self._lock_file = self._claim() if exclusive else None
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._release()
            raise RunError(f"{self.path} is not a usable job database ({exc}); give another --db PATH") from None

    def _claim(self) -> Any:
        f = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise RunError(f"another geoloom service uses the job database {self.path}; stop it, or give another --db") from None
        return f

    def _release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._db.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job with a fresh id and the creation time."""
        job = replace(job, id=uuid.uuid4().hex[:12], created=now_utc())
        row = _to_row(job)
        with self._cursor() as cur:
            cur.execute(f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})",
                        [row[c] for c in JOB_COLUMNS])
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        with self._cursor() as cur:
            row = cur.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _from_row(row) if row else None

    def list(self, *, states: tuple[str, ...] | None = None, user: str | None = None) -> list[JobRecord]:
        """Jobs, oldest first, optionally only in ``states`` or of ``user``."""
        where, args = [], []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += list(states)
        if user:
            where.append("user = ?")
            args.append(user)
        sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._cursor() as cur:
            rows = cur.execute(sql + " ORDER BY created, rowid", args).fetchall()
        return [_from_row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        """Change some columns of a job (names checked against the table's)."""
        row = _to_row_fields(checked_fields(fields))
        with self._cursor() as cur:
            cur.execute(f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in row)} WHERE id = ?", [*row.values(), job_id])

    def close(self) -> None:
        """Close the connection and let another service take the file."""
        with self._lock:
            self._db.close()
        self._release()


def checked_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The columns an update may change (every one but ``id``); a ValueError names any other."""
    unknown = set(fields) - set(JOB_COLUMNS[1:])
    if unknown:
        raise ValueError(f"unknown job columns {sorted(unknown)}")
    return fields


def _to_row_fields(fields: dict[str, Any]) -> dict[str, Any]:
    row = dict(fields)
    if "request" in row:
        row["request"] = json.dumps(row["request"], sort_keys=True)
    for flag in ("overwrite", "resume"):
        if flag in row:
            row[flag] = int(bool(row[flag]))
    return row


def _to_row(job: JobRecord) -> dict[str, Any]:
    return _to_row_fields(asdict(job))


def _from_row(row: tuple[Any, ...]) -> JobRecord:
    d = dict(zip(JOB_COLUMNS, row))
    d["request"] = json.loads(d["request"])
    d["overwrite"], d["resume"] = bool(d["overwrite"]), bool(d["resume"])
    return JobRecord(**d)


def default_jobs_db() -> Path:
    """The job database: ``$GEOLOOM_JOBS_DB``, else ``jobs.sqlite`` in the per-user data folder."""
    from geoloom.platform.userdata import data_dir

    env = os.environ.get(JOBS_DB_ENV, "").strip()
    return Path(env).expanduser().absolute() if env else data_dir() / "jobs.sqlite"


def open_job_store(location: str | Path | None = None, *, exclusive: bool = False) -> JobStore:
    """The job store at ``location``: a SQLite file path or a ``postgresql://`` URL (default :func:`default_jobs_db`)."""
    env = os.environ.get(JOBS_DB_ENV, "").strip()
    where = str(location) if location is not None else env if "://" in env else str(default_jobs_db())
    scheme = where.split("://", 1)[0].lower() if "://" in where else ""
    if scheme in ("postgresql", "postgres"):
        from geoloom.workflows.jobs_postgres import PostgresJobStore

        return PostgresJobStore(where, exclusive=exclusive)
    if scheme and scheme != "sqlite":
        raise RunError(f"job databases at {scheme}:// URLs are not supported; give a SQLite file path "
                       "or a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
    return SqliteJobStore(where.removeprefix("sqlite://"), exclusive=exclusive)
