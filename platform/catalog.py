"""Scenes from a static STAC catalog: open it, search it by region, dates and clouds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from geoloom.platform.bands import CATEGORICAL_BANDS, band_info, canonical_band
from geoloom.platform.errors import CatalogError, DateError, NoImageryError
from geoloom.platform.region import Region
from geoloom.platform.sensors import S2_QUANTIFICATION, processing_level, s2_offset_dn, s2_scale_offset
from geoloom.platform.stac_api import collection_exists, is_api_url, matches_query, parse_query, search_api

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
    sign: str | None = None


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
    level: str | None = None  # "L1C" (top of atmosphere), "L2A" (surface reflectance) or None (not said)
    thumbnail: str | None = field(default=None, compare=False)  # a small preview image's URL, where the item has one

    @property
    def bands(self) -> frozenset[str]:
        """The scene's band names."""
        return frozenset(self.assets)

    @property
    def time(self) -> dt.datetime:
        """The acquisition time as a timezone-aware datetime."""
        return dt.datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (footprint as GeoJSON); :meth:`from_dict` reads it back to an equal scene."""
        return {
            "id": self.id, "datetime": self.datetime, "cloud_cover": self.cloud_cover,
            "footprint": shapely.geometry.mapping(self.footprint),
            "assets": {k: dataclasses.asdict(a) for k, a in self.assets.items()},
            "collection": self.collection, "crs": self.crs, "level": self.level, "thumbnail": self.thumbnail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """The scene :meth:`to_dict` wrote."""
        return cls(
            id=data["id"], datetime=data["datetime"], cloud_cover=data.get("cloud_cover"),
            footprint=shapely.geometry.shape(data["footprint"]),
            assets={k: AssetRef(**a) for k, a in data["assets"].items()},
            collection=data.get("collection"), crs=data.get("crs"), level=data.get("level"),
            thumbnail=data.get("thumbnail"),
        )


def recency_key(scene: Scene) -> tuple[dt.datetime, str]:
    """Sort key of the compositor's order: acquisition time, then id (a total order; sort descending)."""
    return scene.time, scene.id


def most_recent_first(scenes: Iterable[Scene]) -> list[Scene]:
    """Scenes in the order the compositor prefers them: most recent first, same times by id."""
    return sorted(scenes, key=recency_key, reverse=True)


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
    """Open a static STAC catalog from its ``catalog.json`` (or the folder holding it), local or over HTTP."""
    if str(path).startswith(("http://", "https://")):
        try:
            return pystac.Catalog.from_file(str(path))
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CatalogError(f"cannot read the STAC catalog {path}: {reason}; check the URL") from None
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
    if not band_info(key) and names and band_info(names[0]):
        return names  # a key like "blue-jp2" (Earth Search's JPEG 2000 copy): its eo:bands name says which band
    return [canonical_band(key)]


def boa_offset(properties: dict[str, Any]) -> float:
    """The reflectance offset of a Sentinel-2 item that does not declare one in ``raster:bands``.

    From processing baseline 04.00 (January 2022) pixels carry an add-offset of -1000 DN
    (:func:`geoloom.platform.sensors.s2_offset_dn`): reflectance = DN / 10000 - 0.1. Providers that
    already removed it say so (``earthsearch:boa_offset_applied``); items without a baseline get none.
    """
    if properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    return s2_scale_offset(s2_offset_dn(properties.get("s2:processing_baseline")))[1]


def _asset_rank(asset: pystac.Asset, n_bands: int) -> tuple[int, int]:
    """Lower is better: a COG/GeoTIFF before a JPEG 2000 copy, a one-band file before a multi-band one."""
    media = (asset.media_type or asset.href).lower()
    return (1 if "jp2" in media else 0, 1 if n_bands > 1 else 0)


def scene_from_item(item: pystac.Item, *, sign: str | None = None) -> Scene:
    """A Scene from a STAC item: imagery assets only (labels, thumbnails and the like are skipped).

    Band names of each provider become the common names (``B02`` and ``blue`` both give
    ``blue``); where a band comes as a COG and as JPEG 2000 (Earth Search), the COG is read.
    ``raster:bands`` scale and offset are applied; a Sentinel-2 L2A item that declares no
    offset gets the one of its processing baseline (:func:`boa_offset`). ``sign`` names the
    signer applied to the hrefs at read time.
    """
    chosen: dict[str, tuple[tuple[int, int], AssetRef]] = {}
    inferred_offset = boa_offset(item.properties)
    for key, asset in item.assets.items():
        roles = set(asset.roles or [])
        if roles & NON_IMAGERY_ROLES and "data" not in roles:
            continue
        media = (asset.media_type or "").lower()
        if media and "tiff" not in media and "jp2" not in media:
            continue
        href = asset.get_absolute_href() or asset.href
        names = _band_names(key, asset)
        rank = _asset_rank(asset, len(names))
        for i, band in enumerate(names):
            rb = _raster_band(asset, i)
            categorical = band in CATEGORICAL_BANDS
            default_scale = 1.0 if categorical else _default_scale(rb)
            default_offset = 0.0 if categorical or band_info(band) is None else inferred_offset
            ref = AssetRef(
                href=href,
                band=band,
                bidx=i + 1,
                scale=float(rb.get("scale", default_scale)),
                offset=float(rb.get("offset", default_offset)),
                nodata=_nodata(rb.get("nodata", 0)),
                sign=sign,
            )
            if band not in chosen or rank < chosen[band][0]:
                chosen[band] = (rank, ref)
    assets = {band: ref for band, (_, ref) in chosen.items()}
    geom = shapely.geometry.shape(item.geometry) if item.geometry else shapely.geometry.box(*item.bbox)
    when = item.datetime or pystac.utils.str_to_datetime(item.properties.get("start_datetime"))
    return Scene(
        id=item.id,
        datetime=when.isoformat(),
        cloud_cover=item.properties.get("eo:cloud_cover"),
        footprint=geom,
        assets=assets,
        collection=item.collection_id,
        crs=item_crs(item),
        level=processing_level(item.properties, item.collection_id, set(assets)),
        thumbnail=thumbnail_href(item),
    )


def thumbnail_href(item: pystac.Item) -> str | None:
    """The URL of the item's thumbnail (an asset with the ``thumbnail`` role, a web image), if it has one."""
    for key, asset in item.assets.items():
        media = (asset.media_type or "").lower()
        if "thumbnail" in (asset.roles or []) or key == "thumbnail":
            if not media or media.startswith(("image/png", "image/jpeg", "image/webp")):
                return asset.get_absolute_href() or asset.href
    return None


def item_crs(item: pystac.Item) -> str | None:
    """The item's CRS from ``proj:code`` or the older ``proj:epsg``, on the item or else on its assets."""
    for fields in (item.properties, *(a.extra_fields for a in item.assets.values())):
        if fields.get("proj:code"):
            return str(fields["proj:code"])
        if fields.get("proj:epsg"):
            return f"EPSG:{int(fields['proj:epsg'])}"
    return None


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
    return 1.0 if dtype.startswith("float") else 1.0 / S2_QUANTIFICATION


class SceneList(list):
    """Scenes found by a search, with how many items the catalog matched before the footprint test."""

    matched: int | None = None
    source: str = ""


def iter_scenes(catalog: str | Path | pystac.Catalog, *, sign: str | None = None) -> Iterable[Scene]:
    """Every scene of a static catalog."""
    cat = catalog if isinstance(catalog, pystac.Catalog) else open_catalog(catalog)
    for item in cat.get_items(recursive=True):
        yield scene_from_item(item, sign=sign)


def _static_items(catalog: str | Path | pystac.Catalog, collection: str | None,
                  query: dict[str, dict[str, Any]]) -> Iterable[pystac.Item]:
    cat = catalog if isinstance(catalog, pystac.Catalog) else open_catalog(catalog)
    for item in cat.get_items(recursive=True):
        if collection and item.collection_id != collection:
            continue
        if query and not matches_query(item.properties, query):
            continue
        yield item


def search_scenes(
    catalog: str | Path | pystac.Catalog,
    region: Region,
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    max_cloud: float | None = None,
    collection: str | None = None,
    query: Iterable[str] | dict[str, Any] | None = None,
    sign: str | None = None,
) -> SceneList:
    """Scenes that intersect the region within [start, end] (whole days, UTC) and the cloud limit.

    ``catalog`` is a static catalog (path or URL of ``catalog.json``) or a STAC API URL
    (``https://.../v1``, with ``collection``). ``query``: property filters
    (``["s2:mgrs_tile=31NBG"]`` or the STAC query extension's dict). ``sign``: the signer
    applied to asset URLs at read time (``planetary-computer``). Sorted most recent first
    (ties by id), the order the compositor prefers.
    """
    d0, d1 = parse_date(start, what="start"), parse_date(end, what="end")
    check_date_range(d0, d1)
    q = parse_query(query)
    found = SceneList()
    if not isinstance(catalog, pystac.Catalog) and is_api_url(str(catalog)):
        result = search_api(str(catalog), shapely.geometry.mapping(region.geometry), collection=collection,
                            start=d0, end=d1, max_cloud=max_cloud, query=q)
        items: Iterable[pystac.Item] = result.items
        found.matched = result.matched if result.matched is not None else len(result.items)
        if result.capped:
            warnings.warn(f"the search matched more than {len(result.items)} items; only the most recent "
                          f"{len(result.items)} are used: narrow the dates or the region", stacklevel=2)
        if not result.items and collection and not collection_exists(str(catalog), collection):
            raise CatalogError(f"the STAC API {catalog} has no collection {collection!r}; "
                               "list them with: geoloom catalog collections URL")
    else:
        items = list(_static_items(catalog, collection, q))
        found.matched = len(items)  # type: ignore[arg-type]
        if not items and not any(True for _ in _static_items(catalog, None, {})):
            raise CatalogError(f"the catalog {catalog} has no items; index some imagery with 'geoloom catalog index'")
    found.source = str(catalog)
    for item in items:
        scene = scene_from_item(item, sign=sign)
        if not scene.footprint.intersects(region.geometry):
            continue
        day = scene.time.date()
        if (d0 and day < d0) or (d1 and day > d1):
            continue
        if max_cloud is not None and scene.cloud_cover is not None and scene.cloud_cover > max_cloud:
            continue
        found.append(scene)
    if not found:
        when = f" between {d0 or 'the beginning'} and {d1 or 'now'}" if (d0 or d1) else ""
        cloud = f" with at most {max_cloud:g}% cloud" if max_cloud is not None else ""
        where = f" in collection {collection}" if collection else ""
        raise NoImageryError(
            f"no scene covers the region {region.name}{when}{cloud}{where}; widen the dates, raise --max-cloud, "
            "or check the region lies inside the catalog (geoloom catalog search)"
        )
    found.sort(key=recency_key, reverse=True)
    return found
