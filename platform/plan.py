"""Tile plans: the output grid of a region, cut into tiles whose cores are whole output chunks."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from affine import Affine
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from shapely.geometry.base import BaseGeometry

from geoloom.platform.bands import band_info
from geoloom.platform.catalog import Scene, most_recent_first
from geoloom.platform.errors import PlanError
from geoloom.platform.reading import WarpGrid, block_size_for
from geoloom.platform.region import Region

DEFAULT_TILE_SIZE = 512
MAX_TILES = 2_000_000


@dataclass(frozen=True, slots=True)
class TileTask:
    """One tile: its core in the output grid and the grid it is read on (core + halo)."""

    row: int
    col: int
    key: str
    core_yx: tuple[int, int, int, int]  # y0, y1, x0, x1 in the output grid
    halo: int
    crs: str
    read_transform: tuple[float, ...]
    read_shape_yx: tuple[int, int]
    scene_ids: tuple[str, ...]

    @property
    def read_geobox(self) -> GeoBox:
        """The grid the tile is read on (core and halo)."""
        return GeoBox(self.read_shape_yx, Affine(*self.read_transform[:6]), self.crs)

    @property
    def core_shape_yx(self) -> tuple[int, int]:
        """Rows and columns of the tile's core."""
        y0, y1, x0, x1 = self.core_yx
        return (y1 - y0, x1 - x0)


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole job before any pixel is read: grid, tiles, scenes and bands."""

    region: Region
    crs: str
    resolution: float
    transform: tuple[float, ...]
    shape_yx: tuple[int, int]
    tile_size: int
    halo: int
    bands: tuple[str, ...]
    scenes: tuple[Scene, ...] = field(repr=False)
    tiles: tuple[TileTask, ...] = field(repr=False)

    @property
    def geobox(self) -> GeoBox:
        """The output grid."""
        return GeoBox(self.shape_yx, Affine(*self.transform[:6]), self.crs)

    @property
    def warp_grid(self) -> WarpGrid:
        """The grid every warp of this plan is anchored to (seamless tiles)."""
        return WarpGrid.around(self.geobox, halo=self.halo, block=block_size_for(self.tile_size))

    @property
    def scene_by_id(self) -> dict[str, Scene]:
        """The plan's scenes by id."""
        return {s.id: s for s in self.scenes}

    @property
    def token(self) -> str:
        """A short hash of what defines the output (grid, tiles, scenes, bands)."""
        return plan_token(self.crs, self.transform, self.shape_yx, self.tile_size, self.halo,
                          self.bands, [s.id for s in self.scenes])

    @property
    def grid_token(self) -> str:
        """A short hash of the grid alone (the tile keys' suffix): the same for every date of a place."""
        return plan_token(self.crs, self.transform, self.shape_yx, self.tile_size, self.halo, list(self.bands))

    def summary(self, *, mpx_per_s: float | None = None) -> dict[str, Any]:
        """What the run will do: tiles, pixels, bytes to read, scenes, and a time estimate."""
        read_px = sum(t.read_shape_yx[0] * t.read_shape_yx[1] for t in self.tiles)
        core_px = sum(t.core_shape_yx[0] * t.core_shape_yx[1] for t in self.tiles)
        bytes_read = 0
        for t in self.tiles:
            px_m2 = t.read_shape_yx[0] * t.read_shape_yx[1] * self.resolution**2
            for sid in t.scene_ids:
                for b in self.bands:
                    info = band_info(b)
                    native = info.resolution_m if info else self.resolution
                    bytes_read += int(px_m2 / native**2 * 2)
        out: dict[str, Any] = {
            "region": self.region.name,
            "area_km2": round(self.region.area_km2, 3),
            "crs": self.crs,
            "resolution_m": self.resolution,
            "grid_shape_yx": list(self.shape_yx),
            "tile_size": self.tile_size,
            "halo": self.halo,
            "tiles": len(self.tiles),
            "pixels": core_px,
            "pixels_read": read_px,
            "bytes_to_read": bytes_read,
            "scenes": [s.id for s in self.scenes],
            "bands": list(self.bands),
        }
        rate = mpx_per_s or 1.0  # Mpx/s of the model on one core; a cautious guess when the card has none
        out["estimated_seconds"] = round(read_px / 1e6 / rate + 0.05 * len(self.tiles), 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The plan as written into ``request.json``: what defines it (region, scenes, bands, grid) and,
        for readers, its grid and tile keys; :meth:`from_dict` rebuilds the same plan."""
        return {
            "region": self.region.to_dict(),
            "crs": self.crs,
            "resolution": self.resolution,
            "transform": list(self.transform),
            "shape_yx": list(self.shape_yx),
            "tile_size": self.tile_size,
            "halo": self.halo,
            "bands": list(self.bands),
            "token": self.token,
            "scenes": [s.to_dict() for s in self.scenes],
            "tiles": [t.key for t in self.tiles],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan :meth:`to_dict` wrote, planned again from what defines it (tiles are a pure function
        of region, scenes, bands and grid) and checked against the stored token."""
        plan = plan_tiles(Region.from_dict(data["region"]), [Scene.from_dict(s) for s in data["scenes"]],
                          bands=tuple(data["bands"]), resolution=float(data["resolution"]), halo=int(data["halo"]),
                          tile_size=int(data["tile_size"]), crs=data["crs"])
        if plan.token != data["token"] or list(plan.shape_yx) != list(data["shape_yx"]):
            raise PlanError(f"the stored plan {data['token']} does not rebuild (got {plan.token}); "
                            "it was written by another geoloom version: start the run again with --overwrite")
        return plan


def plan_token(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (tile keys and run ids)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def utm_crs_for(region: Region) -> str:
    """The UTM zone CRS of the region's centroid (antimeridian-aware)."""
    geom: BaseGeometry = region.geometry
    if region.crosses_antimeridian():
        parts = getattr(geom, "geoms", [geom])
        lon = sum(((p.centroid.x + 360) % 360) * p.area for p in parts) / sum(p.area for p in parts)
        lon = lon - 360 if lon > 180 else lon
        lat = geom.centroid.y
    else:
        lon, lat = region.centroid_lonlat
    return str(CRS.utm(lon, lat))


def output_geobox(region: Region, *, crs: str | None, resolution: float) -> GeoBox:
    """The output grid: the region's bounds in ``crs`` snapped to multiples of the resolution."""
    if not (resolution and math.isfinite(resolution) and resolution > 0):
        raise PlanError(f"resolution {resolution!r} must be a positive number of metres (e.g. 10)")
    try:
        target = CRS(crs) if crs else CRS(utm_crs_for(region))
    except Exception:
        raise PlanError(f"unknown CRS {crs!r}; give an EPSG code such as EPSG:32631") from None
    if target.geographic:
        raise PlanError(f"CRS {crs} is geographic (degrees); give a projected CRS in metres, e.g. a UTM zone")
    geom = Geometry(region.geometry, "epsg:4326").to_crs(target)
    return GeoBox.from_bbox(geom.boundingbox, target, resolution=resolution, anchor="edge")


def plan_tiles(
    region: Region,
    scenes: list[Scene] | tuple[Scene, ...],
    *,
    bands: tuple[str, ...] | list[str],
    resolution: float,
    halo: int,
    tile_size: int = DEFAULT_TILE_SIZE,
    crs: str | None = None,
) -> Plan:
    """Cut the region's output grid into tiles (cores = whole chunks) and name each tile's scenes.

    Scenes are kept in the compositor's order (:func:`most_recent_first`) whatever order they come
    in, so the scene a pixel takes its value from is a property of the plan, not of the caller.
    """
    if not isinstance(tile_size, int) or tile_size < 16 or tile_size > 8192:
        raise PlanError(f"tile size {tile_size!r} must be an integer between 16 and 8192 pixels (e.g. 512)")
    if halo < 0 or halo >= tile_size:
        raise PlanError(f"halo {halo} must be at least 0 and smaller than the tile size {tile_size}; raise --tile-size")
    scenes = most_recent_first(scenes)
    gbox = output_geobox(region, crs=crs, resolution=resolution)
    h_px, w_px = gbox.shape.yx
    ny, nx = -(-h_px // tile_size), -(-w_px // tile_size)
    if ny * nx > MAX_TILES:
        raise PlanError(f"the region needs {ny * nx} tiles (limit {MAX_TILES}); use a larger --tile-size or a smaller region")
    region_geom = Geometry(region.geometry, "epsg:4326").to_crs(gbox.crs).geom
    token = plan_token(str(gbox.crs), tuple(gbox.transform)[:6], gbox.shape.yx, tile_size, halo, list(bands))
    # every tile of the grid whose core touches the region (vectorised: plans of 100k+ tiles stay fast)
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij"))
    y0, x0 = rows * tile_size, cols * tile_size
    y1, x1 = np.minimum(y0 + tile_size, h_px), np.minimum(x0 + tile_size, w_px)
    t = gbox.transform
    cores = shapely.box(t.c + x0 * t.a, t.f + y1 * t.e, t.c + x1 * t.a, t.f + y0 * t.e)
    shapely.prepare(region_geom)
    keep = shapely.intersects(region_geom, cores) & ~shapely.touches(region_geom, cores)
    rows, cols, y0, x0, y1, x1 = (a[keep] for a in (rows, cols, y0, x0, y1, x1))
    left, top = t.c + (x0 - halo) * t.a, t.f + (y0 - halo) * t.e
    right, bottom = t.c + (x1 + halo) * t.a, t.f + (y1 + halo) * t.e
    boxes = shapely.box(left, bottom, right, top)
    cover = np.zeros((len(scenes), len(boxes)), dtype=bool)
    for i, scene in enumerate(scenes):
        footprint = Geometry(scene.footprint, "epsg:4326").to_crs(gbox.crs).geom
        cover[i] = shapely.intersects(footprint, boxes)
    crs = str(gbox.crs)
    tasks = [
        TileTask(
            row=int(rows[k]),
            col=int(cols[k]),
            key=f"tile-{rows[k]}-{cols[k]}-{token}",
            core_yx=(int(y0[k]), int(y1[k]), int(x0[k]), int(x1[k])),
            halo=halo,
            crs=crs,
            read_transform=(t.a, t.b, float(left[k]), t.d, t.e, float(top[k])),
            read_shape_yx=(int(y1[k] - y0[k]) + 2 * halo, int(x1[k] - x0[k]) + 2 * halo),
            scene_ids=tuple(scenes[i].id for i in np.flatnonzero(cover[:, k])),
        )
        for k in range(len(boxes))
    ]
    if not tasks:
        raise PlanError(f"the region {region.name} covers no output tile; check the region and resolution")
    used = {sid for t in tasks for sid in t.scene_ids}
    return Plan(
        region=region,
        crs=str(gbox.crs),
        resolution=float(resolution),
        transform=tuple(gbox.transform)[:6],
        shape_yx=tuple(gbox.shape.yx),
        tile_size=tile_size,
        halo=halo,
        bands=tuple(bands),
        scenes=tuple(s for s in scenes if s.id in used),
        tiles=tuple(tasks),
    )
