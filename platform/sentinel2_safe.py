"""Sentinel-2 products as ESA delivers them: SAFE folders and their zips, Level-1C and Level-2A.

Each granule of a product becomes one STAC item. The product metadata (``MTD_MSIL1C.xml`` /
``MTD_MSIL2A.xml``) and the granule's ``MTD_TL.xml`` give the time, tile, processing level and
baseline, the add-offsets and quantification values, the no-data value, the footprint and the
cloud cover; each band becomes one asset pointing at its JPEG 2000 file (inside a zip, a
``/vsizip/`` path that GDAL reads in place: nothing is unpacked). Where a band comes at several
resolutions (L2A ``R10m``/``R20m``/``R60m``) its native one is used.

The metadata is parsed with the standard library rather than through GDAL's SENTINEL2 driver:
the driver groups bands by resolution into subdatasets, while geoloom's readers want one file
per band, and the driver does not expose the granule's own sensing time and cloud cover.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import shapely
import shapely.geometry

from geoloom.platform.band_files import PROCESSING_EXTENSION, STAC_EXTENSIONS, s2_band_spec
from geoloom.platform.errors import ProductError
from geoloom.platform.raster_assets import BandSpec, RasterMeta, footprint_of, make_asset, read_raster
from geoloom.platform.sensors import (
    S2_AUX_QUANTIFICATION,
    S2_BAND_IDS,
    S2_QUANTIFICATION,
    band_info,
    parse_baseline,
    s2_offset_dn,
    s2_scale_offset,
)

__all__ = ["ProductSource", "ProductMetadata", "folder_product", "zip_products", "looks_like_product",
           "read_metadata", "product_items"]

_MTD = re.compile(r"^MTD_MSIL(1C|2A)\.xml$", re.IGNORECASE)
_ZIP_MTD = re.compile(r"^(?P<prefix>(?:[^/]+/)?)(?P<mtd>MTD_MSIL(?:1C|2A)\.xml)$", re.IGNORECASE)
_PRODUCT_NAME = re.compile(r"^S2[A-D]_MSIL(1C|2A)_\d{8}T\d{6}_", re.IGNORECASE)
_NAME_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_IMAGE = re.compile(
    r"^T(?P<tile>\d{2}[A-Z]{3})_\d{8}T\d{6}_(?P<band>B\d{2}|B8A|SCL|AOT|WVP|TCI)(?:_(?P<res>\d{2})m)?$", re.IGNORECASE
)
_TILE = re.compile(r"_T(\d{2}[A-Z]{3})_")
_REDO = "download the product again (or move it out of the folder) and index again"


# ---------------------------------------------------------------------------- where the files are


@dataclass(frozen=True, slots=True)
class ProductSource:
    """Where a SAFE product's files are: a folder, or a folder inside a zip that GDAL reads in place."""

    path: Path  # the .SAFE folder, or the .zip
    mtd: str  # file name of the product metadata (MTD_MSIL2A.xml)
    prefix: str = ""  # in a zip: the SAFE folder inside it ("<name>.SAFE/"), or ""
    members: frozenset[str] = frozenset()  # in a zip: every member name

    @property
    def zipped(self) -> bool:
        """True when the product is read from inside a zip."""
        return bool(self.members)

    @property
    def label(self) -> str:
        """How messages name the product."""
        return f"{self.path}!{self.prefix.rstrip('/')}" if self.zipped and self.prefix else str(self.path)

    @property
    def folder_name(self) -> str:
        """The SAFE folder's name (``S2B_MSIL2A_...SAFE``)."""
        return self.prefix.rstrip("/") if self.zipped and self.prefix else self.path.name

    def href(self, rel: str) -> str:
        """What rasterio opens for a file of the product (``rel``: path inside the SAFE folder)."""
        return f"/vsizip/{self.path}/{self.prefix}{rel}" if self.zipped else str(self.path / rel)

    def exists(self, rel: str) -> bool:
        """True if the product has the file ``rel`` (path inside the SAFE folder)."""
        return f"{self.prefix}{rel}" in self.members if self.zipped else (self.path / rel).is_file()

    def read(self, rel: str) -> bytes:
        """The bytes of a (small, metadata) file of the product."""
        if self.zipped:
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(f"{self.prefix}{rel}")
        return (self.path / rel).read_bytes()


def looks_like_product(name: str) -> bool:
    """True for a Sentinel-2 product name (``S2A_MSIL1C_...``, with or without ``.SAFE``/``.zip``)."""
    return bool(_PRODUCT_NAME.match(name))


def folder_product(folder: Path) -> ProductSource | None:
    """The product whose SAFE folder is ``folder`` (it holds ``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml``), or None."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and _MTD.match(p.name))
    return ProductSource(folder, names[0]) if names else None


def zip_products(path: Path) -> list[ProductSource]:
    """The products in a zip (a SAFE folder at its top, or its content); [] for another zip.

    ProductError for a zip named like a Sentinel-2 product that cannot be read or holds no product.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            members = frozenset(zf.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        if not looks_like_product(path.name):
            return []
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProductError(f"cannot open the zip {path}: {reason}; it looks truncated, {_REDO}",
                           path=str(path)) from None
    found = [m for name in sorted(members) if (m := _ZIP_MTD.match(name))]
    if not found and looks_like_product(path.name):
        raise ProductError(f"{path} holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml, so it is not a complete "
                           f"Sentinel-2 product; {_REDO}", path=str(path))
    return [ProductSource(path, m["mtd"], m["prefix"], members) for m in found]


# ---------------------------------------------------------------------------- metadata


@dataclass(frozen=True, slots=True)
class Granule:
    """One tile of a product: its folder, image files (paths without extension) and tile metadata."""

    folder: str
    images: tuple[str, ...]
    tile: str | None
    tile_id: str | None
    sensing_time: dt.datetime | None
    cloud_cover: float | None


@dataclass(frozen=True, slots=True)
class ProductMetadata:
    """What a product's metadata says, as geoloom uses it."""

    name: str
    level: str  # "L1C" or "L2A"
    baseline: str | None
    product_type: str | None
    platform: str | None
    start_time: dt.datetime | None
    footprint: shapely.Geometry | None
    cloud_cover: float | None
    nodata: float | None
    quantification: float
    aux_quantification: dict[str, float]
    add_offsets: dict[str, float]  # band id (B01 ... B12) -> add-offset in DN
    granules: tuple[Granule, ...]


def _xml(source: ProductSource, rel: str) -> ET.Element:
    """A metadata file of the product, parsed, with namespace prefixes dropped from the tags."""
    try:
        data = source.read(rel)
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ProductError(f"cannot read {rel} of {source.label} ({reason}): the product is incomplete; {_REDO}",
                           path=source.href(rel)) from None
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProductError(f"{rel} of {source.label} is not valid XML ({exc}): the product is damaged; {_REDO}",
                           path=source.href(rel)) from None
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tag = el.tag.rsplit("}", 1)[-1]
    return root


def _text(root: ET.Element, path: str) -> str | None:
    el = root.find(path)
    return el.text.strip() if el is not None and el.text and el.text.strip() else None


def _number(root: ET.Element, path: str) -> float | None:
    try:
        return float(_text(root, path) or "")
    except ValueError:
        return None


def _time(text: str | None) -> dt.datetime | None:
    """An ESA time (``2023-08-21T22:20:45.625508Z``) as an aware datetime, or None."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def read_metadata(source: ProductSource) -> ProductMetadata:
    """The product's and its granules' metadata; ProductError for a missing or unreadable file."""
    root = _xml(source, source.mtd)
    level = "L1C" if source.mtd.upper().endswith("L1C.XML") else "L2A"
    name = (_text(root, ".//PRODUCT_URI") or source.folder_name).removesuffix(".SAFE")
    baseline = _text(root, ".//PROCESSING_BASELINE")
    if parse_baseline(baseline) is None and (m := _NAME_BASELINE.search(name)):
        baseline = f"{m[1]}.{m[2]}"
    spacecraft = _text(root, ".//SPACECRAFT_NAME")
    granules = tuple(_granule(source, g) for g in root.iter("Granule"))
    if not granules:
        raise ProductError(f"{source.mtd} of {source.label} lists no granule: the product is incomplete; {_REDO}",
                           path=source.href(source.mtd))
    quant_tag = "QUANTIFICATION_VALUE" if level == "L1C" else "BOA_QUANTIFICATION_VALUE"
    return ProductMetadata(
        name=name,
        level=level,
        baseline=baseline,
        product_type=_text(root, ".//PRODUCT_TYPE"),
        platform=spacecraft.lower() if spacecraft else None,
        start_time=_time(_text(root, ".//PRODUCT_START_TIME")),
        footprint=_footprint(_text(root, ".//Global_Footprint/EXT_POS_LIST")),
        cloud_cover=_number(root, ".//Cloud_Coverage_Assessment"),
        nodata=_nodata(root),
        quantification=_number(root, f".//{quant_tag}") or S2_QUANTIFICATION,
        aux_quantification={k: _number(root, f".//{k.upper()}_QUANTIFICATION_VALUE") or v
                            for k, v in S2_AUX_QUANTIFICATION.items()},
        add_offsets=_add_offsets(root, baseline),
        granules=granules,
    )


def _granule(source: ProductSource, element: ET.Element) -> Granule:
    images = tuple(el.text.strip() for el in element if el.tag.startswith("IMAGE_FILE") and el.text)
    if not images:
        raise ProductError(f"{source.mtd} of {source.label} lists a granule without image files: the product "
                           f"is incomplete; {_REDO}", path=source.href(source.mtd))
    folder = "/".join(images[0].split("/")[:2])
    tl = _xml(source, f"{folder}/MTD_TL.xml")
    tile_id = _text(tl, ".//TILE_ID") or element.get("granuleIdentifier")
    tile = next((m["tile"].upper() for i in images if (m := _IMAGE.match(i.rsplit("/", 1)[-1]))), None)
    if tile is None and tile_id and (m := _TILE.search(tile_id)):
        tile = m[1]
    return Granule(folder, images, tile, tile_id, _time(_text(tl, ".//SENSING_TIME")),
                   _number(tl, ".//Image_Content_QI/CLOUDY_PIXEL_PERCENTAGE"))


def _footprint(text: str | None) -> shapely.Geometry | None:
    """The product footprint from ``EXT_POS_LIST`` (lat lon pairs); None if absent, broken or across 180°."""
    try:
        values = [float(v) for v in (text or "").split()]
    except ValueError:
        return None
    if len(values) < 8 or len(values) % 2:
        return None
    lonlat = [(lon, lat) for lat, lon in zip(values[::2], values[1::2])]
    lons = [p[0] for p in lonlat]
    if max(lons) - min(lons) > 180:  # crosses the antimeridian: the files' own footprints are better
        return None
    shape = shapely.make_valid(shapely.geometry.Polygon(lonlat))
    return shape if not shape.is_empty and shape.area > 0 else None


def _nodata(root: ET.Element) -> float | None:
    for sv in root.iter("Special_Values"):
        if (_text(sv, "SPECIAL_VALUE_TEXT") or "").upper() == "NODATA":
            return _number(sv, "SPECIAL_VALUE_INDEX")
    return None


def _add_offsets(root: ET.Element, baseline: str | None) -> dict[str, float]:
    """Per-band add-offsets (RADIO_ADD_OFFSET for L1C, BOA_ADD_OFFSET for L2A); else the baseline's rule."""
    offsets = {b: float(s2_offset_dn(baseline)) for b in S2_BAND_IDS.values()}
    for el in [*root.iter("RADIO_ADD_OFFSET"), *root.iter("BOA_ADD_OFFSET")]:
        try:
            offsets[S2_BAND_IDS[int(el.get("band_id", ""))]] = float((el.text or "").strip())
        except (KeyError, ValueError):
            continue
    return offsets


# ---------------------------------------------------------------------------- items


def product_items(source: ProductSource, collection_id: str) -> list[pystac.Item]:
    """One STAC item per granule of the product, its bands read and checked."""
    meta = read_metadata(source)
    return [_granule_item(source, meta, g, collection_id) for g in meta.granules]


def _spec(token: str, meta: ProductMetadata) -> BandSpec:
    band = band_info(token)
    if band is None or band.name == "scl":
        return s2_band_spec(token, None, aux_quantification=meta.aux_quantification.get(token.lower()))
    return s2_band_spec(token, s2_scale_offset(meta.add_offsets.get(band.s2_id, 0.0), meta.quantification))


def _band_files(meta: ProductMetadata, granule: Granule) -> dict[str, tuple[str, BandSpec]]:
    """Asset key -> (image file, meaning): each band at its native resolution, else its finest."""
    best: dict[str, tuple[tuple[int, int], str, BandSpec]] = {}
    for rel in granule.images:
        m = _IMAGE.match(rel.rsplit("/", 1)[-1])
        if not m:
            continue
        spec = _spec(m["band"], meta)
        res = int(m["res"]) if m["res"] else (spec.native_res_m or 10)
        rank = (0 if res == spec.native_res_m else 1, res)
        if spec.key not in best or rank < best[spec.key][0]:
            best[spec.key] = (rank, rel, spec)
    return {key: (rel, spec) for key, (_, rel, spec) in best.items()}


def _file(source: ProductSource, rel: str) -> str:
    """The image file of an ``IMAGE_FILE`` entry (they have no extension); ProductError if it is missing."""
    for ext in (".jp2", ".tif"):
        if source.exists(rel + ext):
            return rel + ext
    raise ProductError(f"{source.label} lacks {rel}.jp2, listed in its {source.mtd}: the product is incomplete; "
                       f"{_REDO}", path=source.href(rel + ".jp2"))


def _granule_item(source: ProductSource, meta: ProductMetadata, granule: Granule, collection_id: str) -> pystac.Item:
    chosen = _band_files(meta, granule)
    if not chosen:
        raise ProductError(f"granule {granule.folder} of {source.label} has no band file with a Sentinel-2 name; "
                           f"{_REDO}", path=source.href(granule.folder))
    files = {key: _file(source, rel) for key, (rel, _) in chosen.items()}
    redo = "the product is damaged: " + _REDO
    assets: dict[str, pystac.Asset] = {}
    metas: list[RasterMeta] = []
    for key in sorted(chosen):
        raster = read_raster(source.href(files[key]), redo=redo)
        metas.append(raster)
        assets[key] = make_asset(raster, chosen[key][1], nodata=meta.nodata)[1]
    when = granule.sensing_time or meta.start_time
    if when is None:
        raise ProductError(f"the metadata of {source.label} has no sensing time (SENSING_TIME, PRODUCT_START_TIME); "
                           f"{_REDO}", path=source.href(source.mtd))
    geometry = meta.footprint if len(meta.granules) == 1 and meta.footprint is not None else footprint_of(metas)
    item = pystac.Item(
        id=meta.name if len(meta.granules) == 1 else f"{meta.name}_T{granule.tile}",
        geometry=shapely.geometry.mapping(geometry),
        bbox=list(geometry.bounds),
        datetime=when,
        properties=_properties(meta, granule, metas),
        stac_extensions=[*STAC_EXTENSIONS, PROCESSING_EXTENSION],
        collection=collection_id,
    )
    for key in sorted(assets):
        item.add_asset(key, assets[key])
    return item


def _properties(meta: ProductMetadata, granule: Granule, metas: list[RasterMeta]) -> dict[str, Any]:
    props: dict[str, Any] = {"constellation": "sentinel-2", "instruments": ["msi"]}
    if meta.platform:
        props["platform"] = meta.platform
    cloud = granule.cloud_cover if granule.cloud_cover is not None else meta.cloud_cover
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    codes = {m.proj["proj:code"] for m in metas}
    if len(codes) == 1 and None not in codes:
        props["proj:code"] = codes.pop()
    props["processing:level"] = meta.level
    optional = {
        "s2:processing_baseline": meta.baseline,
        "s2:product_type": meta.product_type,
        "s2:product_uri": f"{meta.name}.SAFE",
        "s2:mgrs_tile": granule.tile,
        "s2:tile_id": granule.tile_id,
    }
    props.update({k: v for k, v in optional.items() if v})
    return props
