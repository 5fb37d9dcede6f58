"""Sample data over several dates: the acquisitions, and debris that drifts between them (more after rain)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np

from geoloom.platform.errors import GeoloomError
from geoloom.platform.scenes import Coast, Stroke, World, debris_cluster

# World metres: a local equirectangular frame at (LON0, LAT0), used only to lay the world out.
LON0, LAT0 = 0.0, 5.59
M_PER_DEG_X, M_PER_DEG_Y = 110_790.0, 110_590.0
BAY_LON = -0.040  # the bay of the sample-bay preset

BBox = tuple[float, float, float, float]  # (W, S, E, N) in longitude/latitude


class SampleDataError(GeoloomError, ValueError):
    """The sample-data options are invalid."""


def _wx(lon: float) -> float:
    """World x (metres) of a longitude."""
    return (lon - LON0) * M_PER_DEG_X


def _wy(lat: float) -> float:
    """World y (metres) of a latitude."""
    return (lat - LAT0) * M_PER_DEG_Y


def _inside(bbox_lonlat: BBox, lon: float, lat: float) -> bool:
    """Whether a longitude/latitude lies in the box."""
    w, s, e, n = bbox_lonlat
    return w <= lon <= e and s <= lat <= n


def _extent(bbox_lonlat: BBox) -> tuple[float, float, float, float]:
    """The box as (x0, y0, x1, y1) in world metres."""
    w, s, e, n = bbox_lonlat
    return _wx(w), _wy(s), _wx(e), _wy(n)


# --------------------------------------------------------------------------- the dates
@dataclass(frozen=True, slots=True)
class Acquisition:
    """One date: when, which satellite, how cloudy, and which side of a swath edge has data."""

    datetime: str
    platform: str
    cloud_threshold: float
    swath_edge_lon: float | None  # longitude of the swath edge at LAT0
    swath_valid_side: Literal["west", "east"] = "west"
    sun_azimuth: float = 140.0
    sun_elevation: float = 52.0

    def coverage(self) -> tuple[float, float, float, float] | None:
        """The swath edge as (x, y, nx, ny) in world metres; the normal points into the swath."""
        if self.swath_edge_lon is None:
            return None
        t = (math.sin(math.radians(12.0)), math.cos(math.radians(12.0)))  # ground track, NNE-SSW
        n = (-t[1], t[0]) if self.swath_valid_side == "west" else (t[1], -t[0])
        return _wx(self.swath_edge_lon), 0.0, n[0], n[1]

    def shadow_offset(self, cloud_height_m: float = 1200.0) -> tuple[float, float]:
        """How far (world metres x, y) cloud shadows fall from their clouds on this date."""
        d = cloud_height_m / math.tan(math.radians(self.sun_elevation))
        az = math.radians(self.sun_azimuth)
        return d * math.sin(az), d * math.cos(az)


ACQUISITIONS: tuple[Acquisition, ...] = (
    Acquisition("2024-01-09T10:26:41Z", "sentinel-2a", 0.64, 0.12, "west"),
    Acquisition("2024-01-14T10:26:39Z", "sentinel-2b", 0.585, -0.115, "east"),
)
REVISIT_DAYS = 5  # between the generated dates after ACQUISITIONS


def _when(acq: Acquisition) -> datetime:
    """The acquisition's time as an aware UTC datetime."""
    return datetime.fromisoformat(acq.datetime.replace("Z", "+00:00"))


def sample_acquisition(index: int) -> Acquisition:
    """Date ``index`` of the sample: ACQUISITIONS, then one every 5 days, Sentinel-2A and 2B in turn."""
    if index < 0:
        raise SampleDataError(f"acquisition index must be >= 0, not {index}.")
    if index < len(ACQUISITIONS):
        return ACQUISITIONS[index]
    rng = np.random.default_rng([index, 0xDA7E])
    when = _when(ACQUISITIONS[-1]) + timedelta(days=REVISIT_DAYS * (index - len(ACQUISITIONS) + 1),
                                              seconds=int(rng.integers(-3, 4)))
    edge, side = ((0.12, "west"), (-0.115, "east"), (None, "west"))[index % 3]
    azimuth, elevation = _sun_angles(when)
    return Acquisition(when.strftime("%Y-%m-%dT%H:%M:%SZ"), ("sentinel-2a", "sentinel-2b")[index % 2],
                       round(float(rng.uniform(0.575, 0.68)), 3), edge, side, azimuth, elevation)


def _sun_angles(when: datetime) -> tuple[float, float]:
    """Approximate sun azimuth and elevation (degrees) over the sample area at ``when`` (UTC)."""
    g = 2 * math.pi * (when.timetuple().tm_yday - 1) / 365
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g))
    eot_min = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g) - 0.014615 * math.cos(2 * g)
                        - 0.040849 * math.sin(2 * g))
    hours = when.hour + when.minute / 60 + when.second / 3600 + (eot_min + 4 * LON0) / 60
    ha, lat = math.radians(15 * (hours - 12)), math.radians(LAT0)
    sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    el = math.asin(sin_el)
    cos_az = (math.sin(decl) - sin_el * math.sin(lat)) / (math.cos(el) * math.cos(lat))
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    return round(az if ha < 0 else 360.0 - az, 1), round(math.degrees(el), 1)


def _rain(seed: int, acquisition: int) -> bool:
    """Whether it rained before this date (from the fifth date on): the river washes debris into the bay."""
    return acquisition == 4 or (acquisition > 4 and np.random.default_rng([seed, acquisition, 0x8A1]).random() < 0.2)


# --------------------------------------------------------------------------- the coast and the debris
@dataclass(frozen=True, slots=True)
class _Cluster:
    """A debris convergence zone on one date, in world metres: in the bay, on the front at 0 E, or drifting."""

    x: float
    y: float
    radius: float
    windrows: int
    patches: int
    kind: Literal["bay", "front", "drift"] = "drift"
    heading: float | None = None


def _coast(seed: int) -> Coast:
    """The sample coast of a seed: the same on every date."""
    base = np.random.SeedSequence([seed, 0xC0A57]).generate_state(4)
    return Coast(seed=int(base[0]), offset_m=_wy(5.6375), slope=0.025 * M_PER_DEG_Y / (0.3 * M_PER_DEG_X),
                 bays=((_wx(BAY_LON), 0.016 * M_PER_DEG_X, 0.011 * M_PER_DEG_Y),), wiggle_m=120.0)


def _water_km2(coast: Coast, bbox_lonlat: BBox) -> float:
    """Roughly how many square kilometres of the box are sea."""
    x0, y0, x1, y1 = _extent(bbox_lonlat)
    grid = np.stack(np.meshgrid(np.linspace(x0, x1, 40), np.linspace(y0, y1, 40)), -1).reshape(-1, 2)
    return (x1 - x0) * (y1 - y0) / 1e6 * float(np.mean(coast.signed_distance(grid[:, 0], grid[:, 1]) < 0))


def _first_debris(rng: np.random.Generator, world: World, bbox_lonlat: BBox,
                  water_km2: float) -> tuple[list[Stroke], list[_Cluster]]:
    """Debris of the first two dates: in the bay, across the zone border, and in convergence zones offshore."""
    strokes: list[Stroke] = []
    clusters: list[_Cluster] = []
    if _inside(bbox_lonlat, BAY_LON, 5.630):
        clusters.append(_Cluster(_wx(BAY_LON + rng.normal(0, 0.001)), _wy(5.631), 650.0, 5, 6, "bay"))
        strokes += debris_cluster(rng, world, clusters[-1].x, _wy(5.631), radius=650.0, windrows=5, patches=6)
    if _inside(bbox_lonlat, 0.0, 5.548):
        h = rng.normal(0.0, 0.15)
        clusters.append(_Cluster(0.0, _wy(5.548), 900.0, 5, 5, "front", h))
        strokes += debris_cluster(rng, world, 0.0, _wy(5.548), radius=900.0, windrows=5, patches=5, heading=h)
        # ... and one windrow centred on the meridian, so that it surely crosses the zone border
        strokes += debris_cluster(rng, world, 0.0, _wy(5.5485), radius=0.0, windrows=1, patches=0, heading=h)
    for _ in range(max(1, round(water_km2 / 45.0))):
        x, y = world.sea_spot(rng, _extent(bbox_lonlat), 300.0)
        c = _Cluster(x, y, rng.uniform(300, 1200), int(rng.integers(3, 8)), int(rng.integers(2, 8)))
        clusters.append(c)
        strokes += debris_cluster(rng, world, x, y, radius=c.radius, windrows=c.windrows, patches=c.patches)
    return strokes, clusters


@lru_cache(maxsize=64)
def _clusters(seed: int, acquisition: int, bbox_lonlat: BBox) -> tuple[_Cluster, ...]:
    """The debris clusters on a date after the first two: those of the date before, moved on by one step."""
    coast = _coast(seed)
    world = World(seed=0, coast=coast)
    if acquisition == len(ACQUISITIONS):
        rng = np.random.default_rng([seed, acquisition - 1, 0x0B])  # as the second date drew them
        before = tuple(_first_debris(rng, world, bbox_lonlat, _water_km2(coast, bbox_lonlat))[1])
    else:
        before = _clusters(seed, acquisition - 1, bbox_lonlat)
    return tuple(_drift_step(seed, acquisition, before, coast, bbox_lonlat))


def _drift_step(seed: int, acquisition: int, before: tuple[_Cluster, ...], coast: Coast,
                bbox_lonlat: BBox) -> list[_Cluster]:
    """Clusters drift with the current (fixed per seed, plus noise); some disperse or strand, new ones form."""
    world = World(seed=0, coast=coast)
    current = np.random.default_rng([seed, 0xC022E])
    heading0, speed0 = current.uniform(-0.5, 0.3), current.uniform(250.0, 450.0)  # radians from east, m/day
    rng = np.random.default_rng([seed, acquisition, 0xD71F7])
    days = (_when(sample_acquisition(acquisition)) - _when(sample_acquisition(acquisition - 1))).total_seconds() / 86400
    heading, speed = heading0 + rng.normal(0.0, 0.3), speed0 * math.exp(rng.normal(0.0, 0.2))
    ux, uy = days * speed * math.cos(heading), days * speed * math.sin(heading)
    x0, y0, x1, y1 = _extent(bbox_lonlat)
    rain = _rain(seed, acquisition)
    out: list[_Cluster] = []
    if _inside(bbox_lonlat, BAY_LON, 5.630) and (rng.random() > 0.15 or rain):  # debris gathers in the bay
        size = 1.0 if rain else rng.uniform(0.25, 1.0)
        out.append(_Cluster(_wx(BAY_LON) + rng.normal(0, 120.0), _wy(5.631) + rng.normal(0, 60.0), 250 + 650 * size,
                            int(round(1 + 7 * size)), int(round(1 + 8 * size)), "bay"))
    for c in before:
        if c.kind == "front":  # a persistent front near the meridian, wandering with the current
            fy = _wy(5.548)
            x = float(np.clip(0.5 * c.x + 0.2 * ux + rng.normal(0.0, 250.0), -1500.0, 1500.0))
            y = fy + 0.5 * (c.y - fy) + 0.1 * uy + rng.normal(0.0, 150.0)
            out.append(_Cluster(x, y, rng.uniform(600.0, 1100.0), int(rng.integers(3, 7)), int(rng.integers(2, 7)),
                                "front", (c.heading or 0.0) + rng.normal(0.0, 0.2)))
        elif c.kind == "drift":
            x, y = c.x + ux + rng.normal(0.0, 400.0), c.y + uy + rng.normal(0.0, 400.0)
            gone = rng.random() < 0.12 or not (x0 - 1000 <= x <= x1 + 1000 and y0 - 1000 <= y <= y1 + 1000)
            if not world.is_water(x, y, 250.0)[0]:  # on the shore: half strands, half washes back out
                gone = gone or rng.random() < 0.5
                y = float(coast.line(np.array([x]))[0]) - rng.uniform(400.0, 900.0)
            radius = min(1600.0, c.radius * rng.uniform(1.0, 1.25))
            windrows = int(np.clip(c.windrows + rng.integers(-1, 2), 1, 8))
            patches = int(np.clip(c.patches + rng.integers(-2, 3), 0, 9))
            if not gone:
                out.append(_Cluster(x, y, radius, windrows, patches))
    target = max(1, round(_water_km2(coast, bbox_lonlat) / 45.0))
    for _ in range(int(rng.poisson(1.0)) + max(0, target - 2 - sum(c.kind == "drift" for c in out))):
        x, y = world.sea_spot(rng, (x0, y0, x1, y1), 300.0)
        out.append(_Cluster(x, y, rng.uniform(300, 1200), int(rng.integers(3, 8)), int(rng.integers(2, 8))))
    if rain and _inside(bbox_lonlat, BAY_LON, 5.630):  # fresh debris off the river mouth; it drifts from here
        mx, my, inland = coast.point(_wx(BAY_LON))
        out.append(_Cluster(mx - 550.0 * math.cos(inland), my - 550.0 * math.sin(inland), 450.0, 6, 9))
    return out


def _drifted_debris(rng: np.random.Generator, world: World, clusters: tuple[_Cluster, ...]) -> list[Stroke]:
    """Debris strokes of a later date: windrows re-form along the day's wind in each cluster."""
    wind = rng.uniform(0.0, math.pi)
    strokes: list[Stroke] = []
    for c in clusters:
        h = c.heading if c.kind == "front" else wind + rng.normal(0.0, 0.25)
        strokes += debris_cluster(rng, world, c.x, c.y, radius=c.radius, windrows=c.windrows, patches=c.patches,
                                  heading=h)
        if c.kind == "front":  # one windrow on the front's centre line
            strokes += debris_cluster(rng, world, c.x, c.y + 55.0, radius=0.0, windrows=1, patches=0, heading=h)
    return strokes
