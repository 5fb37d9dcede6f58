"""Level-1C (top of atmosphere) brought near surface reflectance for models trained on Level-2A.

The dark-spectrum correction subtracts one path reflectance per band and per scene: the light the
atmosphere scatters into the sensor, which makes top-of-atmosphere water several times brighter in
the blue than at the surface. It is estimated from the scene itself on a decimated read of every
band: where the scene has enough clear water (classified from the bands, see ``band_masks``), its
lower quartile is mapped to a reference clear-water spectrum (MARIDA's marine-water class mean);
elsewhere the darkest percentile of the scene is mapped to a 1 % dark object. Being one offset per
band and scene, it leaves tiles seamless, and it is recorded in the run's files.

Limits: one aerosol state per scene (no adjacency effect, no spatially varying haze), no
correction of gaseous absorption or of the bidirectional surface response; coastal scenes with
only turbid water read too bright a reference and are under-corrected in the green and red. A
physical correction (Sen2Cor, ACOLITE) gives better surface reflectance where it is available:
prefer Level-2A imagery when a catalog has it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from geoloom.platform.band_masks import CIRRUS, CLOUD, MASK_BANDS, WATER, scl_from_bands
from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.catalog import Scene
from geoloom.platform.reading import read_overview
from geoloom.platform.spectra import ENDMEMBERS

__all__ = ["DARK_OBJECT", "OVERVIEW_SIDE", "correct_scene", "corrected_scenes", "dark_spectrum", "level_corrections"]

#: Side (pixels) of the decimated read each band's statistics come from.
OVERVIEW_SIDE = 512
#: Fewest clear-water pixels (of the decimated read) for the water reference to be used.
MIN_WATER_PIXELS = 2000
#: Percentile of clear water mapped to the reference water spectrum.
WATER_PERCENTILE = 25.0
#: Percentile of the whole scene mapped to a dark object where there is too little water.
DARK_PERCENTILE = 1.0
#: Reflectance of that dark object.
DARK_OBJECT = 0.01

_WATER_REFERENCE = dict(zip(REFLECTANCE_BANDS, (float(v) for v in ENDMEMBERS["water"]), strict=True))


def dark_spectrum(scene: Scene, bands: Sequence[str], *, side: int = OVERVIEW_SIDE) -> dict[str, float]:
    """The path reflectance (>= 0) of each of ``bands`` in ``scene``, as ``{band: reflectance}``."""
    names = [b for b in dict.fromkeys([*bands, *MASK_BANDS]) if b in scene.assets and b != "scl"]
    arrays = {b: read_overview(scene.assets[b], (side, side)) for b in names}
    classes = scl_from_bands(arrays) if all(b in arrays for b in MASK_BANDS) else None
    water = (classes == WATER) if classes is not None else None
    clear = np.isfinite(classes) & ~np.isin(classes, (CLOUD, CIRRUS)) if classes is not None else None
    use_water = water is not None and int(water.sum()) >= MIN_WATER_PIXELS
    out: dict[str, float] = {}
    for b in bands:
        if b not in arrays or b not in _WATER_REFERENCE:
            continue
        values = arrays[b]
        if use_water:
            level = float(np.nanpercentile(values[water], WATER_PERCENTILE)) - _WATER_REFERENCE[b]
        else:
            sample = values[clear] if clear is not None and clear.any() else values[np.isfinite(values)]
            if sample.size == 0:
                continue
            level = float(np.nanpercentile(sample, DARK_PERCENTILE)) - DARK_OBJECT
        out[b] = round(max(0.0, level), 5)
    return out


def correct_scene(scene: Scene, path_reflectance: dict[str, float]) -> Scene:
    """The scene with each band's path reflectance taken off through its asset offset."""
    assets = {b: dataclasses.replace(a, offset=a.offset - path_reflectance[b]) if b in path_reflectance else a
              for b, a in scene.assets.items()}
    return dataclasses.replace(scene, assets=assets)


def level_corrections(scenes: Sequence[Scene], bands: Sequence[str], method: str | None) -> dict[str, dict[str, float]]:
    """The path reflectance of every Level-1C scene, by scene id, for a model whose card asks for
    ``method`` ("dark-spectrum"); nothing for other methods or levels."""
    if method != "dark-spectrum":
        return {}
    return {s.id: dark_spectrum(s, bands) for s in scenes if s.level == "L1C"}


def corrected_scenes(scenes: Sequence[Scene], corrections: dict[str, dict[str, float]]) -> tuple[Scene, ...]:
    """The scenes with their corrections applied (scenes without one as they are)."""
    return tuple(correct_scene(s, corrections[s.id]) if s.id in corrections else s for s in scenes)
