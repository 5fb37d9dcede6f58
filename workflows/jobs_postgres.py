"""Jobs in a PostgreSQL database: the job store for ``postgresql://`` URLs (a server several hosts can reach).

Same methods and meaning as the SQLite store (:mod:`geoloom.workflows.jobs_db`); the table
``geoloom_jobs`` is created when missing. One service at a time holds a database: its store keeps a
PostgreSQL advisory lock on a connection of its own, released when the store closes or the service dies.
psycopg 3 is imported only here, when such a URL is opened (``pip install 'geoloom[postgres]'``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
import uuid
from dataclasses import asdict, replace
from typing import Any, Iterator

from geoloom.platform.errors import RunError
from geoloom.workflows.jobs_db import JOB_COLUMNS, JOB_STATES, JobRecord, checked_fields, now_utc

#: The table of jobs in the database the URL names.
TABLE = "geoloom_jobs"
#: The advisory lock a service holds on its database ("geoloom" as a number); creating the table takes the next.
CLAIM_KEY = int.from_bytes(b"geoloom", "big")
#: Seconds a service waits for another's claim to end (a killed service's connection closes a moment later).
CLAIM_WAIT_S = 3.0
#: Seconds to wait for the server when connecting, unless the URL says (``?connect_timeout=``).
CONNECT_TIMEOUT_S = 10
#: Server-side TCP keepalives of the claim's connection: a service whose host vanished frees the database in about a minute.
_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}

_TIMES = ("created", "started", "finished")
_COLS = ", ".join(f'"{c}"' for c in JOB_COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    "user" TEXT NOT NULL,
    request JSONB NOT NULL,
    "out" TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({', '.join(f"'{s}'" for s in JOB_STATES)})),
    tiles_total INTEGER NOT NULL DEFAULT 0,
    tiles_done INTEGER NOT NULL DEFAULT 0,
    tiles_failed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created TIMESTAMPTZ NOT NULL,
    started TIMESTAMPTZ,
    finished TIMESTAMPTZ,
    overwrite BOOLEAN NOT NULL DEFAULT FALSE,
    resume BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS {TABLE}_state ON {TABLE} (state);
"""
_GIVE_URL = "give --db postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def _psycopg() -> Any:
    """The psycopg module, or a RunError that says how to install it."""
    try:
        import psycopg
    except ImportError:
        raise RunError("PostgreSQL job databases need psycopg: pip install 'geoloom[postgres]'") from None
    return psycopg


class PostgresJobStore:
    """Jobs in the ``geoloom_jobs`` table of a PostgreSQL database (one connection, shared under a lock).

    ``exclusive``: hold the database for one service (a second service on it is refused, so no job
    runs twice); readers open it without.
    """

    def __init__(self, url: str, *, exclusive: bool = False) -> None:
        self._pg = _psycopg()
        self._params, self.where, self._secret = _parse(self._pg, url)
        self._lock = threading.Lock()
        self._claim_db: Any = None
        self._db = self._connect()
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_KEY + 1,))  # one creator at a time
                self._db.execute(_SCHEMA)
            if exclusive:
                self._claim_db = self._claim()
        except self._pg.Error as exc:
            self.close()
            raise RunError(f"{self.where} is not a usable job database ({self._detail(exc)}); "
                           f"grant this user CREATE on it, or {_GIVE_URL}") from None
        except BaseException:
            self.close()
            raise

    def _connect(self, **extra: Any) -> Any:
        try:
            return self._pg.connect(**self._params, **extra, autocommit=True)
        except self._pg.Error as exc:
            raise RunError(f"cannot reach the job database at {self.where} ({self._detail(exc)}); "
                           f"check that the server is up, or {_GIVE_URL}") from None

    def _claim(self) -> Any:
        options = " ".join(f"-c {k}={v}" for k, v in _KEEPALIVES.items())
        db = self._connect(options=f"{self._params.get('options', '')} {options}".strip())
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not db.execute("SELECT pg_try_advisory_lock(%s)", (CLAIM_KEY,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                db.close()
                raise RunError(f"another geoloom service uses the job database {self.where}; stop it, or give another --db")
            time.sleep(0.1)
        return db

    def _detail(self, exc: BaseException) -> str:
        """The server's reason in one line, without the password."""
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        line = re.sub(r"^FATAL:\s*", "", line.rsplit(" failed: ", 1)[-1]).strip()
        return line.replace(self._secret, "***") if self._secret else line

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            if self._db.closed or self._db.broken:
                self._db = self._connect()
            try:
                with self._db.cursor() as cur:
                    yield cur
            except self._pg.OperationalError as exc:
                raise RunError(f"lost the job database at {self.where} ({self._detail(exc)}); "
                               "check the server (the next call connects again)") from None

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job with a fresh id and the creation time."""
        job = replace(job, id=uuid.uuid4().hex[:12], created=now_utc())
        row = self._to_row(asdict(job))
        with self._cursor() as cur:
            cur.execute(f"INSERT INTO {TABLE} ({_COLS}) VALUES ({', '.join(['%s'] * len(JOB_COLUMNS))})",
                        [row[c] for c in JOB_COLUMNS])
        return job

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        with self._cursor() as cur:
            row = cur.execute(f"SELECT {_COLS} FROM {TABLE} WHERE id = %s", (job_id,)).fetchone()
        return _from_row(row) if row else None

    def list(self, *, states: tuple[str, ...] | None = None, user: str | None = None) -> list[JobRecord]:
        """Jobs, oldest first, optionally only in ``states`` or of ``user``."""
        where, args = [], []
        if states:
            where.append("state = ANY(%s)")
            args.append(list(states))
        if user:
            where.append('"user" = %s')
            args.append(user)
        sql = f"SELECT {_COLS} FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._cursor() as cur:
            rows = cur.execute(sql + " ORDER BY created, seq", args).fetchall()
        return [_from_row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        """Change some columns of a job (names checked against the table's)."""
        row = self._to_row(checked_fields(fields))
        if not row:
            return
        sets = ", ".join(f'"{c}" = %s' for c in row)
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET {sets} WHERE id = %s", [*row.values(), job_id])

    def close(self) -> None:
        """Close the connections and let another service take the database."""
        with self._lock:
            for db in (self._db, self._claim_db):
                if db is not None:
                    with contextlib.suppress(Exception):
                        db.close()
            self._claim_db = None

    def _to_row(self, fields: dict[str, Any]) -> dict[str, Any]:
        row = dict(fields)
        if "request" in row:
            row["request"] = self._pg.types.json.Jsonb(row["request"])
        for flag in ("overwrite", "resume"):
            if flag in row:
                row[flag] = bool(row[flag])
        for name in _TIMES:
            if isinstance(row.get(name), str):
                row[name] = dt.datetime.fromisoformat(row[name])
        return row


def _from_row(row: tuple[Any, ...]) -> JobRecord:
    d = dict(zip(JOB_COLUMNS, row))
    for name in _TIMES:
        if d[name] is not None:
            d[name] = d[name].astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return JobRecord(**d)


def _parse(pg: Any, url: str) -> tuple[dict[str, Any], str, str]:
    """The connection parameters of ``url``, where it points (``host:port/database``, no password) and the password."""
    found = re.search(r"://[^/@:]*:([^/@]*)@", url) or re.search(r"password=([^&\s]+)", url)
    secret = found.group(1) if found else ""
    try:
        params = pg.conninfo.conninfo_to_dict(url)
    except pg.Error as exc:
        shown = url.replace(secret, "***") if secret else url
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{shown} is not a PostgreSQL URL ({reason.replace(secret, '***') if secret else reason}); "
                       f"{_GIVE_URL}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    params.setdefault("application_name", "geoloom")
    secret = str(params.get("password") or secret or "")
    host = params.get("host") or params.get("hostaddr") or "localhost"
    where = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"
    return params, where, secret
