"""Both NIR bands must see a detection: a check on the network's debris mask.

Sentinel-2 has two near-infrared bands a few tens of nanometres apart: B08 (10 m) and B8A (20 m).
Floating debris, Sargassum and every other surface raise both about equally; B8A only sees the object
through its coarser pixel. So a real object's contrast against the water around it, averaged over
3 x 3 pixels (about one B8A pixel and its neighbours), is about as large in B8A as in B08; on the
generated validation scenes, whose 20 m bands are block means read back bilinearly as the platform
reads real ones, the detected debris keeps a median ratio of 0.52 and a 1st percentile of 0.31.

A bright speck seen by B08 alone is not a surface: detector noise, a moving boat or wave crest imaged
at another instant (each band is taken a moment apart), or a resampling artefact of the product. On
real Level-1C water such specks were the network's main false alarms. A detected pixel is kept
where it is brighter than the water around it in B08 and B8A's contrast is at least NIR_SUPPORT_MIN
of B08's (debris is bright in the near infrared; a detection without that is not debris either).

The contrast is the band minus its median over BACKGROUND_PX x BACKGROUND_PX pixels (the water
around, not swayed by a thin windrow), averaged over 3 x 3 pixels. It is computed only around
detected pixels. It needs (BACKGROUND_PX + 3) // 2 pixels of context, inside the model's halo, so
tiles stay seamless.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

__all__ = ["BACKGROUND_PX", "CONTEXT_PX", "NIR_SUPPORT_MIN", "nir_contrast", "nir_supported", "window_nanmedian"]

#: Chosen on the generated validation scenes (12 scenes of 384 px) as a ratio that costs their debris
#: F1 nothing (0.913 with and without the check; recall -0.6 points, precision +0.7).
NIR_SUPPORT_MIN = 0.15
#: Side of the median window that gives the water around a pixel.
BACKGROUND_PX = 15
#: Pixels of context the check needs beyond a scored pixel.
CONTEXT_PX = BACKGROUND_PX // 2 + 1
#: Pixels whose windows are gathered at once (about 20 MB).
_CHUNK = 20_000


def window_nanmedian(windows: np.ndarray) -> np.ndarray:
    """``np.nanmedian(windows, axis=1)``, the same values, several times faster on rows of a few hundred
    values: each row is sorted (NaN sort last) and its median read at the middle of its valid part;
    NaN for a row with no valid value."""
    ordered = np.sort(windows, axis=1)
    valid = windows.shape[1] - np.isnan(windows).sum(axis=1)
    rows = np.arange(len(windows))
    lo, hi = ordered[rows, np.maximum(valid - 1, 0) // 2], ordered[rows, valid // 2]  # the same for an odd count
    out = (lo + hi) / np.asarray(2, windows.dtype)
    out[valid == 0] = np.nan
    return out


def _background(band: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Median of the BACKGROUND_PX window around each (y, x), ignoring no-data (NaN)."""
    padded = np.pad(band.astype(np.float32, copy=False), BACKGROUND_PX // 2, mode="symmetric")
    view = sliding_window_view(padded, (BACKGROUND_PX, BACKGROUND_PX))
    out = np.empty(len(ys), np.float32)
    for i in range(0, len(ys), _CHUNK):
        windows = view[ys[i:i + _CHUNK], xs[i:i + _CHUNK]].reshape(-1, BACKGROUND_PX * BACKGROUND_PX)
        out[i:i + _CHUNK] = window_nanmedian(windows)
    return out


def nir_contrast(band: np.ndarray, around: np.ndarray) -> np.ndarray:
    """The band's contrast against its local median at every pixel of ``around`` (0 elsewhere and where
    the band has no data), averaged over 3 x 3 pixels; valid where all 3 x 3 neighbours are in ``around``."""
    ys, xs = np.nonzero(around)
    contrast = np.zeros(band.shape, np.float32)
    if ys.size:
        contrast[ys, xs] = np.nan_to_num(band[ys, xs] - _background(band, ys, xs), nan=0.0)
    return ndimage.uniform_filter(contrast, size=3, mode="constant")


def nir_supported(nir: np.ndarray, nir08: np.ndarray, candidates: np.ndarray,
                  minimum: float = NIR_SUPPORT_MIN) -> np.ndarray:
    """The ``candidates`` (bool) brighter than the water around them in B08 (``nir``) whose B8A contrast
    (``nir08``) is at least ``minimum`` of their B08 contrast."""
    if not candidates.any():
        return candidates.copy()
    around = ndimage.binary_dilation(candidates, structure=np.ones((3, 3), bool))
    c08, c8a = nir_contrast(nir, around), nir_contrast(nir08, around)
    return candidates & (c08 > 0) & (c8a >= minimum * c08)
