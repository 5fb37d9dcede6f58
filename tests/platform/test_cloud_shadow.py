"""Cloud shadows without a scene classification: the sun's position, the cloud-height search on a
decimated scene, and a Level-1C run that masks the shadows its Level-2A twin's SCL marks."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from l1c_catalog import l1c_copy

import geoloom.workflows.runs as runs
from geoloom.platform.cloud_shadow import SHADOW_CONTRAST_MAX, ShadowSearch, find_shadows, sun_position
from geoloom.workflows import detect

UTC = dt.timezone.utc


@pytest.mark.parametrize("when, lon, lat, zenith, azimuth", [
    (dt.datetime(2024, 6, 21, 12, 0, tzinfo=UTC), 0.0, 51.5, 28.1, 180.0),  # London, solstice noon
    (dt.datetime(2024, 3, 20, 12, 7, tzinfo=UTC), 0.0, 0.0, 0.5, None),  # equinox, sun overhead
    (dt.datetime(2024, 12, 21, 1, 53, tzinfo=UTC), 151.21, -33.87, 10.4, None),  # Sydney, solstice noon
])
def test_the_sun_stands_where_the_almanac_puts_it(when, lon, lat, zenith, azimuth):
    z, a = sun_position(when, lon, lat)
    assert abs(z - zenith) < 1.0
    if azimuth is not None:
        assert abs(a - azimuth) < 1.5


def _scene(shadow_height_m: float | None, px: float = 50.0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Water on the left, land on the right, three clouds, and (if a height is given) their shadows."""
    rng = np.random.default_rng(0)
    h = w = 200
    water = np.zeros((h, w), bool)
    water[:, :100] = True
    spectra = {"blue": (0.05, 0.06), "green": (0.04, 0.08), "red": (0.02, 0.09), "nir": (0.01, 0.25),
               "swir16": (0.005, 0.2)}
    bands = {b: np.where(water, wv, lv).astype(np.float32) * rng.uniform(0.95, 1.05, (h, w)).astype(np.float32)
             for b, (wv, lv) in spectra.items()}
    cloud = np.zeros((h, w), bool)
    for y, x in ((40, 60), (120, 130), (150, 40)):
        cloud[y:y + 20, x:x + 25] = True
    shadow = np.zeros((h, w), bool)
    if shadow_height_m is not None:
        zen, az = sun_position(dt.datetime(2024, 1, 9, 10, 27, tzinfo=UTC), 1.5, 5.0)
        d = shadow_height_m * math.tan(math.radians(zen))
        dy, dx = round(d * math.cos(math.radians(az)) / px), round(-d * math.sin(math.radians(az)) / px)
        shadow = np.roll(np.roll(cloud, dy, axis=0), dx, axis=1) & ~cloud
        for b in bands:
            bands[b][shadow] *= 0.45
    for b, v in {"blue": 0.5, "green": 0.5, "red": 0.5, "nir": 0.5, "swir16": 0.3}.items():
        bands[b][cloud] = v
    return bands, cloud, shadow


def test_the_height_search_finds_the_shadows_of_the_clouds():
    bands, _, truth = _scene(1500.0)
    mask, info = find_shadows(bands, (50.0, 50.0), dt.datetime(2024, 1, 9, 10, 27, tzinfo=UTC), 1.5, 5.0)
    assert abs(info["cloud_height_m"] - 1500) <= 200 and info["contrast"] < SHADOW_CONTRAST_MAX
    assert (mask & truth).sum() >= 0.9 * truth.sum() and (mask & truth).sum() >= 0.9 * mask.sum()


def test_clouds_without_dark_ground_beside_them_cast_no_shadow_found():
    bands, _, _ = _scene(None)
    mask, info = find_shadows(bands, (50.0, 50.0), dt.datetime(2024, 1, 9, 10, 27, tzinfo=UTC), 1.5, 5.0)
    assert not mask.any() and info["contrast"] > SHADOW_CONTRAST_MAX
    # ground that darkens towards the south-east, away from the sun: dark for the lowest clouds and
    # lighter for every higher one, a trend that ends at the search's edge, not a shadow's dip
    bands, cloud, _ = _scene(None)
    yy, xx = np.mgrid[0:200, 0:200]
    ramp = np.clip(1.0 - 0.008 * np.maximum(yy + xx - 150, 0), 0.1, 1.0).astype(np.float32)
    for b in bands:
        bands[b] = np.where(cloud, bands[b], bands[b] * ramp)
    mask, info = find_shadows(bands, (50.0, 50.0), dt.datetime(2024, 1, 9, 10, 27, tzinfo=UTC), 1.5, 5.0)
    assert not mask.any() and info["contrast"] < SHADOW_CONTRAST_MAX, info
    assert not ShadowSearch(bands, (50.0, 50.0)).find(89.0, 140.0)[0].any()  # the sun on the horizon


def test_a_level1c_run_masks_the_shadows_its_level2a_twin_knows(sample_catalog, tmp_path, monkeypatch):
    l1c = l1c_copy(sample_catalog, tmp_path / "l1c")
    bbox = (-0.06, 5.52, 0.06, 5.64)  # open water, clouds and their shadows
    kw = dict(model="marine-debris", runtime="in-process", progress=False, per_date=False, start="2024-01-09",
              end="2024-01-09")
    ran = {name: detect(bbox, catalog=cat, out=tmp_path / name, **kw) for name, cat in (("l2a", sample_catalog),
                                                                                          ("l1c", l1c))}
    masked = {name: np.isnan(run.dataset["probability"].values) for name, run in ran.items()}
    monkeypatch.setattr(runs, "scene_shadows", lambda scenes, folder: {})  # the same run without the search
    plain = np.isnan(detect(bbox, catalog=l1c, out=tmp_path / "plain", **kw).dataset["probability"].values)
    found = json.loads((tmp_path / "l1c" / "request.json").read_text())["shadows"]
    assert found and all(800 <= f["cloud_height_m"] <= 1600 and f["shadow_share"] > 0 for f in found.values())
    recorded = ran["l1c"].manifest["properties"]["geoloom:parameters"]["cloud_shadow"]  # provenance
    assert recorded.keys() == found.keys() and "geoloom:parameters" in ran["l2a"].manifest["properties"]
    assert "cloud_shadow" not in ran["l2a"].manifest["properties"]["geoloom:parameters"]  # it has its SCL

    def agreement(a: np.ndarray) -> float:
        return float((a & masked["l2a"]).sum() / (a | masked["l2a"]).sum())

    # the shadows SCL marks in Level-2A are masked in Level-1C too, more than without the search
    assert agreement(masked["l1c"]) > agreement(plain) + 0.05
