"""Scenes from a static STAC catalog: open it, search it by region, dates and clouds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from geoloom.platform.bands import CATEGORICAL_BANDS, band_info, canonical_band
from geoloom.platform.errors import CatalogError, DateError, NoImageryError
from geoloom.platform.region import Region

NON_IMAGERY_ROLES = frozenset({"labels", "thumbnail", "overview", "metadata", "visual"})


@dataclass(frozen=True, slots=True)
class AssetRef:
    """One band of one scene: where to read it and how to turn its numbers into physical values."""

    href: str
    band: str
    bidx: int = 1
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = 0.0


@dataclass(frozen=True, slots=True)
class Scene:
    """One acquisition: its id, time, cloud cover, footprint (EPSG:4326) and band assets."""

    id: str
    datetime: str
    cloud_cover: float | None
    footprint: BaseGeometry
    assets: dict[str, AssetRef] = field(hash=False)
    collection: str | None = None
    crs: str | None = None

    @property
    def bands(self) -> frozenset[str]:
        return frozenset(self.assets)

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))


def parse_date(value: str | dt.date | None, *, what: str) -> dt.date | None:
    """A date from ``YYYY-MM-DD`` (or a date); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise DateError(f"{what} date {value!r} is not a date; use YYYY-MM-DD, e.g. 2024-03-01") from None


def check_date_range(start: dt.date | None, end: dt.date | None) -> None:
    """Raise DateError when the range is empty."""
    if start and end and start > end:
        raise DateError(f"the date range is empty: start {start} is after end {end}; swap them or widen the range")


def open_catalog(path: str | Path) -> pystac.Catalog:
    """Open a static STAC catalog from its ``catalog.json`` (or the folder holding it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "catalog.json"
    if not p.exists():
        raise CatalogError(
            f"no STAC catalog at {p}; run 'geoloom sample-data' for the sample catalog, "
            "or 'geoloom catalog index DIR --out CATALOG' to index your own GeoTIFFs"
        )
    try:
        return pystac.Catalog.from_file(str(p))
    except Exception as exc:  # pystac raises many kinds on bad JSON
        raise CatalogError(f"cannot read the STAC catalog {p}: {exc}; check that it is valid STAC JSON") from None


def _raster_band(asset: pystac.Asset, index: int) -> dict[str, Any]:
    bands = asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or []
    return bands[index] if index < len(bands) and isinstance(bands[index], dict) else {}


def _band_names(key: str, asset: pystac.Asset) -> list[str]:
    """Band names carried by an asset: its eo:bands names (one per layer) or its key."""
    eo = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    names = []
    for b in eo if isinstance(eo, list) else []:
        if isinstance(b, dict):
            name = b.get("name") or b.get("common_name")
            if name:
                names.append(canonical_band(name) if band_info(name) else str(name).lower())
    if len(names) > 1:
        return names
    return [canonical_band(key)]


def scene_from_item(item: pystac.Item) -> Scene:
    """A Scene from a STAC item: imagery assets only (labels, thumbnails and the like are skipped)."""
    assets: dict[str, AssetRef] = {}
    for key, asset in item.assets.items():
        roles = set(asset.roles or [])
        if roles & NON_IMAGERY_ROLES and "data" not in roles:
            continue
        media = (asset.media_type or "").lower()
        if media and "tiff" not in media and "jp2" not in media:
            continue
        href = asset.get_absolute_href() or asset.href
        for i, band in enumerate(_band_names(key, asset)):
            rb = _raster_band(asset, i)
            categorical = band in CATEGORICAL_BANDS
            default_scale = 1.0 if categorical else _default_scale(rb)
            assets.setdefault(
                band,
                AssetRef(
                    href=href,
                    band=band,
                    bidx=i + 1,
                    scale=float(rb.get("scale", default_scale)),
                    offset=float(rb.get("offset", 0.0)),
                    nodata=_nodata(rb.get("nodata", 0)),
                ),
            )
    geom = shapely.geometry.shape(item.geometry) if item.geometry else shapely.geometry.box(*item.bbox)
    when = item.datetime or pystac.utils.str_to_datetime(item.properties.get("start_datetime"))
    crs = item.properties.get("proj:code") or (
        f"EPSG:{item.properties['proj:epsg']}" if item.properties.get("proj:epsg") else None
    )
    return Scene(
        id=item.id,
        datetime=when.isoformat(),
        cloud_cover=item.properties.get("eo:cloud_cover"),
        footprint=geom,
        assets=assets,
        collection=item.collection_id,
        crs=crs,
    )


def _nodata(value: Any) -> float | None:
    """STAC writes NaN/inf nodata as strings ("nan"); the reader wants numbers."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _default_scale(raster_band: dict[str, Any]) -> float:
    """Reflectance scale where the item does not declare one: integers are DN x 10000."""
    dtype = str(raster_band.get("data_type", "uint16"))
    return 1.0 if dtype.startswith("float") else 1e-4


def iter_scenes(catalog: str | Path | pystac.Catalog) -> Iterable[Scene]:
    """Every scene of a static catalog."""
    cat = catalog if isinstance(catalog, pystac.Catalog) else open_catalog(catalog)
    for item in cat.get_items(recursive=True):
        yield scene_from_item(item)


def search_scenes(
    catalog: str | Path | pystac.Catalog,
    region: Region,
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    max_cloud: float | None = None,
) -> list[Scene]:
    """Scenes that intersect the region within [start, end] (whole days, UTC) and the cloud limit.

    Sorted most recent first (ties by id), the order the compositor prefers.
    """
    d0, d1 = parse_date(start, what="start"), parse_date(end, what="end")
    check_date_range(d0, d1)
    found, seen_any = [], False
    for scene in iter_scenes(catalog):
        seen_any = True
        if not scene.footprint.intersects(region.geometry):
            continue
        day = scene.time.date()
        if (d0 and day < d0) or (d1 and day > d1):
            continue
        if max_cloud is not None and scene.cloud_cover is not None and scene.cloud_cover > max_cloud:
            continue
        found.append(scene)
    if not seen_any:
        raise CatalogError(f"the catalog {catalog} has no items; index some imagery with 'geoloom catalog index'")
    if not found:
        when = f" between {d0 or 'the beginning'} and {d1 or 'now'}" if (d0 or d1) else ""
        cloud = f" with at most {max_cloud:g}% cloud" if max_cloud is not None else ""
        raise NoImageryError(
            f"no scene covers the region {region.name}{when}{cloud}; widen the dates, raise --max-cloud, "
            "or check the region lies inside the catalog (geoloom catalog search)"
        )
    found.sort(key=lambda s: (s.time, s.id), reverse=True)
    return found
