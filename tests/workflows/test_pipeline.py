"""End-to-end runs on the sample catalog: seamless, georeferenced, identical across runtimes."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from geopandas.testing import assert_geodataframe_equal
from scipy import ndimage

from geoloom.platform.catalog import AssetRef
from geoloom.platform.classes import DEBRIS
from geoloom.platform.composite import composite_tile
from geoloom.platform.reading import gdal_env, read_band
from geoloom.platform.vectors import read_parts
from geoloom.workflows import detect, map_tiles, open_run, plan_run


def nir_ratio(tile: xr.Dataset) -> xr.DataArray:
    """A per-pixel function."""
    return (tile["nir"] - tile["red"]) / (tile["nir"] + tile["red"])


def smooth9(tile: xr.Dataset) -> xr.DataArray:
    """A neighbourhood function: 9x9 mean of NIR (needs a halo of 4)."""
    return xr.DataArray(ndimage.uniform_filter(tile["nir"].values, size=9, mode="nearest"), dims=("y", "x"))


def whole_region(prepared, fn, halo: int) -> np.ndarray:
    """The same function applied to the whole output grid read at once."""
    plan = prepared.plan
    gbox = plan.geobox.pad(halo) if halo else plan.geobox
    grid = plan.warp_grid
    with gdal_env():
        ds, _ = composite_tile(list(plan.scenes), plan.bands, gbox, lambda s, b, g: read_band(s.assets[b], g, grid))
    out = np.asarray(fn(ds))
    return out[halo : out.shape[0] - halo, halo : out.shape[1] - halo] if halo else out


@pytest.mark.parametrize("fn,halo", [(nir_ratio, 0), (smooth9, 4)], ids=["per-pixel", "9x9-neighbourhood"])
def test_stitched_equals_whole_region_across_tile_scene_and_zone_borders(sample_catalog, tmp_path, fn, halo):
    region = "zone-border"  # crosses UTM 30N/31N, several scenes overlap there
    run = map_tiles(region, fn, bands=["red", "nir"], halo=halo, tile_size=64, catalog=sample_catalog,
                    out=tmp_path / "run", runtime="in-process")
    stitched = run.dataset["result"].values
    prepared = plan_run(region, catalog=sample_catalog, model="fdi", tile_size=64)
    assert len(prepared.plan.scenes) >= 2
    expected = whole_region(prepared_for(prepared, halo), fn, halo)
    covered = np.isfinite(stitched)
    assert covered.mean() > 0.9
    assert len({sid for t in prepared.plan.tiles for sid in t.scene_ids}) >= 2
    np.testing.assert_allclose(stitched[covered], expected[covered], atol=1e-6, rtol=0)
    assert run.ok


def prepared_for(prepared, halo):
    """The fdi plan's grid with the halo and bands of the user function."""
    from dataclasses import replace

    return type(prepared)(prepared.request, prepared.card, prepared.scenes,
                          replace(prepared.plan, bands=("red", "nir"), halo=halo))


def test_outputs_are_georeferenced_and_detections_lie_on_debris(sample_catalog, tmp_path):
    run = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "bay", runtime="in-process")
    prepared = plan_run("sample-bay", model="fdi", catalog=sample_catalog)
    plan = prepared.plan
    with rasterio.open(run.path("result.tif")) as src:
        assert src.crs.to_string() == plan.crs
        assert tuple(src.transform)[:6] == pytest.approx(plan.transform)
        assert (src.height, src.width) == plan.shape_yx
        assert src.overviews(1), "the COG has overviews"
    manifest = json.loads(run.path("run.json").read_text())
    assert manifest["properties"]["proj:code"] == plan.crs
    assert manifest["properties"]["geoloom:model"]["name"] == "fdi"
    assert {s["id"] for s in manifest["properties"]["geoloom:scenes"]} == {s.id for s in plan.scenes}
    det = run.detections
    assert len(det) > 0 and det.crs.to_epsg() == 4326
    assert {"score", "class", "area_m2", "scene", "geometry"} <= set(det.columns)
    # each detection names the scene that gave its pixels; that scene's labels mark the true debris
    from rasterio.features import rasterize

    labels = scene_labels(sample_catalog)
    det_utm = det.to_crs(plan.crs)
    on_debris = 0
    for scene_id, group in det_utm.groupby("scene"):
        truth = read_band(AssetRef(href=labels[scene_id], band="scl", scale=1.0), plan.geobox)  # nearest, class codes
        for geom in group.geometry:
            under = rasterize([(geom, 1)], out_shape=plan.shape_yx, transform=rasterio.Affine(*plan.transform), dtype="uint8")
            on_debris += bool((truth[under == 1] == DEBRIS).any())
    assert on_debris >= 1, "at least one detection polygon lies on labelled debris"


def scene_labels(catalog: Path) -> dict[str, str]:
    """Scene id -> href of its label raster (the ``labels`` role asset)."""
    import pystac

    out = {}
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        for asset in item.assets.values():
            if "labels" in (asset.roles or []):
                out[item.id] = asset.get_absolute_href()
    return out


def test_same_files_in_process_and_dask_one_or_two_workers(sample_catalog, tmp_path):
    runs = {
        "inproc": detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "a", runtime="in-process", tile_size=128),
        "dask1": detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "b", workers=1, tile_size=128),
        "dask2": detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "c", workers=2, tile_size=128),
    }
    ref = runs["inproc"].folder
    files = [p.relative_to(ref) for p in sorted(ref.rglob("*")) if p.is_file() and p.name not in ("ledger.jsonl", "run.json")]
    assert any(str(f).startswith("result.zarr") for f in files)
    for name, run in runs.items():
        for f in files:
            assert (run.folder / f).read_bytes() == (ref / f).read_bytes(), f"{name}: {f} differs"
        m = run.manifest
        m["properties"].pop("geoloom:timings")
        r = runs["inproc"].manifest
        r["properties"].pop("geoloom:timings", None)
        assert m == r
    # two workers split the tile columns (neighbouring tiles share source blocks on one worker)
    done = [rec for rec in runs["dask2"].ledger.itertuples() if rec.state == "done"]
    workers = sorted({rec.worker for rec in done})
    assert len(workers) == 2
    mid = (min(rec.col for rec in done) + max(rec.col for rec in done) + 1) / 2
    west = [rec.col < mid for rec in done if rec.worker == workers[0]]
    east = [rec.col < mid for rec in done if rec.worker == workers[1]]
    sides = sorted([sum(west) / len(west), sum(east) / len(east)])
    # loose restrictions: a worker that runs out may steal from the other side, so only the bias is certain
    # (a split blind to columns gives both workers about the same share of western tiles)
    assert sides[1] - sides[0] >= 0.4, sides


def test_python_snippet_api_returns_lazy_dataset_and_ledger(sample_catalog, tmp_path):
    seen = []
    run = detect("sample-bay", model="water", catalog=sample_catalog, out=tmp_path / "w", runtime="in-process",
                 progress=seen.append)
    assert seen and seen[-1].finished == seen[-1].total
    ds = run.dataset
    assert ds.rio.crs is not None and "ndwi" in ds and "water" in ds
    assert set(run.ledger["state"]) == {"done"}
    assert open_run(run.folder).manifest["id"] == run.manifest["id"]


def test_objects_cut_by_tile_borders_are_merged_into_one_row(sample_catalog, tmp_path):
    small = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "t32", runtime="in-process", tile_size=32)
    whole = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "t512", runtime="in-process", tile_size=512)
    assert small.tiles.total > 50 and whole.tiles.total == 1
    a, b = small.detections, whole.detections
    assert len(a) == len(b) > 0
    assert a["area_m2"].sum() == pytest.approx(b["area_m2"].sum(), rel=1e-6)
    ua, ub = a.to_crs(32630).geometry.union_all(), b.to_crs(32630).geometry.union_all()
    assert ua.symmetric_difference(ub).area < 1.0  # m2: float noise, against pixels of 100 m2
    # the parts, read at once as Arrow tables, are what geopandas reads part by part
    parts = sorted((small.folder / "parts").glob("*.parquet"))
    crs = small.dataset.rio.crs.to_string()
    one_by_one = [gpd.read_parquet(p) for p in parts]
    expected = gpd.GeoDataFrame(pd.concat([f for f in one_by_one if len(f)], ignore_index=True), crs=crs)
    assert len(expected) > 0 and all(len(f) > 0 for f in one_by_one)  # a tile that finds nothing writes no part
    assert 0 < len(parts) < small.tiles.total
    assert_geodataframe_equal(read_parts(small.folder / "parts", crs), expected)


def test_output_crs_and_resolution_options(sample_catalog, tmp_path):
    run = detect("zone-border", model="water", catalog=sample_catalog, out=tmp_path / "r", runtime="in-process",
                 crs="EPSG:32631", resolution=20)
    with rasterio.open(run.path("result.tif")) as src:
        assert src.crs.to_epsg() == 32631 and src.res == (20.0, 20.0)
    assert run.ok


def test_resume_clears_what_a_killed_writer_left(sample_catalog, tmp_path):
    ref = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "ref", runtime="in-process", tile_size=128)
    out = tmp_path / "run"
    detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=128)
    # what a SIGKILL can leave: no manifest, a half-written chunk, tile part and COG, a staging folder, a torn ledger line
    (out / "run.json").unlink()
    lines = (out / "ledger.jsonl").read_text().splitlines(keepends=True)
    lost = json.loads(lines[-1])["key"]
    (out / "ledger.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    chunk = next(p for p in (out / "result.zarr").rglob("*") if p.is_file() and "/c/" in str(p))
    chunk.with_suffix(".0123abcd.partial").write_bytes(b"half")
    (out / "parts" / f"{lost}.tmp").write_bytes(b"half")
    (out / "result.tif.part").write_bytes(b"half")
    (out / ".publish-x1y2").mkdir()
    (out / ".publish-x1y2" / "stage.tif").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")  # a file of the user's own stays

    resumed = detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=128, resume=True)
    assert resumed.tiles.done == ref.tiles.total
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records[len(lines) - 1:]] == [lost], "only the tile whose record was torn is computed again"
    files = {p.relative_to(ref.folder) for p in ref.folder.rglob("*") if p.is_file()}
    left = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert left - files == {Path("notes.txt")}
    assert not list(out.glob(".publish-*"))
    for f in files - {Path("ledger.jsonl"), Path("run.json")}:
        assert (out / f).read_bytes() == (ref.folder / f).read_bytes(), f"{f} differs"


def test_a_second_run_into_a_folder_being_written_is_refused_and_touches_nothing(sample_catalog, tmp_path):
    import fcntl

    from geoloom.platform.errors import OutputError

    out = tmp_path / "run"
    detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=256)
    (out / "run.json").unlink()
    partial = out / "parts" / "tile-x.tmp"
    partial.write_bytes(b"being written")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with open(out / ".geoloom.lock", "a+") as held:  # what the running process holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        for kwargs in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(OutputError, match="another geoloom run is writing into"):
                detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=256, **kwargs)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # once the other process is gone, the resume goes through and clears its temporaries
    detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=256, resume=True)
    assert (out / "run.json").exists() and not partial.exists()


def test_overwrite_with_another_model_leaves_none_of_the_old_layers(sample_catalog, tmp_path):
    out = tmp_path / "run"
    detect("sample-bay", model="water", catalog=sample_catalog, out=out, runtime="in-process", tile_size=256)
    old_layers = {p.name for p in out.glob("result-*.tif")}
    (out / "notes.txt").write_text("mine")
    fdi = detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=256, overwrite=True)
    layers = {p.name for p in out.glob("result-*.tif")}
    assert old_layers and not old_layers & layers, (old_layers, layers)
    assert fdi.manifest["properties"]["geoloom:model"]["name"] == "fdi"
    assert (out / "notes.txt").read_text() == "mine"
