"""GIS formats in and out: regions from frames and vector files through the front doors, a run exported
as a GeoPackage, a QGIS style beside every COG, progress bars in Python."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import box

from geoloom.platform.styles import CLASS_COLOURS, VIRIDIS
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


@pytest.mark.parametrize("fmt", ["pmtiles", "kmz"])
def test_export_formats_not_available_yet(geoloom_cli: list[str], cli_run: Path, fmt: str):
    line = one_line_error(geoloom(geoloom_cli, "export", cli_run, "--to", fmt))
    assert f"export to {fmt} is not available yet" in line and "--to gpkg" in line


def test_export_of_a_folder_without_a_run(geoloom_cli: list[str], tmp_path: Path):
    assert "no finished run" in one_line_error(geoloom(geoloom_cli, "export", tmp_path))


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
