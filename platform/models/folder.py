"""Models from a folder: a card (YAML or JSON) beside a TorchScript file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from geoloom.platform.errors import ModelError
from geoloom.platform.models.base import nodata_mask
from geoloom.platform.models.card import ModelCard, check_weights


class TorchScriptModel:
    """A TorchScript network: input (1, bands, y, x) float32 reflectance, output (1, outputs, y, x)."""

    def __init__(self, card: ModelCard, weights: Path, threshold: float | None = None, device: str | None = None) -> None:
        import torch

        self.card = card
        self.threshold = card.threshold if threshold is None else float(threshold)
        self.device = device or ("cuda" if torch.cuda.is_available() and card.gpu != "none" else "cpu")
        try:
            self.net = torch.jit.load(str(weights), map_location=self.device).eval()
        except Exception as exc:
            raise ModelError(f"cannot load TorchScript weights {weights}: {exc}; export the model with torch.jit.save") from None

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Run the network on the tile's bands; mask outputs threshold the score layer, NaN where input had no data."""
        import torch

        x = np.stack([tile[b].values for b in self.card.bands])[None]
        invalid = nodata_mask(tile, self.card.bands)
        x = np.nan_to_num(x, nan=0.0).astype(np.float32)
        with torch.inference_mode():
            y = self.net(torch.from_numpy(x).to(self.device)).float().cpu().numpy()[0]
        out: dict[str, np.ndarray] = {}
        for i, spec in enumerate(self.card.outputs):
            if spec.kind == "mask":
                continue
            layer = y[min(i, y.shape[0] - 1)].astype(spec.dtype)
            if spec.dtype.startswith("float"):
                layer[invalid] = np.nan
            out[spec.name] = layer
        for spec in self.card.outputs:
            if spec.kind == "mask":
                src = out[self.card.score or self.card.primary]
                m = (src >= (self.threshold if self.threshold is not None else 0.5)).astype(np.uint8)
                m[invalid] = spec.nodata if spec.nodata is not None else 255
                out[spec.name] = m
        return out


def load_model_folder(folder: Path, **params: Any) -> TorchScriptModel:
    """Load ``folder/card.yaml`` (or card.json) and its TorchScript weights, checking the hash."""
    folder = folder.expanduser()
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist; give a registry name (geoloom models) or a folder")
    card_file = next((folder / n for n in ("card.yaml", "card.yml", "card.json") if (folder / n).exists()), None)
    if card_file is None:
        raise ModelError(f"model folder {folder} has no card.yaml or card.json; add a card describing the model")
    try:
        text = card_file.read_text()
        data = json.loads(text) if card_file.suffix == ".json" else yaml.safe_load(text)
    except Exception as exc:
        raise ModelError(f"cannot parse {card_file}: {exc}; fix the card's syntax") from None
    card = ModelCard.from_dict(data, where=str(card_file))
    weights = folder / (card.weights or "model.pt")
    check_weights(card, weights)
    return TorchScriptModel(card, weights, **params)
