"""The job service as a user meets it: `geoloom serve` as a real process on loopback with real Dask
workers, jobs submitted from Python and the CLI, taking turns on one cluster, cancelled, and resumed
after the service is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pystac
import pytest

from geoloom.workflows import detect
from geoloom.workflows.api import Run
from geoloom.workflows.service_client import ServiceClient, submit

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A `geoloom serve` process with two workers on a job database (a SQLite file or a PostgreSQL URL)."""

    def __init__(self, cli: list[str], db: str | Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([*cli, "serve", "--db", str(db), "--port", str(self.port), "--workers", "2", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.client = ServiceClient(self.url)
        deadline = time.time() + 120
        while True:
            assert self.proc.poll() is None, Path(log).read_text()
            try:
                if self.client.health()["workers"] == 2:
                    break
            except Exception:
                pass
            assert time.time() < deadline, "the service did not start"
            time.sleep(0.2)

    def workers(self) -> list[psutil.Process]:
        """The Dask worker processes this service started (`dask_spec` in their command line)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for p in children:
            try:
                if any("dask_spec" in part for part in p.cmdline()):
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cli_env(url: str) -> dict[str, str]:
    return dict(os.environ, GEOLOOM_SERVICE=url)


def ledger_lines(folder: Path) -> int:
    f = folder / "ledger.jsonl"
    return len(f.read_text().splitlines()) if f.exists() else 0


def wait_until(cond, timeout: float = 120, every: float = 0.02) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(every)


def same_arrays(a: Run, b: Run) -> None:
    da, db = a.dataset, b.dataset
    assert set(da.data_vars) == set(db.data_vars)
    for name in da.data_vars:
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)


@pytest.fixture(scope="module")
def refs(sample_catalog, tmp_path_factory):
    """Direct runs (no service) of the two requests the jobs run."""
    root = tmp_path_factory.mktemp("refs")
    return {size: detect("sample-bay", model="fdi", catalog=sample_catalog, out=root / f"t{size}", tile_size=size,
                         runtime="in-process", progress=False) for size in (32, 64)}


@pytest.fixture(scope="module")
def service(geoloom_cli, tmp_path_factory):
    """One service for the module's tests that do not kill it."""
    root = tmp_path_factory.mktemp("service")
    svc = Service(geoloom_cli, root / "jobs.sqlite", root / "serve.log")
    yield svc
    svc.stop()


def test_the_service_starts_its_workers_with_the_default_model_loaded(service):
    """Before any job: each worker holds marine-debris on ONNX Runtime (run once, see ``warm_worker``)."""
    workers = service.workers()
    assert len(workers) == 2
    for p in workers:
        assert any("onnxruntime" in m.path for m in p.memory_maps()), p.pid


def test_two_jobs_take_turns_on_one_cluster_and_equal_direct_runs(service, geoloom_cli, sample_catalog, refs, tmp_path):
    assert len(service.workers()) == 2
    a = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "a", tile_size=32, service=service.url)
    wait_until(lambda: ledger_lines(tmp_path / "a") >= 1)  # the first job is running on the cluster
    b = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "b", tile_size=64, service=service.url,
               user="alice")
    total_a, total_b = refs[32].tiles.total, refs[64].tiles.total
    a_when_b_ended, workers_seen, seen = None, set(), []
    while not (a.record.final and b.record.final):
        n_a, n_b = ledger_lines(tmp_path / "a"), ledger_lines(tmp_path / "b")
        if a_when_b_ended is None and n_b == total_b:
            a_when_b_ended = n_a
        seen.append((n_a, n_b))
        workers_seen.add(len(service.workers()))
        time.sleep(0.02)
    run_a, run_b = a.result(), b.result()
    # tile i of each job has priority -i: the later job's first tiles go before the first job's later
    # ones, so it ends while the first still has tiles to run; in first-come order it would queue behind
    assert a_when_b_ended is not None and a_when_b_ended <= total_a * 2 // 3, sorted(set(seen))
    assert workers_seen == {2}, "one cluster of two workers served both jobs"
    assert run_a.timings["cluster"]["address"] == run_b.timings["cluster"]["address"]
    assert run_a.ok and run_b.ok
    same_arrays(refs[32], run_a)
    same_arrays(refs[64], run_b)
    assert b.record.user == "alice" and a.record.user
    assert b.progress().fraction == 1.0

    listed = subprocess.run([*geoloom_cli, "jobs", "--json"], capture_output=True, text=True, timeout=120,
                            env=cli_env(service.url))
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[b.id]["user"] == "alice" and rows[b.id]["state"] == "done" and rows[b.id]["model"] == "fdi"
    assert rows[a.id]["progress"] == f"{total_a}/{total_a}" and rows[a.id]["region"] == "sample-bay"


def test_cancel_stops_a_job_and_keeps_its_tiles(service, geoloom_cli, sample_catalog, tmp_path):
    job = submit("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "c", tile_size=32, service=service.url)
    wait_until(lambda: ledger_lines(tmp_path / "c") >= 1)
    job.cancel()
    wait_until(lambda: job.record.final, every=0.1)
    record = job.record
    assert record.state == "cancelled"
    assert 0 < record.tiles_done < record.tiles_total
    run = Run(tmp_path / "c")
    assert run.tiles.done == record.tiles_done and run.tiles.missing > 0  # the tiles done are published
    waited = subprocess.run([*geoloom_cli, "jobs", "wait", job.id], capture_output=True, text=True, timeout=120,
                            env=cli_env(service.url))
    assert waited.returncode == 2 and "cancelled" in waited.stderr
    with pytest.raises(Exception, match="cancelled"):
        job.result()


def test_jobs_wait_exit_codes(service, geoloom_cli, sample_catalog, catalog_copy, tmp_path):
    env = cli_env(service.url)

    def geoloom(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([*geoloom_cli, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)

    done = geoloom("submit", "--preset", "sample-bay", "--model", "fdi", "--catalog", sample_catalog, "--tile-size", 128,
                   "--out", tmp_path / "ok", "--user", "bob")
    assert done.returncode == 0, done.stderr
    ok = geoloom("jobs", "wait", done.stdout.strip())
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str((tmp_path / "ok").resolve())

    again = geoloom("submit", "--preset", "sample-bay", "--model", "fdi", "--catalog", sample_catalog, "--tile-size", 128,
                    "--out", tmp_path / "ok", "--wait")  # the folder holds a run: the job fails with the reason
    assert again.returncode == 2 and "already holds run" in again.stderr, again.stderr

    cat = pystac.Catalog.from_file(str(catalog_copy))
    for item in cat.get_items(recursive=True):  # tiles over the UTM 31N scenes fail, the others do not
        if item.properties.get("proj:code") == "EPSG:32631":
            nir = Path(item.assets["nir"].get_absolute_href())
            nir.write_bytes(nir.read_bytes()[:4096])
    partial = geoloom("submit", "--preset", "sample-area", "--model", "fdi", "--catalog", catalog_copy, "--tile-size", 256,
                      "--retries", 0, "--out", tmp_path / "partial")
    assert partial.returncode == 0, partial.stderr
    some_failed = geoloom("jobs", "wait", partial.stdout.strip())
    assert some_failed.returncode == 3, some_failed.stderr

    unknown = geoloom("jobs", "cancel", "nosuchjob")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "no job" in unknown.stderr


def test_a_killed_service_resumes_its_job_with_identical_results(geoloom_cli, sample_catalog, refs, tmp_path):
    db, out = tmp_path / "jobs.sqlite", tmp_path / "k"
    first = Service(geoloom_cli, db, tmp_path / "serve.log")
    try:
        job = submit("sample-bay", model="fdi", catalog=sample_catalog, out=out, tile_size=32, service=first.url)
        wait_until(lambda: ledger_lines(out) >= 3)
        workers = first.workers()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()
    done_before = {json.loads(line)["key"] for line in (out / "ledger.jsonl").read_text().splitlines() if line.strip()}
    total = refs[32].tiles.total
    assert 3 <= len(done_before) < total and not (out / "run.json").exists(), "the service was killed mid-job"
    psutil.wait_procs(workers, timeout=30)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers), "workers outlived the service"

    second = Service(geoloom_cli, db, tmp_path / "serve.log")
    try:
        record = second.client.wait(job.id, timeout_s=180)
        assert record.state == "done", record.error
        assert record.tiles_done == total and record.tiles_failed == 0
        assert len(second.workers()) == 2
    finally:
        second.stop()
    keys = [json.loads(line)["key"] for line in (out / "ledger.jsonl").read_text().splitlines() if line.strip()]
    recomputed = keys[len(done_before):]
    assert not set(recomputed) & done_before, "tiles done before the kill were computed again"
    same_arrays(refs[32], Run(out))


def test_a_run_from_the_page_goes_to_the_service_and_outlives_the_page(service, sample_catalog, refs, tmp_path,
                                                                       monkeypatch):
    """The page sends its run to the job service; the page goes away mid-run, the job finishes, and a new
    page lists it in the history and opens it with the same pixels as a direct run."""
    import streamlit_folium
    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
    monkeypatch.setattr(streamlit_folium, "st_folium", lambda *args, **kwargs: None)
    for key, value in {"GEOLOOM_SERVICE": service.url, "GEOLOOM_CATALOG": str(sample_catalog),
                       "GEOLOOM_RUNS": str(tmp_path / "runs"), "GEOLOOM_UI_PREVIEW": "0",
                       "GEOLOOM_BASEMAP": "none", "GEOLOOM_UI_TRUECOLOUR": "0"}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(app, default_timeout=90)
    at.run()
    at.selectbox(key="model").set_value("fdi").run()
    at.selectbox(key="preset").set_value("sample-bay").run()
    at.text_input(key="tile_size").set_value("64").run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job_id = at.session_state["job_id"]
    record = service.client.job(job_id)  # the page's job is the service's
    assert record.request["model"]["name"] == "fdi"
    del at  # the page (and its server session) goes away mid-run
    done = service.client.wait(job_id, timeout_s=180)
    assert done.state == "done"
    same_arrays(Run(Path(done.out)), refs[64])
    again = AppTest.from_file(app, default_timeout=90)
    again.run()
    assert any("fdi · sample-bay" in o for o in again.selectbox(key="history_pick").options)
    again.selectbox(key="history_pick").set_value(done.out).run()
    again.button(key="open_run").click().run()
    assert not again.exception and not again.error, [e.value for e in again.error]
    assert any("Result" in str(s.value) for s in again.subheader)


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_geoloom_ui_starts_a_job_service_of_its_own_and_stops_it(geoloom_cli, sample_catalog, tmp_path, stop):
    """Ctrl-C and a process manager's SIGTERM both stop the UI's own service, also where the UI was started
    with SIGINT ignored (a shell starts a script's background commands so, and CI runs the tests so)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GEOLOOM_RUNTIME", "GEOLOOM_SERVICE")}
    ui_port = free_port()
    proc = subprocess.Popen([*geoloom_cli, "ui", "--port", str(ui_port), "--runs", str(tmp_path / "runs"),
                             "--catalog", str(sample_catalog)], env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_ignored)
    try:
        url = None
        deadline = time.time() + 180
        while url is None and time.time() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            assert line or proc.poll() is None, "geoloom ui ended before its service started"
            if line.startswith("job service on "):
                url = line.split()[3]
        assert url, "no job service was started"
        # keep reading what the UI, its service and Streamlit write (they share this pipe): a full pipe
        # would block their logging, and with it their shutdown, which a terminal never does
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        client = ServiceClient(url)
        assert client.health()["workers"] >= 1 and (tmp_path / "runs" / "jobs.sqlite").exists()
        service_pids = [p.pid for p in psutil.Process(proc.pid).children() if "serve" in p.cmdline()]
        assert len(service_pids) == 1
        ui_url, deadline = f"http://127.0.0.1:{ui_port}/", time.time() + 120  # the page is up, as a user sees it
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(ui_url, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        proc.send_signal(getattr(signal, stop))
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in service_pids if psutil.pid_exists(p)], timeout=90)
    assert not alive, "the UI's job service outlived the UI"


def test_a_page_run_on_the_service_gets_its_true_colour_layer(service, sample_catalog, tmp_path, monkeypatch):
    import streamlit_folium
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(streamlit_folium, "st_folium", lambda *args, **kwargs: None)
    for key, value in {"GEOLOOM_SERVICE": service.url, "GEOLOOM_CATALOG": str(sample_catalog),
                       "GEOLOOM_RUNS": str(tmp_path / "runs"), "GEOLOOM_UI_PREVIEW": "0",
                       "GEOLOOM_BASEMAP": "none"}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "ui" / "app.py"), default_timeout=90)
    at.run()
    at.selectbox(key="model").set_value("fdi").run()
    at.selectbox(key="preset").set_value("sample-bay").run()
    at.button(key="run").click().run()
    deadline = time.time() + 180
    while not at.session_state["view_folder"] if "view_folder" in at.session_state else True:
        assert time.time() < deadline, "the page's run did not finish"
        time.sleep(1.0)
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    out = Path(at.session_state["view_folder"])
    assert (out / "run.json").exists() and (out / "truecolour" / "run.json").exists()


def test_a_per_date_watch_runs_as_a_job_and_updates_as_one(service, sample_catalog, tmp_path):
    """A watched region through the service: the per-date job, then its update (the dates it lacks)."""
    from geoloom.workflows import RunRequest, ServiceClient, request_from_folder

    out = tmp_path / "watch"
    job = submit("sample-bay", model="fdi", catalog=sample_catalog, out=out, end="2024-01-10", per_date=True,
                 alert_object_m2=0.0, service=service.url)
    run = job.result()
    assert run.per_date and run.dates == ["2024-01-09"] and len(run.alerts) > 0
    direct = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "direct", start="2024-01-09",
                    end="2024-01-09", runtime="in-process", progress=False)
    np.testing.assert_array_equal(run.dataset["debris"].isel(time=0).values, direct.dataset["debris"].values)
    request: RunRequest = request_from_folder(out)
    request = request.replace(imagery=request.imagery.from_dict(request.imagery.to_dict() | {"end": None}))
    client = ServiceClient(service.url)
    again = client.wait(client.submit(request, resume=True).id, timeout_s=300)
    assert again.state == "done", again.error
    assert Run(out).dates == ["2024-01-09", "2024-01-14"]
    history = [json.loads(line)["date"] for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert history == ["2024-01-09", "2024-01-14"]
