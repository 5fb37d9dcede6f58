"""Tiles the scene classification decides alone (land and cloud, no clear water) skip their band reads,
with the same outputs, counts and detections as the full read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import geoloom.platform.tile_job as tile_job
from geoloom.platform.models.marine_debris import MarineDebrisModel
from geoloom.workflows import Run, detect


def _ledgers(folder) -> dict[str, dict]:
    records = {}
    for path in sorted(folder.rglob("ledger.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            records[f"{path.parent.name}/{r['key']}"] = {k: r[k] for k in ("state", "detections", "scenes", "counts")}
    return records


@pytest.mark.slow
def test_tiles_of_land_and_cloud_are_decided_without_reading_bands(sample_catalog, tmp_path, monkeypatch):
    decided = []
    real = tile_job.classes_decide

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        decided.append(out is not None)
        return out

    monkeypatch.setattr(tile_job, "classes_decide", counting)
    kw = dict(model="marine-debris", catalog=sample_catalog, runtime="in-process", tile_size=256, start="2024-01-14", end="2024-01-14")
    fast = detect("sample-area", out=tmp_path / "fast", **kw)
    assert sum(decided) >= 3 and not all(decided)  # some tiles decided by SCL alone, the rest read

    monkeypatch.setattr(MarineDebrisModel, "outputs_from_classes", lambda self, scl, read=None: None)  # always read
    decided.clear()
    full = detect("sample-area", out=tmp_path / "full", **kw)
    assert not any(decided)

    a, b = xr.open_zarr(Run(fast.folder).folder / "result.zarr").load(), xr.open_zarr(full.folder / "result.zarr").load()
    for name in ("probability", "debris"):
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name
    assert _ledgers(fast.folder) == _ledgers(full.folder)  # pixel counts, scenes, detections
    assert len(fast.detections) == len(full.detections)


def test_marine_debris_decides_only_tiles_without_clear_water():
    model = MarineDebrisModel()
    land_and_cloud = np.array([[4, 5, 8], [9, 3, 5]], dtype=np.float32)
    out = model.outputs_from_classes(land_and_cloud)
    assert out["probability"].tolist()[0][:2] == [0.0, 0.0] and np.isnan(out["probability"][0, 2])
    assert out["debris"].tolist() == [[0, 0, 255], [255, 255, 0]]
    for needs_a_look in (6, 7, 2, 10, 11):  # water, unclassified, dark, thin cirrus, snow
        assert model.outputs_from_classes(np.array([[4, needs_a_look]], np.float32)) is None


def test_thin_cirrus_over_land_is_land_and_over_water_needs_the_network():
    model = MarineDebrisModel()
    scl = np.array([[4, 10, 10], [9, 5, 10]], dtype=np.float32)
    land = {"green": np.full(scl.shape, 0.08, np.float32), "swir16": np.full(scl.shape, 0.2, np.float32)}
    asked: list[str] = []

    def read(band: str) -> np.ndarray:
        asked.append(band)
        return land[band]

    out = model.outputs_from_classes(scl, read)  # vegetation's MNDWI (-0.43) under the cirrus: land
    assert out is not None and out["debris"].tolist() == [[0, 0, 0], [255, 0, 0]] and sorted(asked) == ["green", "swir16"]
    water = {"green": np.full(scl.shape, 0.06, np.float32), "swir16": np.full(scl.shape, 0.02, np.float32)}
    assert model.outputs_from_classes(scl, water.__getitem__) is None  # debris-like MNDWI (+0.5): look
    asked.clear()
    assert model.outputs_from_classes(np.array([[6, 10]], np.float32), read) is None and not asked  # water: no read
    assert model.outputs_from_classes(scl) is None  # without the bands, cirrus needs the network
