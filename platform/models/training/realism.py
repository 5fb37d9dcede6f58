"""Real-water effects laid over generated reflectance: the things real Sentinel-2 sea has and the
generator lacks (sensor noise at the documented SNR, whitecaps, sun glint, wave texture, adjacency
near land, residual atmospheric-correction error).

Every function works on one patch or scene ``x`` (12, h, w) of surface reflectance in the order of
:data:`~geoloom.platform.bands.REFLECTANCE_BANDS`, with the 20 m and 60 m bands repeated onto the
10 m grid in blocks starting at (0, 0) (as :func:`~geoloom.platform.scenes.synthesize_scene` gives
them), changes it in place, and draws every random number from the numpy generator it is given, so
a seed fixes the result. An effect computed at 10 m reaches a coarse band as its mean over that
band's pixel, as the sensor integrates it. Labels are never changed: whitecaps stay under the foam
class's 40% cover (they are water with a look-alike on it), debris stays debris.

Sources
-------
* Noise: the Level-1C radiometric requirement of the Sentinel-2 MSI, SNR at the reference radiance
  Lref (ESA, Sentinel-2 User Handbook, 2015, table "SNR requirements"; the in-flight SNR is above it,
  Gascon et al. 2017, Remote Sensing 9(6):584), turned into reflectance with the S2A solar irradiance
  of the L1C metadata at a 30 degree sun zenith. Noise variance is signal-dependent:
  ``sigma^2 = sigma_ref^2 * (DARK + (1 - DARK) * rho_toa / rho_ref)``, with a signal-independent
  share ``DARK`` at Lref, and ``rho_toa`` the surface value plus the path reflectance measured over
  open ocean on a real coastal Level-1C scene (see the field notes).
* Whitecaps: foam reflectance as the generator's ``foam`` endmember (Koepke 1984; Dierssen 2019),
  scaled x0.7-1.5 (0.2-0.5 in the visible at full cover); whitecap cover of 1-20% of a pixel, on a
  share of pixels that grows with a smooth wind field (Monahan and O'Muircheartaigh 1980).
* Sun glint: Fresnel reflection of the sun by wave facets, nearly flat in reflectance (Kay et al.
  2009, Remote Sensing 1(4)), a few 0.001 to a few 0.01, smooth over the patch with a swath gradient
  (the glint angle changes across the 290 km swath) and modulated by the wave facets.
* Adjacency: light reflected by nearby land and scattered into the view of a water pixel, a blurred
  copy of the land signal decaying over ~1 km (Sterckx et al. 2011, IJRS 32(21)).
* Residual atmospheric-correction error: a dark-spectrum correction leaves per-band offsets of a
  few 0.001, largest in the blue, either sign (Vanhellemont and Ruddick 2018, RSE 216), constant
  over a patch: an aerosol-like power law in wavelength plus independent per-band terms.
* JPEG 2000: the MSI compresses its images on board with a wavelet coder at about 2.4-3:1 of its
  12-bit samples (ESA, Sentinel-2 User Handbook), and lossy JPEG 2000 copies of products circulate.
  Each 10 m and 20 m band is round-tripped through GDAL's JP2OpenJPEG at its own resolution, as
  top-of-atmosphere digital numbers (reflectance x 10000 + 1000, the path reflectance added back),
  at 15-40 % of the 16-bit size: about the on-board rate up to four times heavier. Its error
  (0.0003-0.002 rms) is at the level of the sensor noise and falls on edges and specks, where debris
  is. The 60 m bands (16 px in a training patch) are left as they are: too few pixels to code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS, band_info
from geoloom.platform.classes import CLOUD, LAND, LABEL_NODATA, TURBID, WATER
from geoloom.platform.sensors import REFLECTANCE_BY_RESOLUTION
from geoloom.platform.spectra import ENDMEMBERS, NOISE_SIGMA

__all__ = [
    "DARK", "L_REF", "PATH_REFLECTANCE", "RealismConfig", "SNR_REF", "SOLAR_IRRADIANCE", "TRAINING", "VALIDATION",
    "WITH_JPEG2000",
    "add_realism", "adjacency", "correction_offsets", "jpeg2000", "noise_sigma", "sensor_noise", "smooth_field",
    "sun_glint", "wave_texture", "waves", "whitecaps",
]

#: Reference radiance Lref (W m-2 sr-1 um-1) and the required SNR there, Sentinel-2 MSI Level-1C
#: (B10 is not an L2A band: Lref 6, SNR 50).
L_REF: dict[str, float] = {
    "coastal": 129.0, "blue": 128.0, "green": 128.0, "red": 108.0, "rededge1": 74.5, "rededge2": 68.0,
    "rededge3": 67.0, "nir": 103.0, "nir08": 52.5, "nir09": 9.0, "swir16": 4.0, "swir22": 1.5,
}
SNR_REF: dict[str, float] = {
    "coastal": 129.0, "blue": 154.0, "green": 168.0, "red": 142.0, "rededge1": 117.0, "rededge2": 89.0,
    "rededge3": 105.0, "nir": 174.0, "nir08": 72.0, "nir09": 114.0, "swir16": 100.0, "swir22": 100.0,
}
#: Sentinel-2A exo-atmospheric solar irradiance (W m-2 um-1), as in the L1C product metadata.
SOLAR_IRRADIANCE: dict[str, float] = {
    "coastal": 1913.57, "blue": 1941.63, "green": 1822.61, "red": 1512.79, "rededge1": 1425.56,
    "rededge2": 1288.32, "rededge3": 1163.19, "nir": 1036.39, "nir08": 955.19, "nir09": 813.04,
    "swir16": 245.59, "swir22": 85.25,
}
#: Top-of-atmosphere minus surface reflectance over clear ocean: B1-B4, B8A and B11 measured on a real
#: coastal Level-1C scene against MARIDA's water means; the red edge, B8 and B9 interpolated.
PATH_REFLECTANCE: dict[str, float] = {
    "coastal": 0.113, "blue": 0.093, "green": 0.077, "red": 0.058, "rededge1": 0.045, "rededge2": 0.035,
    "rededge3": 0.028, "nir": 0.020, "nir08": 0.015, "nir09": 0.010, "swir16": 0.0, "swir22": 0.0,
}
#: Share of the noise variance at Lref that does not depend on the signal (dark and read-out noise).
DARK = 0.25
_SUN_ZENITH_DEG = 30.0

_N = len(REFLECTANCE_BANDS)
_BY_RES = {res: [REFLECTANCE_BANDS.index(b) for b in names] for res, names in REFLECTANCE_BY_RESOLUTION.items()}
_WAVELENGTH_UM = np.array([band_info(b).center_um for b in REFLECTANCE_BANDS], dtype=np.float32)  # type: ignore[union-attr]
_RHO_REF = np.array([np.pi * L_REF[b] / (SOLAR_IRRADIANCE[b] * np.cos(np.radians(_SUN_ZENITH_DEG)))
                     for b in REFLECTANCE_BANDS], dtype=np.float32)
#: One-sigma noise in reflectance at Lref (rho_ref / SNR).
_SIGMA_REF = _RHO_REF / np.array([SNR_REF[b] for b in REFLECTANCE_BANDS], dtype=np.float32)
_PATH = np.array([PATH_REFLECTANCE[b] for b in REFLECTANCE_BANDS], dtype=np.float32)
_GENERATOR_SIGMA = np.array([NOISE_SIGMA[b] for b in REFLECTANCE_BANDS], dtype=np.float32)
_FOAM = ENDMEMBERS["foam"].astype(np.float32)
#: Classes on which sea-surface effects (glint, waves, adjacency) fall, and those that get whitecaps.
_SEA = np.zeros(256, dtype=bool)
_SEA[[c for c in range(1, 10) if c not in (LAND, CLOUD)]] = True
_OPEN = np.zeros(256, dtype=bool)
_OPEN[[WATER, TURBID]] = True


@dataclass(frozen=True, slots=True)
class RealismConfig:
    """How often each effect is laid over a patch (probabilities) and the noise scale range."""

    p_noise: float = 0.9
    p_whitecaps: float = 0.55
    p_glint: float = 0.5
    p_waves: float = 0.6
    p_adjacency: float = 0.6
    p_offsets: float = 0.8
    p_jpeg2000: float = 0.0  # see WITH_JPEG2000
    noise_scale: tuple[float, float] = (0.7, 1.3)
    #: JPEG 2000 size as a percentage of the uncompressed 16-bit band (GDAL's QUALITY).
    jpeg2000_quality: tuple[float, float] = (15.0, 40.0)


#: Training patches and the benchmark's realistic patches.
TRAINING = RealismConfig()
#: Validation scenes: the same mixture.
VALIDATION = RealismConfig()
#: The mixture with half the patches coded as lossy JPEG 2000 (``train_marine_debris(jpeg2000=True)``):
#: the shipped network's recipe (seed 1). Left out of TRAINING, so that the recipe before it keeps
#: its random stream.
WITH_JPEG2000 = RealismConfig(p_jpeg2000=0.5)


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks from (0, 0) of the last two axes, repeated back to a's shape."""
    if k == 1:
        return a
    h, w = a.shape[-2:]
    ph, pw = -h % k, -w % k
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    total, count = np.pad(a, pad), np.pad(np.ones((h, w), dtype=np.float32), pad[-2:])
    shp = a.shape[:-2] + ((h + ph) // k, k, (w + pw) // k, k)
    s = total.reshape(shp).sum(axis=(-3, -1))
    n = count.reshape((h + ph) // k, k, (w + pw) // k, k).sum(axis=(1, 3))
    return np.repeat(np.repeat(s / n, k, axis=-2), k, axis=-1)[..., :h, :w].astype(np.float32)


def _add_native(x: np.ndarray, delta: np.ndarray) -> None:
    """Add a (12, h, w) or (h, w) change computed at 10 m, each band taking its mean over its own pixel."""
    for res, idx in _BY_RES.items():
        d = delta[idx] if delta.ndim == 3 else delta[None]
        x[idx] += _block_mean(d, res // 10)


def smooth_field(shape_yx: tuple[int, int], rng: np.random.Generator, nodes: int = 3) -> np.ndarray:
    """A smooth random field in [0, 1]: ``nodes`` x ``nodes`` uniform values interpolated bilinearly."""
    from scipy.ndimage import zoom

    h, w = shape_yx
    grid = rng.random((nodes, nodes)).astype(np.float32)
    f = zoom(grid, ((h + 1) / nodes, (w + 1) / nodes), order=1, mode="nearest", grid_mode=True)
    return f[:h, :w].astype(np.float32)


def noise_sigma(x: np.ndarray) -> np.ndarray:
    """Sensor noise sigma (12, h, w) in reflectance for surface reflectance ``x`` (12, h, w)."""
    return noise_sigma_bands(x, list(range(_N)))


def sensor_noise(x: np.ndarray, rng: np.random.Generator, *, scale: float = 1.0) -> None:
    """Signal-dependent noise at Sentinel-2's L1C SNR, drawn per native pixel of each band; the
    generator's own noise (``spectra.NOISE_SIGMA``) is taken off in quadrature."""
    h, w = x.shape[-2:]
    for res, idx in _BY_RES.items():
        k = res // 10
        native = x[idx, ::k, ::k]
        sigma = scale * noise_sigma_bands(native, idx)
        extra = np.sqrt(np.maximum(sigma ** 2 - _GENERATOR_SIGMA[idx, None, None] ** 2, 0.0))
        v = extra * rng.standard_normal(native.shape, dtype=np.float32)
        if k > 1:
            v = np.repeat(np.repeat(v, k, axis=1), k, axis=2)[:, :h, :w]
        x[idx] += v


def noise_sigma_bands(native: np.ndarray, idx: list[int]) -> np.ndarray:
    """:func:`noise_sigma` for a subset ``idx`` of the bands."""
    rho_toa = np.maximum(native, 0.0) + _PATH[idx, None, None]
    share = DARK + (1.0 - DARK) * rho_toa / _RHO_REF[idx, None, None]
    return (_SIGMA_REF[idx, None, None] * np.sqrt(share)).astype(np.float32)


def whitecaps(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
              density: tuple[float, float] = (0.002, 0.03)) -> np.ndarray:
    """Sparse bright specks of foam on open water (1-20% of a pixel each), more where a smooth wind
    field is strong, mixed linearly with the foam endmember x0.7-1.5; returns the cover (h, w)."""
    h, w = labels.shape
    wind = smooth_field((h, w), rng, nodes=3)
    p = rng.uniform(*density) * (0.2 + 1.6 * wind ** 2)
    speck = (rng.random((h, w)) < p) & _OPEN[labels]
    cover = np.zeros((h, w), dtype=np.float32)
    n = int(speck.sum())
    cover[speck] = np.exp(rng.uniform(np.log(0.01), np.log(0.2), n)).astype(np.float32)
    # a third of the specks trail into the next pixel along the wind
    dy, dx = (0, 1) if rng.random() < 0.5 else (1, 0)
    trail = np.zeros_like(cover)
    trail[dy:, dx:] = cover[:h - dy, :w - dx] * (rng.random((h - dy, w - dx)) < 0.33) * 0.5
    cover = np.where(_OPEN[labels], np.minimum(cover + trail, 0.2), 0.0).astype(np.float32)
    foam = _FOAM * np.float32(rng.uniform(0.7, 1.5))
    for res, idx in _BY_RES.items():
        c = _block_mean(cover, res // 10)
        x[idx] += c[None] * (foam[idx, None, None] - x[idx])
    return cover


def wave_texture(shape_yx: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-deviation sea-surface texture at 10 m: a few swell and wind-wave trains of
    20-60 m wavelength plus speckle of shorter waves (filtered white noise)."""
    from scipy.ndimage import gaussian_filter

    h, w = shape_yx
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    main = rng.uniform(0, np.pi)
    t = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        wl = rng.uniform(2.0, 6.0)  # pixels of 10 m
        a = main + rng.normal(0, 0.4)
        t += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / wl + rng.uniform(0, 6.3))
    t += 1.5 * gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), rng.uniform(0.6, 1.2))
    t -= t.mean()
    return (t / max(float(t.std()), 1e-6)).astype(np.float32)


def sun_glint(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, texture: np.ndarray | None = None,
              *, level: tuple[float, float] = (0.002, 0.04)) -> np.ndarray:
    """Additive, nearly flat glint on the sea: log-uniform level, a swath gradient and a smooth field
    across the patch, modulated 10-40% by the wave facets; returns the glint reflectance (h, w)."""
    h, w = labels.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w)
    g = np.exp(rng.uniform(np.log(level[0]), np.log(level[1]))) * (1 + rng.uniform(-0.8, 0.8) * (ramp - ramp.mean()))
    g = g * (0.6 + 0.8 * smooth_field((h, w), rng, nodes=3))
    if texture is not None:
        g = g * (1 + rng.uniform(0.1, 0.4) * texture)
    g = np.where(_SEA[labels], np.maximum(g, 0.0), 0.0).astype(np.float32)
    tilt = 1 + rng.uniform(-0.15, 0.15) * (_WAVELENGTH_UM - 0.8) / 1.4  # nearly flat
    _add_native(x, tilt[:, None, None] * g[None])
    return g


def waves(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, texture: np.ndarray) -> None:
    """Modulate the open-water signal by the wave texture, 2-15% (facets tilted to or from the sky)."""
    m = rng.uniform(0.02, 0.15) * texture * _OPEN[labels]
    _add_native(x, x * m[None])


def adjacency(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a blurred copy of the land signal to the sea near land (a short and a long kernel, ~100 m and
    ~400 m, reaching ~1 km), 3-15% of it; returns the added (12, h, w), zero without land."""
    from scipy.ndimage import gaussian_filter

    land = (labels == LAND).astype(np.float32)
    if not land.any():
        return np.zeros_like(x)
    s1, s2 = rng.uniform(5, 12), rng.uniform(25, 50)
    mix = rng.uniform(0.3, 0.7)
    src = x * land[None]
    blur = np.stack([mix * gaussian_filter(b, s1, mode="nearest") + (1 - mix) * gaussian_filter(b, s2, mode="nearest")
                     for b in src])
    delta = (rng.uniform(0.03, 0.15) * blur * _SEA[labels][None]).astype(np.float32)
    _add_native(x, delta)
    return delta


def correction_offsets(rng: np.random.Generator) -> np.ndarray:
    """Per-band residual of an atmospheric correction (12,): an aerosol-like power law (up to +-0.008
    at 490 nm) plus independent +-0.002 per band, either sign."""
    amp, alpha = rng.uniform(-0.008, 0.008), rng.uniform(0.5, 2.0)
    return (amp * (_WAVELENGTH_UM / 0.49) ** -alpha + rng.uniform(-0.002, 0.002, _N)).astype(np.float32)


def _jp2_round_trip(dn: np.ndarray, quality: float) -> np.ndarray:
    """``dn`` (uint16, 2-D) written to an in-memory lossy JPEG 2000 and read back."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    h, w = dn.shape
    levels = max(1, min(5, int(np.log2(min(h, w))) - 2))  # the coder needs a few pixels at its coarsest level
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with mem.open(driver="JP2OpenJPEG", width=w, height=h, count=1, dtype="uint16", QUALITY=f"{quality:.0f}",
                      REVERSIBLE="NO", RESOLUTIONS=str(levels)) as dst:
            dst.write(dn, 1)
        with mem.open() as src:
            return src.read(1)


def jpeg2000(x: np.ndarray, rng: np.random.Generator, quality: tuple[float, float] = (15.0, 40.0)) -> float:
    """Round-trip the 10 m and 20 m bands of ``x`` through lossy JPEG 2000 as top-of-atmosphere digital
    numbers, each at its own resolution (in place); returns the quality used. Blocks start at (0, 0)."""
    q = float(rng.uniform(*quality))
    h, w = x.shape[-2:]
    for res in (10, 20):
        k = res // 10
        for i in _BY_RES[res]:
            native = x[i, ::k, ::k] + _PATH[i]
            dn = np.clip(np.round(native * 10000.0) + 1000.0, 1, 65535).astype(np.uint16)
            back = (_jp2_round_trip(dn, q).astype(np.float32) - 1000.0) / 10000.0 - _PATH[i]
            x[i] = np.repeat(np.repeat(back, k, axis=0), k, axis=1)[:h, :w]
    return q


def add_realism(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                config: RealismConfig = TRAINING) -> dict[str, bool]:
    """Lay a random mixture of the real-water effects over ``x`` (12, h, w) in place (labels unchanged);
    returns which effects were applied."""
    h, w = labels.shape
    u = rng.random(6)
    on = {"adjacency": bool(u[0] < config.p_adjacency), "glint": bool(u[1] < config.p_glint),
          "waves": bool(u[2] < config.p_waves), "whitecaps": bool(u[3] < config.p_whitecaps),
          "offsets": bool(u[4] < config.p_offsets), "noise": bool(u[5] < config.p_noise)}
    if on["adjacency"]:
        adjacency(x, labels, rng)
    texture = wave_texture((h, w), rng) if on["glint"] or on["waves"] else None
    if on["glint"]:
        sun_glint(x, labels, rng, texture if on["waves"] else None)
    if on["waves"] and texture is not None:
        waves(x, labels, rng, texture)
    if on["whitecaps"]:
        whitecaps(x, labels, rng)
    if on["offsets"]:
        x += correction_offsets(rng)[:, None, None] * (labels != LABEL_NODATA)[None]
    if on["noise"]:
        sensor_noise(x, rng, scale=float(rng.uniform(*config.noise_scale)))
    # drawn last, and only when enabled: the effects above, and a recipe without it, keep their draws
    on["jpeg2000"] = config.p_jpeg2000 > 0 and bool(rng.random() < config.p_jpeg2000)
    if on["jpeg2000"]:  # coded after the noise, as the sensor's samples are
        jpeg2000(x, rng, config.jpeg2000_quality)
    return on

