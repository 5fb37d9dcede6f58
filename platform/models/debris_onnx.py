"""The marine-debris network on ONNX Runtime: the CPU path, about twice torch's speed on a CPU core
with the same probabilities (to 1e-6), and no torch in the worker.

The ``.onnx`` file lies beside the weights it was exported from (``marine-debris.onnx`` beside
``marine-debris.pt``) and names their sha256 in its metadata, so a file left from other weights is
never used: the torch path is. ``export_onnx`` (torch and ``onnx`` needed) writes it; training's
install does so for a retrained model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from geoloom.platform.errors import ModelError
from geoloom.platform.models.marine_debris_card import DOWNSAMPLE, ONNX_SUFFIX

__all__ = ["OnnxDebris", "export_onnx", "onnx_file", "onnx_usable", "weights_sha256"]

META_WEIGHTS = "geoloom:weights_sha256"
META_BAND_MEAN = "geoloom:band_mean"
#: ONNX opset of the export (ONNX Runtime 1.16 and later run it).
OPSET = 17


def onnx_file(weights: Path) -> Path:
    """Where the ONNX export of ``weights`` lies."""
    return Path(weights).with_suffix(ONNX_SUFFIX)


def weights_sha256(weights: Path) -> str:
    """The sha256 of a weights file, as the export records it."""
    return hashlib.sha256(Path(weights).read_bytes()).hexdigest()


def onnx_usable(weights: Path) -> str | None:
    """Why the ONNX path cannot run ``weights`` here (no onnxruntime, no export, an export of other
    weights), or None when it can."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    path = onnx_file(weights)
    if not path.is_file():
        return f"no ONNX export {path.name} beside the weights (geoloom models install exports one)"
    return None


def export_onnx(weights: Path, out: Path | None = None) -> Path:
    """Export the network of ``weights`` (a fused ``state_dict``) to ONNX, probability out, batch and
    size dynamic; the weights' sha256 and band means go into the metadata. Written under a temporary
    name and moved into place."""
    import onnx
    import torch

    from geoloom.platform.models.debris_net import load_network

    weights = Path(weights)
    out = Path(out) if out else onnx_file(weights)
    net = load_network(weights, torch.device("cpu")).to(memory_format=torch.contiguous_format)

    class _Probability(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(x))

    buffer = io.BytesIO()
    axes = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(_Probability().eval(), torch.zeros(1, net.band_mean.numel(), 64, 64), buffer,
                      input_names=["x"], output_names=["p"], dynamic_axes={"x": axes, "p": axes},
                      opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {
        META_WEIGHTS: weights_sha256(weights),
        META_BAND_MEAN: json.dumps([round(float(v), 9) for v in net.band_mean]),
    })
    tmp = out.with_name(out.name + ".part")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


class OnnxDebris:
    """An ONNX Runtime session of the network: ``probability(x)`` as torch's ``infer`` gives it."""

    name = "onnxruntime-cpu"

    def __init__(self, weights: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = onnx_file(weights)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # tiles and water windows come in several shapes
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy wait between tiles
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}; reinstall geoloom "
                             "or export it again with 'geoloom models install'") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get(META_WEIGHTS) != weights_sha256(weights):
            raise ModelError(f"{path.name} was exported from other weights than {Path(weights).name}; "
                             "export it again with 'geoloom models install'")
        self.band_mean = np.asarray(json.loads(meta[META_BAND_MEAN]), dtype=np.float32)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Debris probability (n, h, w) float32 for a batch (n, 12, h, w) of gap-free reflectance."""
        n, _, h, w = x.shape
        ph, pw = -h % DOWNSAMPLE, -w % DOWNSAMPLE
        x = np.ascontiguousarray(x, dtype=np.float32)
        if ph or pw:  # pad bottom/right only: the pooling grid stays tied to the tile origin
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        p = self.session.run(None, {"x": x})[0]
        return np.ascontiguousarray(p[:, 0, :h, :w])
