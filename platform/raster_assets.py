"""One raster file as a STAC asset: projection, bands and footprint from rio-stac, checked readable first.

Used by ``catalog index`` for loose band files (GeoTIFF, JPEG 2000) and for the band files of
Sentinel-2 products, whose hrefs may be ``/vsizip/`` paths into a zip.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import rasterio
import shapely
import shapely.geometry
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rio_cogeo.cogeo import cog_validate
from rio_stac import create_stac_item

from geoloom.platform.errors import ImageryReadError
from geoloom.platform.sensors import SCL_CLOUD, band_info

__all__ = ["BandSpec", "RasterMeta", "read_raster", "make_asset", "footprint_of"]

#: Extensions (lower case) of the raster files ``catalog index`` reads.
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})


@dataclass(frozen=True, slots=True)
class BandSpec:
    """What a band file holds: asset key, eo:bands entry, rescaling where the file lacks one, native resolution."""

    key: str
    common_name: str | None = None
    center_um: float | None = None
    description: str | None = None
    scale_offset: tuple[float, float] | None = None
    roles: tuple[str, ...] = ("data",)
    native_res_m: int | None = None


@dataclass(slots=True)
class RasterMeta:
    """What rio-stac and rasterio say about one raster file."""

    href: str
    footprint: dict[str, Any]
    proj: dict[str, Any]
    raster_bands: list[dict[str, Any]]
    descriptions: tuple[str | None, ...]
    declared_scale: bool
    media_type: str
    pixel_area: float
    tag_datetime: dt.datetime | None
    tag_cloud_cover: float | None
    cloud_cover: float | None = None
    count: int = 1

    @property
    def name(self) -> str:
        """The file name (the last part of the href)."""
        return self.href.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def res_m(self) -> float:
        """The pixel size (square root of the pixel area), in CRS units."""
        return math.sqrt(self.pixel_area)


def read_raster(href: str, *, cloud_band: str | None = None, redo: str = "") -> RasterMeta:
    """Metadata of one raster; ImageryReadError if it cannot be opened, is truncated or not georeferenced.

    ``cloud_band`` (``scl`` or ``qa_pixel``) estimates the cloud cover from the file's pixels;
    ``redo`` is what the user should do about a bad file (default: export it again or move it out).
    """
    redo = redo or "download or export it again (or move it out of the folder) and index again"
    try:
        with rasterio.open(href) as src:
            if src.crs is None and not src.gcps[0]:
                raise ImageryReadError(
                    f"{href} has no coordinate reference system; georeference it "
                    "(gdal_edit.py -a_srs EPSG:XXXX) or move it out of the folder, then index again",
                    href=href,
                )
            _read_last_block(src)
            item = _stac_item(src, href)
            declared = any(s != 1.0 for s in src.scales) or any(o != 0.0 for o in src.offsets)
            meta = RasterMeta(
                href=href,
                footprint=item.geometry,
                proj=_proj(item.properties),
                raster_bands=_raster_bands(item, declared),
                descriptions=tuple(src.descriptions),
                declared_scale=declared,
                media_type=_media_type(src.driver, href),
                pixel_area=abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d),
                tag_datetime=_tag_datetime(src),
                tag_cloud_cover=_float(item.properties.get("eo:cloud_cover")),
                cloud_cover=_cloud_from_mask(src, cloud_band) if cloud_band else None,
                count=src.count,
            )
    except ImageryReadError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "previous exception" in reason or "Read failed" in reason or "Failed to decode" in reason:
            reason = "its pixel data cannot be read"
        raise ImageryReadError(
            f"cannot read {href}: {reason}; the file looks truncated or is not a GeoTIFF or JPEG 2000, {redo}",
            href=href,
        ) from None
    return meta


def _stac_item(src: rasterio.DatasetReader, href: str) -> pystac.Item:
    with warnings.catch_warnings():  # rio-stac cannot parse TIFF-style dates; _tag_datetime does
        warnings.filterwarnings("ignore", message="Could not get parse date", category=UserWarning)
        return create_stac_item(
            src,
            input_datetime=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
            id="file",
            asset_href=href,
            with_proj=True,
            with_raster=True,
            with_eo=True,
            geom_densify_pts=21,
            geom_precision=8,
        )


def _proj(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "proj:code": f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None,
        **({"proj:wkt2": props["proj:wkt2"]} if props.get("proj:wkt2") else {}),
        "proj:bbox": list(props["proj:bbox"]),
        "proj:shape": list(props["proj:shape"]),
        "proj:transform": list(props["proj:transform"])[:6],
    }


def _raster_bands(item: pystac.Item, declared: bool) -> list[dict[str, Any]]:
    """rio-stac's raster:bands without histograms; scale/offset only where the file declares them."""
    asset = next(iter(item.assets.values()))
    bands = []
    for rb in asset.extra_fields.get("raster:bands", []):
        rb = {k: v for k, v in rb.items() if k != "histogram"}
        if not declared:
            rb.pop("scale", None), rb.pop("offset", None)
        bands.append(rb)
    return bands


def _media_type(driver: str, href: str) -> str:
    if driver == "JP2OpenJPEG":
        return str(pystac.MediaType.JPEG2000)
    if driver == "GTiff" and not href.startswith("/vsi") and cog_validate(href, quiet=True)[0]:
        return str(pystac.MediaType.COG)
    return str(pystac.MediaType.GEOTIFF)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _read_last_block(src: rasterio.DatasetReader) -> None:
    """Read the last block of every band: a truncated file fails here, not in the middle of a run."""
    *_, (_, window) = src.block_windows(1)
    src.read(window=window)


def _tag_datetime(src: rasterio.DatasetReader) -> dt.datetime | None:
    for value in (src.get_tag_item("ACQUISITIONDATETIME", "IMAGERY"), src.tags().get("TIFFTAG_DATETIME")):
        if not value:
            continue
        value = value.strip()
        for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
            try:
                return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
            except ValueError:
                pass
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return None


def _cloud_from_mask(src: rasterio.DatasetReader, kind: str) -> float | None:
    """Cloud percentage estimated from a Sentinel-2 SCL or Landsat QA_PIXEL band (decimated read)."""
    scale = max(src.width, src.height) / 1024
    shape = (src.height, src.width)
    if scale > 1:
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    a = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    if kind == "scl":
        valid, cloud = a != 0, np.isin(a, list(SCL_CLOUD))
    else:  # QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud
        a = a.astype(np.uint32)
        valid, cloud = (a & 1) == 0, (a & 0b1110) != 0
    n = int(valid.sum())
    return round(100.0 * int((cloud & valid).sum()) / n, 2) if n else None


# ---------------------------------------------------------------------------- assets


def make_asset(meta: RasterMeta, spec: BandSpec | None, *, nodata: float | None = None) -> tuple[str, pystac.Asset]:
    """The asset key and asset of one file: one eo:bands / raster:bands entry per band.

    ``nodata``: the no-data value the product declares where the file itself does not.
    """
    raster_bands = [dict(rb) for rb in meta.raster_bands]
    if nodata is not None:
        for rb in raster_bands:
            rb.setdefault("nodata", nodata)
    if spec is not None:
        key = spec.key
        names = [key]
        if meta.count > 1:
            names = [known_name(d) or f"{key}_{i}" for i, d in enumerate(meta.descriptions, 1)]
        if spec.scale_offset and not meta.declared_scale:
            for rb in raster_bands:
                rb["scale"], rb["offset"] = spec.scale_offset
        roles = list(spec.roles)
    else:
        names = unique_names([known_name(d) for d in meta.descriptions])
        key = names[0] if meta.count == 1 else "data"
        roles = ["data"]
    extra: dict[str, Any] = {k: v for k, v in meta.proj.items() if v is not None or k == "proj:code"}
    extra["raster:bands"] = raster_bands
    extra["eo:bands"] = _eo_bands(meta, spec, names)
    asset = pystac.Asset(href=meta.href, title=meta.name, media_type=meta.media_type, roles=roles, extra_fields=extra)
    return key, asset


def _eo_bands(meta: RasterMeta, spec: BandSpec | None, names: list[str]) -> list[dict[str, Any]]:
    eo_bands = []
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"name": name}
        if spec is not None and meta.count == 1:
            common, center, text = spec.common_name, spec.center_um, spec.description
        else:
            b = band_info(name)
            common, center, text = (b.common_name, b.center_um, None) if b else (None, None, None)
        if common:
            entry["common_name"] = common
        if center:
            entry["center_wavelength"] = center
        description = meta.descriptions[i] if i < len(meta.descriptions) else None
        if description or text:
            entry["description"] = description or text
        eo_bands.append(entry)
    return eo_bands


def known_name(description: str | None) -> str | None:
    """The canonical band a description names (``B02``, ``Red``, ``nir08``), or None.

    ``B1``..``B9`` are too vague to be taken for Sentinel-2 bands.
    """
    if not description or re.fullmatch(r"[Bb][1-9]", description.strip()):
        return None
    b = band_info(description)
    return b.name if b else None


def unique_names(names: list[str | None]) -> list[str]:
    """Band names, ``band<i>`` where a name is unknown or repeated."""
    out: list[str] = []
    for i, name in enumerate(names, 1):
        out.append(name if name and name not in out and names.count(name) == 1 else f"band{i}")
    return out


def footprint_of(metas: list[RasterMeta]) -> shapely.Geometry:
    """The footprint of files that make one item: their common one, else the union."""
    shapes = [shapely.geometry.shape(m.footprint) for m in metas]
    if all(s.equals_exact(shapes[0], 0) for s in shapes[1:]):
        return shapes[0]
    return shapely.union_all(shapes)
