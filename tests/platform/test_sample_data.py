"""The generated sample data: a readable STAC catalog of valid COGs, deterministic and realistic.

``sample_catalog`` (tests/conftest.py) is the default small set, generated once per session.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import rowcol
from rasterio.warp import transform as warp_transform
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box, shape

from geoloom.platform import scenes
from geoloom.platform.bands import REFLECTANCE_BANDS, S2_BANDS, band_info
from geoloom.platform.classes import (
    CLOUD, DEBRIS, FOAM, HARD_NEGATIVES, LABEL_CLASSES, LAND, SARGASSUM, SHIP, TURBID, WATER,
)
from geoloom.platform.errors import GeoloomError
from geoloom.platform.region import presets_dir
from geoloom.platform.sampledata import COLLECTION_ID, default_sample_dir, generate_sample_data
from geoloom.platform.spectra import MARIDA_BANDS, MARIDA_MEANS, fdi

PRESETS = presets_dir()
SEA = [WATER, DEBRIS, SARGASSUM, SHIP, FOAM, TURBID]

# Spectra tolerance: a class mean passes when, in every band, it is within
# max(ABS_TOL, REL_TOL x the MARIDA value) of the MARIDA class mean.
PURE_ABS_TOL, PURE_REL_TOL = 0.004, 0.08  # pure pixels (cover >= 90%): the endmember plus noise
LABEL_ABS_TOL, LABEL_REL_TOL = 0.005, 0.15  # every labelled pixel of a class, read from the COGs


@pytest.fixture(scope="session")
def items(sample_catalog: Path) -> list[pystac.Item]:
    return list(pystac.Catalog.from_file(str(sample_catalog)).get_items(recursive=True))


def _href(item: pystac.Item, key: str) -> str:
    return item.assets[key].get_absolute_href()


def _epsg(item: pystac.Item) -> int:
    return int(item.properties["proj:code"].split(":")[1])


def _read(item: pystac.Item, key: str) -> np.ndarray:
    with rasterio.open(_href(item, key)) as src:
        return src.read(1)


def _within(mean: np.ndarray, table: np.ndarray, abs_tol: float, rel_tol: float) -> np.ndarray:
    return np.abs(mean - table) <= np.maximum(abs_tol, rel_tol * table)


# --------------------------------------------------------------------------- catalog and files
def test_catalog_is_a_self_contained_stac_catalog(sample_catalog: Path, items: list[pystac.Item]) -> None:
    catalog = pystac.Catalog.from_file(str(sample_catalog))
    collection = catalog.get_child(COLLECTION_ID)
    assert isinstance(collection, pystac.Collection)
    assert len(items) >= 4
    assert len({i.datetime for i in items}) >= 2
    for path in sample_catalog.parent.rglob("*.json"):
        text = path.read_text()
        assert str(sample_catalog.parent) not in text, f"{path} has an absolute href"
        assert '"created"' not in text and '"updated"' not in text
    for item in items:
        props = item.properties
        assert props["platform"] in ("sentinel-2a", "sentinel-2b") and props["constellation"] == "sentinel-2"
        assert props["proj:code"] in ("EPSG:32630", "EPSG:32631")
        assert 0.0 <= props["eo:cloud_cover"] <= 100.0
        # pystac folds the deprecated proj:epsg into proj:code on reading; other readers find both.
        raw = json.loads(Path(item.get_self_href()).read_text())
        assert raw["properties"]["proj:code"] == f"EPSG:{raw['properties']['proj:epsg']}"
        assert all(a["proj:code"] == f"EPSG:{a['proj:epsg']}" for a in raw["assets"].values())


def test_scenes_overlap_and_two_utm_zones_occur(items: list[pystac.Item]) -> None:
    assert {_epsg(i) for i in items} == {32630, 32631}
    by_date: dict = {}
    for item in items:
        by_date.setdefault(item.datetime, []).append(shape(item.geometry))
    border = box(-0.01, 5.5, 0.01, 5.6)  # scenes of both zones cover the 0 degree meridian
    for geoms in by_date.values():
        assert len(geoms) == 2
        assert all(g.contains(border) for g in geoms)


def test_every_asset_opens_at_its_declared_grid(items: list[pystac.Item]) -> None:
    for item in items:
        assert set(item.assets) == {b.name for b in S2_BANDS} | {"labels"}
        for key, asset in item.assets.items():
            res = 10 if key == "labels" else band_info(key).resolution_m
            with rasterio.open(asset.get_absolute_href()) as src:
                assert src.crs.to_string() == asset.extra_fields["proj:code"] == item.properties["proj:code"]
                assert list(src.shape) == asset.extra_fields["proj:shape"]
                assert list(src.transform)[:6] == pytest.approx(asset.extra_fields["proj:transform"])
                assert src.res == (res, res)
                assert src.nodata == 0
                assert src.dtypes[0] == ("uint8" if key in ("scl", "labels") else "uint16")
                assert src.transform.c % 60 == 0 and src.transform.f % 60 == 0  # 10/20/60 m grids nest


def test_band_metadata_and_roles(items: list[pystac.Item]) -> None:
    for item in items:
        labels = item.assets["labels"]
        assert labels.roles == ["labels"]
        assert "eo:bands" not in labels.extra_fields
        assert item.assets["scl"].roles == ["data"]
        for name in REFLECTANCE_BANDS:
            asset = item.assets[name]
            assert "data" in asset.roles and "labels" not in asset.roles
            (band,) = asset.extra_fields["eo:bands"]
            assert band["center_wavelength"] == band_info(name).center_um
            assert band["common_name"] == band_info(name).common_name
        imagery = [k for k, a in item.assets.items() if "data" in (a.roles or [])]
        assert "labels" not in imagery


def test_assets_are_valid_cogs(items: list[pystac.Item]) -> None:
    for item in items:
        for key in item.assets:
            valid, errors, _ = cog_validate(_href(item, key), quiet=True)
            assert valid, (item.id, key, errors)
        with rasterio.open(_href(item, "blue")) as src:
            assert src.profile["tiled"] and src.overviews(1)
            assert src.compression is not None


def test_cloud_cover_is_measured_from_scl(items: list[pystac.Item]) -> None:
    for item in items:
        scl = _read(item, "scl")
        valid = scl != 0
        cloudy = np.isin(scl, [8, 9, 10]) & valid
        assert item.properties["eo:cloud_cover"] == pytest.approx(100.0 * cloudy.sum() / valid.sum(), abs=0.01)
        assert set(np.unique(scl)) <= {0, 3, 4, 5, 6, 8, 9, 10}


def test_partial_scenes_have_nodata_edges(items: list[pystac.Item]) -> None:
    partial = 0
    for item in items:
        blue, labels = _read(item, "blue"), _read(item, "labels")
        assert np.array_equal(blue == 0, labels == 0)
        if (blue == 0).any():
            partial += 1
            rows = np.flatnonzero((blue == 0).any(axis=1))
            edge = [np.flatnonzero(blue[r] == 0) for r in (rows[0], rows[-1])]
            assert edge[0].size != edge[1].size  # a slanted swath edge, not a straight cut
    assert partial >= 2


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = generate_sample_data(tmp_path / "a", seed=3, _scale=0.12).parent
    b = generate_sample_data(tmp_path / "b", seed=3, _scale=0.12).parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 4 * 15 + 2
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_different_seed_gives_a_different_scene(tmp_path: Path) -> None:
    a = generate_sample_data(tmp_path / "a", seed=3, _scale=0.12).parent
    b = generate_sample_data(tmp_path / "b", seed=4, _scale=0.12).parent
    for rel in ("blue.tif", "labels.tif"):
        pa = next(a.rglob(rel))
        pb = b / pa.relative_to(a)
        with rasterio.open(pa) as sa, rasterio.open(pb) as sb:
            assert sa.shape == sb.shape
            assert not np.array_equal(sa.read(1), sb.read(1))


def test_progress_reports_every_step(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_sample_data(tmp_path, seed=1, _scale=0.1, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_relative_folder_gives_a_catalog_readable_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = generate_sample_data("rel/sample", seed=1, _scale=0.1)
    assert path.is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    items = list(pystac.Catalog.from_file(str(path)).get_items(recursive=True))
    assert len(items) == 4
    for item in items:
        with rasterio.open(item.assets["blue"].get_absolute_href()) as src:
            assert src.read(1, window=((0, 4), (0, 4))).shape == (4, 4)


def test_bad_options_raise_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(GeoloomError, match="size"):
        generate_sample_data(tmp_path, size="huge")  # type: ignore[arg-type]
    with pytest.raises(GeoloomError, match="seed"):
        generate_sample_data(tmp_path, seed=-1)


def test_default_dir_is_in_the_user_data_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    assert default_sample_dir() == tmp_path / "data" / "sample"
    monkeypatch.delenv("GEOLOOM_DATA_DIR")
    import platformdirs

    assert default_sample_dir() == Path(platformdirs.user_data_dir("geoloom", appauthor=False)) / "sample"


# --------------------------------------------------------------------------- realism
def test_overlapping_scenes_agree(items: list[pystac.Item]) -> None:
    """The same date seen in UTM 30N and 31N: same labels and reflectance up to noise."""
    date = min(i.datetime for i in items)
    west, east = sorted((i for i in items if i.datetime == date), key=_epsg)
    lon, lat = np.meshgrid(np.linspace(-0.03, 0.03, 150), np.linspace(5.49, 5.62, 150))
    values = []
    for item in (west, east):
        got = {}
        for key in ("labels", "blue", "nir"):
            with rasterio.open(_href(item, key)) as src:
                xs, ys = warp_transform("EPSG:4326", src.crs, lon.ravel().tolist(), lat.ravel().tolist())
                rows, cols = rowcol(src.transform, xs, ys)
                got[key] = src.read(1)[np.asarray(rows), np.asarray(cols)]
        values.append(got)
    labels_w, labels_e = values[0]["labels"], values[1]["labels"]
    both = (labels_w != 0) & (labels_e != 0)
    assert both.sum() > 5000
    assert np.mean(labels_w[both] == labels_e[both]) > 0.97
    sea = both & (labels_w == WATER) & (labels_e == WATER)
    for key in ("blue", "nir"):
        diff = values[0][key][sea].astype(float) - values[1][key][sea].astype(float)
        assert abs(np.median(diff)) <= 2 and np.median(np.abs(diff)) <= 25  # DN: noise only


def test_debris_is_rare_and_hard_negatives_are_present(items: list[pystac.Item]) -> None:
    counts = np.zeros(10, dtype=np.int64)
    for item in items:
        counts += np.bincount(_read(item, "labels").ravel(), minlength=10)
    sea = counts[SEA].sum()
    assert 0 < counts[DEBRIS] <= 0.005 * sea
    for code in HARD_NEGATIVES:
        assert counts[code] >= 100, LABEL_CLASSES[code]
    assert counts[CLOUD] > 0 and counts[LAND] > 0


@pytest.mark.parametrize("preset", ["sample-bay", "zone-border"])
def test_presets_hold_debris(preset: str, items: list[pystac.Item]) -> None:
    """Debris windrows lie in the bay, and across the 0 degree meridian, seen by both UTM zones."""
    region = shape(json.loads((PRESETS / f"{preset}.geojson").read_text())["features"][0]["geometry"])
    w, s, e, n = region.bounds
    debris_lon, epsgs = [], set()
    for item in items:
        if not shape(item.geometry).intersects(region):
            continue
        with rasterio.open(_href(item, "labels")) as src:
            xs, ys = warp_transform("EPSG:4326", src.crs, [w, e, e, w], [s, s, n, n])
            win = rasterio.windows.from_bounds(min(xs), min(ys), max(xs), max(ys), src.transform)
            win = win.round_offsets().round_lengths()
            labels = src.read(1, window=win, boundless=True, fill_value=0)
            rows, cols = np.nonzero(labels == DEBRIS)
            px, py = rasterio.transform.xy(src.window_transform(win), rows, cols)
            lon, lat = warp_transform(src.crs, "EPSG:4326", np.atleast_1d(px).tolist(), np.atleast_1d(py).tolist())
        if (labels != 0).any():
            epsgs.add(_epsg(item))
        debris_lon += [x for x, y in zip(lon, lat, strict=True) if w <= x <= e and s <= y <= n]
    assert len(debris_lon) >= 20
    if preset == "zone-border":
        assert epsgs == {32630, 32631}
        assert min(debris_lon) < 0.0 < max(debris_lon)


def test_presets_are_named_feature_collections() -> None:
    names = {p.stem for p in PRESETS.glob("*.geojson")}
    assert {"sample-area", "sample-bay", "zone-border"} <= names
    for path in PRESETS.glob("*.geojson"):
        fc = json.loads(path.read_text())
        assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
        props = fc["features"][0]["properties"]
        assert props["name"] == path.stem and props["description"]
        assert shape(fc["features"][0]["geometry"]).is_valid


def test_labelled_class_means_in_the_files_match_marida(items: list[pystac.Item]) -> None:
    """Water and cloud, the classes large enough to average, at the 10 m bands of the COGs."""
    bands = ("blue", "green", "red", "nir")
    idx = [MARIDA_BANDS.index(b) for b in bands]
    item = next(i for i in items if "30NZM" in i.id)
    labels = _read(item, "labels")
    refl = np.stack([_read(item, b) for b in bands]).astype(np.float64) / 10000.0
    for code in (WATER, CLOUD):
        mask = labels == code
        assert mask.sum() > 10000
        mean = refl[:, mask].mean(axis=1)
        table = np.array(MARIDA_MEANS[code])[idx]
        assert _within(mean, table, LABEL_ABS_TOL, LABEL_REL_TOL).all(), (LABEL_CLASSES[code], mean, table)


def _patch_pixels(seeds: range, *, need: tuple[int, ...] = (), at_least: int = 50
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Per-pixel 12-band reflectance at 10 m (with sensor noise), labels and covers of generated scenes.

    Stops early once every class in ``need`` has ``at_least`` labelled pixels.
    """
    refl, labels, covers = [], [], {}
    for seed in seeds:
        if need and labels:
            counts = np.bincount(np.concatenate(labels), minlength=10)
            if all(counts[c] >= at_least for c in need):
                break
        _, r = scenes.render_patch(seed, (384, 384))
        x = scenes.mix_bands(r.abundances, REFLECTANCE_BANDS, 1)
        x = scenes.quantize(x, REFLECTANCE_BANDS, np.random.default_rng(seed), None) / 10000.0
        refl.append(x.reshape(len(REFLECTANCE_BANDS), -1))
        labels.append(r.labels.ravel())
        for k, v in r.fractions.items():
            covers.setdefault(k, []).append(np.broadcast_to(v, r.labels.shape).ravel())
    return np.concatenate(refl, axis=1), np.concatenate(labels), {k: np.concatenate(v) for k, v in covers.items()}


def test_pure_class_spectra_match_marida() -> None:
    """Pixels a class covers (>= 90%) have MARIDA's class-mean spectrum in all 11 bands."""
    refl, labels, cover = _patch_pixels(range(40), need=(DEBRIS, SARGASSUM, SHIP, CLOUD))
    idx = [REFLECTANCE_BANDS.index(b) for b in MARIDA_BANDS]
    sky = (cover["cloud"] < 0.01) & (cover["cloud_shadow"] < 0.01)
    others = sum(cover[k] for k in ("debris", "sargassum", "ship", "foam", "land"))
    pure = {
        WATER: (labels == WATER) & sky & (others < 0.01) & (cover["turbid"] < 0.02),
        DEBRIS: (labels == DEBRIS) & sky & (cover["debris"] >= 0.9),
        SARGASSUM: (labels == SARGASSUM) & sky & (cover["sargassum"] >= 0.9),
        SHIP: (labels == SHIP) & sky & (cover["ship"] >= 0.9),
        CLOUD: (labels == CLOUD) & (cover["cloud"] >= 0.98),
    }
    for code, mask in pure.items():
        assert mask.sum() >= 5, LABEL_CLASSES[code]
        mean = refl[idx][:, mask].mean(axis=1)
        table = np.array(MARIDA_MEANS[code])
        ok = _within(mean, table, PURE_ABS_TOL, PURE_REL_TOL)
        assert ok.all(), (LABEL_CLASSES[code], np.round(mean, 4), table)


def test_debris_is_faint_and_hard_negatives_beat_it_on_fdi(items: list[pystac.Item]) -> None:
    """Sub-pixel debris is fainter than MARIDA's (FDI 0.055); foam, turbid water, Sargassum and ships score higher."""
    item = next(i for i in items if "30NZM" in i.id)
    labels = _read(item, "labels")

    def at_10m(key: str) -> np.ndarray:
        k = band_info(key).resolution_m // 10
        return np.kron(_read(item, key), np.ones((k, k), dtype=np.uint16)).astype(np.float64) / 10000.0

    index = fdi(at_10m("nir"), at_10m("rededge2"), at_10m("swir16"))
    mean = {code: float(index[labels == code].mean()) for code in (WATER, DEBRIS, *HARD_NEGATIVES)}
    assert mean[WATER] < 0.02 < mean[DEBRIS] < 0.055
    for code in HARD_NEGATIVES:
        assert mean[code] > mean[DEBRIS], LABEL_CLASSES[code]


def test_synthesize_scene_in_memory() -> None:
    bands, labels = scenes.synthesize_scene(5, (200, 300))
    assert list(bands) == list(REFLECTANCE_BANDS)
    assert all(v.shape == (200, 300) and v.dtype == np.float32 for v in bands.values())
    assert labels.shape == (200, 300) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= set(LABEL_CLASSES)
    again, labels_again = scenes.synthesize_scene(5, (200, 300))
    assert np.array_equal(labels, labels_again) and np.array_equal(bands["nir"], again["nir"])
    clean = [scenes.synthesize_scene(s, (128, 128), debris=False)[1] for s in range(6)]
    assert not any((c == DEBRIS).any() for c in clean)
    dirty = [scenes.synthesize_scene(s, (256, 256))[1] for s in range(3)]
    assert all((d == DEBRIS).any() for d in dirty)
