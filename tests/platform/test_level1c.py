"""Level-1C and imagery without SCL: classes from the bands, the dark-spectrum correction, and the
default model end to end on a SAFE product and on a Level-1C look-alike of the sample catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from l1c_catalog import PATH_REFLECTANCE, l1c_copy
from safe_products import Product, footprint_lonlat, write_safe, zip_safe

from geoloom.platform.atmosphere import dark_spectrum
from geoloom.platform.band_masks import BARE, CLOUD, VEGETATION, WATER, derivable_bands, scl_from_bands
from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.catalog import search_scenes
from geoloom.platform.catalog_index import index_folder
from geoloom.platform.errors import ModelError
from geoloom.platform.region import as_region
from geoloom.platform.spectra import ENDMEMBERS
from geoloom.workflows import detect, plan_run

MASKED = ("blue", "green", "red", "nir", "swir16")


def spectrum(name: str, path: bool = False) -> dict[str, np.ndarray]:
    """One pixel of an endmember spectrum, at the surface or with the atmosphere's path on top."""
    values = dict(zip(REFLECTANCE_BANDS, ENDMEMBERS[name], strict=True))
    return {b: np.array([values[b] + (PATH_REFLECTANCE[b] if path else 0.0)], dtype=np.float32) for b in MASKED}


@pytest.mark.parametrize("path", [False, True], ids=["surface", "top-of-atmosphere"])
@pytest.mark.parametrize(("name", "codes"), [
    ("water", {WATER}), ("debris", {WATER}), ("sargassum", {WATER}), ("turbid", {WATER}), ("ship", {WATER, CLOUD}),
    ("vegetation", {VEGETATION}), ("soil", {BARE}), ("cloud", {CLOUD}),
])
def test_classes_from_the_bands_at_the_surface_and_the_top_of_the_atmosphere(name, codes, path):
    assert scl_from_bands(spectrum(name, path))[0] in codes


def test_a_scene_without_scl_offers_it_when_it_has_the_bands():
    assert "scl" in derivable_bands({"blue", "green", "red", "nir", "swir16", "coastal"})
    assert "scl" not in derivable_bands({"blue", "green", "red"})


def test_classes_from_the_bands_agree_with_the_scene_classification(sample_catalog):
    item = next(p for p in sorted(sample_catalog.parent.rglob("*.json")) if "S2B-31NBG" in p.name)
    folder = item.parent
    with rasterio.open(folder / "blue.tif") as src:
        shape = src.shape
    bands = {}
    for b in MASKED:
        with rasterio.open(folder / f"{b}.tif") as src:
            a = src.read(1, out_shape=shape).astype(np.float32)
        bands[b] = np.where(a == 0, np.nan, a / 10000)
    with rasterio.open(folder / "scl.tif") as src:
        scl = src.read(1, out_shape=shape)
    mine, ok = scl_from_bands(bands), scl > 0
    water, land, cloud = (np.isin(scl, codes) & ok for codes in ([6], [4, 5], [8, 9, 10]))
    assert (mine[water] == WATER).mean() > 0.99 and np.isin(mine[land], (VEGETATION, BARE)).mean() > 0.99
    called_cloud = (mine == CLOUD) & ok
    assert cloud[called_cloud].mean() > 0.99 and called_cloud[cloud].mean() > 0.6  # precise; thin cloud edges pass


def test_the_dark_spectrum_finds_the_path_reflectance(sample_catalog, tmp_path):
    l1c = l1c_copy(sample_catalog, tmp_path / "l1c")
    scene = next(s for s in search_scenes(str(l1c), as_region("sample-area")) if "S2A-31NBG" in s.id)
    assert scene.level == "L1C" and "scl" not in scene.assets
    found = dark_spectrum(scene, REFLECTANCE_BANDS)
    for band, path in PATH_REFLECTANCE.items():
        assert found[band] == pytest.approx(path, abs=0.012), band


def test_marine_debris_on_level1c_comes_close_to_its_level2a_result(sample_catalog, tmp_path):
    l1c = l1c_copy(sample_catalog, tmp_path / "l1c")
    ref = detect("sample-bay", model="marine-debris", catalog=sample_catalog, out=tmp_path / "l2a",
                 runtime="in-process", progress=False, per_date=False)
    run = detect("sample-bay", model="marine-debris", catalog=l1c, out=tmp_path / "run", runtime="in-process",
                 progress=False, per_date=False)
    a, b = (r.dataset["debris"].values == 1 for r in (ref, run))
    assert a.sum() > 50 and (a & b).sum() / (a | b).sum() > 0.7
    correction = run.manifest["properties"]["geoloom:parameters"]["l1c_correction"]
    assert correction["method"] == "dark-spectrum" and len(correction["path_reflectance"]) == len(run.plan.scenes)
    assert all(s.level == "L1C" and "scl" not in s.assets for s in run.plan.scenes)


def test_marine_debris_keeps_clear_of_clouds_found_in_the_bands(sample_catalog, tmp_path):
    """Level-1C: no pixel within CLOUD_BUFFER_PX of a cloud (classes from the bands) is scored, and the
    buffer leaves tiles seamless: 128 px tiles give the same probabilities as one 512 px tile."""
    from geoloom.platform.composite import CLASSES_FROM_BANDS
    from geoloom.platform.models.marine_debris import CLOUD_BUFFER_PX, MarineDebrisModel

    l1c = l1c_copy(sample_catalog, tmp_path / "l1c")
    kw = dict(model="marine-debris", catalog=l1c, runtime="in-process", progress=False, per_date=False,
              start="2024-01-09", end="2024-01-09")
    small = detect("sample-bay", out=tmp_path / "t128", tile_size=128, **kw)
    whole = detect("sample-bay", out=tmp_path / "t512", tile_size=512, **kw)
    a, b = small.dataset["probability"].values, whole.dataset["probability"].values
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.nanmax(np.abs(a - b)) < 1e-5
    tile = water_tile()
    tile["scl"].values[60:70, 60:70] = 9  # a cloud, as the classes from the bands call it
    plain = MarineDebrisModel().predict(tile)["probability"]
    tile.attrs[CLASSES_FROM_BANDS] = 1
    buffered = MarineDebrisModel().predict(tile)["probability"]
    assert np.isnan(plain[60:70, 60:70]).all() and np.isfinite(plain[50:60, 50:60]).all()  # SCL read: no buffer
    edge = slice(60 - CLOUD_BUFFER_PX + 2, 70 + CLOUD_BUFFER_PX - 2)  # corners are rounded by the smoothing
    assert np.isnan(buffered[edge, edge]).all() and np.isnan(buffered[65, 60 - CLOUD_BUFFER_PX])
    speckle = water_tile()
    speckle["scl"].values[::7, ::7] = 9  # lone pixels called cloud (white hulls, roofs): no buffer
    speckle.attrs[CLASSES_FROM_BANDS] = 1
    assert np.isfinite(MarineDebrisModel().predict(speckle)["probability"]).mean() > 0.95
    ring = np.ones((128, 128), bool)
    ring[60 - CLOUD_BUFFER_PX - 1:70 + CLOUD_BUFFER_PX + 1, 60 - CLOUD_BUFFER_PX - 1:70 + CLOUD_BUFFER_PX + 1] = False
    assert np.isfinite(buffered[ring]).all()


def water_tile(size: int = 128):
    """A generated water scene (seed 615: in no training set) with SCL water everywhere."""
    import xarray as xr

    from geoloom.platform.bands import REFLECTANCE_BANDS
    from geoloom.platform.scenes import synthesize_scene

    bands, _ = synthesize_scene(615, (size, size))
    data = {b: (("y", "x"), bands[b]) for b in REFLECTANCE_BANDS}
    return xr.Dataset({**data, "scl": (("y", "x"), np.full((size, size), 6.0, np.float32))})


def test_fdi_on_level1c_takes_the_same_correction(sample_catalog, tmp_path):
    """The index's threshold is in surface reflectance: Level-1C is corrected for it too."""
    l1c = l1c_copy(sample_catalog, tmp_path / "l1c")
    ref = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "l2a", runtime="in-process",
                 progress=False)
    run = detect("sample-bay", model="fdi", catalog=l1c, out=tmp_path / "run", runtime="in-process", progress=False)
    correction = run.manifest["properties"]["geoloom:parameters"]["l1c_correction"]
    assert correction["method"] == "dark-spectrum"
    a, b = (np.nan_to_num(r.dataset["fdi"].values) for r in (ref, run))
    assert np.abs(a - b).mean() < 0.01  # uncorrected, top-of-atmosphere FDI lies far from the surface one


def test_a_model_that_takes_level2a_only_refuses_level1c(sample_catalog, tmp_path, monkeypatch):
    from geoloom.platform.models import marine_debris_card

    real = marine_debris_card.build_card

    def l2a_only(*args, **kwargs):
        import dataclasses

        return dataclasses.replace(real(*args, **kwargs), levels=("L2A",))

    monkeypatch.setattr(marine_debris_card, "build_card", l2a_only)
    with pytest.raises(ModelError, match="takes L2A imagery and the scenes found are L1C"):
        plan_run("sample-bay", model="marine-debris", catalog=l1c_copy(sample_catalog, tmp_path / "l1c"))


@pytest.mark.parametrize("zipped", [False, True], ids=["safe", "zip"])
def test_a_level1c_safe_product_runs_with_the_default_model(tmp_path, zipped, monkeypatch):
    from geoloom.platform.models import marine_debris

    # the fixture's pixels are independent random numbers, 59 % of them "cloud" by the band tests: no
    # pixel lies 100 m from one, so the cloud-edge buffer (tested above) is left out here
    monkeypatch.setattr(marine_debris, "cloud_buffer", lambda cloud: np.zeros_like(cloud))
    product = Product(level="L1C", baseline="05.09")
    safe = write_safe(tmp_path / "download", product)
    source = zip_safe(safe, tmp_path / "zips") if zipped else safe.parent
    catalog = index_folder(source, tmp_path / "catalog")
    lon, lat = zip(*footprint_lonlat(product), strict=True)
    w, e, s, n = min(lon), max(lon), min(lat), max(lat)
    bbox = (w + 0.3 * (e - w), s + 0.2 * (n - s), e - 0.2 * (e - w), n - 0.2 * (n - s))
    watch = detect(bbox, catalog=catalog, out=tmp_path / "run", runtime="in-process", progress=False)
    assert watch.ok and watch.per_date and len(watch.dates) == 1  # the default model: one result per date
    run = watch.date(watch.dates[0])
    assert run.ok and run.card.name == "marine-debris"
    assert [s.level for s in run.plan.scenes] == ["L1C"] and "scl" not in run.plan.scenes[0].assets
    probability = run.dataset["probability"].values  # random test pixels: much of it is called cloud or land
    finite = probability[np.isfinite(probability)]
    assert finite.size > 0.1 * probability.size and ((finite >= 0) & (finite <= 1)).all()
    request = json.loads(Path(run.folder / "request.json").read_text())
    assert set(request["corrections"]) == {run.plan.scenes[0].id}


def test_the_page_indexes_a_folder_of_products_and_plans_on_it(tmp_path, monkeypatch):
    """The UI's 'folder of imagery' source: a zipped Level-1C product indexed on the fly."""
    import streamlit_folium
    from streamlit.testing.v1 import AppTest

    product = Product(level="L1C", baseline="05.09")
    zip_safe(write_safe(tmp_path / "download", product), tmp_path / "zips")
    monkeypatch.setattr(streamlit_folium, "st_folium", lambda *args, **kwargs: None)
    for key, value in {"GEOLOOM_RUNS": str(tmp_path / "runs"), "GEOLOOM_RUNTIME": "in-process",
                       "GEOLOOM_UI_PREVIEW": "0", "GEOLOOM_BASEMAP": "none"}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "ui" / "app.py"), default_timeout=90)
    at.run()
    at.selectbox(key="source").set_value("A folder of imagery on this machine").run()
    at.text_input(key="source_folder").set_value(str(tmp_path / "zips")).run()
    at.button(key="index_folder").click().run()
    assert not at.error, [e.value for e in at.error]
    lon, lat = zip(*footprint_lonlat(product), strict=True)
    w, e, s, n = min(lon), max(lon), min(lat), max(lat)
    at.text_input(key="bbox_text").set_value(f"{w + 0.3 * (e - w)} {s + 0.2 * (n - s)} {e - 0.2 * (e - w)} "
                                             f"{n - 0.2 * (n - s)}").run()
    at.button(key="use_bbox").click().run()
    assert not at.error, [e.value for e in at.error]
    assert str(tmp_path / "runs" / "catalogs") in at.session_state["catalog"]
    assert at.multiselect(key="exclude").options  # the product's granule is listed
    at.selectbox(key="source").set_value("A folder of imagery on this machine").run()
    at.text_input(key="source_folder").set_value(str(tmp_path / "nothing-here")).run()
    at.button(key="index_folder").click().run()
    assert at.error  # a folder that is not there is explained in place
