"""Time to first result: from ``geoloom run`` to the first tile written, and from the UI to its
first map.

    python -m benchmarks first_result [--quick] [--no-ui]

CLI: ``geoloom run --preset sample-bay --model marine-debris`` (the demo; embedded Dask
cluster) as a fresh process; the ledger and the run folder are polled every 0.05 s for the
first tile written (its ledger line, appended after its core is in the Zarr store) and the
published manifest. Start-up is broken down by ``benchmarks.child startup`` (imports, cluster
start, worker imports, model load). UI: ``geoloom ui`` on loopback driven by Debian's Chromium
(Playwright, headless): seconds from starting the server to the app served, to the map shown
and to the imagery preview on it; then the sample bay is drawn, the run started, and the
seconds from the click to the first tile drawn as done on the live map and to the result
layer on the map. ``--quick``: the CLI once, no UI.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO, check, ensure_sample_catalog, finish_report, geoloom_exe, machine_line, median, new_report, ratio, row,
    run_child, write_report,
)

CASE = "first_result"
MODEL = "marine-debris"
PRESET = "sample-bay"
BAY_BBOX = (-0.054, 5.618, -0.027, 5.645)  # the sample-bay preset's box
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
MAP_FRAME = "iframe[title='streamlit_folium.st_folium']:not([width='-1'])"  # a rerun may leave an unsized one behind
DONE_COLOUR = "#43a047"


# --------------------------------------------------------------------------- command line
def _first_done(ledger: Path) -> bool:
    try:
        return any('"state": "done"' in line for line in ledger.read_text().splitlines())
    except OSError:
        return False


def cli_once(catalog: Path, out: Path, poll_s: float = 0.05, timeout: float = 1800) -> dict[str, Any]:
    """One ``geoloom run`` with the times of its first tile and its published manifest."""
    cmd = [geoloom_exe(), "run", "--preset", PRESET, "--model", MODEL, "--catalog", str(catalog), "--out", str(out),
           "--overwrite", "--composite", "-q"]
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    while proc.poll() is None:
        t = time.perf_counter() - t0
        if "store_created_s" not in marks and (out / "result.zarr" / "zarr.json").exists():
            marks["store_created_s"] = round(t, 3)
        if "first_tile_s" not in marks and _first_done(out / "ledger.jsonl"):
            marks["first_tile_s"] = round(t, 3)
        if "published_s" not in marks and (out / "run.json").exists():
            marks["published_s"] = round(t, 3)
        if t > timeout:
            proc.kill()
        time.sleep(poll_s)
    total = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"geoloom run failed ({proc.returncode}): {err[-2000:]}")
    marks.setdefault("first_tile_s", marks.get("published_s", total))
    tiles = json.loads((out / "run.json").read_text())["properties"]["geoloom:tiles"]
    return {**marks, "exit_s": round(total, 3), "tiles": tiles["total"], "command": " ".join(cmd[1:])}


def startup_breakdown() -> dict[str, Any]:
    """The start-up steps of a Dask run, in a fresh process."""
    child = check(run_child(["-m", "benchmarks.child", "startup", json.dumps({"model": MODEL, "workers": 2})]), "startup")
    return {**child.result, "process_s": child.wall_s}


# --------------------------------------------------------------------------- web UI
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"geoloom ui exited with {proc.returncode}")
        try:
            with opener.open(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("geoloom ui did not start in time")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop the UI server and the Streamlit process it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _map_point(page: Any, frame: Any, lon: float, lat: float) -> tuple[float, float]:
    box = page.locator(MAP_FRAME).bounding_box()
    x, y = frame.evaluate(
        """([lat, lon]) => {
            const p = window.map.latLngToContainerPoint(L.latLng(lat, lon));
            const r = window.map.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""", [lat, lon])
    return box["x"] + x, box["y"] + y


def _draw_bbox(page: Any, bbox: tuple[float, float, float, float]) -> None:
    frames = page.frame_locator(MAP_FRAME)
    frame = page.locator(MAP_FRAME).element_handle(timeout=60_000).content_frame()
    frames.locator(".leaflet-draw-draw-rectangle").click()
    w, s, e, n = bbox
    x0, y0 = _map_point(page, frame, w, n)
    x1, y1 = _map_point(page, frame, e, s)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def ui_once(catalog: Path, tmp: Path) -> dict[str, Any]:
    """Start ``geoloom ui``, open it in Chromium, run the sample bay; seconds of each milestone."""
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [geoloom_exe(), "ui", "--catalog", str(catalog), "--runs", str(tmp / "runs"), "--port", str(port),
           "--host", "127.0.0.1"]
    env = dict(os.environ, STREAMLIT_SERVER_ENABLE_STATIC_SERVING="true", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
               GEOLOOM_BASEMAP="none")
    env.pop("GEOLOOM_RUNTIME", None)
    env.pop("GEOLOOM_SCHEDULER", None)
    marks: dict[str, float | None] = {}
    log = open(tmp / "ui.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    try:
        wait_healthy(url, proc)
        marks["server_ready_s"] = round(time.perf_counter() - t0, 3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                       else r.abort())
            try:
                page.goto(url, wait_until="domcontentloaded")
                frames = page.locator(MAP_FRAME).first.content_frame
                expect(frames.locator(".leaflet-draw-draw-rectangle")).to_be_visible(timeout=120_000)
                marks["map_shown_s"] = round(time.perf_counter() - t0, 3)
                try:
                    expect(frames.locator("img.leaflet-image-layer")).to_have_count(1, timeout=180_000)
                    marks["preview_shown_s"] = round(time.perf_counter() - t0, 3)
                except AssertionError:
                    marks["preview_shown_s"] = None
                _draw_bbox(page, BAY_BBOX)
                expect(page.locator("[data-testid='stMetric']").filter(has_text="Tiles")).to_be_visible(timeout=60_000)
                page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
                page.get_by_role("option", name=re.compile(rf"\({re.escape(MODEL)}\)")).click()
                button = page.get_by_role("button", name=f"Run {MODEL}")
                expect(button).to_be_enabled(timeout=60_000)
                t_click = time.perf_counter()
                button.click()
                live = page.locator(MAP_FRAME).first.content_frame
                expect(live.locator(f"path.leaflet-interactive[stroke='{DONE_COLOUR}']").first).to_be_attached(timeout=600_000)
                marks["click_to_first_tile_on_map_s"] = round(time.perf_counter() - t_click, 3)
                expect(page.get_by_text("Run finished", exact=False)).to_be_visible(timeout=600_000)
                marks["click_to_run_finished_s"] = round(time.perf_counter() - t_click, 3)
                expect(live.locator(".geoloom-tiles[style*='opacity: 0.75'] img.leaflet-tile-loaded").first).to_be_attached(
                    timeout=120_000)  # the result layer's first tile, rendered from its COG
                marks["click_to_result_map_s"] = round(time.perf_counter() - t_click, 3)
                marks["server_start_to_result_map_s"] = round(time.perf_counter() - t0, 3)
            finally:
                browser.close()
    finally:
        stop_group(proc)
        log.close()
    return marks


def run(quick: bool = False, shared: dict[str, Any] | None = None, ui: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    catalog = ensure_sample_catalog()
    repeats = 1 if quick else 3
    with_ui = ui and not quick and CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None
    report = new_report(CASE, quick, {
        "model": MODEL, "region": PRESET, "repeats_cli": repeats, "ui": with_ui,
        "cli": f"geoloom run --preset {PRESET} --model {MODEL} --catalog CATALOG --out DIR --overwrite -q",
        "ui_runtime": "the UI's default (embedded Dask cluster)",
        "command": f"python -m benchmarks {CASE}" + (" --quick" if quick else ""),
    })
    with tempfile.TemporaryDirectory(prefix="geoloom-first-") as tmp:
        cli = [cli_once(catalog, Path(tmp) / f"cli-{i}") for i in range(repeats)]
        startup = startup_breakdown() if not quick else None
        ui_marks = ui_once(catalog, Path(tmp)) if with_ui else None
    first = median([c["first_tile_s"] for c in cli])
    total = median([c["exit_s"] for c in cli])
    report.update({
        "cli_runs": cli, "cli_median": {"first_tile_s": first, "published_s": median([c.get("published_s", total) for c in cli]),
                                         "exit_s": total},
        "first_tile_share_of_run": ratio(first, total), "startup_breakdown": startup, "ui": ui_marks,
    })
    finish_report(report, started)
    rows = [row(CASE, "CLI: s to first tile written (median)", first, None, None,
                f"exit at {total} s; {machine_line(report['machine'])}")]
    if ui_marks:
        rows.append(row(CASE, "UI: s from Run click to result map", ui_marks.get("click_to_result_map_s"), None, None,
                        f"first tile on map {ui_marks.get('click_to_first_tile_on_map_s')} s; map shown "
                        f"{ui_marks.get('map_shown_s')} s after server start"))
    report["summary"] = rows
    write_report(CASE, report)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-ui", action="store_true", help="skip the browser part")
    args = ap.parse_args()
    for r in run(args.quick, ui=not args.no_ui)["summary"]:
        print(r)


if __name__ == "__main__":
    main()
