"""End to end in a real browser: draw the sample bay on the map, run the debris model, see the result.

Debian's Chromium (never a downloaded browser) drives ``geoloom ui`` on loopback. Every request
to another host is refused, as in an air-gapped network: the page must load all its JavaScript
and CSS from the app, and the basemap must fall back to the imagery.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium); CI installs it"),
]
# screenshots are test artifacts; GEOLOOM_UPDATE_DOCS=1 also refreshes the README's pictures
ARTIFACTS = REPO / "test-artifacts" / "ui"
DOCS_IMG = REPO / "docs" / "img" if os.environ.get("GEOLOOM_UPDATE_DOCS") == "1" else None
DRAWN_BBOX = (-0.054, 5.618, -0.027, 5.645)  # the sample bay (its preset's box): one tile
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# the map's component iframe; a rerun may leave a second, unsized one (width -1) behind for a while
MAP_FRAME = "iframe[title='streamlit_folium.st_folium']:not([width='-1'])"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"geoloom ui exited with {proc.returncode}")
        try:
            with NO_PROXY.open(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("geoloom ui did not start in time")


@pytest.fixture()
def server(ui_catalog: Path, tmp_path: Path):
    """``geoloom ui`` on a free loopback port, runs in tmp, in-process runtime."""
    from geoloom.ui import assets

    if assets.missing_files():
        pytest.fail("map assets are not installed; run: python -m geoloom.ui.fetch_assets")
    port = free_port()
    exe = Path(sys.executable).with_name("geoloom")
    cmd = [str(exe) if exe.exists() else shutil.which("geoloom") or "geoloom", "ui", "--catalog", str(ui_catalog),
           "--runs", str(tmp_path / "runs"), "--port", str(port), "--host", "127.0.0.1"]
    env = dict(os.environ, GEOLOOM_RUNTIME="in-process", STREAMLIT_SERVER_ENABLE_STATIC_SERVING="true",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", GEOLOOM_BASEMAP="osm")
    env.pop("GEOLOOM_SCHEDULER", None)
    log = open(tmp_path / "ui.log", "w")
    # a session of its own, so that stopping it also stops the Streamlit process it starts
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop(proc)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "ui.log", ARTIFACTS / "ui-server.log")


def stop(proc: subprocess.Popen) -> None:
    """Stop ``geoloom ui`` and the Streamlit server it started (same process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + 15
    while time.monotonic() < end:
        proc.poll()  # reap the leader, so that only live processes count
        try:
            os.killpg(proc.pid, 0)  # is any process of the group left?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    page.screenshot(path=str(path))
    if DOCS_IMG is not None:
        shutil.copy(path, DOCS_IMG / path.name)


def map_point(page, frame, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates of a lon/lat on the Leaflet map inside the component's iframe."""
    box = page.locator(MAP_FRAME).first.bounding_box()
    x, y = frame.evaluate(
        """([lat, lon]) => {
            const p = window.map.latLngToContainerPoint(L.latLng(lat, lon));
            const r = window.map.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lat, lon],
    )
    return box["x"] + x, box["y"] + y


def map_frame(page):
    handle = page.locator(MAP_FRAME).first.element_handle(timeout=60_000)
    return handle.content_frame()


def test_draw_run_and_see_the_result(server):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    from playwright.sync_api import expect, sync_playwright

    from geoloom.workflows import list_cards

    model = "marine-debris" if "marine-debris" in {c.name for c in list_cards()} else "fdi"
    outside: list[str] = []

    def only_loopback(route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.route("**/*", only_loopback)
            page.goto(server, wait_until="domcontentloaded")
            frames = map_frame_locator(page)
            expect(frames.locator(".leaflet-draw-draw-rectangle")).to_be_visible(timeout=60_000)
            expect(frames.locator(".geoloom-offline-note")).to_be_visible(timeout=30_000)
            # the imagery's true-colour preview, the offline basemap, is made in the background on first start
            expect(frames.locator("img.leaflet-image-layer")).to_have_count(1, timeout=120_000)

            # draw a rectangle over the sample bay with the mouse
            frame = map_frame(page)
            frames.locator(".leaflet-draw-draw-rectangle").click()
            w, s, e, n = DRAWN_BBOX
            x0, y0 = map_point(page, frame, w, n)
            x1, y1 = map_point(page, frame, e, s)
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
            page.mouse.move(x1, y1, steps=5)
            page.mouse.up()
            region_line = page.locator("[data-testid='stMarkdownContainer']", has_text="drawn area").first
            expect(region_line).to_be_visible(timeout=30_000)
            region_text = region_line.inner_text()
            expect(page.locator("[data-testid='stMetric']").filter(has_text="Tiles")).to_be_visible(timeout=30_000)
            expect(map_frame_locator(page).locator("path.leaflet-interactive").first).to_be_attached(timeout=30_000)
            time.sleep(1)
            shot(page, "region")

            # pick the debris model in the sidebar
            page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
            page.get_by_role("option", name=re.compile(rf"\({re.escape(model)}\)")).click()
            # one composite result, not one per date (the model's default; a per-date run is the next
            # test's): the bay lies under cloud on its latest date, and the composite shows what the
            # clear date saw there
            per_date = page.get_by_role("checkbox", name="One result per acquisition date")
            expect(per_date).to_be_checked(timeout=30_000)
            per_date.uncheck(force=True)
            expect(per_date).not_to_be_checked(timeout=30_000)
            run_button = page.get_by_role("button", name=f"Run {model}")
            expect(run_button).to_be_enabled(timeout=30_000)
            run_button.click()

            # the run in progress: progress bar and the tiles on the map, coloured by state
            expect(page.locator("[data-testid='stProgress']")).to_be_visible(timeout=30_000)
            try:
                expect(map_frame_locator(page).locator(".geoloom-legend", has_text="running")).to_be_visible(timeout=15_000)
                time.sleep(0.5)
            except AssertionError:
                pass  # a fast machine may be done already; the screenshot then shows the end
            shot(page, "running")

            # the result: overlay image and detection polygons on the map
            expect(page.get_by_text("Run finished", exact=False)).to_be_visible(timeout=180_000)
            live = map_frame_locator(page)
            # the result and the run's true colour as XYZ tiles from their COGs, over the preview basemap
            expect(live.locator(".geoloom-tiles")).to_have_count(2, timeout=60_000)
            expect(live.locator(".geoloom-tiles[style*='opacity: 0.75'] img.leaflet-tile-loaded").first).to_be_attached(
                timeout=30_000)
            expect(live.locator("img.leaflet-image-layer")).to_have_count(1, timeout=60_000)
            detections = live.locator("path.leaflet-interactive[stroke='#ff1744']")
            expect(detections.first).to_be_attached(timeout=30_000)
            assert detections.count() >= 1
            expect(live.locator(".geoloom-legend")).to_be_visible()
            expect(page.get_by_role("button", name="Map (COG)")).to_be_visible()
            time.sleep(1.5)
            shot(page, "result")

            # a detection's popup tells score, area, date and scene; the click keeps the region
            # a point where a detection is what the mouse would hit (a thin curved windrow misses the
            # middle of its box, and the map's controls cover some)
            on_one = detections.evaluate_all(
                "ps => { for (const p of ps) { const r = p.getBoundingClientRect();"
                " for (let i = 1; i < 24; i++) for (let j = 1; j < 24; j++) {"
                " const x = r.left + r.width * i / 24, y = r.top + r.height * j / 24;"
                " if (document.elementFromPoint(x, y) === p) return [x, y]; } } return null; }")
            assert on_one is not None, "no detection can be clicked on the map"
            box = page.locator(MAP_FRAME).first.bounding_box()
            page.mouse.click(box["x"] + on_one[0], box["y"] + on_one[1])
            expect(live.locator(".leaflet-popup-content")).to_contain_text("Score", timeout=10_000)
            expect(live.locator(".leaflet-popup-content")).to_contain_text("Scene")
            time.sleep(1.5)
            assert page.locator("[data-testid='stMarkdownContainer']", has_text="drawn area").first.inner_text() == region_text
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-failure.png"))
            raise
        finally:
            browser.close()
    # nothing but the online basemap was asked of the outside world: no CDN script or stylesheet
    assert all("tile.openstreetmap.org" in u for u in outside), [u for u in outside if "openstreetmap" not in u][:5]


def open_from_history(page, server: str, text: str) -> None:
    """Load the page and open the run whose history entry contains ``text``."""
    from playwright.sync_api import expect

    page.goto(server, wait_until="domcontentloaded")
    # the imagery preview is made in the background on first start; the page reruns when it is ready
    expect(map_frame_locator(page).locator("img.leaflet-image-layer")).to_have_count(1, timeout=120_000)
    history = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text="Previous runs")
    expect(history).to_be_visible(timeout=60_000)
    history.get_by_role("combobox").click()
    page.keyboard.type(text)  # the select filters as one types
    page.get_by_role("option", name=re.compile(re.escape(text))).first.click()
    page.get_by_role("button", name="Open run").click()


def map_frame_locator(page):
    """The live map's content (the first sized map iframe)."""
    return page.locator(MAP_FRAME).first.content_frame


def test_a_per_date_run_shows_its_dates_and_chart(server, ui_catalog: Path, tmp_path: Path):
    """A watched region opened from the history: the date slider, the chart over time and the alerts."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    from playwright.sync_api import expect, sync_playwright

    from geoloom.workflows import detect

    run = detect("sample-bay", model="fdi", catalog=ui_catalog, out=tmp_path / "runs" / "watch-the-bay",
                 runtime="in-process", progress=False, per_date=True, alert_object_m2=0.0)
    assert len(run.dates) == 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        try:
            open_from_history(page, server, "fdi")

            slider = page.locator("[data-testid='stSlider']").filter(has_text="Date")
            expect(slider).to_be_visible(timeout=60_000)
            expect(slider.locator("[data-testid='stSliderThumbValue']")).to_have_text(run.dates[-1])
            expect(page.get_by_text(f"on {run.dates[-1]}", exact=False).first).to_be_visible()
            expect(page.locator("[data-testid='stVegaLiteChart']")).to_have_count(2, timeout=30_000)
            expect(page.get_by_text("Watching for", exact=False)).to_be_visible()
            expect(map_frame_locator(page).locator("img.leaflet-image-layer").first).to_be_attached(timeout=30_000)

            # the slider moves the page to the other date: its result on the map and its table
            slider.get_by_role("slider").focus()
            page.keyboard.press("ArrowLeft")
            expect(slider.locator("[data-testid='stSliderThumbValue']")).to_have_text(run.dates[0], timeout=30_000)
            expect(page.get_by_text(f"on {run.dates[0]}", exact=False).first).to_be_visible(timeout=30_000)
            page.get_by_text("Over time").scroll_into_view_if_needed()
            time.sleep(1.5)
            shot(page, "per-date")
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-failure-per-date.png"))
            raise
        finally:
            browser.close()


WIDE_BBOX = (-0.08, 5.50, 0.065, 5.645)  # about 16 x 16 km: a 1,600 px layer, wider than any whole-layer image


def test_zoomed_in_the_map_shows_the_cogs_own_pixels(server, ui_catalog: Path, tmp_path: Path):
    """A large result at the map's finest zoom: the tiles the browser gets are the COG's 10 m pixels, one
    by one (nearest), in the layer's colours."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    import io

    import morecantile
    import numpy as np
    import rasterio
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright
    from pyproj import Transformer

    from geoloom.platform.styles import CLASS_COLOURS, hex_rgb
    from geoloom.workflows import detect

    run = detect(WIDE_BBOX, model="fdi", catalog=ui_catalog, out=tmp_path / "runs" / "wide", runtime="in-process",
                 progress=False, per_date=False)
    cog = run.folder / "result-debris.tif"
    with rasterio.open(cog) as src:
        assert max(src.width, src.height) > 1400
        mask, crs, inverse = src.read(1), src.crs, ~src.transform
        # look where debris is densest: some 15 x 15 pixels around the best spot
        from scipy import ndimage

        row, col = np.unravel_index(np.argmax(ndimage.uniform_filter((mask == 1).astype("float32"), 15)), mask.shape)
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*(src.transform * (col + 0.5, row + 0.5)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            open_from_history(page, server, "fdi")
            page.locator("[data-testid='stRadio']").filter(has_text="Layer").get_by_text("debris", exact=True).click()
            live = map_frame_locator(page)
            expect(live.locator(".geoloom-tiles")).to_have_count(1, timeout=60_000)  # the result (no true colour here)
            time.sleep(2)  # the map is redrawn with the debris layer
            frame = map_frame(page)
            frame.evaluate("([lat, lon]) => window.map.setView([lat, lon], 18, {animate: false})", [lat, lon])
            result = live.locator(".geoloom-tiles[style*='opacity: 0.75'] img.leaflet-tile-loaded[src*='/18/']")
            expect(result.first).to_be_attached(timeout=30_000)
            time.sleep(1.5)
            shot(page, "finest-zoom")
            srcs = [result.nth(i).get_attribute("src") for i in range(min(result.count(), 6))]
            tiles = {src: page.request.get(src).body() for src in srcs}  # what the browser was served
        finally:
            browser.close()

    to_cog = Transformer.from_crs("EPSG:3857", crs, always_xy=True)
    colour = np.array(hex_rgb(CLASS_COLOURS[0]))
    agree = total = debris = 0
    for src, png in tiles.items():
        z, x, y = (int(v) for v in re.search(r"/(\d+)/(\d+)/(\d+)\.png", src).groups())
        rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        if rgba.shape[:2] != (256, 256):
            continue  # an empty tile (beyond the layer)
        b = morecantile.tms.get("WebMercatorQuad").xy_bounds(x, y, z)
        px = b.left + (np.arange(256) + 0.5) * (b.right - b.left) / 256
        py = b.top - (np.arange(256) + 0.5) * (b.top - b.bottom) / 256
        gx, gy = np.meshgrid(px, py)
        cx, cy = to_cog.transform(gx, gy)
        col, row = inverse * (cx, cy)
        col, row = np.floor(col).astype(int), np.floor(row).astype(int)
        inside = (row >= 0) & (row < mask.shape[0]) & (col >= 0) & (col < mask.shape[1])
        value = np.where(inside, mask[np.clip(row, 0, mask.shape[0] - 1), np.clip(col, 0, mask.shape[1] - 1)], 0)
        expected_on = value == 1
        shown_on = (rgba[..., 3] > 0) & (np.abs(rgba[..., :3].astype(int) - colour).sum(axis=-1) < 6)
        agree += int((expected_on == shown_on).sum())
        total += expected_on.size
        debris += int(expected_on.sum())
    assert total >= 256 * 256 and debris > 50, (total, debris)
    assert agree / total > 0.99, agree / total  # the layer's own 10 m pixels, not a decimated picture
