"""Class spectra of the generated sample scenes: MARIDA class means plus literature endmembers.

Reflectances are surface (L2A, bottom-of-atmosphere) values in the order of
:data:`geoloom.platform.bands.REFLECTANCE_BANDS` (B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12).

Sources
-------
* Marine debris, marine water, dense Sargassum, ship and cloud: the class-mean
  reflectances of MARIDA (Kikaki et al. 2022, "MARIDA: A benchmark for Marine Debris
  detection from Sentinel-2 remote sensing data", PLoS ONE 17(1): e0262247), given there
  for 11 bands; B9 is interpolated linearly in wavelength between B8A and B11.
* Foam, turbid water and land are approximate band values with the shapes reported in
  the literature, not formal convolutions of measured spectra:
  foam / whitewater is bright and flat in the visible and falls off in the NIR and SWIR
  where water absorbs (Koepke 1984, Applied Optics 23(11); Dierssen 2019, Frontiers in
  Earth Science 7:14); sediment-laden water peaks in green-red with a raised NIR
  shoulder, as in turbid coastal and river-plume waters (Nechad et al. 2010, Remote
  Sensing of Environment 114(4); Dogliotti et al. 2015, RSE 156); green vegetation,
  bare lateritic soil and urban surfaces follow typical spectra of the USGS spectral
  library (Kokaly et al. 2017). Foam and turbid water get an FDI above that of debris,
  as MARIDA's class means for foam, sediment-laden water and Sargassum have.
* Cloud shadow is not an endmember: a shadow attenuates the direct sunlight, so it
  multiplies the surface reflectance by ``1 - SHADOW_ATTENUATION`` at full shadow.
"""

from __future__ import annotations

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS, band_info
from geoloom.platform.classes import CLOUD, DEBRIS, SARGASSUM, SHIP, WATER

__all__ = [
    "ENDMEMBERS",
    "ENDMEMBER_NAMES",
    "MARIDA_BANDS",
    "MARIDA_MEANS",
    "NOISE_SIGMA",
    "SHADOW_ATTENUATION",
    "endmember_matrix",
    "fdi",
    "marida_spectrum",
]

#: Bands of the MARIDA class-mean table (MARIDA gives no B9).
MARIDA_BANDS: tuple[str, ...] = (
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22",
)

#: Class-mean reflectance from MARIDA (Kikaki et al. 2022), keyed by label class code.
MARIDA_MEANS: dict[int, tuple[float, ...]] = {
    DEBRIS: (0.046, 0.062, 0.057, 0.057, 0.040, 0.042, 0.046, 0.058, 0.048, 0.020, 0.011),
    WATER: (0.039, 0.034, 0.024, 0.017, 0.014, 0.014, 0.015, 0.013, 0.014, 0.009, 0.007),
    SARGASSUM: (0.043, 0.041, 0.049, 0.045, 0.095, 0.118, 0.141, 0.133, 0.137, 0.016, 0.010),
    SHIP: (0.067, 0.108, 0.108, 0.116, 0.097, 0.099, 0.107, 0.106, 0.108, 0.075, 0.047),
    CLOUD: (0.170, 0.166, 0.152, 0.152, 0.146, 0.150, 0.159, 0.147, 0.161, 0.137, 0.108),
}


def _wavelength_nm(band: str) -> float:
    info = band_info(band)
    assert info is not None and info.center_um is not None
    return info.center_um * 1000.0


def marida_spectrum(values: tuple[float, ...]) -> np.ndarray:
    """A MARIDA 11-band spectrum as 12 bands, B9 interpolated between B8A and B11."""
    by_band = dict(zip(MARIDA_BANDS, values, strict=True))
    lo, hi = _wavelength_nm("nir08"), _wavelength_nm("swir16")
    w = (_wavelength_nm("nir09") - lo) / (hi - lo)
    by_band["nir09"] = (1.0 - w) * by_band["nir08"] + w * by_band["swir16"]
    return np.array([by_band[b] for b in REFLECTANCE_BANDS], dtype=np.float64)


#: Pure-surface spectra (12 bands each). The MARIDA classes use the table as it is.
ENDMEMBERS: dict[str, np.ndarray] = {
    "water": marida_spectrum(MARIDA_MEANS[WATER]),
    "debris": marida_spectrum(MARIDA_MEANS[DEBRIS]),
    "sargassum": marida_spectrum(MARIDA_MEANS[SARGASSUM]),
    "ship": marida_spectrum(MARIDA_MEANS[SHIP]),
    "cloud": marida_spectrum(MARIDA_MEANS[CLOUD]),
    #            B1     B2     B3     B4     B5     B6     B7     B8     B8A    B9     B11    B12
    "foam": np.array([0.300, 0.320, 0.320, 0.300, 0.250, 0.220, 0.210, 0.200, 0.180, 0.150, 0.060, 0.030]),
    "turbid": np.array([0.055, 0.065, 0.090, 0.095, 0.088, 0.072, 0.065, 0.060, 0.055, 0.045, 0.012, 0.008]),
    "vegetation": np.array([0.030, 0.035, 0.060, 0.040, 0.090, 0.220, 0.270, 0.300, 0.310, 0.300, 0.190, 0.090]),
    "soil": np.array([0.080, 0.100, 0.140, 0.190, 0.220, 0.240, 0.250, 0.270, 0.280, 0.280, 0.330, 0.280]),
    "urban": np.array([0.100, 0.110, 0.130, 0.150, 0.165, 0.175, 0.185, 0.195, 0.200, 0.200, 0.230, 0.210]),
    # Sun glint adds a spectrally flat offset; its abundance is the glint reflectance itself.
    "glint": np.ones(len(REFLECTANCE_BANDS)),
}

#: Order of the abundance layers the scene synthesis produces.
ENDMEMBER_NAMES: tuple[str, ...] = (
    "water", "turbid", "glint", "debris", "sargassum", "ship", "foam", "vegetation", "soil", "urban", "cloud",
)

#: Fraction of surface reflectance removed under full cloud shadow.
SHADOW_ATTENUATION = 0.65

#: Sensor noise (reflectance units, one standard deviation) added at each band's native resolution.
NOISE_SIGMA: dict[str, float] = {
    "coastal": 0.0006, "blue": 0.0010, "green": 0.0010, "red": 0.0010,
    "rededge1": 0.0008, "rededge2": 0.0008, "rededge3": 0.0008, "nir": 0.0012,
    "nir08": 0.0008, "nir09": 0.0006, "swir16": 0.0008, "swir22": 0.0008,
}


def endmember_matrix(bands: tuple[str, ...] | list[str]) -> np.ndarray:
    """Matrix (len(bands), len(ENDMEMBER_NAMES)) of endmember reflectances, float32."""
    idx = [REFLECTANCE_BANDS.index(b) for b in bands]
    return np.stack([ENDMEMBERS[name][idx] for name in ENDMEMBER_NAMES], axis=1).astype(np.float32)


def fdi(nir: np.ndarray | float, rededge2: np.ndarray | float, swir16: np.ndarray | float) -> np.ndarray | float:
    """Floating Debris Index (Biermann et al. 2020) from B8, B6 and B11 reflectance."""
    factor = 10.0 * (832.9 - 664.8) / (1612.05 - 664.8)
    return nir - (rededge2 + (swir16 - rededge2) * factor)
