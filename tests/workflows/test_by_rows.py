"""One run per row of a table of regions: ``detect(gdf, by="name")`` and ``geoloom run --by``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import pytest
from shapely.geometry import Polygon, box

from geoloom.platform.errors import OutputError, RegionError
from geoloom.workflows import RunSet, detect, open_runs
from geoloom.workflows.by_rows import safe_label, table_rows
from test_cli import assert_user_error  # one check of a one-line user error, exit 2

FAST = {"model": "fdi", "runtime": "in-process", "progress": False}


@pytest.fixture()
def areas() -> gpd.GeoDataFrame:
    """Three rows in Web Mercator inside the sample: two small boxes, the third touching the first and sharing its name."""
    return gpd.GeoDataFrame(
        {"name": ["North Bay", "east", "North Bay"], "rank": [1, 2, 3]},
        geometry=[box(-0.050, 5.620, -0.038, 5.632), box(0.020, 5.555, 0.032, 5.567), box(-0.038, 5.620, -0.032, 5.628)],
        crs="EPSG:4326",
    ).to_crs("EPSG:3857")


def geoloom(cli: list[str], *args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_one_run_per_value_each_equal_to_its_own_run(areas, sample_catalog, tmp_path):
    runs = detect(areas, by="name", out=tmp_path / "set", catalog=sample_catalog, **FAST)
    assert isinstance(runs, RunSet) and list(runs) == ["North-Bay", "east"]
    assert runs["North-Bay"].folder == (tmp_path / "set" / "North-Bay").resolve()
    for label, value in (("North-Bay", "North Bay"), ("east", "east")):
        direct = detect(areas[areas["name"] == value], out=tmp_path / f"direct-{label}", catalog=sample_catalog, **FAST)
        row = runs[label]
        assert row.ok and row.run_id == direct.run_id
        for var in direct.dataset.data_vars:
            assert np.array_equal(row.dataset[var].values, direct.dataset[var].values, equal_nan=True), var
        assert len(row.detections) == len(direct.detections)
    assert runs["North-Bay"].request.region.area_km2 > runs["east"].request.region.area_km2  # two rows unioned

    found = runs.detections
    assert list(found.columns)[0] == "name" and found.crs.to_epsg() == 4326
    assert set(found["name"]) <= {"North-Bay", "east"}
    assert len(found) == sum(len(r.detections) for r in runs.values())
    summary = runs.summary()
    assert list(summary.columns) == ["label", "area_km2", "tiles", "detections", "ok", "folder"]
    assert summary["ok"].all() and list(summary["label"]) == ["North-Bay", "east"]
    assert "North-Bay" in repr(runs) and "by='name'" in repr(runs)

    listed = json.loads((tmp_path / "set" / "runs.json").read_text())
    assert listed["by"] == "name" and listed["runs"]["North-Bay"] == {"folder": "North-Bay", "value": "North Bay"}
    again = open_runs(tmp_path / "set")
    assert list(again) == list(runs) and again.by == "name"
    assert again.summary().drop(columns="folder").equals(summary.drop(columns="folder"))
    with pytest.raises(OutputError, match="already holds"):
        detect(areas, by="name", out=tmp_path / "set", catalog=sample_catalog, **FAST)


def test_labels_are_safe_and_unique(areas):
    assert safe_label("Bay / North") == "Bay-North"
    assert safe_label("../..") == "row"
    assert safe_label(3) == "3"
    table = areas.assign(name=["a b", "a/b", "A B"])
    rows = table_rows(table, "name", max_area_km2=None)
    assert [r.label for r in rows] == ["a-b", "a-b-2", "A-B-3"]
    assert [r.value for r in rows] == ["a b", "a/b", "A B"]
    assert [r.label for r in table_rows(table, "rank", max_area_km2=None)] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("region", "by", "words"),
    [
        ("areas", "nope", ["by='nope'", "name, rank"]),
        ((-0.05, 5.62, -0.03, 5.64), "name", ["by='name'", "table", "tuple"]),
        ("sample-bay", "name", ["by='name'", "no vector file"]),
        ("blank", "name", ["by='name'", "row 1", "no name"]),
        ("empty", "name", ["by='name'", "row 1", "no geometry"]),
        ("bowtie", "name", ["by='name'", "row 1", "not valid"]),
    ],
    ids=["unknown-column", "bbox", "preset", "empty-label", "empty-geometry", "invalid-geometry"],
)
def test_bad_tables_are_one_line_region_errors(areas, sample_catalog, tmp_path, region, by, words):
    table = areas.copy()
    if region == "blank":
        table.loc[1, "name"] = ""
    elif region == "empty":
        table.loc[1, "geometry"] = None
    elif region == "bowtie":
        table.loc[1, "geometry"] = Polygon([(0, 0), (1000, 1000), (1000, 0), (0, 1000)])
    value = table if region in ("areas", "blank", "empty", "bowtie") else region
    with pytest.raises(RegionError) as err:
        detect(value, by=by, out=tmp_path / "o", catalog=sample_catalog, **FAST)
    message = str(err.value)
    assert "\n" not in message
    for w in words:
        assert w in message, message
    assert not (tmp_path / "o").exists()


def test_cli_run_by_column_of_a_geopackage_layer(geoloom_cli, areas, sample_catalog, tmp_path):
    gpkg = tmp_path / "f.gpkg"
    areas.to_file(gpkg, layer="areas")
    out = tmp_path / "set"
    proc = geoloom(geoloom_cli, "run", "--region", f"{gpkg}:areas", "--by", "name", "--model", "fdi",
                   "--runtime", "in-process", "--catalog", sample_catalog, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out.resolve() / "North-Bay"), str(out.resolve() / "east")]
    assert all((out / label / "run.json").exists() for label in ("North-Bay", "east"))
    assert "North-Bay:" in proc.stderr and "detection(s)" in proc.stderr
    assert list(open_runs(out)) == ["North-Bay", "east"]

    bad = geoloom(geoloom_cli, "run", "--region", f"{gpkg}:areas", "--by", "nope", "--model", "fdi",
                  "--runtime", "in-process", "--catalog", sample_catalog, "--out", tmp_path / "o")
    assert_user_error(bad, "--by nope", "name, rank")
    assert "by=" not in bad.stderr
    bbox = geoloom(geoloom_cli, "run", "--bbox", "-0.05", "5.62", "-0.03", "5.64", "--by", "name", "--out", tmp_path / "o")
    assert_user_error(bbox, "--by name", "--region")
    assert not (tmp_path / "o").exists()


def test_cli_exit_3_when_one_row_has_failed_tiles(geoloom_cli, catalog_copy, tmp_path):
    cat = pystac.Catalog.from_file(str(catalog_copy))
    for item in cat.get_items(recursive=True):  # break the UTM 31N scenes: only the eastern row reads them
        if item.properties.get("proj:code") == "EPSG:32631":
            nir = Path(item.assets["nir"].get_absolute_href())
            nir.write_bytes(nir.read_bytes()[:4096])
    table = gpd.GeoDataFrame({"site": ["west", "east"]}, geometry=[box(-0.12, 5.60, -0.108, 5.612),
                                                                   box(0.08, 5.60, 0.092, 5.612)], crs="EPSG:4326")
    table.to_file(tmp_path / "sites.gpkg", layer="sites")
    out = tmp_path / "set"
    proc = geoloom(geoloom_cli, "run", "--region", tmp_path / "sites.gpkg", "--by", "site", "--model", "fdi",
                   "--runtime", "in-process", "--retries", "0", "--catalog", catalog_copy, "--out", out)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "--resume" in proc.stderr
    runs = open_runs(out)
    assert runs["west"].ok and not runs["east"].ok and not runs.ok
