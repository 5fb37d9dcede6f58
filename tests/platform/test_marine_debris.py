"""The marine-debris model, the clouds model, model folders and plug-ins: cards, weights, receptive
field, masks, and the promise that the learned model beats the FDI baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.classes import DEBRIS
from geoloom.platform.errors import ModelError
from geoloom.platform.models import registry
from geoloom.platform.models.card import file_sha256, validate_card
from geoloom.platform.models.clouds import CLEAR, CLOUD, CIRRUS, SHADOW, CloudModel, classify_scl
from geoloom.platform.models.indices import FDIModel
from geoloom.platform.models.marine_debris import (
    DOWNSAMPLE, HALO, WEIGHTS_FILE, DebrisNet, MarineDebrisModel, receptive_field_radius, water_window,
)
from geoloom.platform.models.nir_support import nir_supported
from geoloom.platform.models.small_objects import CONTEXT_PX as SMALL_OBJECT_CONTEXT_PX, drop_small_objects
from geoloom.platform.models.training import pixel_scores
from geoloom.platform.scenes import synthesize_scene

#: synthesize_scene seeds used by no training (1000+), validation (500-599) or evaluation (0-3) run.
TEST_SEEDS = (610, 611, 612)


def scene_tile(seed: int, size: int = 384, scl: float = 6.0) -> tuple[xr.Dataset, np.ndarray]:
    bands, labels = synthesize_scene(seed, (size, size))
    data = {b: (("y", "x"), bands[b]) for b in REFLECTANCE_BANDS}
    data["scl"] = (("y", "x"), np.full((size, size), scl, dtype=np.float32))
    return xr.Dataset(data), labels


@pytest.fixture(scope="module")
def model() -> MarineDebrisModel:
    return MarineDebrisModel(device="cpu")


# --------------------------------------------------------------------------- card and weights
def test_card_is_complete_and_valid(model):
    card = registry.get_card("marine-debris")
    validate_card(card)
    assert card.bands == REFLECTANCE_BANDS + ("scl",)
    assert card.resolution == 10 and card.tile_size == 512 and card.gpu == "prefers"
    assert card.primary == "probability" and card.detection == "debris" and card.score == "probability"
    assert card.output("probability").kind == "probability" and card.output("probability").dtype == "float32"
    assert card.output("debris").dtype == "uint8" and card.output("debris").nodata == 255
    assert 0.0 < card.threshold < 1.0
    assert card.sha256 == file_sha256(WEIGHTS_FILE)
    assert WEIGHTS_FILE.stat().st_size <= 10 * 2**20
    assert card.training["architecture"]["receptive_field_px"] == receptive_field_radius()


def test_card_reports_held_out_scores_beating_fdi():
    card = registry.get_card("marine-debris")
    assert "held_out" in card.metrics, "record them: geoloom models heldout"
    held = card.metrics["held_out"]
    for name in ("marine-debris", "fdi"):
        for key in ("precision", "recall", "f1", "iou", "object_recall", "false_positives_by_class"):
            assert key in held[name], (name, key)
        assert {"foam", "turbid water", "sargassum", "ship"} <= set(held[name]["false_positives_by_class"])
    assert held["marine-debris"]["f1"] >= held["fdi"]["f1"] + 0.2  # a clear margin, on held-out catalogs


def test_tampered_weights_are_refused_before_any_tile(tmp_path):
    bad = tmp_path / "marine-debris.pt"
    data = bytearray(WEIGHTS_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match its card"):
        MarineDebrisModel(weights=bad)
    with pytest.raises(ModelError, match="missing"):
        MarineDebrisModel(weights=tmp_path / "nowhere.pt")
    with pytest.raises(ModelError, match="do not match its card"):  # the card alone checks them too
        registry.get_card("marine-debris", weights=bad)


def test_planning_a_run_leaves_torch_to_the_workers(sample_catalog, tmp_path):
    """The client reads the card, not the network: no torch in the process that plans (180 MB, 1-2 s)."""
    code = textwrap.dedent(f"""
        import sys
        from geoloom.workflows.api import plan_run
        prepared = plan_run("sample-bay", model="marine-debris", catalog={str(sample_catalog)!r}, out={str(tmp_path / "o")!r})
        assert prepared.card.sha256 == {MarineDebrisModel().card.sha256!r}
        assert prepared.card.to_dict() == {MarineDebrisModel().card.to_dict()!r}
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_weights_are_a_plain_state_dict():
    state = torch.load(WEIGHTS_FILE, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    DebrisNet(fused=True).load_state_dict(state)


# --------------------------------------------------------------------------- receptive field
def test_halo_covers_the_measured_receptive_field():
    need = receptive_field_radius() + SMALL_OBJECT_CONTEXT_PX  # the small-object rule looks 2 px further
    assert need <= HALO < need + DOWNSAMPLE and HALO % DOWNSAMPLE == 0


def test_pixels_beyond_the_halo_do_not_change_the_centre(model):
    rng = np.random.default_rng(3)
    x = (0.02 + 0.05 * rng.random((1, 12, 96, 96))).astype(np.float32)
    c = 48
    base = model.probability(x)[0, c, c]
    for dy, dx in [(HALO + 1, 0), (0, -(HALO + 1)), (HALO + 1, HALO + 1), (-(HALO + 3), 7), (40, -47)]:
        y = x.copy()
        y[0, :, c + dy, c + dx] = 0.5
        assert model.probability(y)[0, c, c] == base, (dy, dx)
    near = x.copy()
    near[0, :, c + 2, c - 1] = 0.5  # inside the receptive field: the test can fail
    assert model.probability(near)[0, c, c] != base


def test_tiles_join_without_seams(model):
    """A window read with the halo on a 4-pixel-aligned origin gives the same core as the whole."""
    tile, _ = scene_tile(TEST_SEEDS[0], 192)
    x = np.stack([tile[b].values for b in REFLECTANCE_BANDS])[None]
    whole = model.probability(x)[0]
    y0, x0, n = 40, 64, 96
    part = model.probability(x[:, :, y0 - HALO:y0 + n + HALO, x0 - HALO:x0 + n + HALO])[0]
    np.testing.assert_allclose(part[HALO:HALO + n, HALO:HALO + n], whole[y0:y0 + n, x0:x0 + n], atol=1e-5)


# --------------------------------------------------------------------------- predict
def test_predict_shapes_dtypes_and_nodata(model):
    tile, _ = scene_tile(TEST_SEEDS[1], 150)  # not a multiple of 4: padded inside
    tile["nir"].values[10:20, 30:50] = np.nan
    out = model.predict(tile)
    assert set(out) == {"probability", "debris"}
    prob, debris = out["probability"], out["debris"]
    assert prob.shape == debris.shape == (150, 150)
    assert prob.dtype == np.float32 and debris.dtype == np.uint8
    assert np.isnan(prob[10:20, 30:50]).all() and (debris[10:20, 30:50] == 255).all()
    ok = np.isfinite(prob)
    assert ok.sum() == 150 * 150 - 200
    assert (prob[ok] >= 0).all() and (prob[ok] <= 1).all()
    assert set(np.unique(debris[ok])) <= {0, 1}
    found = np.isfinite(prob) & (prob >= model.threshold)
    assert found.any()
    # both NIR bands must see it, in an object of 3 px or more
    expected = drop_small_objects(nir_supported(tile["nir"].values, tile["nir08"].values, found))
    assert np.array_equal(debris[ok] == 1, expected[ok])


def test_clouds_and_land_are_never_debris(model):
    tile, labels = scene_tile(TEST_SEEDS[2])
    clear = model.predict(tile)["debris"]
    assert (clear == 1).sum() > 20, "the scene should show debris when clear"
    scl = np.full(labels.shape, 6.0, dtype=np.float32)
    scl[:, :128] = 9  # cloud, high probability
    scl[:, 128:256] = 3  # cloud shadow
    scl[:, 256:320] = 5  # land (bare)
    scl[:, 320:] = 8  # cloud, medium probability
    tile["scl"] = (("y", "x"), scl)
    out = model.predict(tile)
    hidden = np.isin(scl, (3, 8, 9))
    assert (out["debris"][hidden] == 255).all() and np.isnan(out["probability"][hidden]).all()
    assert (out["debris"][scl == 5] == 0).all() and (out["probability"][scl == 5] == 0).all()
    assert not (out["debris"] == 1).any()


def test_beats_fdi_on_held_out_scenes(model):
    fdi = FDIModel()
    counts = {"md": [0, 0, 0], "fdi": [0, 0, 0]}
    for seed in TEST_SEEDS:
        tile, labels = scene_tile(seed, 384)
        truth = labels == DEBRIS
        for key, m in (("md", model), ("fdi", fdi)):
            hit = m.predict(tile)["debris"] == 1
            c = counts[key]
            c[0] += int((hit & truth).sum())
            c[1] += int((hit & ~truth).sum())
            c[2] += int((~hit & truth).sum())
    md, base = pixel_scores(*counts["md"]), pixel_scores(*counts["fdi"])
    assert counts["md"][0] + counts["md"][2] > 100  # there is debris to find
    assert md["f1"] >= 0.6 and md["f1"] >= base["f1"] + 0.3, (md, base)


# --------------------------------------------------------------------------- clouds
def test_clouds_model_reads_scl():
    scl = np.array([[0, 3, 4, 6], [8, 9, 10, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(classify_scl(scl), [[255, SHADOW, CLEAR, CLEAR], [CLOUD, CLOUD, CIRRUS, 255]])
    model = registry.get_model("clouds")
    assert isinstance(model, CloudModel) and model.card.bands == ("scl",)
    assert "B10" in model.card.description  # why s2cloudless is not used on L2A
    out = model.predict(xr.Dataset({"scl": (("y", "x"), scl)}))
    np.testing.assert_array_equal(out["cloudy"], [[255, 1, 0, 0], [1, 1, 1, 255]])
    assert out["cloud"].dtype == np.uint8


# --------------------------------------------------------------------------- model folders
TINY_NET = """
import torch


class Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a 'brightness' score from the first two bands
        return torch.sigmoid(40.0 * (x[:, 0:1] + x[:, 1:2]) - 2.0)
"""


def make_folder(path: Path, change=None) -> Path:
    """A third-party model folder: card.yaml beside a TorchScript file made here."""
    import importlib.util

    import yaml

    path.mkdir(parents=True, exist_ok=True)
    src = path.parent / f"{path.name}_net.py"
    src.write_text(TINY_NET)
    spec = importlib.util.spec_from_file_location(f"{path.name}_net", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.save(torch.jit.script(module.Tiny()), str(path / "model.pt"))
    card = {
        "name": "tiny-bright", "title": "Tiny brightness", "description": "Bright water, from a test.",
        "bands": ["red", "nir"], "resolution": 10, "halo": 0, "tile_size": 512,
        "outputs": [{"name": "score", "kind": "probability", "dtype": "float32"},
                    {"name": "bright", "kind": "mask", "dtype": "uint8", "nodata": 255}],
        "primary": "score", "detection": "bright", "score": "score", "threshold": 0.5,
        "weights": "model.pt", "sha256": file_sha256(path / "model.pt"),
    }
    if change is not None:
        change(card)
    (path / "card.yaml").write_text(yaml.safe_dump(card))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("bands"), "lacks the field"),
        (lambda c: c.update(bands=[]), "declares no input bands"),
        (lambda c: c.update(bands=["red", "B13", "ultraviolet"]), "unknown band"),
        (lambda c: c.update(halo=300), "receptive field"),
        (lambda c: c.update(sha256="0" * 64), "do not match its card"),
    ],
    ids=["missing-bands", "no-bands", "unknown-bands", "halo-too-large", "hash-mismatch"],
)
def test_folder_card_errors_are_clear(tmp_path, change, message):
    folder = make_folder(tmp_path / "m", change)
    with pytest.raises(ModelError, match=message):
        registry.get_model(folder)


def _geoloom(cli: list[str], *args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def test_folder_model_runs_through_geoloom_run(geoloom_cli, sample_catalog, tmp_path):
    folder = make_folder(tmp_path / "tiny-model")
    out = tmp_path / "run"
    proc = _geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--model", folder, "--catalog", sample_catalog,
                    "--out", out, "--runtime", "in-process")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["properties"]["geoloom:model"]["name"] == "tiny-bright"
    assert manifest["properties"]["geoloom:model"]["sha256"] == file_sha256(folder / "model.pt")
    assert (out / "result.tif").exists() and (out / "result-bright.tif").exists()


def test_bad_folder_fails_before_any_tile(geoloom_cli, sample_catalog, tmp_path):
    folder = make_folder(tmp_path / "tiny-model")
    (folder / "model.pt").write_bytes((folder / "model.pt").read_bytes() + b"tampered")
    out = tmp_path / "run"
    proc = _geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--model", folder, "--catalog", sample_catalog,
                    "--out", out, "--runtime", "in-process")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "do not match its card" in proc.stderr
    assert not (out / "ledger.jsonl").exists() and not (out / "result.zarr").exists()


def test_a_model_folder_in_the_user_models_folder_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    make_folder(tmp_path / "data" / "models" / "tiny-bright")
    registry.refresh()
    try:
        assert "tiny-bright" in registry.model_names()
        assert registry.get_model("tiny-bright").card.name == "tiny-bright"
    finally:
        monkeypatch.delenv("GEOLOOM_DATA_DIR")
        registry.refresh()
    assert "tiny-bright" not in registry.model_names()


def test_an_installed_marine_debris_is_used_and_the_shipped_one_stays(tmp_path, monkeypatch):
    from geoloom.platform.models.marine_debris_card import CARD_FILE, card

    shipped = (file_sha256(WEIGHTS_FILE), CARD_FILE.read_bytes())
    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    assert card().weights == "weights/marine-debris.pt"
    installed = tmp_path / "data" / "models" / "marine-debris"
    installed.mkdir(parents=True)
    state = {k: torch.zeros_like(v) for k, v in torch.load(WEIGHTS_FILE, weights_only=True).items()}
    torch.save(state, installed / "marine-debris.pt")
    data = json.loads(CARD_FILE.read_text())
    data.update(sha256=file_sha256(installed / "marine-debris.pt"), threshold=0.7)
    (installed / "marine-debris.json").write_text(json.dumps(data))
    model = MarineDebrisModel()
    assert model.weights == installed / "marine-debris.pt" and model.card.threshold == 0.7
    assert card().weights == str(installed / "marine-debris.pt")
    assert (file_sha256(WEIGHTS_FILE), CARD_FILE.read_bytes()) == shipped


# --------------------------------------------------------------------------- entry-point plug-ins
PLUGIN = '''
import numpy as np
from geoloom.platform.models.card import ModelCard, OutputSpec


class Plug:
    card = ModelCard(name="test-plug", title="Test plug-in", description="A plug-in from a test.",
                     bands=("nir",), resolution=10.0, halo=0,
                     outputs=(OutputSpec("value", "index"),), primary="value")

    def __init__(self, threshold=None):
        self.threshold = threshold

    def predict(self, tile):
        return {"value": np.asarray(tile["nir"].values) * 2}
'''


def test_entry_point_plugins_load_and_broken_ones_only_warn(tmp_path, monkeypatch):
    (tmp_path / "geoloom_test_plug.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "geoloom_test_plug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: geoloom-test-plug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[geoloom.models]\ntest-plug = geoloom_test_plug:Plug\ntest-broken = geoloom_test_plug:DoesNotExist\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    try:
        with pytest.warns(UserWarning, match="test-broken"):
            names = registry.model_names()
        assert "test-plug" in names and "test-broken" not in names
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = registry.get_model("test-plug")
            tile = xr.Dataset({"nir": (("y", "x"), np.ones((4, 4), np.float32))})
            assert (model.predict(tile)["value"] == 2).all()
            assert "marine-debris" in registry.model_names()  # built-ins still there
    finally:
        monkeypatch.undo()
        sys.modules.pop("geoloom_test_plug", None)
        registry.refresh()
    assert "test-plug" not in registry.model_names()


def test_the_network_runs_only_around_clear_water_and_gives_the_whole_tile_values(sample_catalog):
    from geoloom.platform.catalog import search_scenes
    from geoloom.platform.composite import composite_tile
    from geoloom.platform.plan import plan_tiles
    from geoloom.platform.reading import read_band
    from geoloom.platform.region import as_region

    region = as_region("sample-area")
    scenes = search_scenes(str(sample_catalog), region)
    model = MarineDebrisModel()
    plan = plan_tiles(region, scenes, bands=model.card.bands, resolution=10.0, halo=HALO, tile_size=256)
    coastal = [t for t in plan.tiles if t.row == 3][:6]  # tiles across the coast: land, sea and clouds
    crops = 0
    for task in coastal:
        by_id = {s.id: s for s in plan.scenes}
        tile, _ = composite_tile([by_id[i] for i in task.scene_ids], model.card.bands, task.read_geobox,
                                 lambda sc, b, gb: read_band(sc.assets[b], gb, plan.warp_grid))
        out = model.predict(tile)["probability"]
        whole = model.probability(np.stack([tile[b].values for b in REFLECTANCE_BANDS])[None])[0]
        keep = np.isfinite(out) & (out > 0)
        np.testing.assert_allclose(out[keep], whole[keep], atol=2e-6)
        scl = np.nan_to_num(tile["scl"].values)
        window = water_window(np.isin(scl, (2, 6, 7)))
        crops += window is not None and window != ((0, tile.sizes["y"]), (0, tile.sizes["x"]))
    assert crops > 0, "no tile had land or cloud to leave out"


def test_the_water_window_keeps_the_receptive_field_and_the_pooling_grid():
    wanted = np.zeros((100, 100), bool)
    wanted[50:53, 60:61] = True
    (y0, y1), (x0, x1) = water_window(wanted)
    assert y0 % DOWNSAMPLE == 0 and x0 % DOWNSAMPLE == 0 and (y1 % DOWNSAMPLE == 0 or y1 == 100)
    assert y0 <= 50 - HALO and y1 >= 53 + HALO and x0 <= 60 - HALO and x1 >= 61 + HALO
    assert water_window(np.zeros((8, 8), bool)) is None
    assert water_window(np.ones((10, 10), bool)) == ((0, 10), (0, 10))
