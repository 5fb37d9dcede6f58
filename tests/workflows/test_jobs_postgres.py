"""The job database on a real PostgreSQL server (pgserver: a PostgreSQL in a wheel, started per module):
the store's round trip, two stores on one database, the one-service claim, and `geoloom serve --db
postgresql://...` running jobs and resuming them after a SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import pytest

from geoloom.platform.errors import RunError
from geoloom.workflows import submit
from geoloom.workflows.jobs_db import JobRecord, open_job_store
from test_service import Service, free_port  # the same `geoloom serve` process helper


@pytest.fixture(scope="module")
def pg_server():
    """A PostgreSQL server of its own for this module (on a Unix socket in a temporary folder)."""
    pytest.importorskip("psycopg", reason="needs psycopg: pip install -e '.[test]'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns that XDG_RUNTIME_DIR is unset
        try:
            import pgserver
        except ImportError:
            pytest.skip("needs pgserver, a PostgreSQL server in a wheel (pip install -e '.[test]'; CPython 3.9-3.12)")
        server = pgserver.get_server(tempfile.mkdtemp(prefix="geoloom-pg-"), cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture()
def pg_url(pg_server) -> str:
    """The URL of a new, empty database on the server."""
    import psycopg

    name = f"geoloom_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri(name)


def job(user: str = "alice", out: str = "/runs/a", request: dict | None = None, **fields) -> JobRecord:
    return JobRecord(id="", user=user, out=out, request=request or {"model": {"name": "fdi"}}, **fields)


def test_a_job_reads_back_as_written_and_lists_by_state_and_user(pg_url):
    request = {"model": {"name": "fdi", "threshold": 0.12345678901234}, "region": {"type": "Feature", "coordinates": [
        [1.5, -2.25]]}, "tags": ["é", "日本"], "none": None, "big": 2**53, "nested": {"b": 1, "a": [True, False]}}
    store = open_job_store(pg_url)
    try:
        a = store.add(job(request=request))
        b = store.add(job(user="bob", out="/runs/b", overwrite=True))
        assert len(a.id) == 12 and a.created and a.created.endswith("+00:00")
        assert store.get(a.id) == a and store.get(a.id).request == request
        assert store.get("nosuchjob") is None
        assert [j.id for j in store.list()] == [a.id, b.id]
        store.update(b.id, state="running", started="2024-05-06T07:08:09+00:00", tiles_total=10, tiles_done=3)
        running = store.list(states=("running",))
        assert [j.id for j in running] == [b.id]
        assert running[0].started == "2024-05-06T07:08:09+00:00" and running[0].fraction == 0.3
        assert running[0].overwrite is True and running[0].resume is False
        assert [j.id for j in store.list(states=("queued", "running"))] == [a.id, b.id]
        assert [j.id for j in store.list(user="bob")] == [b.id]
        assert store.list(user="bob", states=("queued",)) == []
        store.update(a.id, state="failed", error="no scenes", finished="2024-05-06T09:00:00+00:00", resume=True)
        failed = store.get(a.id)
        assert failed.final and failed.error == "no scenes" and failed.resume is True
        with pytest.raises(ValueError, match="unknown job columns"):
            store.update(a.id, colour="red")
    finally:
        store.close()


def test_two_stores_on_one_database_see_each_others_jobs(pg_url):
    one, two = open_job_store(pg_url), open_job_store(pg_url.replace("postgresql://", "postgres://"))
    try:
        a = one.add(job())
        assert two.get(a.id) == a
        two.update(a.id, state="done", tiles_done=4, tiles_total=4)
        assert one.get(a.id).state == "done" and one.get(a.id).fraction == 1.0
        b = two.add(job(user="bob"))
        assert [j.id for j in one.list()] == [a.id, b.id]
    finally:
        one.close()
        two.close()


def test_one_service_at_a_time_holds_a_database(pg_server, pg_url, monkeypatch):
    from geoloom.workflows import jobs_postgres

    monkeypatch.setattr(jobs_postgres, "CLAIM_WAIT_S", 0.5)
    first = open_job_store(pg_url, exclusive=True)
    try:
        with pytest.raises(RunError, match="another geoloom service uses the job database") as refused:
            open_job_store(pg_url, exclusive=True)
        assert "\n" not in str(refused.value)
        reader = open_job_store(pg_url)  # readers are never refused
        reader.add(job())
        reader.close()
        open_job_store(pg_server.get_uri("postgres"), exclusive=True).close()  # the claim is per database, not per server
    finally:
        first.close()
    second = open_job_store(pg_url, exclusive=True)
    assert len(second.list()) == 1
    second.close()


def test_without_psycopg_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(RunError) as err:
        open_job_store("postgresql://geoloom:geoloom@db.example:5432/geoloom")
    assert str(err.value) == "PostgreSQL job databases need psycopg: pip install 'geoloom[postgres]'"


def test_a_server_that_is_not_there_is_named_without_the_password():
    pytest.importorskip("psycopg", reason="needs psycopg: pip install -e '.[test]'")
    port = free_port()
    for url in (f"postgresql://geoloom:s3cret@127.0.0.1:{port}/jobs", "postgresql://geoloom:s3cret@127.0.0.1:notaport/jobs",
                "postgresql://geoloom:s3cret@127.0.0.1/jobs?nosuchoption=1"):
        with pytest.raises(RunError) as err:
            open_job_store(url, exclusive=True)
        message = str(err.value)
        assert "127.0.0.1" in message and "s3cret" not in message and "\n" not in message, message
    with pytest.raises(RunError, match="mysql:// URLs are not supported"):
        open_job_store("mysql://geoloom:s3cret@127.0.0.1/jobs")


def ledger_keys(folder: Path) -> list[str]:
    f = folder / "ledger.jsonl"
    return [json.loads(line)["key"] for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


@pytest.mark.slow
def test_serve_on_postgres_runs_jobs_and_a_killed_service_resumes_them(geoloom_cli, sample_catalog, pg_url, tmp_path):
    log = tmp_path / "serve.log"
    first = Service(geoloom_cli, pg_url, log, "--max-jobs", "1")
    try:
        small = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "small", tile_size=64,
                       service=first.url)
        assert small.result(timeout=120).ok
        assert small.record.state == "done" and small.record.tiles_done == small.record.tiles_total > 0
        again = subprocess.run([*geoloom_cli, "serve", "--db", pg_url, "--port", str(free_port())],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "another geoloom service uses the job database" in again.stderr, again.stderr

        running = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "k", tile_size=32,
                         service=first.url)
        queued = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "q", tile_size=64,
                        service=first.url, user="bob")
        deadline = time.time() + 120
        while len(ledger_keys(tmp_path / "k")) < 3:
            assert time.time() < deadline, "the job did not start"
            time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()
    done_before = set(ledger_keys(tmp_path / "k"))
    reader = open_job_store(pg_url)
    try:
        states = {j.id: j.state for j in reader.list()}
    finally:
        reader.close()
    assert states == {small.id: "done", running.id: "running", queued.id: "queued"}
    assert not (tmp_path / "k" / "run.json").exists(), "the service was killed mid-job"

    second = Service(geoloom_cli, pg_url, log)
    try:
        for handle in (running, queued):
            record = second.client.wait(handle.id, timeout_s=180)
            assert record.state == "done" and record.tiles_done == record.tiles_total > 0, record.error
        assert second.client.job(queued.id).user == "bob"
    finally:
        second.stop()
    recomputed = ledger_keys(tmp_path / "k")[len(done_before):]
    assert recomputed and not set(recomputed) & done_before, "tiles done before the kill were computed again"
