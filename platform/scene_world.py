"""The world behind the generated scenes: smooth noise fields and what is on the ground or in the air.

A :class:`World` holds everything that is on the ground (or in the air) at one date:
a coastline, river plumes, clouds, and vector strokes for debris windrows, Sargassum
mats, ships, wakes and rivers, all in world metres. Smooth fields are hashed-lattice
value noise evaluated at world coordinates, so they are pure functions of position:
overlapping scenes in different CRSs agree. :mod:`geoloom.platform.scenes` renders a
world into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "Clouds", "Coast", "Frame", "PIXEL_M", "PatchFrame", "Plume", "Stroke", "World", "debris_cluster", "fbm",
    "random_world", "river", "sargassum_group", "ship", "smoothstep", "value_noise",
]

#: Pixel size of a scene frame in metres (the 10 m bands).
PIXEL_M = 10.0


# --------------------------------------------------------------------------- noise
def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A well-mixed uint32 hash of lattice points and a seed."""
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


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1, a smooth cubic between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


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
        """Cloud opacity in [0, 1] at world metres (x, y), thinned around the ``clear`` spots."""
        n = fbm(x, y, self.seed, scale=self.scale_m, octaves=5)
        for cx, cy, r in self.clear:
            n = n - 0.4 * np.exp(-(np.square(x - cx) + np.square(y - cy)) / (r * r))
        return smoothstep(self.threshold, self.threshold + self.softness, n)

    def shadow(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Shadow strength at (x, y): the opacity of the cloud offset by the shadow shift."""
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

    def world_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World metres (x, y) of pixel positions (rows, cols)."""

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel positions (cols, rows) of world metres (x, y)."""


@dataclass(frozen=True, slots=True)
class PatchFrame:
    """A north-up frame whose pixel (0, 0) corner sits at world (x0, y0)."""

    x0: float
    y0: float

    def world_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World metres (x, y) of pixel positions (rows, cols)."""
        rows, cols = np.broadcast_arrays(rows, cols)
        return self.x0 + cols * PIXEL_M, self.y0 - rows * PIXEL_M

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel positions (cols, rows) of world metres (x, y)."""
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


# --------------------------------------------------------------------------- random worlds
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
