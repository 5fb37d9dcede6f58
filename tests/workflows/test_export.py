"""GIS formats in and out: regions from frames and vector files through the front doors, a run exported
as a GeoPackage, PMTiles and KMZ, a QGIS style beside every COG, progress bars in Python."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pyogrio
import pytest
import rasterio
from geopandas.testing import assert_geodataframe_equal
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType
from PIL import Image
from pyproj import Transformer
from rasterio.warp import transform_bounds
from shapely.geometry import box

from geoloom.platform.errors import OutputError
from geoloom.platform.export import export_run
from geoloom.platform.xyz_tiles import native_zoom
from geoloom.platform.styles import CLASS_COLOURS, VIRIDIS, hex_rgb, value_range
from geoloom.runtime.progress import Progress, ProgressBar
from geoloom.workflows import Region, detect

BAY_BBOX = (-0.054, 5.618, -0.027, 5.645)  # the sample bay: one tile, debris windrows


def geoloom(cli: list[str], *args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def bay_frame(crs: str) -> gpd.GeoDataFrame:
    """The bbox polygon of the sample bay, reprojected."""
    return gpd.GeoDataFrame({"name": ["bay"]}, geometry=[Region.from_bbox(BAY_BBOX).geometry], crs="EPSG:4326").to_crs(crs)


@pytest.fixture(scope="module")
def area_gpkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GeoPackage with the bay in Web Mercator (layer ``bay``) and a second layer."""
    path = tmp_path_factory.mktemp("areas") / "area.gpkg"
    bay_frame("EPSG:3857").to_file(path, layer="bay")
    gpd.GeoDataFrame(geometry=[box(1, 1, 2, 2)], crs="EPSG:4326").to_file(path, layer="elsewhere")
    return path


@pytest.fixture(scope="module")
def cli_run(geoloom_cli: list[str], sample_catalog: Path, area_gpkg: Path, tmp_path_factory) -> Path:
    """``geoloom run --region area.gpkg:bay`` with the fdi model, as a user runs it."""
    out = tmp_path_factory.mktemp("runs") / "bay"
    proc = geoloom(geoloom_cli, "run", "--region", f"{area_gpkg}:bay", "--model", "fdi", "--catalog", sample_catalog,
                   "--out", out, "--runtime", "in-process")
    assert proc.returncode == 0, proc.stderr
    return out


# -- regions from what users hold ----------------------------------------------------------------


def test_detect_on_a_geodataframe_in_web_mercator_equals_the_bbox(sample_catalog: Path, tmp_path: Path):
    events: list[Progress] = []
    by_frame = detect(bay_frame("EPSG:3857"), model="fdi", out=tmp_path / "frame", catalog=sample_catalog,
                      runtime="in-process", progress=events.append)
    by_bbox = detect(BAY_BBOX, model="fdi", out=tmp_path / "bbox", catalog=sample_catalog, runtime="in-process",
                     progress=False)
    assert by_frame.request.region.source == "frame"
    assert events and events[-1].finished == events[-1].total == by_frame.tiles.total
    for name in ("result.tif", "result-debris.tif"):
        with rasterio.open(by_frame.path(name)) as a, rasterio.open(by_bbox.path(name)) as b:
            assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
            np.testing.assert_array_equal(a.read(), b.read())
    ids = ["id", "run_id"]
    assert len(by_bbox.detections) > 0
    assert_geodataframe_equal(by_frame.detections.drop(columns=ids), by_bbox.detections.drop(columns=ids))


def test_cli_run_with_a_geopackage_layer(cli_run: Path):
    with rasterio.open(cli_run / "result.tif") as src:
        assert src.crs.to_epsg() == 32630 and np.isfinite(src.read(1)).any()
    assert len(gpd.read_parquet(cli_run / "detections.parquet")) > 0


def test_cli_region_errors_name_cli_options(geoloom_cli: list[str], sample_catalog: Path, area_gpkg: Path, tmp_path):
    line = one_line_error(geoloom(geoloom_cli, "run", "--region", area_gpkg, "--catalog", sample_catalog,
                                  "--out", tmp_path / "o"))
    assert "has 2 layers (bay, elsewhere)" in line and f"--region {area_gpkg}:bay" in line and "region=" not in line
    line = one_line_error(geoloom(geoloom_cli, "run", "--region", tmp_path / "nowhere.gpkg", "--catalog",
                                  sample_catalog, "--out", tmp_path / "o"))
    assert "does not exist" in line


# -- export and styles ---------------------------------------------------------------------------


def test_export_gpkg_reads_back_equal(geoloom_cli: list[str], cli_run: Path, tmp_path: Path):
    proc = geoloom(geoloom_cli, "export", cli_run, "--to", "gpkg")
    assert proc.returncode == 0, proc.stderr
    gpkg = Path(proc.stdout.strip())
    assert gpkg == cli_run / "run.gpkg" and gpkg.is_file()
    expected = gpd.read_parquet(cli_run / "detections.parquet")
    assert_geodataframe_equal(gpd.read_file(gpkg, layer="detections"), expected)
    layers = gpd.read_file(gpkg, layer="layers").set_index("file")
    assert set(layers.index) == {"result.tif", "result-debris.tif"}
    assert layers.loc["result.tif", "crs"] == "EPSG:32630" and layers.loc["result.tif", "style"] == "result.qml"
    assert layers.crs.to_epsg() == 4326 and layers.geometry.iloc[0].contains(box(*BAY_BBOX).buffer(-1e-4))
    region = gpd.read_file(gpkg, layer="region")
    assert region.loc[0, "name"] == "bay"
    elsewhere = tmp_path / "mine.gpkg"
    assert geoloom(geoloom_cli, "export", cli_run, "--out", elsewhere).returncode == 0
    assert_geodataframe_equal(gpd.read_file(elsewhere, layer="detections"), expected)


def test_export_of_a_folder_without_a_run(geoloom_cli: list[str], tmp_path: Path):
    for fmt in ("gpkg", "pmtiles", "kmz"):
        assert "no finished run" in one_line_error(geoloom(geoloom_cli, "export", tmp_path, "--to", fmt))


def test_export_to_an_unknown_format_or_into_a_folder(geoloom_cli: list[str], cli_run: Path, tmp_path: Path):
    proc = geoloom(geoloom_cli, "export", cli_run, "--to", "shp")
    assert proc.returncode == 2 and "Invalid value for '--to'" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(OutputError, match=r"^cannot export to 'shp'; use one of: gpkg, pmtiles, kmz$"):
        export_run(cli_run, to="shp")
    with pytest.raises(OutputError, match="is a folder; give a file name") as caught:
        export_run(cli_run, to="kmz", out=tmp_path)
    assert "\n" not in str(caught.value) and not list(tmp_path.iterdir())


# -- PMTiles and KMZ -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mask_run(cli_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bay run with its debris mask as the primary layer (``result`` in run.json points at it)."""
    out = tmp_path_factory.mktemp("mask") / "bay"
    out.mkdir()
    for name in ("request.json", "result-debris.tif", "detections.parquet"):
        shutil.copy(cli_run / name, out / name)
    manifest = json.loads((cli_run / "run.json").read_text())
    manifest["assets"]["result"]["href"] = "./result-debris.tif"
    (out / "run.json").write_text(json.dumps(manifest))
    return out


def finest_tiles(archive: Path) -> tuple[dict, dict, dict[tuple[int, int, int], np.ndarray]]:
    """Header, metadata and the decoded RGBA tiles of the finest zoom of a PMTiles archive."""
    with open(archive, "rb") as f:
        reader = Reader(MmapSource(f))
        header, metadata = reader.header(), reader.metadata()
        tiles = {zxy: np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGBA"))
                 for zxy, data in all_tiles(reader.get_bytes) if zxy[0] == header["max_zoom"]}
    return header, metadata, tiles


def cog_under_tile(src: rasterio.DatasetReader, data: np.ndarray, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """The COG's values at the centres of a tile's 256 x 256 pixels, and where those centres fall inside it."""
    left, bottom, right, top = morecantile.tms.get("WebMercatorQuad").xy_bounds(x, y, z)
    centres = (np.arange(256) + 0.5) / 256
    mx, my = np.meshgrid(left + centres * (right - left), top - centres * (top - bottom))
    xs, ys = Transformer.from_crs("EPSG:3857", src.crs, always_xy=True).transform(mx, my)
    cols, rows = (np.floor(v).astype(int) for v in ~src.transform * (xs, ys))
    inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    return data[np.clip(rows, 0, src.height - 1), np.clip(cols, 0, src.width - 1)], inside


def viridis(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """The ramp's RGB of values (the nine colours spread evenly from vmin to vmax)."""
    t = np.clip((values - vmin) / (vmax - vmin), 0, 1)
    anchors = np.array([hex_rgb(c) for c in VIRIDIS], dtype=float)
    stops = np.linspace(0, 1, len(VIRIDIS))
    return np.stack([np.interp(t, stops, anchors[:, i]) for i in range(3)], axis=-1)


def test_export_pmtiles_has_the_layers_zooms_bounds_and_colours(geoloom_cli: list[str], cli_run: Path):
    proc = geoloom(geoloom_cli, "export", cli_run, "--to", "pmtiles")
    assert proc.returncode == 0, proc.stderr
    archive = Path(proc.stdout.strip())
    assert archive == cli_run / "run.pmtiles"
    header, metadata, tiles = finest_tiles(archive)
    cog = cli_run / "result.tif"
    with rasterio.open(cog) as src:
        data = src.read(1)
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        assert header["tile_type"] == TileType.PNG and header["tile_compression"] == Compression.NONE
        assert header["max_zoom"] == metadata["maxzoom"] == native_zoom(cog) == 14  # 10 m pixels at 5.6 N
        low = header["min_zoom"]
        web = morecantile.tms.get("WebMercatorQuad")
        assert 1 <= len(list(web.tiles(*bounds, [low]))) <= 4  # the lowest zoom: 1-4 tiles, the layer
        (x0, y0), (x1, y1) = web.xy(*bounds[:2]), web.xy(*bounds[2:])  # wider than a tile a zoom up
        assert low < header["max_zoom"] and max(x1 - x0, y1 - y0) > 2 * math.pi * 6378137 / 2 ** (low + 1)
        got = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
        np.testing.assert_allclose(got, bounds, atol=1e-6)
        np.testing.assert_allclose(metadata["bounds"], bounds, atol=1e-6)
        assert metadata["attribution"] == "geoloom" and metadata["minzoom"] == low
        key = metadata["legend"]
        assert key["kind"] == "index" and key["colours"] == list(VIRIDIS)
        lo, hi = value_range("index", data)  # the QGIS style's range; the map reads it from an overview
        np.testing.assert_allclose([key["vmin"], key["vmax"]], [lo, hi], atol=0.02 * (hi - lo))
        assert tiles and set(tiles) <= {(t.z, t.x, t.y) for t in web.tiles(*bounds, [header["max_zoom"]])}
        agree = total = 0
        for (z, x, y), rgba in tiles.items():
            values, inside = cog_under_tile(src, data, z, x, y)
            seen = inside & np.isfinite(values)
            assert (rgba[..., 3][~inside] == 0).mean() >= 0.98
            close = np.abs(rgba[..., :3].astype(float) - viridis(values, key["vmin"], key["vmax"])).max(axis=-1) <= 4
            agree += int((close & (rgba[..., 3] == 255))[seen].sum())
            total += int(seen.sum())
    assert total > 0.9 * data.size and agree >= 0.98 * total, (agree, total)
    assert (cli_run / "run-detections.pmtiles").is_file() or "PMTiles" not in pyogrio.list_drivers(write=True)


def test_export_pmtiles_of_a_mask_shows_its_class_colour(geoloom_cli: list[str], mask_run: Path):
    proc = geoloom(geoloom_cli, "export", mask_run, "--to", "pmtiles")
    assert proc.returncode == 0, proc.stderr
    header, metadata, tiles = finest_tiles(mask_run / "run.pmtiles")
    assert metadata["legend"]["classes"] == [{"value": 1, "label": "debris", "colour": CLASS_COLOURS[0]}]
    debris = np.array(hex_rgb(CLASS_COLOURS[0]))
    hits = {True: [0, 0], False: [0, 0]}  # COG 1 / COG 0: [agreeing pixels, pixels]
    with rasterio.open(mask_run / "result-debris.tif") as src:
        data = src.read(1)
        for (z, x, y), rgba in tiles.items():
            values, inside = cog_under_tile(src, data, z, x, y)
            coloured = (rgba[..., 3] == 255) & (rgba[..., :3] == debris).all(axis=-1)
            for flag, where, ok in ((True, inside & (values == 1), coloured), (False, inside & (values == 0),
                                                                              rgba[..., 3] == 0)):
                hits[flag][0] += int(ok[where].sum())
                hits[flag][1] += int(where.sum())
    assert hits[True][1] > 50 and hits[False][1] > 50_000, hits
    assert all(agree >= 0.98 * total for agree, total in hits.values()), hits


def test_export_pmtiles_of_a_per_date_run_shows_its_last_date(sample_catalog: Path, tmp_path: Path):
    run = detect("sample-bay", model="fdi", out=tmp_path / "pd", catalog=sample_catalog, runtime="in-process",
                 progress=False, per_date=True)
    days = json.loads((run.folder / "run.json").read_text())["properties"]["geoloom:dates"]
    archive = run.export(to="pmtiles", out=tmp_path / "bay.pmtiles")
    header, metadata, tiles = finest_tiles(archive)
    assert len(days) == 2 and metadata["name"].endswith(days[-1]) and tiles
    assert header["max_zoom"] == native_zoom(run.folder / "dates" / days[-1] / "result.tif")


def test_export_kmz_holds_the_detections_and_the_layer(geoloom_cli: list[str], cli_run: Path):
    proc = geoloom(geoloom_cli, "export", cli_run, "--to", "kmz")
    assert proc.returncode == 0, proc.stderr
    kmz = Path(proc.stdout.strip())
    assert kmz == cli_run / "run.kmz"
    with zipfile.ZipFile(kmz) as zf:
        names = zf.namelist()
        root = ET.fromstring(zf.read("doc.kml"))
        pngs = [n for n in names if n.endswith(".png")]
        image = Image.open(io.BytesIO(zf.read(pngs[0])))
    assert names[0] == "doc.kml" and len(pngs) == 1
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    expected = gpd.read_parquet(cli_run / "detections.parquet")
    marks = root.findall(".//k:Placemark", ns)
    assert len(marks) == len(expected) > 0
    assert [m.findtext("k:name", namespaces=ns) for m in marks] == list(expected["id"])
    assert "score" in marks[0].findtext("k:description", namespaces=ns)
    ring = marks[0].findtext(".//k:outerBoundaryIs/k:LinearRing/k:coordinates", namespaces=ns)
    lonlat = np.array([[float(v) for v in xy.split(",")] for xy in ring.split()])
    np.testing.assert_allclose(lonlat, np.asarray(expected.geometry.iloc[0].exterior.coords), atol=1e-6)
    overlay = root.find(".//k:GroundOverlay", ns)
    assert overlay.findtext("k:Icon/k:href", namespaces=ns) == pngs[0]
    box_ = {k: float(overlay.findtext(f"k:LatLonBox/k:{k}", namespaces=ns)) for k in ("west", "south", "east", "north")}
    with rasterio.open(cli_run / "result.tif") as src:
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        pixel_deg = src.res[0] / 111_320
    np.testing.assert_allclose(list(box_.values()), bounds, atol=pixel_deg)
    assert image.mode == "RGBA" and max(image.size) <= 4096 and np.asarray(image)[..., 3].any()
    if "LIBKML" in pyogrio.list_drivers():
        read = gpd.read_file(kmz, layer="detections", engine="pyogrio")
        assert len(read) == len(expected) and read.crs.to_epsg() == 4326


def test_each_cog_has_a_qgis_style_with_the_layer_colours(cli_run: Path):
    cogs = sorted(cli_run.glob("result*.tif"))
    assert [p.name for p in cogs] == ["result-debris.tif", "result.tif"]
    for cog in cogs:
        root = ET.parse(cog.with_suffix(".qml")).getroot()
        assert root.tag == "qgis"
        renderer = root.find("pipe/rasterrenderer")
        if cog.name == "result.tif":  # fdi, a float index: the quicklook's ramp over its range
            assert renderer.get("type") == "singlebandpseudocolor"
            items = renderer.findall("rastershader/colorrampshader/item")
            assert [i.get("color") for i in items] == list(VIRIDIS)
            values = [float(i.get("value")) for i in items]
            assert values == sorted(values) and values[0] < 0 < values[-1]
        else:  # the debris mask: the map's class colours, "no debris" transparent
            assert renderer.get("type") == "paletted"
            entries = {e.get("label"): e for e in renderer.findall("colorPalette/paletteEntry")}
            assert entries["debris"].get("color") == CLASS_COLOURS[0] and entries["debris"].get("alpha") == "255"
            assert entries["no debris"].get("alpha") == "0"


# -- progress ------------------------------------------------------------------------------------


def test_progress_bar_draws_tiles_and_failures(capsys: pytest.CaptureFixture):
    with ProgressBar(disable=False) as bar:
        bar(Progress(total=4, done=0, failed=0, skipped=0, elapsed_s=0.0, eta_s=None))
        bar(Progress(total=4, done=3, failed=1, skipped=0, elapsed_s=1.0, eta_s=0.0))
    err = capsys.readouterr().err
    assert "4/4" in err and "tile" in err and "failed=1" in err
    with ProgressBar() as quiet:  # tqdm's rule: off when stderr is not a terminal (as under pytest)
        quiet(Progress(total=4, done=4, failed=0, skipped=0, elapsed_s=1.0, eta_s=0.0))
    assert capsys.readouterr().err == ""
