"""Procedural Sentinel-2-like scene synthesis, window by window.

A :class:`~geoloom.platform.scene_world.World` (re-exported here with the rest of that
module's public names) holds everything that is on the ground or in the air at one date.
Its smooth fields are evaluated at world coordinates on a node grid every ``NODE_STEP``
pixels and interpolated bilinearly; strokes are rasterised with exact sub-pixel widths.
Every window of a scene is therefore a pure function of the world, the pixel frame and the
window position: windows join seamlessly, and overlapping scenes in different CRSs agree.

The output of :func:`render_window` is a stack of per-pixel abundances (one per
endmember of :mod:`geoloom.platform.spectra`) plus the label raster. Reflectance is a
linear mix of endmember spectra, so coarser bands are mixed from block-averaged
abundances, which equals averaging the 10 m reflectance (:func:`mix_bands`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.classes import (
    CLOUD, CLOUD_SHADOW, DEBRIS, FOAM, LAND, SARGASSUM, SHIP, TURBID, WATER,
)
from geoloom.platform.scene_world import (
    PIXEL_M, Clouds, Coast, Frame, PatchFrame, Plume, Stroke, World, debris_cluster, fbm, random_world, river,
    sargassum_group, ship, smoothstep, value_noise,
)
from geoloom.platform.sensors import REFLECTANCE_BY_RESOLUTION, S2_QUANTIFICATION
from geoloom.platform.spectra import ENDMEMBER_NAMES, NOISE_SIGMA, SHADOW_ATTENUATION, endmember_matrix

__all__ = [
    "Clouds", "Coast", "Frame", "LABEL_THRESHOLDS", "NODE_STEP", "PatchFrame", "Plume", "Rendered",
    "Stroke", "World", "debris_cluster", "fbm", "mix_bands", "quantize", "render_patch",
    "render_window", "river", "sargassum_group", "ship", "strokes_to_pixels", "synthesize_scene",
    "value_noise",
]

#: Node spacing of the smooth fields, in 10 m pixels (window offsets must be multiples of 12).
NODE_STEP = 4

#: A pixel gets a class when that class covers at least this fraction of it (debris: 25%).
LABEL_THRESHOLDS: dict[str, float] = {
    "debris": 0.25, "ship": 0.5, "sargassum": 0.5, "foam": 0.4, "turbid": 0.5,
    "land": 0.5, "cloud": 0.5, "cloud_shadow": 0.5,
}

_K = {name: i for i, name in enumerate(ENDMEMBER_NAMES)}


def _upsample(nodes: np.ndarray) -> np.ndarray:
    """Bilinear interpolation from a node grid (every NODE_STEP pixels) to pixel centres."""
    f = NODE_STEP
    n = nodes.astype(np.float32)
    ny, nx = n.shape[0] - 1, n.shape[1] - 1
    t = ((np.arange(f) + 0.5) / f).astype(np.float32)
    rows = np.empty((ny, f, nx + 1), dtype=np.float32)
    np.multiply((n[1:] - n[:-1])[:, None, :], t[None, :, None], out=rows)
    rows += n[:-1, None, :]
    rows = rows.reshape(ny * f, nx + 1)
    out = np.empty((ny * f, nx, f), dtype=np.float32)
    np.multiply((rows[:, 1:] - rows[:, :-1])[:, :, None], t, out=out)
    out += rows[:, :-1, None]
    return out.reshape(ny * f, nx * f)


# --------------------------------------------------------------------------- rasterising
@dataclass(frozen=True, slots=True, eq=False)
class _PixelStroke:
    """A stroke projected into one frame's pixel space."""

    kind: str
    cr: np.ndarray  # (n, 2) col, row in pixel units
    width: np.ndarray  # pixels
    density: np.ndarray
    bbox: tuple[int, int, int, int]  # r0, r1, c0, c1


def strokes_to_pixels(strokes: tuple[Stroke, ...] | list[Stroke], frame: Frame) -> list[_PixelStroke]:
    """Project strokes into a frame's pixel space once per scene."""
    if not strokes:
        return []
    xy = np.concatenate([s.xy for s in strokes])
    cols, rows = frame.to_pixel(xy[:, 0], xy[:, 1])
    out, i = [], 0
    for s in strokes:
        n = len(s.xy)
        cr = np.stack([cols[i:i + n], rows[i:i + n]], axis=1)
        i += n
        m = float(s.width_m.max()) / PIXEL_M / 2 + 2
        bbox = (int(math.floor(cr[:, 1].min() - m)), int(math.ceil(cr[:, 1].max() + m)),
                int(math.floor(cr[:, 0].min() - m)), int(math.ceil(cr[:, 0].max() + m)))
        out.append(_PixelStroke(s.kind, cr, s.width_m / PIXEL_M, s.density, bbox))
    return out


def _rasterize(strokes: list[_PixelStroke], r0: int, r1: int, c0: int, c1: int) -> dict[str, np.ndarray]:
    """Cover of pixels [r0:r1, c0:c1] by each kind of stroke (the densest stroke where they overlap)."""
    layers: dict[str, np.ndarray] = {}
    for st in strokes:
        b = st.bbox
        if b[1] <= r0 or b[0] >= r1 or b[3] <= c0 or b[2] >= c1:
            continue
        layer = layers.setdefault(st.kind, np.zeros((r1 - r0, c1 - c0), dtype=np.float32))
        for i in range(len(st.cr) - 1):
            (ax, ay), (bx, by) = st.cr[i], st.cr[i + 1]
            wa, wb = st.width[i], st.width[i + 1]
            m = max(wa, wb) / 2 + 1
            ra, rb = max(r0, int(math.floor(min(ay, by) - m))), min(r1, int(math.ceil(max(ay, by) + m)))
            ca, cb = max(c0, int(math.floor(min(ax, bx) - m))), min(c1, int(math.ceil(max(ax, bx) + m)))
            if ra >= rb or ca >= cb:
                continue
            pr = (np.arange(ra, rb, dtype=np.float32) + 0.5)[:, None]
            pc = (np.arange(ca, cb, dtype=np.float32) + 0.5)[None, :]
            vx, vy = bx - ax, by - ay
            l2 = vx * vx + vy * vy
            t = np.clip(((pc - ax) * vx + (pr - ay) * vy) / l2, 0.0, 1.0) if l2 > 0 else np.zeros_like(pr * pc)
            d = np.hypot(pc - ax - t * vx, pr - ay - t * vy)
            half = (wa + t * (wb - wa)) / 2
            dens = st.density[i] + t * (st.density[i + 1] - st.density[i])
            f = np.clip(np.minimum(d + half, 0.5) - np.maximum(d - half, -0.5), 0.0, 1.0) * dens
            sub = layer[ra - r0:rb - r0, ca - c0:cb - c0]
            np.maximum(sub, f, out=sub)
    return layers


# --------------------------------------------------------------------------- rendering
@dataclass(slots=True)
class Rendered:
    """One rendered window at 10 m: endmember abundances, labels and the fields behind them."""

    abundances: np.ndarray  # (len(ENDMEMBER_NAMES), h, w) float32
    labels: np.ndarray  # (h, w) uint8
    valid: np.ndarray  # (h, w) bool
    #: pixel cover of debris, sargassum, ship, foam, land, turbid, cloud, cloud_shadow, vegetation
    fractions: dict[str, np.ndarray]


def render_window(world: World, frame: Frame, strokes: list[_PixelStroke], r0: int, r1: int, c0: int, c1: int,
                  *, coverage: tuple[float, float, float, float] | None = None) -> Rendered:
    """Render pixels [r0:r1, c0:c1] of a scene; offsets must be multiples of NODE_STEP.

    ``coverage`` (x, y, nx, ny) is a swath edge in world metres: pixels on the side the
    normal (nx, ny) points away from are outside the swath (no data).
    """
    f = NODE_STEP
    nr = np.arange(r0 // f, r1 // f + 1, dtype=np.float64) * f
    nc = np.arange(c0 // f, c1 // f + 1, dtype=np.float64) * f
    x, y = frame.world_xy(nr[:, None], nc[None, :])
    s = world.seed
    h, w = r1 - r0, c1 - c0

    dist = world.coast.signed_distance(x, y) if world.coast else np.full(x.shape, -1e6)
    turb = np.zeros(x.shape)
    for p in world.plumes:
        turb += p.turbidity(x, y)
    turb = np.clip(turb * (0.7 + 0.6 * fbm(x, y, s + 21, scale=500.0, octaves=3)), 0.0, 1.0)
    urban = smoothstep(0.45, 0.65, fbm(x, y, s + 22, scale=1600.0, octaves=4)) * (
        0.25 + 0.75 * np.exp(-np.maximum(dist, 0.0) / 5000.0))
    veg_share = smoothstep(0.3, 0.7, fbm(x, y, s + 23, scale=900.0, octaves=4)
                            + 0.2 * (fbm(x, y, s + 27, scale=140.0, octaves=2) - 0.5))
    water_mod = 0.94 + 0.12 * fbm(x, y, s + 24, scale=700.0, octaves=3)
    glint = 0.0012 * smoothstep(0.5, 0.8, fbm(x, y, s + 25, scale=160.0, octaves=2))
    surf = 0.8 * np.exp(-np.maximum(-dist, 0.0) / 40.0) * smoothstep(30.0, 0.0, dist) * (
        0.5 + 0.5 * fbm(x, y, s + 26, scale=90.0, octaves=2))
    alpha = world.clouds.opacity(x, y) if world.clouds else np.zeros(x.shape)
    shade = world.clouds.shadow(x, y) if world.clouds else np.zeros(x.shape)

    up = _upsample
    land = up(dist)
    land *= 1.0 / PIXEL_M
    land += 0.5
    np.clip(land, 0.0, 1.0, out=land)
    turb, urban, veg_share = up(turb), up(urban), up(veg_share)
    water_mod, glint, surf = up(water_mod), up(glint), up(surf)
    alpha, shade = up(alpha), up(shade)
    side = None if coverage is None else (x - coverage[0]) * coverage[2] + (y - coverage[1]) * coverage[3]
    valid = np.ones((h, w), dtype=bool) if side is None or side.min() >= 0.0 else up(side) >= 0.0

    obj = _rasterize(strokes, r0, r1, c0, c1)
    if "river" in obj:
        land *= 1.0 - obj["river"]
        turb = np.where(obj["river"] > 0.05, np.maximum(turb, 0.75), turb)
    wpart = 1.0 - land
    # Cover of each material within the water part, the most opaque first; what is left is clear water.
    room = np.ones((h, w), dtype=np.float32)
    cover: dict[str, np.ndarray] = {}
    for kind in ("ship", "debris", "sargassum", "foam"):
        layer = obj.get(kind)
        if kind == "foam":
            layer = surf if layer is None else np.maximum(surf, layer)
        if layer is not None:
            cover[kind] = np.minimum(layer, room)
            room -= cover[kind]

    atten = 1.0 - SHADOW_ATTENUATION * shade
    atten *= 1.0 - alpha
    wa = wpart * atten
    a = np.zeros((len(ENDMEMBER_NAMES), h, w), dtype=np.float32)
    clear = wa * room
    np.multiply(clear, glint, out=a[_K["glint"]])
    clear *= water_mod
    np.multiply(clear, turb, out=a[_K["turbid"]])
    np.subtract(clear, a[_K["turbid"]], out=a[_K["water"]])
    for kind, c in cover.items():
        np.multiply(wa, c, out=a[_K[kind]])
    veg_land = (1.0 - urban) * veg_share
    la = land * atten
    np.multiply(la, veg_land, out=a[_K["vegetation"]])
    np.multiply(la, urban, out=a[_K["urban"]])
    np.subtract(la, a[_K["vegetation"]], out=a[_K["soil"]])
    a[_K["soil"]] -= a[_K["urban"]]
    a[_K["cloud"]] = alpha

    zero = np.zeros((h, w), dtype=np.float32)
    fr = {k: wpart * cover[k] if k in cover else zero for k in ("debris", "sargassum", "ship", "foam")}
    fr.update({"land": land, "turbid": turb * (wpart >= 0.5), "cloud": alpha, "cloud_shadow": shade,
               "vegetation": land * veg_land})
    lab = np.full((h, w), WATER, dtype=np.uint8)
    th = LABEL_THRESHOLDS
    lab[fr["turbid"] >= th["turbid"]] = TURBID
    lab[fr["foam"] >= th["foam"]] = FOAM
    lab[fr["sargassum"] >= th["sargassum"]] = SARGASSUM
    lab[fr["debris"] >= th["debris"]] = DEBRIS
    lab[fr["ship"] >= th["ship"]] = SHIP
    lab[land >= th["land"]] = LAND
    lab[shade >= th["cloud_shadow"]] = CLOUD_SHADOW
    lab[alpha >= th["cloud"]] = CLOUD
    lab[~valid] = 0
    return Rendered(a, lab, valid, fr)


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the last two axes (sizes must be multiples of factor)."""
    if factor == 1:
        return a
    out = a[..., 0::factor, 0::factor].astype(np.float32, copy=True)
    for i in range(factor):
        for j in range(factor):
            if i or j:
                out += a[..., i::factor, j::factor]
    out *= np.float32(1.0 / (factor * factor))
    return out


def mix_bands(abundances: np.ndarray, bands: tuple[str, ...], factor: int) -> np.ndarray:
    """Reflectance (len(bands), h/factor, w/factor) of block-averaged abundances, float32."""
    a = block_mean(abundances, factor)
    k, h, w = a.shape
    return (endmember_matrix(bands) @ a.reshape(k, -1)).reshape(len(bands), h, w)


def quantize(reflectance: np.ndarray, bands: tuple[str, ...], rng: np.random.Generator,
             valid: np.ndarray | None) -> np.ndarray:
    """Add sensor noise and scale to uint16 DN (reflectance x 10000; 0 = no data)."""
    sigma = np.array([NOISE_SIGMA[b] for b in bands], dtype=np.float32)[:, None, None]
    v = rng.standard_normal(reflectance.shape, dtype=np.float32)
    v *= sigma
    v += reflectance
    v *= np.float32(S2_QUANTIFICATION)
    np.rint(v, out=v)
    np.clip(v, 1.0, 65535.0, out=v)
    dn = v.astype(np.uint16)
    if valid is not None:
        dn[:, ~valid] = 0
    return dn


def block_all(mask: np.ndarray, factor: int) -> np.ndarray:
    """True where every pixel of a factor x factor block is True."""
    if factor == 1:
        return mask
    out = mask[0::factor, 0::factor].copy()
    for i in range(factor):
        for j in range(factor):
            out &= mask[i::factor, j::factor]
    return out


# --------------------------------------------------------------------------- in-memory patches
def render_patch(seed: int, shape_yx: tuple[int, int] = (512, 512), *, debris: bool = True
                 ) -> tuple[dict[str, np.ndarray], Rendered]:
    """A random scene in memory: 12 bands at 10 m (coarser bands repeated) and its rendered layers."""
    h, w = shape_yx
    hp, wp = -(-h // 12) * 12, -(-w // 12) * 12
    rng = np.random.default_rng([seed, 0x5EED])
    frame = PatchFrame(*rng.uniform(-3e5, 3e5, 2))
    world = random_world(seed, (frame.x0, frame.y0 - hp * PIXEL_M, frame.x0 + wp * PIXEL_M, frame.y0), debris=debris)
    r = render_window(world, frame, strokes_to_pixels(world.strokes, frame), 0, hp, 0, wp)
    bands: dict[str, np.ndarray] = {}
    for res, names in REFLECTANCE_BY_RESOLUTION.items():
        k = res // 10
        dn = quantize(mix_bands(r.abundances, names, k), names, rng, None)
        for name, arr in zip(names, dn, strict=True):
            full = np.repeat(np.repeat(arr, k, axis=0), k, axis=1) if k > 1 else arr
            bands[name] = (full[:h, :w].astype(np.float32) / np.float32(S2_QUANTIFICATION))
    crop = Rendered(r.abundances[:, :h, :w], r.labels[:h, :w], r.valid[:h, :w],
                    {k: v[:h, :w] for k, v in r.fractions.items()})
    return {b: bands[b] for b in REFLECTANCE_BANDS}, crop


def synthesize_scene(seed: int, shape_yx: tuple[int, int] = (512, 512), *, debris: bool = True
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One random scene in memory: float32 reflectance per band name at 10 m, and uint8 labels.

    Coarser bands are mixed at their native 20/60 m and repeated to 10 m, as a nearest
    resampling reader would give them. With ``debris=False`` the scene has no debris.
    """
    bands, rendered = render_patch(seed, shape_yx, debris=debris)
    return bands, rendered.labels
