"""Procedural Sentinel-2-like scene synthesis, window by window.

A :class:`World` holds everything that is on the ground (or in the air) at one date:
a coastline, river plumes, clouds, and vector strokes for debris windrows, Sargassum
mats, ships, wakes and rivers, all in world metres. Smooth fields are hashed-lattice
value noise evaluated at world coordinates on a node grid every ``NODE_STEP`` pixels and
interpolated bilinearly; strokes are rasterised with exact sub-pixel widths. Every window
of a scene is therefore a pure function of the world, the pixel frame and the window
position: windows join seamlessly, and overlapping scenes in different CRSs agree.

The output of :func:`render_window` is a stack of per-pixel abundances (one per
endmember of :mod:`geoloom.platform.spectra`) plus the label raster. Reflectance is a
linear mix of endmember spectra, so coarser bands are mixed from block-averaged
abundances, which equals averaging the 10 m reflectance (:func:`mix_bands`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS, band_info
from geoloom.platform.classes import (
    CLOUD, CLOUD_SHADOW, DEBRIS, FOAM, LAND, SARGASSUM, SHIP, TURBID, WATER,
)
from geoloom.platform.spectra import ENDMEMBER_NAMES, NOISE_SIGMA, SHADOW_ATTENUATION, endmember_matrix

__all__ = [
    "Clouds", "Coast", "Frame", "LABEL_THRESHOLDS", "NODE_STEP", "PatchFrame", "Plume", "Rendered",
    "Stroke", "World", "debris_cluster", "fbm", "mix_bands", "quantize", "render_patch",
    "render_window", "river", "sargassum_group", "ship", "strokes_to_pixels", "synthesize_scene",
    "value_noise",
]

PIXEL_M = 10.0
#: Node spacing of the smooth fields, in 10 m pixels (window offsets must be multiples of 12).
NODE_STEP = 4

#: A pixel gets a class when that class covers at least this fraction of it (debris: 25%).
LABEL_THRESHOLDS: dict[str, float] = {
    "debris": 0.25, "ship": 0.5, "sargassum": 0.5, "foam": 0.4, "turbid": 0.5,
    "land": 0.5, "cloud": 0.5, "cloud_shadow": 0.5,
}

_K = {name: i for i, name in enumerate(ENDMEMBER_NAMES)}


# --------------------------------------------------------------------------- noise
def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    h = (ix * np.uint32(0x8DA6B343)) ^ (iy * np.uint32(0xD8163841)) ^ np.uint32(seed & 0xFFFFFFFF)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x7FEB352D)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x846CA68B)
    h ^= h >> np.uint32(16)
    return h


def value_noise(x: np.ndarray, y: np.ndarray | float, seed: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1) at (x, y), deterministic in the seed and coordinates."""
    x = np.asarray(x, dtype=np.float64)
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
    xf, yf = np.floor(x), np.floor(y)
    tx, ty = x - xf, y - yf
    tx = tx * tx * tx * (tx * (tx * 6.0 - 15.0) + 10.0)
    ty = ty * ty * ty * (ty * (ty * 6.0 - 15.0) + 10.0)
    ix = xf.astype(np.int64).astype(np.uint32)
    iy = yf.astype(np.int64).astype(np.uint32)
    one = np.uint32(1)
    scale = 1.0 / 4294967296.0
    v00 = _hash(ix, iy, seed) * scale
    v10 = _hash(ix + one, iy, seed) * scale
    v01 = _hash(ix, iy + one, seed) * scale
    v11 = _hash(ix + one, iy + one, seed) * scale
    top = v00 + (v10 - v00) * tx
    bottom = v01 + (v11 - v01) * tx
    return top + (bottom - top) * ty


def fbm(x: np.ndarray, y: np.ndarray, seed: int, *, scale: float, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of rotated value-noise octaves at world metres (x, y); mean about 0.5."""
    total = np.zeros(np.shape(x), dtype=np.float64)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        a = 0.61 + 1.37 * o
        c, s = math.cos(a), math.sin(a)
        f = (2.0**o) / scale
        total += amp * value_noise((x * c - y * s) * f + 17.3 * o, (x * s + y * c) * f - 5.1 * o, seed + 7919 * o)
        norm += amp
        amp *= gain
    return total / norm


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


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


# --------------------------------------------------------------------------- world
@dataclass(frozen=True, slots=True, eq=False)
class Stroke:
    """A thick polyline in world metres: debris windrow, Sargassum mat, ship hull, wake, river."""

    kind: str  # "debris" | "sargassum" | "ship" | "foam" | "river"
    xy: np.ndarray  # (n, 2)
    width_m: np.ndarray  # (n,)
    density: np.ndarray  # (n,) areal cover of the material inside the stroke, 0..1


@dataclass(frozen=True, slots=True)
class Coast:
    """Land where the along-shore coordinate v exceeds c(u); u, v are X, Y rotated by ``angle``."""

    seed: int
    offset_m: float
    angle: float = 0.0
    slope: float = 0.0
    bays: tuple[tuple[float, float, float], ...] = ()  # (u centre, half width, depth) in metres
    wiggle_m: float = 120.0

    def _uv(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return x * c + y * s, -x * s + y * c

    def line(self, u: np.ndarray) -> np.ndarray:
        """v of the shoreline at along-shore position u (metres)."""
        u = np.asarray(u, dtype=np.float64)
        v = self.offset_m + self.slope * u
        v = v + self.wiggle_m * 4.0 * (value_noise(u / 7000.0, 0.75, self.seed + 2) - 0.5)
        v = v + self.wiggle_m * 2.0 * (fbm(u, 0.5, self.seed, scale=1800.0, octaves=3) - 0.5)
        v = v + self.wiggle_m * 0.6 * (value_noise(u / 350.0, 0.25, self.seed + 1) - 0.5)
        for centre, half, depth in self.bays:  # a broad head, smooth shoulders, a little lopsided
            t = np.clip((u - centre) / half, -1.0, 1.0)
            v = v + depth * (1.0 - np.abs(t) ** 2.5) ** 1.5 * (1.0 + 0.2 * t)
        return v

    def signed_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Approximate distance to the shore in metres, positive on land."""
        u, v = self._uv(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        lo, hi = float(u.min()) - 10.0, float(u.max()) + 10.0
        if u.size > 64 and (hi - lo) / 5.0 < u.size:  # many points: tabulate the shoreline every 5 m
            grid = np.linspace(lo, hi, int((hi - lo) / 5.0) + 2)
            table = self.line(grid)
            c = np.interp(u, grid, table)
            dc = np.interp(u, grid[1:-1], (table[2:] - table[:-2]) / (grid[2:] - grid[:-2]))
        else:
            c = self.line(u)
            dc = (self.line(u + 5.0) - self.line(u - 5.0)) / 10.0
        return (v - c) / np.sqrt(1.0 + dc * dc)

    def point(self, u: float) -> tuple[float, float, float]:
        """World (x, y) of the shore at u, and the landward normal angle."""
        v = float(self.line(np.array([u]))[0])
        dv = float((self.line(np.array([u + 5.0])) - self.line(np.array([u - 5.0])))[0] / 10.0)
        c, s = math.cos(self.angle), math.sin(self.angle)
        normal = self.angle + math.pi / 2 - math.atan(dv)
        return u * c - v * s, u * s + v * c, normal


@dataclass(frozen=True, slots=True)
class Plume:
    """Sediment plume from a river mouth, bending with the along-shore current."""

    x: float
    y: float
    heading: float  # radians from east, seaward
    length_m: float
    width_m: float
    bend: float = 0.0  # lateral drift (fraction of the length) at one length out
    strength: float = 0.95
    seed: int = 0

    def turbidity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Turbidity 0..1 at world (x, y); zero beyond a few plume lengths from the mouth."""
        reach = 4.0 * (self.length_m + self.width_m)
        near = (np.abs(x - self.x) < reach) & (np.abs(y - self.y) < reach)
        out = np.zeros(np.shape(x))
        if near.any():
            out[near] = self._near(x[near], y[near])
        return out

    def _near(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.x, y - self.y
        c, s = math.cos(self.heading), math.sin(self.heading)
        along = dx * c + dy * s
        a = np.maximum(along, 0.0)
        width = self.width_m * (0.35 + a / self.length_m)
        lateral = -dx * s + dy * c - self.bend * a * a / self.length_m
        lateral = lateral + 1.2 * width * (fbm(x, y, self.seed, scale=0.8 * self.length_m, octaves=3) - 0.5)
        fade_in = np.exp(-np.square(np.minimum(along, 0.0) / 150.0))
        return self.strength * np.exp(-a / self.length_m) * np.exp(-0.5 * np.square(lateral / width)) * fade_in


@dataclass(frozen=True, slots=True)
class Clouds:
    """Cumulus field: opacity rises from 0 to 1 where fbm noise crosses ``threshold``."""

    seed: int
    threshold: float
    softness: float = 0.08
    scale_m: float = 2600.0
    shadow_dx_m: float = 700.0  # world offset from a shadow to the cloud casting it
    shadow_dy_m: float = -700.0
    clear: tuple[tuple[float, float, float], ...] = ()  # (x, y, radius): spots kept free of cloud

    def opacity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = fbm(x, y, self.seed, scale=self.scale_m, octaves=5)
        for cx, cy, r in self.clear:
            n = n - 0.4 * np.exp(-(np.square(x - cx) + np.square(y - cy)) / (r * r))
        return _smoothstep(self.threshold, self.threshold + self.softness, n)

    def shadow(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.opacity(x + self.shadow_dx_m, y + self.shadow_dy_m)


@dataclass(frozen=True, slots=True, eq=False)
class World:
    """Everything on the ground and in the air at one date, in world metres."""

    seed: int
    coast: Coast | None = None
    clouds: Clouds | None = None
    plumes: tuple[Plume, ...] = ()
    strokes: tuple[Stroke, ...] = ()

    def is_water(self, x: np.ndarray | float, y: np.ndarray | float, margin_m: float = 0.0) -> np.ndarray:
        """True where (x, y) lies at sea, at least ``margin_m`` from the shore."""
        x, y = np.atleast_1d(np.asarray(x, dtype=np.float64)), np.atleast_1d(np.asarray(y, dtype=np.float64))
        if self.coast is None:
            return np.ones(x.shape, dtype=bool)
        return self.coast.signed_distance(x, y) < -margin_m

    def sea_spot(self, rng: np.random.Generator, extent_xy: tuple[float, float, float, float],
                 margin_m: float) -> tuple[float, float]:
        """A random point at sea inside extent (x0, y0, x1, y1); the centre if none is found."""
        x0, y0, x1, y1 = extent_xy
        px, py = rng.uniform(x0, x1, 64), rng.uniform(y0, y1, 64)
        ok = np.flatnonzero(self.is_water(px, py, margin_m))
        return (float(px[ok[0]]), float(py[ok[0]])) if ok.size else ((x0 + x1) / 2, (y0 + y1) / 2)


class Frame(Protocol):
    """Maps pixel positions (10 m pixels, top-left origin) of one scene to world metres and back."""

    def world_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class PatchFrame:
    """A north-up frame whose pixel (0, 0) corner sits at world (x0, y0)."""

    x0: float
    y0: float

    def world_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.broadcast_arrays(rows, cols)
        return self.x0 + cols * PIXEL_M, self.y0 - rows * PIXEL_M

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(x) - self.x0) / PIXEL_M, (self.y0 - np.asarray(y)) / PIXEL_M


# --------------------------------------------------------------------------- object makers
def _smooth_random(rng: np.random.Generator, n: int, k: int = 5) -> np.ndarray:
    v = np.convolve(rng.random(n + k - 1), np.ones(k) / k, mode="valid")
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else np.full(n, 0.5)


def _polyline(rng: np.random.Generator, x: float, y: float, heading: float, length: float,
              step: float, wander: float, meander: float = 0.0) -> np.ndarray:
    n = max(2, int(length / step) + 1)
    along = np.arange(n) * step
    curvature = rng.normal(0.0, 0.5 / max(length, 1.0))
    theta = heading + curvature * (along - along.mean()) + np.cumsum(rng.normal(0.0, wander, n))
    if meander:
        theta = theta + meander * 2.0 * (_smooth_random(rng, n, 9) - 0.5)
    pts = np.cumsum(np.stack([np.cos(theta), np.sin(theta)], axis=1) * step, axis=0)
    return pts - pts.mean(axis=0) + (x, y)


def _taper(n: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)
    return np.clip(np.sin(np.pi * s) * 1.6, 0.15, 1.0)


def _at_sea(world: World, strokes: list[Stroke], margin_m: float) -> list[Stroke]:
    """The strokes whose points all lie at sea."""
    if not strokes or world.coast is None:
        return strokes
    xy = np.concatenate([st.xy for st in strokes])
    wet = world.is_water(xy[:, 0], xy[:, 1], margin_m)
    keep, i = [], 0
    for st in strokes:
        if wet[i:i + len(st.xy)].all():
            keep.append(st)
        i += len(st.xy)
    return keep


def debris_cluster(rng: np.random.Generator, world: World, x: float, y: float, *, radius: float,
                   windrows: int, patches: int, heading: float | None = None) -> list[Stroke]:
    """Debris in a convergence zone: roughly aligned thin windrows plus small dense patches."""
    h0 = rng.uniform(0, np.pi) if heading is None else heading
    out: list[Stroke] = []
    for _ in range(windrows):
        r, a = radius * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        cx, cy = x + r * math.cos(a), y + r * math.sin(a)
        length = rng.uniform(250.0, 1400.0)
        pts = _polyline(rng, cx, cy, h0 + rng.normal(0, 0.2), length, 20.0, 0.02)
        n = len(pts)
        width = rng.uniform(2.5, 12.0) * (0.25 + 0.75 * _smooth_random(rng, n)) * _taper(n)
        density = np.clip(0.5 + 0.5 * _smooth_random(rng, n), 0.2, 1.0)
        out.append(Stroke("debris", pts, width, density))
    for _ in range(patches):
        r, a = radius * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        cx, cy = x + r * math.cos(a), y + r * math.sin(a)
        pts = _polyline(rng, cx, cy, rng.uniform(0, np.pi), rng.uniform(8.0, 40.0), 8.0, 0.0)
        out.append(Stroke("debris", pts, np.full(len(pts), rng.uniform(6.0, 22.0)),
                          np.full(len(pts), rng.uniform(0.55, 1.0))))
    return _at_sea(world, out, 60.0)


def sargassum_group(rng: np.random.Generator, world: World, x: float, y: float, *, radius: float,
                    mats: int) -> list[Stroke]:
    """Drifting Sargassum: mats tens of metres wide and hundreds long, aligned with the wind."""
    h0 = rng.uniform(0, np.pi)
    out: list[Stroke] = []
    for _ in range(mats):
        r, a = radius * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        cx, cy = x + r * math.cos(a), y + r * math.sin(a)
        pts = _polyline(rng, cx, cy, h0 + rng.normal(0, 0.3), rng.uniform(80.0, 650.0), 20.0, 0.03)
        n = len(pts)
        width = rng.uniform(12.0, 50.0) * (0.35 + 0.65 * _smooth_random(rng, n)) * _taper(n)
        density = np.clip(0.55 + 0.45 * _smooth_random(rng, n), 0.0, 1.0)
        out.append(Stroke("sargassum", pts, width, density))
    return _at_sea(world, out, 40.0)


def ship(rng: np.random.Generator, x: float, y: float, heading: float, length: float, *,
         moving: bool) -> list[Stroke]:
    """A ship hull (bright, a few pixels) and, if under way, its turbulent foam wake."""
    c, s = math.cos(heading), math.sin(heading)
    beam = length / 6.5
    hull = np.array([[x - c * length / 2, y - s * length / 2], [x + c * length / 2, y + s * length / 2]])
    out = [Stroke("ship", hull, np.array([beam, beam * 0.55]), np.ones(2))]
    if moving:
        wake_len = length * rng.uniform(6.0, 14.0)
        d = np.linspace(0.0, wake_len, 14)
        sway = np.cumsum(rng.normal(0, 0.004, d.size)) * d
        pts = np.stack([hull[0, 0] - c * d - s * sway, hull[0, 1] - s * d + c * sway], axis=1)
        width = beam * (1.0 + 3.0 * d / wake_len)
        density = 0.8 * np.exp(-2.5 * d / wake_len)
        out.append(Stroke("foam", pts, width, density))
    return out


def river(rng: np.random.Generator, x: float, y: float, inland: float, length: float, width: float) -> Stroke:
    """A meandering river channel from its mouth at (x, y) inland; starts 60 m out to sea."""
    pts = _polyline(rng, 0.0, 0.0, inland, length, 30.0, 0.01, meander=0.9)
    pts = pts - pts[0] + (x - 60.0 * math.cos(inland), y - 60.0 * math.sin(inland))
    n = len(pts)
    return Stroke("river", pts, width * np.linspace(1.4, 0.6, n), np.ones(n))


# --------------------------------------------------------------------------- rasterising
@dataclass(frozen=True, slots=True, eq=False)
class _PixelStroke:
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
    urban = _smoothstep(0.45, 0.65, fbm(x, y, s + 22, scale=1600.0, octaves=4)) * (
        0.25 + 0.75 * np.exp(-np.maximum(dist, 0.0) / 5000.0))
    veg_share = _smoothstep(0.3, 0.7, fbm(x, y, s + 23, scale=900.0, octaves=4)
                            + 0.2 * (fbm(x, y, s + 27, scale=140.0, octaves=2) - 0.5))
    water_mod = 0.94 + 0.12 * fbm(x, y, s + 24, scale=700.0, octaves=3)
    glint = 0.0012 * _smoothstep(0.5, 0.8, fbm(x, y, s + 25, scale=160.0, octaves=2))
    surf = 0.8 * np.exp(-np.maximum(-dist, 0.0) / 40.0) * _smoothstep(30.0, 0.0, dist) * (
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
    v *= np.float32(10000.0)
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
def random_world(seed: int, extent_xy: tuple[float, float, float, float], *, debris: bool = True) -> World:
    """A random coastal or open-sea world covering extent (x0, y0, x1, y1) in metres."""
    rng = np.random.default_rng([seed, 0xB0A7])
    x0, y0, x1, y1 = extent_xy
    cx, cy, span = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    coast = None
    if rng.random() < 0.4:
        angle = rng.uniform(0, 2 * np.pi)
        c, s = math.cos(angle), math.sin(angle)
        u_centre, v_centre = cx * c + cy * s, -cx * s + cy * c
        slope = rng.normal(0, 0.1)
        offset = v_centre - slope * u_centre + rng.uniform(0.1, 0.45) * span  # the coast crosses the patch
        coast = Coast(seed=int(rng.integers(2**31)), offset_m=offset, angle=angle, slope=slope,
                      wiggle_m=rng.uniform(40, 200))
    clouds = None
    if rng.random() < 0.5:
        az = rng.uniform(100, 170) * np.pi / 180
        d = rng.uniform(400, 1400)
        clouds = Clouds(seed=int(rng.integers(2**31)), threshold=rng.uniform(0.55, 0.7),
                        scale_m=rng.uniform(1200, 3000), shadow_dx_m=d * math.sin(az), shadow_dy_m=d * math.cos(az))
    world = World(seed=seed, coast=coast, clouds=clouds)
    strokes: list[Stroke] = []
    plume_list: list[Plume] = []
    if coast is not None and rng.random() < 0.6:
        u_centre = cx * math.cos(coast.angle) + cy * math.sin(coast.angle)
        mx, my, inland = coast.point(u_centre + rng.uniform(-0.3, 0.3) * span)
        plume_list.append(Plume(mx, my, inland + np.pi, rng.uniform(400, 1500), rng.uniform(100, 300),
                                bend=rng.normal(0, 0.4), seed=int(rng.integers(2**31))))
        strokes.append(river(rng, mx, my, inland, span, rng.uniform(25, 60)))

    def spot() -> tuple[float, float]:
        return world.sea_spot(rng, extent_xy, 150.0)

    n_debris = int(rng.integers(1, 4)) if debris else 0
    for attempt in range(20):
        if attempt >= n_debris and (not debris or any(st.kind == "debris" for st in strokes)):
            break
        strokes += debris_cluster(rng, world, *spot(), radius=rng.uniform(150, 0.3 * span),
                                  windrows=int(rng.integers(2, 6)), patches=int(rng.integers(1, 6)))
    if rng.random() < 0.35:
        strokes += sargassum_group(rng, world, *spot(), radius=0.25 * span, mats=int(rng.integers(2, 8)))
    for _ in range(int(rng.integers(0, 4))):
        strokes += ship(rng, *spot(), rng.uniform(0, 2 * np.pi), rng.uniform(30, 220), moving=rng.random() < 0.6)
    return World(seed=seed, coast=coast, clouds=clouds, plumes=tuple(plume_list), strokes=tuple(strokes))


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
    for res in (10, 20, 60):
        names = tuple(b for b in REFLECTANCE_BANDS if band_info(b).resolution_m == res)
        k = res // 10
        dn = quantize(mix_bands(r.abundances, names, k), names, rng, None)
        for name, arr in zip(names, dn, strict=True):
            full = np.repeat(np.repeat(arr, k, axis=0), k, axis=1) if k > 1 else arr
            bands[name] = (full[:h, :w].astype(np.float32) / np.float32(10000.0))
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
