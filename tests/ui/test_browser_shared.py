"""Shared use in a real browser: two analysts run at once on ``geoloom ui``'s one job service and cluster,
each recorded under their own name; the UI server killed mid-run loses nothing.

Debian's Chromium, two browser contexts (two people); runs go to the job service that ``geoloom ui``
starts (or to ``geoloom serve``), never into the web server.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, map_frame_locator, shot, stop, wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium); CI installs it"),
]
BAY = (-0.054, 5.618, -0.027, 5.645)


def geoloom_exe() -> str:
    exe = Path(sys.executable).with_name("geoloom")
    return str(exe) if exe.exists() else shutil.which("geoloom") or "geoloom"


def start_ui(catalog: Path, runs: Path, log: Path, *, service: str | None = None, port: int | None = None):
    """``geoloom ui`` as a user starts it (its own job service unless ``service``); (process, URL)."""
    port = port or free_port()
    cmd = [geoloom_exe(), "ui", "--catalog", str(catalog), "--runs", str(runs), "--port", str(port),
           "--host", "127.0.0.1"] + (["--service", service] if service else [])
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", GEOLOOM_BASEMAP="none",
               GEOLOOM_UI_TRUECOLOUR="0")
    for name in ("GEOLOOM_RUNTIME", "GEOLOOM_SCHEDULER", "GEOLOOM_SERVICE"):
        env.pop(name, None)
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT, cwd=runs.parent,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, timeout=120)
    return proc, url


def ledger_lines(folder: Path) -> int:
    f = folder / "ledger.jsonl"
    return len(f.read_text().splitlines()) if f.exists() else 0


def prepare_run(page, url: str, tile_size: int) -> None:
    """Open the page, give the bay as a bounding box, pick fdi and a tile size; the Run button is ready."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    expect(map_frame_locator(page).locator(".leaflet-draw-draw-rectangle")).to_be_visible(timeout=90_000)
    model = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    model.click()
    page.get_by_role("option", name=re.compile(r"\(fdi\)")).click()
    page.get_by_role("tab", name="Bounding box").click()
    page.get_by_role("textbox", name="West South East North (degrees)").fill(" ".join(map(str, BAY)))
    page.get_by_role("button", name="Use bounding box").click()
    expect(page.get_by_text("bbox", exact=False).first).to_be_visible(timeout=30_000)
    page.get_by_text("More options (collection, filters, threshold, grid)").click()
    page.get_by_role("textbox", name="Tile size (px)").fill(str(tile_size))
    page.get_by_role("textbox", name="Tile size (px)").press("Enter")
    expect(page.locator("[data-testid='stMetric']").filter(has_text="Tiles")).to_contain_text(
        str((-(-302 // tile_size)) ** 2), timeout=30_000)
    expect(page.get_by_role("button", name="Run fdi")).to_be_enabled(timeout=30_000)


def run_folder(page) -> Path:
    """The run folder the page shows in its progress caption."""
    caption = page.get_by_text(re.compile("Output folder:")).first
    caption.wait_for(timeout=30_000)
    return Path(re.search(r"Output folder: (\S+)", caption.inner_text()).group(1).strip("`"))


def same_pixels(a: Path, b: Path) -> None:
    from geoloom.workflows import open_run

    da, db = open_run(a).dataset, open_run(b).dataset
    for name in da.data_vars:
        np.testing.assert_array_equal(da[name].values, db[name].values, err_msg=name)


def test_two_analysts_run_at_once_on_one_cluster(ui_catalog: Path, tmp_path: Path, geoloom_cli,
                                                  dask_workers_below) -> None:
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    from playwright.sync_api import expect, sync_playwright

    from geoloom.workflows import ServiceClient

    runs = tmp_path / "runs"
    runs.mkdir()
    proc, url = start_ui(ui_catalog, runs, tmp_path / "ui.log")
    ui = psutil.Process(proc.pid)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            # alice's name comes from the proxy in front of the app; bob types his once (kept in the address)
            alice = browser.new_context(viewport={"width": 1500, "height": 1000},
                                        extra_http_headers={"X-Forwarded-User": "alice"}).new_page()
            bob = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
            try:
                prepare_run(alice, url, 16)
                prepare_run(bob, url, 64)
                bob.get_by_role("textbox", name="Your name").fill("bob")
                bob.get_by_role("textbox", name="Your name").press("Enter")
                expect(bob).to_have_url(re.compile(r"user=bob"), timeout=30_000)
                alice.get_by_role("button", name="Run fdi").click()
                a = run_folder(alice)
                while ledger_lines(a) < 1:  # alice's job is on the cluster
                    time.sleep(0.05)
                bob.get_by_role("button", name="Run fdi").click()
                b = run_folder(bob)
                total_a = 19 * 19  # 302 px at 16 px
                a_when_b_started, most_workers = None, 0
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    if a_when_b_started is None and ledger_lines(b) >= 1:
                        a_when_b_started = ledger_lines(a)
                    most_workers = max(most_workers, len(dask_workers_below(ui)))
                    if (a / "run.json").exists() and (b / "run.json").exists():
                        break
                    time.sleep(0.05)
                for page in (alice, bob):
                    expect(page.get_by_text("Run finished", exact=False)).to_be_visible(timeout=120_000)
                shot(bob, "two-analysts")
            finally:
                browser.close()
        # tiles of the two jobs interleaved on the one warm cluster of the service: bob's first tile landed
        # while alice's job still had tiles to run
        assert a_when_b_started is not None and a_when_b_started < total_a, a_when_b_started
        assert most_workers == 2, most_workers
        jobs = {Path(j.out).resolve(): j for j in ServiceClient(_service_url(tmp_path / "ui.log")).jobs()}
        assert jobs[a.resolve()].user == "alice" and jobs[b.resolve()].user == "bob"
        for folder, size in ((a, 16), (b, 64)):
            ref = tmp_path / f"cli-{size}"
            subprocess.run([*geoloom_cli, "run", "--bbox", *map(str, BAY), "--model", "fdi", "--catalog",
                            str(ui_catalog), "--tile-size", str(size), "--runtime", "in-process", "--out", str(ref)],
                           check=True, capture_output=True, timeout=300)
            same_pixels(folder, ref)
    finally:
        stop(proc)


def _service_url(log: Path) -> str:
    """The job service ``geoloom ui`` started, as its log line says."""
    m = re.search(r"job service on (http://[0-9.]+:[0-9]+)", log.read_text())
    assert m, log.read_text()[-2000:]
    return m.group(1)


def test_the_ui_server_killed_mid_run_loses_nothing(ui_catalog: Path, tmp_path: Path, geoloom_cli,
                                                    dask_workers_below) -> None:
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    from playwright.sync_api import expect, sync_playwright

    from geoloom.workflows import ServiceClient, open_run

    runs = tmp_path / "runs"
    runs.mkdir()
    port = free_port()
    service = subprocess.Popen([*geoloom_cli, "serve", "--port", str(port), "--db", str(tmp_path / "jobs.sqlite"),
                                "--workers", "2"], stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    service_url = f"http://127.0.0.1:{port}"
    client = ServiceClient(service_url)
    end = time.monotonic() + 120
    while True:
        try:
            client.health()
            break
        except Exception:
            assert time.monotonic() < end and service.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.3)
    ui_port = free_port()
    proc, url = start_ui(ui_catalog, runs, tmp_path / "ui.log", service=service_url, port=ui_port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
            paused: list[psutil.Process] = []
            try:
                prepare_run(page, url + "/?user=carol", 16)
                page.get_by_role("button", name="Run fdi").click()
                folder = run_folder(page)
                while ledger_lines(folder) < 3:
                    time.sleep(0.05)
                # the service's workers pause while the web server is down and comes back, so that the job
                # is still running when the page reloads however fast its tiles go
                paused = dask_workers_below(psutil.Process(service.pid))
                assert paused
                for w in paused:
                    w.suspend()
                os.killpg(proc.pid, signal.SIGKILL)  # the web server dies mid-run
                proc.wait(10)
                assert not (folder / "run.json").exists(), "the run ended before the UI was killed; use more tiles"
                proc, url = start_ui(ui_catalog, runs, tmp_path / "ui.log", service=service_url, port=ui_port)
                page.reload(wait_until="domcontentloaded")
                # the reloaded page finds carol's job still running on the service, follows it to its end
                assert run_folder(page).resolve() == folder.resolve()
                for w in paused:
                    w.resume()
                paused = []
                expect(page.get_by_text("Run finished", exact=False)).to_be_visible(timeout=240_000)
                shot(page, "after-ui-restart")
            finally:
                for w in paused:
                    w.resume()
                browser.close()
        job = next(j for j in client.jobs() if Path(j.out).resolve() == folder.resolve())
        assert job.state == "done" and job.user == "carol"
        run = open_run(folder)
        assert run.ok and run.tiles.done == run.tiles.total == 19 * 19
    finally:
        stop(proc)
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
