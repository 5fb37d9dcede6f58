"""marine-debris on ONNX Runtime (the CPU path) and on torch: same probabilities, chosen at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from geoloom.platform.errors import ModelError
from geoloom.platform.models import registry
from geoloom.platform.models.debris_onnx import META_WEIGHTS, export_onnx, onnx_file, weights_sha256
from geoloom.platform.models.marine_debris import MarineDebrisModel
from geoloom.platform.models.marine_debris_card import CARD_FILE, WEIGHTS_FILE
from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.scenes import synthesize_scene


def water_tile(seed: int, shape_yx: tuple[int, int]) -> xr.Dataset:
    """A generated scene (seeds 610+ are in no training set) with a strip of land and one of cloud."""
    bands, _ = synthesize_scene(seed, shape_yx)
    scl = np.full(shape_yx, 6.0, np.float32)
    scl[:, :40], scl[:30, :] = 5.0, 9.0
    return xr.Dataset({**{b: (("y", "x"), bands[b]) for b in REFLECTANCE_BANDS}, "scl": (("y", "x"), scl)})


def test_the_shipped_export_belongs_to_the_shipped_weights():
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_file(WEIGHTS_FILE))).metadata_props}
    assert meta[META_WEIGHTS] == weights_sha256(WEIGHTS_FILE)


def test_onnxruntime_and_torch_give_the_same_tile():
    """A whole generated scene, odd sizes included: probabilities within 1e-5, identical masks."""
    tile = water_tile(613, (301, 298))
    fast, slow = MarineDebrisModel(), MarineDebrisModel(backend="torch")
    assert fast.network().name == "onnxruntime-cpu" and slow.network().name == "torch-cpu"
    a, b = fast.predict(tile), slow.predict(tile)
    assert np.array_equal(np.isnan(a["probability"]), np.isnan(b["probability"]))
    assert np.nanmax(np.abs(a["probability"] - b["probability"])) < 1e-5
    assert (a["debris"] != b["debris"]).sum() <= 2  # only pixels within 1e-5 of the threshold may differ
    x = np.random.default_rng(0).random((2, 12, 130, 67), dtype=np.float32) * 0.2
    assert np.abs(fast.probability(x) - slow.probability(x)).max() < 1e-5


def test_a_cpu_worker_on_onnxruntime_never_imports_torch():
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "from geoloom.platform.bands import REFLECTANCE_BANDS\n"
        "from geoloom.platform.models.registry import get_model\n"
        "from geoloom.platform.scenes import synthesize_scene\n"
        "bands, _ = synthesize_scene(614, (128, 128))\n"
        "tile = xr.Dataset({b: (('y', 'x'), bands[b]) for b in REFLECTANCE_BANDS})\n"
        "tile['scl'] = (('y', 'x'), np.full((128, 128), 6.0, np.float32))\n"
        "model = get_model('marine-debris', device='cpu')\n"
        "out = model.predict(tile)\n"
        "print(model.network().name, 'torch' in sys.modules, int(np.isfinite(out['probability']).all()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["onnxruntime-cpu", "False", "1"]


def test_an_export_of_other_weights_is_never_used(tmp_path, caplog):
    weights = tmp_path / "marine-debris.pt"
    shutil.copy(WEIGHTS_FILE, weights)
    export_onnx(weights)
    assert MarineDebrisModel(weights=weights, card_file=CARD_FILE).network().name == "onnxruntime-cpu"
    other = tmp_path / "other.pt"
    shutil.copy(WEIGHTS_FILE, other)
    shutil.copy(onnx_file(weights), onnx_file(other))
    with open(other, "ab") as f:  # other bytes, same tensors: a stale export must still be refused
        f.write(b"\0")
    data = {"sha256": weights_sha256(other)}
    card = tmp_path / "card.json"
    card.write_text(__import__("json").dumps(data))
    assert MarineDebrisModel(weights=other, card_file=card).network().name == "torch-cpu"
    assert "exported from other weights" in caplog.text
    with pytest.raises(ModelError, match="exported from other weights"):
        MarineDebrisModel(weights=other, card_file=card, backend="onnxruntime").network()


def test_backend_errors_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="not one of onnxruntime, torch"):
        registry.get_card("marine-debris", backend="tensorrt")
    with pytest.raises(ModelError, match="use backend torch for a GPU"):
        MarineDebrisModel(backend="onnxruntime", device="cuda")
    weights = tmp_path / "marine-debris.pt"
    shutil.copy(WEIGHTS_FILE, weights)  # no export beside it
    with pytest.raises(ModelError, match="no ONNX export"):
        MarineDebrisModel(weights=weights, card_file=CARD_FILE, backend="onnxruntime").network()
    assert MarineDebrisModel(weights=weights, card_file=CARD_FILE).network().name == "torch-cpu"


def test_a_warmed_model_meets_its_first_tile_with_its_buffers_allocated():
    """``warm_up`` (what the job service runs in each worker when it starts) runs the network once on a
    whole tile's window: the first tile then takes a tenth of the fresh pages that a cold model's does."""
    import resource

    def faults_of_first_tile(model: MarineDebrisModel) -> int:
        side = model.card.tile_size + 2 * model.card.halo
        x = np.full((1, len(REFLECTANCE_BANDS), side, side), 0.05, np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model.probability(x)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    cold = MarineDebrisModel(device="cpu")
    cold.network()
    warm = MarineDebrisModel(device="cpu")
    warm.warm_up()
    cold_faults, warm_faults = faults_of_first_tile(cold), faults_of_first_tile(warm)
    assert cold_faults > 5_000 and warm_faults < cold_faults / 10, (cold_faults, warm_faults)
