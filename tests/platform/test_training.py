"""Training is deterministic for a seed; evaluation runs models through the pipeline and scores them
against the label rasters of held-out generated catalogs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geoloom.platform.classes import DEBRIS, FOAM, SHIP, WATER
from geoloom.platform.models.card import file_sha256
from geoloom.platform.models.marine_debris import CARD_FILE, WEIGHTS_FILE, DebrisNet
from geoloom.platform.models.training import heldout_report, pixel_scores, train_marine_debris
from geoloom.platform.models.training.scores import _count, _summary

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, patch=64, train_scenes=2, val_scenes=1, scene_size=192)


def test_tiny_training_is_deterministic(tmp_path, monkeypatch):
    from geoloom.platform.models.marine_debris_card import active_files
    from geoloom.platform.models.training import install_marine_debris

    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    shipped = file_sha256(WEIGHTS_FILE), CARD_FILE.read_text()
    a = train_marine_debris(tmp_path / "a", seed=5, **TINY)
    b = train_marine_debris(tmp_path / "b", seed=5, **TINY)
    c = train_marine_debris(tmp_path / "c", seed=6, **TINY)
    assert file_sha256(a) == file_sha256(b) != file_sha256(c)
    data = json.loads((tmp_path / "a" / "marine-debris.json").read_text())
    assert data["sha256"] == file_sha256(a) and 0 < data["threshold"] < 1
    assert data["training"]["seed"] == 5 and len(data["training"]["history"]) == 1
    assert set(data["metrics"]["validation"]) >= {"marine-debris", "fdi"}
    DebrisNet(fused=True).load_state_dict(torch.load(a, weights_only=True))
    assert active_files() == (WEIGHTS_FILE, CARD_FILE)  # nothing installed without install=True
    installed = install_marine_debris(tmp_path / "a")
    assert installed.parent == tmp_path / "data" / "models" / "marine-debris"
    assert active_files()[0] == installed and file_sha256(installed) == file_sha256(a)
    from geoloom.platform.models.marine_debris import MarineDebrisModel

    assert MarineDebrisModel().network().name == "onnxruntime-cpu"  # installing exports the CPU path too
    assert (file_sha256(WEIGHTS_FILE), CARD_FILE.read_text()) == shipped  # the shipped model stays as it was


def test_scores_count_pixels_objects_and_false_positives_by_class():
    labels = np.full((8, 8), WATER, dtype=np.uint8)
    labels[1, 1:4] = DEBRIS  # object 1: 3 px
    labels[5, 5] = DEBRIS  # object 2: 1 px, missed
    labels[6, 0:2] = FOAM
    labels[0, 7] = SHIP
    labels[7, 7] = 0  # no label: ignored
    pred = np.zeros((8, 8), dtype=np.uint8)
    pred[1, 2:5] = 1  # 2 hits, 1 false positive on water
    pred[6, 0:2] = 1  # foam
    pred[0, 7] = 1  # ship
    pred[7, 7] = 1  # unlabelled: not counted
    s = _summary([_count(pred, labels)])
    assert (s["tp"], s["fp"], s["fn"]) == (2, 4, 2)
    assert s["objects"] == 2 and s["objects_hit"] == 1 and s["object_recall"] == 0.5
    assert s["false_positives_by_class"]["foam"] == 2 and s["false_positives_by_class"]["ship"] == 1
    assert s["false_positives_by_class"]["water"] == 1 and s["false_positives_hard_negatives"] == 3
    assert s == {**s, **pixel_scores(2, 4, 2)}


@pytest.fixture(scope="module")
def small_heldout_catalog(tmp_path_factory) -> Path:
    """A reduced generated catalog of an evaluation seed (never used for training or validation)."""
    from geoloom.platform.sampledata import generate_sample_data

    return Path(generate_sample_data(tmp_path_factory.mktemp("heldout"), seed=2, _scale=0.3))


def test_heldout_report_through_the_pipeline(small_heldout_catalog, tmp_path):
    from geoloom.workflows import detect

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"threshold": 0.5}))
    report = heldout_report([small_heldout_catalog], run_detect=detect, workdir=tmp_path / "work", card_file=card)
    md, fdi = report["marine-debris"], report["fdi"]
    assert len(md["runs"]) == 2  # one pipeline run per acquisition date
    for r in (md, fdi):
        assert r["tp"] + r["fn"] > 0 and r["objects"] > 0
        assert {"foam", "turbid water", "sargassum", "ship"} <= set(r["false_positives_by_class"])
    assert md["f1"] > fdi["f1"] + 0.2 and md["object_recall"] > 0.5
    assert md["false_positives_hard_negatives"] < fdi["false_positives_hard_negatives"]
    written = json.loads(card.read_text())
    assert written["threshold"] == 0.5 and written["metrics"]["held_out"]["marine-debris"]["f1"] == md["f1"]


def test_training_code_stays_in_the_bottom_layer():
    """The pipeline comes in as ``run_detect``: no module of the training code imports an upper layer,
    at the top or inside a function."""
    import ast

    import geoloom.platform.models.training as training

    upper = ("geoloom.runtime", "geoloom.workflows", "geoloom.ui")
    for path in Path(training.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(upper)], f"{path.name}:{node.lineno} imports {names}"


# --------------------------------------------------------------------------- real-water effects
def _flat_sea(size: int = 96, value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A patch of MARIDA water (or a flat ``value``), water labels, with debris on one row."""
    from geoloom.platform.spectra import ENDMEMBERS

    spec = ENDMEMBERS["water"].astype(np.float32) if value is None else np.full(12, value, dtype=np.float32)
    x = np.repeat(np.repeat(spec[:, None, None], size, axis=1), size, axis=2).copy()
    labels = np.full((size, size), WATER, dtype=np.uint8)
    labels[40, 10:80] = DEBRIS
    return x, labels


def test_realism_is_deterministic_for_a_seed_and_keeps_labels():
    from geoloom.platform.models.training.realism import add_realism
    from geoloom.platform.scenes import synthesize_scene
    from geoloom.platform.bands import REFLECTANCE_BANDS

    bands, labels = synthesize_scene(1001, (96, 96))
    x0 = np.stack([bands[b] for b in REFLECTANCE_BANDS])
    before = labels.copy()
    a, b, c = x0.copy(), x0.copy(), x0.copy()
    on_a = add_realism(a, labels, np.random.default_rng(11))
    on_b = add_realism(b, labels, np.random.default_rng(11))
    add_realism(c, labels, np.random.default_rng(12))
    assert on_a == on_b and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(labels, before) and np.isfinite(a).all()
    for res, k in ((20, 2), (60, 6)):  # coarse bands stay whole native pixels
        i = REFLECTANCE_BANDS.index("rededge1" if res == 20 else "coastal")
        assert np.array_equal(a[i, ::k, ::k].repeat(k, 0).repeat(k, 1), a[i])


def test_jpeg2000_codes_each_band_at_its_resolution_with_an_error_near_the_sensor_noise():
    from geoloom.platform.bands import REFLECTANCE_BANDS
    from geoloom.platform.models.training.realism import jpeg2000
    from geoloom.platform.scenes import synthesize_scene

    bands, _ = synthesize_scene(1002, (96, 96))
    x0 = np.stack([bands[b] for b in REFLECTANCE_BANDS])
    light, heavy = x0.copy(), x0.copy()
    assert jpeg2000(light, np.random.default_rng(1), (40.0, 40.0)) == 40.0
    jpeg2000(heavy, np.random.default_rng(1), (15.0, 15.0))
    rms = {name: float(np.sqrt(((y - x0) ** 2).mean())) for name, y in (("light", light), ("heavy", heavy))}
    assert 0 < rms["light"] < rms["heavy"] < 0.004, rms  # lossy, heavier at a smaller size, near the noise
    for res, k in ((20, 2), (60, 6)):  # coarse bands stay whole native pixels; the 60 m ones are not coded
        i = REFLECTANCE_BANDS.index("rededge1" if res == 20 else "coastal")
        assert np.array_equal(heavy[i, ::k, ::k].repeat(k, 0).repeat(k, 1), heavy[i])
    assert np.array_equal(heavy[REFLECTANCE_BANDS.index("coastal")], x0[REFLECTANCE_BANDS.index("coastal")])


def test_whitecaps_are_sparse_subpixel_foam_on_open_water_never_on_debris():
    from geoloom.platform.models.training.realism import whitecaps
    from geoloom.platform.scenes import LABEL_THRESHOLDS

    x, labels = _flat_sea()
    before = x.copy()
    cover = whitecaps(x, labels, np.random.default_rng(3), density=(0.02, 0.03))
    assert 0.001 < (cover > 0).mean() < 0.1  # sparse specks
    assert cover.max() <= 0.2 < LABEL_THRESHOLDS["foam"]  # sub-pixel: the label stays water, not foam or debris
    assert not cover[labels == DEBRIS].any()
    d = x - before
    speck = cover > 0.1
    assert (d[1][speck] > 0.02).all() and (d[1][speck] > 3 * d[10][speck]).all()  # bright, falling in SWIR


def test_sensor_noise_follows_the_documented_snr():
    from geoloom.platform.bands import REFLECTANCE_BANDS
    from geoloom.platform.models.training.realism import _SIGMA_REF, noise_sigma, sensor_noise
    from geoloom.platform.spectra import NOISE_SIGMA

    assert 0.0012 < _SIGMA_REF[REFLECTANCE_BANDS.index("blue")] < 0.0025  # SNR 154 at Lref
    x, _ = _flat_sea(192, value=0.2)
    sigma = noise_sigma(x)[:, 0, 0]
    assert (noise_sigma(x + 0.1)[:, 0, 0] > sigma).all()  # signal-dependent
    y = x.copy()
    sensor_noise(y, np.random.default_rng(0))
    i = REFLECTANCE_BANDS.index("blue")
    want = np.sqrt(sigma[i] ** 2 - NOISE_SIGMA["blue"] ** 2)
    assert abs((y - x)[i].std() / want - 1) < 0.05
    j = REFLECTANCE_BANDS.index("swir16")  # a 20 m band: noise per 20 m pixel
    assert np.array_equal((y - x)[j, ::2, ::2].repeat(2, 0).repeat(2, 1), (y - x)[j])


def test_glint_waves_adjacency_and_offsets_change_what_they_claim():
    from geoloom.platform.bands import REFLECTANCE_BANDS
    from geoloom.platform.classes import LAND
    from geoloom.platform.models.training.realism import adjacency, correction_offsets, sun_glint, wave_texture

    x, labels = _flat_sea()
    t = wave_texture(labels.shape, np.random.default_rng(1))
    assert abs(t.mean()) < 1e-4 and abs(t.std() - 1) < 1e-3
    y = x.copy()
    g = sun_glint(y, labels, np.random.default_rng(2), t)
    d = (y - x).mean(axis=(1, 2))
    nir, blue = REFLECTANCE_BANDS.index("nir"), REFLECTANCE_BANDS.index("blue")
    assert g.min() >= 0 and 0.8 < d[nir] / d[blue] < 1.25  # nearly flat in reflectance
    assert d[nir] / x[nir].mean() > 2 * d[blue] / x[blue].mean()  # dominates where water is dark
    assert g.std() > 0.05 * g.mean()  # varies across the patch
    labels[:, :20] = LAND
    x[:, :, :20] = 0.3
    delta = adjacency(x, labels, np.random.default_rng(4))
    assert not delta[:, :, :20].any() and (delta[nir, :, 21] > delta[nir, :, 60]).all() and delta[nir, 0, 21] > 0
    offs = np.array([correction_offsets(np.random.default_rng(s)) for s in range(200)])
    assert np.abs(offs).max() < 0.012 and (offs < 0).any() and (offs > 0).any()  # ~0.01 in the blue, more in B1
    assert np.abs(offs[:, 2:]).max() < 0.01
    assert np.abs(offs[:, blue]).mean() > np.abs(offs[:, REFLECTANCE_BANDS.index("swir22")]).mean()
