"""The model protocol: a card and a function from a tile of bands to output layers."""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from geoloom.platform.models.card import ModelCard


@runtime_checkable
class Model(Protocol):
    """A model: ``predict`` maps a tile (bands as float32 variables, NaN = no data, halo
    included) to arrays on the same grid, one per output named in the card."""

    card: ModelCard

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Output layers by name, each an array on the tile's grid."""


def nodata_mask(tile: xr.Dataset, bands: tuple[str, ...]) -> np.ndarray:
    """True where any of the bands has no data."""
    return np.logical_or.reduce([~np.isfinite(tile[b].values) for b in bands])


def mask_layer(condition: np.ndarray, invalid: np.ndarray, nodata: int = 255) -> np.ndarray:
    """A uint8 mask (1 = yes, 0 = no, ``nodata`` where the input had no data)."""
    out = condition.astype(np.uint8)
    out[invalid] = nodata
    return out


class FunctionModel:
    """A user's own per-tile function wrapped as a model (what ``map_tiles`` runs)."""

    def __init__(self, fn: Callable[[xr.Dataset], Any], card: ModelCard) -> None:
        self.fn = fn
        self.card = card

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Call the function and turn what it returns into output layers by name."""
        result = self.fn(tile)
        if isinstance(result, (xr.DataArray, np.ndarray)):
            return {self.card.primary: np.asarray(result)}
        if isinstance(result, xr.Dataset):
            return {name: np.asarray(result[name].values) for name in result.data_vars}
        if isinstance(result, dict):
            return {k: np.asarray(v) for k, v in result.items()}
        raise TypeError(
            f"the tile function returned {type(result).__name__}; return an xarray DataArray or Dataset on the tile's grid"
        )
