"""The UI's parts without a page: offline assets, the map's URLs, background jobs, layer images."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import folium
import pytest
from streamlit.testing.v1 import AppTest

from geoloom.ui import assets, jobs, map_view, rendering
from geoloom.workflows import Imagery, Region, build_request, open_run

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
BAY_BBOX = (-0.054, 5.618, -0.027, 5.645)


def needs_assets() -> None:
    if assets.missing_files():
        pytest.fail("map assets are not installed; run: python -m geoloom.ui.fetch_assets")


def page_urls(m: folium.Map) -> list[str]:
    """Every script and stylesheet URL streamlit-folium would load for this map."""
    urls: list[str] = []

    def walk(el):
        urls.extend(u for _, u in getattr(el, "default_js", []))
        urls.extend(u for _, u in getattr(el, "default_css", []))
        for child in getattr(el, "_children", {}).values():
            walk(child)

    walk(m)
    return urls


# -- offline assets ---------------------------------------------------------------------------


def test_static_assets_are_local_files():
    needs_assets()
    a = assets.map_assets(static_serving=True)
    assert a.mode == "static"
    for _, url in [*a.map_js, *a.map_css, *a.draw_js, *a.draw_css]:
        assert url.startswith("/app/static/vendor/")
        assert (assets.VENDOR_DIR / url.removeprefix("/app/static/vendor/")).is_file()
    assert assets.map_assets(static_serving=True, base_path="/geo/").map_js[0][1].startswith("/geo/app/static/")


def test_inline_assets_carry_their_images():
    needs_assets()
    a = assets.map_assets(static_serving=False)
    assert a.mode == "inline"
    urls = [u for _, u in [*a.map_js, *a.map_css, *a.draw_js, *a.draw_css]]
    assert all(u.startswith("data:") for u in urls)
    draw_css = dict(a.draw_css)["leaflet_draw_css"]
    text = base64.b64decode(draw_css.split(",", 1)[1]).decode()
    assert "spritesheet" not in text and "data:image/png;base64," in text


def test_map_asks_no_cdn_for_anything():
    needs_assets()
    content = map_view.MapContent(assets=assets.map_assets(static_serving=True), region=Region.from_bbox(BAY_BBOX))
    args = map_view.build_map(content)
    for group in args.feature_groups:
        group.add_to(args.fig)
    urls = page_urls(args.fig)
    assert urls and all(u.startswith("/app/static/vendor/") for u in urls), urls
    assert any("leaflet.draw.js" in u for u in urls)


def test_missing_assets_that_cannot_be_fetched_are_reported_in_place(ui_env, fake_map, monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "empty")
    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    assert not at.exception
    assert any("fetch_assets --user" in str(e.value) for e in at.error)
    assert assets.vendor_dir() is None


def test_a_package_without_assets_uses_the_per_user_copy_inlined(monkeypatch, tmp_path):
    user = tmp_path / "data" / "web" / "vendor"
    shutil.copytree(assets.VENDOR_DIR, user)
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "empty")
    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    assert assets.vendor_dir() == user
    a = assets.map_assets(static_serving=True)
    assert a.mode == "inline"
    assert all(url.startswith("data:") for _, url in (*a.map_js, *a.map_css, *a.draw_js, *a.draw_css))
    css = dict(a.map_css)["leaflet_css"]
    assert "images/layers.png" not in base64.b64decode(css.split(",", 1)[1]).decode()  # its images inlined too


def test_fetch_refuses_a_tarball_with_another_checksum(tmp_path, monkeypatch):
    import io
    import tarfile

    from geoloom.ui import fetch_assets

    tgz = tmp_path / "x.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        data = b"alert(1)"
        info = tarfile.TarInfo("package/dist/leaflet.js")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "vendor")
    with pytest.raises(fetch_assets.FetchError, match="checksum"):
        fetch_assets._unpack(assets.PACKAGES[0], tgz)
    assert not (tmp_path / "vendor").exists()


# -- background jobs --------------------------------------------------------------------------


def spec_for(tmp_path: Path, catalog: Path | str) -> jobs.JobSpec:
    request = build_request(BAY_BBOX, model="fdi", out=tmp_path / "run", catalog=catalog, runtime="in-process")
    return jobs.JobSpec(request, truecolour=False)


def grid_for(spec: jobs.JobSpec) -> jobs.TileGrid:
    from geoloom.workflows import plan_request

    return jobs.TileGrid.from_plan(plan_request(spec.request).plan)


def test_cancelled_job_keeps_what_it_has(tmp_path, ui_catalog):
    spec = spec_for(tmp_path, ui_catalog)
    job = jobs.Job(spec, grid_for(spec))
    job.cancel()  # before the first tile
    job.thread.start()
    assert job.wait(120)
    snap = job.snapshot()
    assert snap.state == "cancelled" and not snap.running
    assert open_run(spec.out).tiles.missing == snap.total


def test_failed_job_says_why_in_one_line(tmp_path, ui_catalog):
    spec = spec_for(tmp_path, ui_catalog)
    grid = grid_for(spec)
    registry = jobs.JobRegistry()
    job = registry.start(spec_for(tmp_path, tmp_path / "no-such-catalog.json"), grid)
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.state == "failed"
    assert snap.error and "\n" not in snap.error and "Traceback" not in snap.error
    assert registry.running() == []


def test_unexpected_error_is_logged_not_shown(tmp_path, ui_catalog, monkeypatch, caplog):
    spec = spec_for(tmp_path, ui_catalog)

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(jobs, "run_request", broken)
    job = jobs.Job(spec, grid_for(spec))
    job.thread.start()
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.state == "failed"
    assert "unexpected error (ZeroDivisionError: division by zero)" in snap.error
    assert "second line" not in snap.error
    assert "Traceback" in caplog.text


def test_running_tiles_follow_submission_order():
    from affine import Affine
    from odc.geo.geobox import GeoBox

    grid = jobs.TileGrid(GeoBox((100, 300), Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32630"), 100,
                         (("a", 0, 0), ("b", 0, 1), ("c", 0, 2)))
    spec = jobs.JobSpec(build_request(BAY_BBOX, model="fdi", out="x", catalog="c"))
    snap = jobs.JobSnapshot("id", spec, grid, "running", "", 3, 1, 0, None, 0.0, {"a": "done"}, {}, None, (), False)
    assert snap.states_with_running(1) == {"a": "done", "b": "running"}
    fc = map_view.tile_features(grid, snap.states_with_running(1))
    assert [f["properties"]["state"] for f in fc["features"]] == ["done", "running", "pending"]
    ring = fc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) > 5


def test_folder_names_are_safe_and_unique(tmp_path):
    region = Region.from_bbox(BAY_BBOX, name="Tema / port (Ghana)")
    name = jobs.run_folder_name("marine-debris", region)
    assert re.fullmatch(r"\d{8}-\d{6}-marine-debris-tema-port-ghana", name)
    (tmp_path / name).mkdir()
    assert jobs.unique_folder(tmp_path, name).name == f"{name}-2"


# -- layer images -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ui_catalog):
    from geoloom.workflows import detect

    from geoloom.ui import imagery

    out = tmp_path_factory.mktemp("ui-run") / "run"
    region = Region.from_bbox(BAY_BBOX)
    run = detect(region, model="fdi", out=out, catalog=str(ui_catalog), runtime="in-process")
    imagery.make_truecolour(region, out / "truecolour", imagery=Imagery(str(ui_catalog)), resolution=10)
    return run


def test_layers_render_where_the_region_is(finished_run):
    from PIL import Image
    import io

    assert rendering.layer_names(finished_run)[0] == finished_run.dataset.attrs["primary"]
    w, s, e, n = BAY_BBOX
    for layer in rendering.layer_names(finished_run):
        img = rendering.render_layer(finished_run.folder, layer)
        (south, west), (north, east) = img.bounds_latlon
        assert abs(west - w) < 0.002 and abs(east - e) < 0.002 and abs(south - s) < 0.002 and abs(north - n) < 0.002
        pic = Image.open(io.BytesIO(img.png))
        assert pic.mode == "RGBA" and pic.size[::-1] == img.shape_yx
        assert img.legend.html()
    mask = rendering.render_layer(finished_run.folder, "debris")
    assert mask.legend.kind == "classes" and mask.legend.entries[0][1] == "debris"


def test_truecolour_layer_is_imagery(finished_run):
    import io

    import numpy as np
    from PIL import Image

    img = rendering.render_layer(finished_run.folder / "truecolour", "truecolour")
    assert img.legend.kind == "rgb"
    arr = np.asarray(Image.open(io.BytesIO(img.png)))
    opaque = arr[arr[..., 3] == 255]
    assert len(opaque) > 0.9 * arr.shape[0] * arr.shape[1]
    assert opaque[:, :3].std() > 5  # not a flat colour


def test_missing_band_is_explained_before_running(ui_env, fake_map, tmp_path, ui_catalog, monkeypatch):
    """A catalog without the model's swir16 band: the plan says so in place and Run stays off."""
    import pystac

    cat = pystac.read_file(str(ui_catalog))
    cat.make_all_asset_hrefs_absolute()
    for item in cat.get_items(recursive=True):
        item.assets.pop("swir16", None)
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    monkeypatch.setenv("GEOLOOM_CATALOG", str(tmp_path / "cat" / "catalog.json"))
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    at.selectbox(key="model").set_value("fdi").run()
    at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
    at.button(key="use_bbox").click().run()
    assert not at.exception
    assert any("swir16" in str(e.value) for e in at.error), [e.value for e in at.error]
    assert at.button(key="run").disabled
    json.loads((tmp_path / "cat" / "catalog.json").read_text())
