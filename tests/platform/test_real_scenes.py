"""The real-scene evaluation on a small generated stand-in (no network): masks, implants, scene folders, scores."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy.ndimage import binary_dilation, distance_transform_cdt

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.catalog_index import index_folder
from geoloom.platform.models.training.real_scenes import (
    DEBRIS_SPECTRUM,
    S2CLOUDLESS_BANDS,
    RealScene,
    dark_offsets,
    evaluate_real_scene,
    implant_windrows,
    open_water,
    score_detections,
    summarise,
    surface_version,
    water_mask,
    write_scene_folder,
)
from geoloom.platform.spectra import ENDMEMBERS

SIZE = 96
#: A Level-1C-like path reflectance added on top of the surface spectra.
PATH = dict(zip(S2CLOUDLESS_BANDS, (0.11, 0.09, 0.075, 0.055, 0.045, 0.035, 0.028, 0.022, 0.015, 0.012, 0.001,
                                    0.002, 0.001), strict=True))


def stand_in(level: str = "L1C", seed: int = 0) -> RealScene:
    """Water on the left, a land strip on the right (cols 70+), a cloud in the top-left corner."""
    rng = np.random.default_rng(seed)
    land = np.zeros((SIZE, SIZE), bool)
    land[:, 70:] = True
    cloud = np.zeros((SIZE, SIZE), bool)
    cloud[4:16, 4:16] = True
    bands = {}
    for b in S2CLOUDLESS_BANDS if level == "L1C" else REFLECTANCE_BANDS:
        i = REFLECTANCE_BANDS.index(b) if b in REFLECTANCE_BANDS else None
        water, soil, white = ((ENDMEMBERS[k][i] if i is not None else 0.0) for k in ("water", "soil", "cloud"))
        a = np.where(land, soil, water) + rng.normal(0, 0.0008, (SIZE, SIZE))
        a = np.where(cloud, white if i is not None else 0.03, a)
        bands[b] = (a + (PATH[b] if level == "L1C" else 0.0)).astype(np.float32)
    return RealScene("stand-in", level, bands, "EPSG:32631", Affine(10, 0, 500000, 0, -10, 4650000),
                     dt.datetime(2021, 6, 1, 10, 30, tzinfo=dt.timezone.utc), "31TDG",
                     binary_dilation(cloud, iterations=2), "generated stand-in")


def test_the_water_masks_leave_out_land_and_cloud_and_keep_their_distance():
    scene = stand_in()
    water = water_mask(scene)
    assert not water[:, 70:].any() and not water[scene.cloud].any()
    assert water[30:90, 10:60].all()  # plain water is water
    far = open_water(water)
    assert far.sum() > 1000
    assert distance_transform_cdt(water, metric="chessboard")[far].min() >= 4  # >= 3 px of water all round
    assert not far[:, 67:].any() and not far[:3].any() and not far[:19, :19].any()


def test_the_dark_offsets_find_the_path_of_level1c_and_are_zero_for_level2a():
    scene = stand_in()
    offsets = dark_offsets(scene, water_mask(scene))
    for b in ("blue", "nir", "swir16"):
        water = ENDMEMBERS["water"][REFLECTANCE_BANDS.index(b)]
        assert offsets[b] == pytest.approx(PATH[b] + water, abs=0.003), b  # the darkest water: path + water
    assert set(dark_offsets(stand_in("L2A"), water_mask(stand_in("L2A"))).values()) == {0.0}


def test_windrows_are_implanted_in_open_water_by_linear_mixing():
    scene = stand_in()
    water = water_mask(scene)
    far = open_water(water)
    offsets = dark_offsets(scene, water)
    w = implant_windrows(scene, far, offsets, seed=3, count=12)
    truth = w.truth
    assert 5 <= len(w.shapes) <= 12 and truth.sum() == sum(s["pixels"] for s in w.shapes)
    assert far[truth].all()  # only in open water
    assert ((w.cover[truth] >= 0.25) & (w.cover[truth] <= 0.9)).all() and (w.cover[~truth] == 0).all()
    assert all(5 <= s["length_px"] <= 40 and 1 <= s["width_px"] <= 3 for s in w.shapes)
    for b in ("red", "nir", "swir16"):
        before, after = scene.bands[b], w.scene.bands[b]
        expected = before + w.cover * (DEBRIS_SPECTRUM[b] - (before - offsets[b]))
        np.testing.assert_allclose(after, expected, atol=1e-6)
        assert (after[~truth] == before[~truth]).all()
    assert (w.scene.bands["nir"][truth] > scene.bands["nir"][truth]).all()  # debris is brighter in the NIR
    np.testing.assert_array_equal(w.scene.bands["cirrus"], scene.bands["cirrus"])
    again = implant_windrows(scene, far, offsets, seed=3, count=12)
    other = implant_windrows(scene, far, offsets, seed=4, count=12)
    assert (again.cover == w.cover).all() and (other.cover != w.cover).any()


def test_the_scene_folder_is_indexed_as_the_level_it_is(tmp_path):
    scene = stand_in()
    folder = write_scene_folder(scene, tmp_path / "files")
    assert sorted(p.name for p in folder.glob("*.tif"))[0] == "T31TDG_20210601T103000_B01.tif"
    with rasterio.open(folder / "T31TDG_20210601T103000_B08.tif") as src:
        assert src.dtypes[0] == "uint16" and src.nodata == 0 and src.crs.to_epsg() == 32631
        np.testing.assert_array_equal(src.read(1), np.rint(scene.bands["nir"] * 1e4).astype(np.uint16))
    for s, level in ((scene, "L1C"), (surface_version(scene, dark_offsets(scene, water_mask(scene))), "L2A")):
        files = write_scene_folder(s, tmp_path / f"files-{level}")
        cat = index_folder(files, tmp_path / f"catalog-{level}")
        items = [json.loads(p.read_text()) for p in cat.parent.rglob("*.json") if p.parent.parent != cat.parent.parent
                 and json.loads(p.read_text()).get("type") == "Feature"]
        assert len(items) == 1
        item = items[0]
        assert item["properties"]["processing:level"] == level
        assert ("cirrus" in item["assets"]) == (level == "L1C") and "scl" not in item["assets"]
        assert {"coastal", "nir", "nir08", "swir22"} <= set(item["assets"])


def test_the_scores_use_a_one_pixel_tolerance_and_count_no_value_as_not_detected():
    truth = np.zeros((20, 20), bool)
    truth[5, 2:12] = True  # a 10 px windrow
    pred = np.zeros((20, 20), np.uint8)
    pred[6, 2:7] = 1  # 5 px one row off: correct, and they find 6 windrow px (cols 2..7)
    pred[15, 15] = 1  # a false alarm in open water
    pred[5, 10:12] = 255  # no value where two windrow px are
    pred[0:2, :] = 255
    water = np.ones((20, 20), bool)
    far = np.zeros((20, 20), bool)
    far[10:20, 10:20] = True
    c = score_detections(pred, truth=truth, water=water, open_water=far, scene=np.ones((20, 20), bool),
                         km2_per_px=1e-4)
    assert (c["detected_px"], c["tp_precision"], c["tp_recall"], c["truth_px"]) == (6, 5, 6, 10)
    assert c["false_open_water_px"] == 1 and c["water_kept_px"] == 400 - 42
    clean = score_detections(pred * (pred != 1) + (pred == 1) * (np.arange(20)[:, None] == 15), truth=None, water=water,
                             open_water=far, scene=np.ones((20, 20), bool), km2_per_px=1e-4)
    s = summarise(clean, [c])
    assert s["precision"] == pytest.approx(5 / 6, abs=1e-4) and s["recall"] == 0.6
    assert s["f1"] == pytest.approx(2 * (5 / 6) * 0.6 / (5 / 6 + 0.6), abs=1e-4)
    assert s["false_px_per_km2_open_water"] == pytest.approx(clean["detected_open_water_px"] / (100 * 1e-4))
    assert s["water_kept"] == pytest.approx(358 / 400, abs=1e-4)


def test_a_detector_run_through_the_pipeline_finds_the_implants(tmp_path):
    """End to end on the stand-in at Level-2A with fdi: the implants are found, clean water stays clean."""
    from geoloom.workflows import detect

    result = evaluate_real_scene(stand_in("L2A"), run_detect=detect, models=("fdi",), seeds=(0,), count=20,
                                 workdir=tmp_path)
    m = result["variants"]["stand-in"]["models"]["fdi"]
    assert m["geoloom_read"]["levels"] == ["L2A"] and result["implants"]["windrows_per_seed"][0] >= 5
    assert m["recall"] > 0.7 and m["false_px_per_km2_open_water"] == 0 and m["water_kept"] == 1.0
    assert m["clean"]["scene_px"] == SIZE * SIZE


def test_an_evaluation_computes_a_finished_run_again_and_finishes_an_unfinished_one(tmp_path):
    """Same weights and options give the same run id, but the scoring code may have changed since: a
    finished run is not reused; an interrupted one is finished."""
    from geoloom.platform.models.training.evaluate import run_or_resume
    from geoloom.platform.models.training.real_scenes import scene_region, write_scene_folder
    from geoloom.workflows import detect

    scene = stand_in("L2A")
    catalog = index_folder(write_scene_folder(scene, tmp_path / "files"), tmp_path / "catalog")
    out = tmp_path / "run"
    kw = dict(model="fdi", catalog=catalog, runtime="in-process", retries=0, per_date=False, progress=False)
    first = run_or_resume(detect, out, scene_region(scene), **kw)
    ledger = (out / "ledger.jsonl").read_text()
    again = run_or_resume(detect, out, scene_region(scene), **kw)
    assert again.ok and (out / "ledger.jsonl").read_text() != ledger  # its tiles were computed again
    (out / "run.json").unlink()  # as if it had been interrupted before publishing: resumed, not refused
    resumed = run_or_resume(detect, out, scene_region(scene), **kw)
    assert resumed.ok and first.run_id == again.run_id == resumed.run_id


# --------------------------------------------------------------------------- sources: the registry cache, the user's imagery
def test_registry_scenes_come_from_the_cached_sdists_without_pip(tmp_path):
    """A cache that already holds the sdists is read as it is (here: stand-in archives, no network)."""
    import io
    import tarfile

    from geoloom.platform.models.training.real_sources import REGISTRY_SOURCES, fetch_registry_scenes

    scene, rng = stand_in("L1C"), np.random.default_rng(0)
    arrays = {}
    arrays["s2_im"] = np.stack([scene.bands[b] for b in S2CLOUDLESS_BANDS], -1)[None]
    arrays["cl_mask"] = scene.cloud[None].astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tifs = {}
    for day in ("2020-01-13", "2020-01-28"):
        mem = io.BytesIO()
        profile = {"driver": "GTiff", "height": 40, "width": 40, "count": 12, "dtype": "int16", "crs": "EPSG:4326",
                   "transform": Affine(1e-4, 0, 2.8, 0, -1e-4, 42.3)}
        with rasterio.MemoryFile() as mf:
            with mf.open(**profile) as dst:
                dst.write((rng.uniform(0.01, 0.05, (12, 40, 40)) * 1e4).astype("int16"))
            mem.write(mf.read())
        tifs[f"boadella-{day}"] = mem.getvalue()
    payload = {"s2cloudless": buf.getvalue(), **tifs}
    (tmp_path / "sdists").mkdir()
    for requirement in {s.requirement for s in REGISTRY_SOURCES.values()}:
        with tarfile.open(tmp_path / "sdists" / f"{requirement.replace('==', '-')}.tar.gz", "w:gz") as tar:
            for s in REGISTRY_SOURCES.values():
                if s.requirement == requirement:
                    info = tarfile.TarInfo(s.member)
                    info.size = len(payload[s.name])
                    tar.addfile(info, io.BytesIO(payload[s.name]))
    scenes = fetch_registry_scenes(tmp_path)
    assert [(s.name, s.level) for s in scenes] == [("s2cloudless-betsiboka", "L1C"), ("boadella-2020-01-13", "L2A"),
                                                   ("boadella-2020-01-28", "L2A")]
    np.testing.assert_array_equal(scenes[0].bands["nir"], scene.bands["nir"])
    assert scenes[1].shape_yx == (40, 40) and scenes[1].crs == "EPSG:4326"
    assert (tmp_path / "files" / REGISTRY_SOURCES["s2cloudless"].member).is_file()  # unpacked once


def test_a_large_scene_is_cut_to_the_window_with_the_most_clear_water(tmp_path):
    from geoloom.platform.models.training.real_sources import real_scenes_from_catalog

    folder = write_scene_folder(stand_in("L2A"), tmp_path / "files")
    whole, = real_scenes_from_catalog(folder)
    cut, = real_scenes_from_catalog(folder, max_px=48)
    assert whole.shape_yx == (SIZE, SIZE) and "whole scene" in whole.note and "cirrus" not in whole.bands
    assert cut.shape_yx == (48, 48) and "48 x 48 px window of 96 x 96 px (most clear water)" in cut.note
    col0, row0 = ~whole.transform * (cut.transform.c, cut.transform.f)
    assert col0 + 48 <= 70 and row0 >= 16 - 2  # all water: left of the land strip, below the cloud
    np.testing.assert_array_equal(cut.bands["nir"], whole.bands["nir"][int(row0):int(row0) + 48,
                                                                       int(col0):int(col0) + 48])
    assert not cut.cloud.any() and water_mask(cut).mean() > 0.99


def test_card_scores_go_under_metrics_real_scenes_beside_the_other_metrics(tmp_path):
    from geoloom.platform.models.training.real_scenes import card_scores, real_scores_table, write_card_scores

    m = {"precision": 0.5, "recall": 0.9, "f1": 0.64, "false_px_per_km2_open_water": 80.0, "water_kept": 0.99,
         "detected_px_per_km2_scene": 40.0, "implanted_px": 100, "open_water_km2": 3.4}
    results = [{"scene": "a", "note": "assigned 10 m", "implants": {"seeds": [0, 1]},
                "variants": {"a": {"level": "L1C", "models": {"marine-debris": m}},
                             "a-dos": {"level": "L2A", "models": {"marine-debris": m}}}}]
    scores = card_scores(results, "marine-debris")
    assert scores == {"a": {"model": "marine-debris", "level": "L1C", "precision": 0.5, "recall": 0.9, "f1_1px": 0.64,
                            "false_px_per_km2_open_water": 80.0, "water_kept": 0.99, "detected_px_per_km2_scene": 40.0,
                            "implant_seeds": 2, "implanted_px": 100, "open_water_km2": 3.4, "note": "assigned 10 m"}}
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"sha256": "x", "metrics": {"held_out": {"f1": 1}}}))
    write_card_scores(card, scores)
    data = json.loads(card.read_text())
    assert data["sha256"] == "x" and data["metrics"]["held_out"] == {"f1": 1}
    assert data["metrics"]["real_scenes"]["scenes"] == scores
    table = real_scores_table(results).splitlines()
    assert table[2] == "| a | L1C | marine-debris | 0.5 | 0.9 | 0.64 | 80 | 99.0 % |"
    assert table[3].startswith("| a-dos (diagnostic) | L2A |")
