"""Index a folder of GeoTIFFs as a static STAC catalog: one item per scene, one asset per band.

``geoloom catalog index DIR --out CATALOG`` calls :func:`index_folder`. Files of one scene
split per band, as Sentinel-2 and Landsat downloads come (``<scene>_B02.tif``,
``<scene>_SR_B4.TIF``, ``<scene-folder>/B04.tif``), become one item whose asset keys are
the canonical band names the rest of geoloom reads (``blue``, ``nir``, ``scl`` ...); any
other GeoTIFF becomes an item of its own. Per-file metadata (footprint, projection,
raster bands) comes from rio-stac; the naming rules below are geoloom's.

Naming rules, applied to the file stem (case-insensitive):

- ``<scene>[_-]<band>[_<res>m]`` where ``<band>`` is a Sentinel-2 or Landsat band token
  (``B02``, ``B8A``, ``SCL``, ``SR_B2``, ``ST_B10``, ``QA_PIXEL`` ...): band ``<band>`` of
  scene ``<scene>``; a stem that is only a band token (``B04``, ``red``) is a band of the
  scene named by its folder.
- Sentinel-2 (``S2A_``..., ``T31NBH_``..., a ``sentinel-2`` name, or zero-padded tokens,
  ``B8A`` or ``SCL``): bands keyed as in Earth Search (``B02`` -> ``blue``, ``B8A`` -> ``nir08``).
- Landsat (``LC08``/``LC09``/``LO08``/``LO09`` OLI, ``LE07`` ETM+, ``LT04``/``LT05`` TM):
  band numbers to common names (OLI ``B5`` -> ``nir``), ``QA_PIXEL`` -> ``qa_pixel``;
  Collection 2 level-2 ``SR_B*`` get scale 2.75e-5 and offset -0.2.
- Other sensors: the token lower-cased (``B5`` becomes ``band5``, so that it is not taken
  for the Sentinel-2 band of that number).

The acquisition time comes from the name (``YYYYMMDD``, ``YYYY-MM-DD``, optionally
``THHMMSS``), else a Landsat ``_MTL.txt`` beside the files, else a parent folder's name,
else the TIFF tags; never from file times.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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

from geoloom.platform.bands import band_info
from geoloom.platform.errors import CatalogError, ImageryReadError, OutputError

__all__ = ["INDEX_CATALOG_ID", "index_folder"]

#: Id of every catalog this module writes; an ``--out`` folder holding another catalog is refused.
INDEX_CATALOG_ID = "geoloom-index"

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
COG_MEDIA_TYPE = pystac.MediaType.COG
GEOTIFF_MEDIA_TYPE = pystac.MediaType.GEOTIFF

_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]

#: Band tokens recognised at the end of a file stem (Sentinel-2 and Landsat product files).
_TOKEN = (
    r"(?:SR_|ST_)?B\d{1,2}A?(?:_VCID_\d)?|SCL|AOT|WVP|TCI|QA_PIXEL|QA_RADSAT|SR_QA_AEROSOL"
    r"|SR_ATMOS_OPACITY|SR_CLOUD_QA|ST_QA|ST_TRAD|ST_URAD|ST_DRAD|ST_ATRAN|ST_EMIS|ST_EMSD"
    r"|ST_CDIST|SAA|SZA|VAA|VZA"
)
_SPLIT_NAME = re.compile(rf"^(?P<scene>.+?)[_\-.](?P<band>{_TOKEN})(?:[_\-]\d{{1,3}}m)?$", re.IGNORECASE)
_TOKEN_ONLY = re.compile(rf"^(?P<band>{_TOKEN})(?:[_\-]\d{{1,3}}m)?$", re.IGNORECASE)

_S2_NAME = re.compile(r"(^|[_\-])(S2[A-D]|T\d{2}[A-Z]{3})([_\-]|$)|sentinel[_\-]?2", re.IGNORECASE)
_S2_TOKEN = re.compile(r"^(B0\d|B8A|SCL|AOT|WVP|TCI)$", re.IGNORECASE)
_S2_PRODUCT = re.compile(r"S2[A-D]_MSIL(?:1C|2A)_\d{8}T\d{6}_N(\d{2})(\d{2})_", re.IGNORECASE)
_LANDSAT_NAME = re.compile(r"^L(?P<sensor>[CEMOT])(?P<mission>0\d)_(?P<level>L\w{3})?", re.IGNORECASE)

_DATE = re.compile(
    r"(?<!\d)(19[7-9]\d|20\d\d)(-?)(\d\d)\2(\d\d)(?:T?(\d\d):?(\d\d):?(\d\d))?(?!\d)", re.IGNORECASE
)

# Collection 2 level-2 rescaling (USGS): surface reflectance and surface temperature (kelvin).
_LANDSAT_SR = (2.75e-5, -0.2)
_LANDSAT_ST = (0.00341802, 149.0)
_LANDSAT_L1_TOA = (2.0e-5, -0.1)  # OLI level-1 reflectance rescaling, the same for every scene
_S2_L2A_QUANT = (1e-4, -0.1)  # ESA processing baseline >= 04.00: BOA_ADD_OFFSET -1000

#: Landsat band number -> (asset key, STAC common name, centre wavelength in micrometres).
_LANDSAT_BANDS: dict[str, dict[int, tuple[str, str, float]]] = {
    "oli": {
        1: ("coastal", "coastal", 0.44),
        2: ("blue", "blue", 0.48),
        3: ("green", "green", 0.56),
        4: ("red", "red", 0.655),
        5: ("nir", "nir08", 0.865),
        6: ("swir16", "swir16", 1.61),
        7: ("swir22", "swir22", 2.2),
        8: ("pan", "pan", 0.59),
        9: ("cirrus", "cirrus", 1.37),
        10: ("lwir11", "lwir11", 10.9),
        11: ("lwir12", "lwir12", 12.0),
    },
    "tm": {
        1: ("blue", "blue", 0.485),
        2: ("green", "green", 0.56),
        3: ("red", "red", 0.66),
        4: ("nir", "nir", 0.83),
        5: ("swir16", "swir16", 1.65),
        6: ("lwir", "lwir", 11.45),
        7: ("swir22", "swir22", 2.215),
    },
    "etm": {
        1: ("blue", "blue", 0.485),
        2: ("green", "green", 0.56),
        3: ("red", "red", 0.66),
        4: ("nir", "nir", 0.835),
        5: ("swir16", "swir16", 1.65),
        6: ("lwir", "lwir", 11.335),
        7: ("swir22", "swir22", 2.22),
        8: ("pan", "pan", 0.71),
    },
}
_LANDSAT_SENSORS = {"C08": "oli", "C09": "oli", "O08": "oli", "O09": "oli", "E07": "etm", "T04": "tm", "T05": "tm"}
_LANDSAT_LABELS = {"oli": "Landsat OLI", "etm": "Landsat ETM+", "tm": "Landsat TM"}


@dataclass(frozen=True, slots=True)
class _BandSpec:
    """What a band token means: asset key, eo:bands entry, rescaling where the file lacks one."""

    key: str
    common_name: str | None = None
    center_um: float | None = None
    description: str | None = None
    scale_offset: tuple[float, float] | None = None
    roles: tuple[str, ...] = ("data",)


@dataclass(frozen=True, slots=True)
class _Found:
    """A GeoTIFF found in the folder and what its name says."""

    path: Path
    group: tuple[str, ...]  # files with the same group are one scene
    scene: str  # the item id asked for
    token: str | None  # band token from the name, None for a whole-file image


@dataclass(slots=True)
class _FileMeta:
    """What rio-stac and rasterio say about one file."""

    path: Path
    footprint: dict[str, Any]
    proj: dict[str, Any]
    raster_bands: list[dict[str, Any]]
    descriptions: tuple[str | None, ...]
    declared_scale: bool
    is_cog: bool
    pixel_area: float
    tag_datetime: dt.datetime | None
    tag_cloud_cover: float | None
    cloud_cover: float | None = None
    count: int = 1


@dataclass(slots=True)
class _Scene:
    """One item in the making."""

    id: str
    files: list[_Found] = field(default_factory=list)


def index_folder(folder: str | Path, out: str | Path, *, collection_id: str = "local-imagery") -> Path:
    """Write a STAC catalog of every GeoTIFF under ``folder`` into ``out``; return its ``catalog.json``.

    Nothing is written unless every file can be read and dated. The same folder always
    gives the same catalog (sorted traversal, no creation times).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise CatalogError(f"cannot index {root}: it {what}; give the folder that holds your GeoTIFFs")
    root = root.resolve()
    out_dir = _check_out(Path(out).expanduser())

    paths = _find_tiffs(root)
    if not paths:
        raise CatalogError(
            f"no GeoTIFF (.tif/.tiff) found under {root}; put your imagery there as GeoTIFF "
            "(convert other formats with gdal_translate -of COG) and index again"
        )
    scenes = _group(paths, root)
    items = [_make_item(scene, root, collection_id) for scene in scenes]
    return _write(items, out_dir, collection_id, root.name)


# ---------------------------------------------------------------------------- finding, naming


def _find_tiffs(root: Path) -> list[Path]:
    """GeoTIFFs under ``root`` in sorted order; hidden files and folders are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in TIFF_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def _parse_name(path: Path, root: Path) -> _Found:
    stem = path.stem
    m = _SPLIT_NAME.match(stem)
    if m:
        scene = m["scene"]
        return _Found(path, ("scene", scene), scene, m["band"])
    m = _TOKEN_ONLY.match(stem)
    if (m or band_info(stem) is not None) and path.parent != root:
        # Earth Search style: <scene>/B04.tif or <scene>/red.tif
        token = m["band"] if m else stem
        return _Found(path, ("folder", str(path.parent)), path.parent.name, token)
    return _Found(path, ("file", str(path)), stem, None)


def _group(paths: list[Path], root: Path) -> list[_Scene]:
    """Files grouped into scenes, each with a unique item id, sorted by id."""
    groups: dict[tuple[str, ...], _Scene] = {}
    for path in paths:
        found = _parse_name(path, root)
        groups.setdefault(found.group, _Scene(found.scene)).files.append(found)
    # Split scenes keep their scene id; a clash falls back to the path below the root.
    taken: set[str] = set()
    for key, scene in sorted(groups.items(), key=lambda kv: (kv[0][0] != "scene", kv[0])):
        if scene.id in taken:
            anchor = Path(key[1]) if key[0] != "scene" else scene.files[0].path
            rel = anchor.relative_to(root).with_suffix("") if key[0] == "file" else anchor.relative_to(root)
            base, n = "_".join(rel.parts), 2
            scene.id = base
            while scene.id in taken:
                scene.id, n = f"{base}-{n}", n + 1
        taken.add(scene.id)
    return sorted(groups.values(), key=lambda s: s.id)


def _sensor(scene: _Scene) -> str | None:
    """``sentinel-2``, ``oli``, ``etm``, ``tm`` or None, from the scene's name, folders and tokens."""
    names = [scene.id, scene.files[0].path.parent.name, scene.files[0].scene]
    for name in names:
        m = _LANDSAT_NAME.match(name)
        if m and (m["sensor"] + m["mission"]).upper() in _LANDSAT_SENSORS:
            return _LANDSAT_SENSORS[(m["sensor"] + m["mission"]).upper()]
    if any(_S2_NAME.search(name) for name in names):
        return "sentinel-2"
    if any(f.token and _S2_TOKEN.match(f.token) for f in scene.files):
        return "sentinel-2"
    return None


def _band_spec(sensor: str | None, token: str, *, level: str | None, s2_offset: float) -> _BandSpec:
    """The meaning of band token ``token`` of a sensor (None: unknown sensor)."""
    up = token.upper()
    if sensor == "sentinel-2":
        return _s2_spec(up, s2_offset)
    if sensor in _LANDSAT_BANDS:
        return _landsat_spec(sensor, up, level)
    if band_info(token) is not None and not re.fullmatch(r"B\d{1,2}A?", up):
        b = band_info(token)
        return _BandSpec(b.name, b.common_name, b.center_um)
    m = re.fullmatch(r"B(\d{1,2}A?)", up)
    return _BandSpec(f"band{m[1].lstrip('0').lower()}" if m else token.lower())


def _s2_spec(up: str, offset: float) -> _BandSpec:
    label = f"Sentinel-2 {up}"
    if up == "B10":
        return _BandSpec("cirrus", "cirrus", 1.375, label)
    if up in {"AOT", "WVP"}:
        return _BandSpec(up.lower(), None, None, label, (0.001, 0.0))
    if up == "TCI":
        return _BandSpec("visual", None, None, "Sentinel-2 true colour image", None, ("visual",))
    b = band_info(up)
    if b is None:
        return _BandSpec(up.lower(), description=label)
    if b.name == "scl":
        return _BandSpec("scl", None, None, "Sentinel-2 scene classification")
    return _BandSpec(b.name, b.common_name, b.center_um, f"{label} ({b.description})",
                     (_S2_L2A_QUANT[0], offset) if offset else None)


def _landsat_spec(sensor: str, up: str, level: str | None) -> _BandSpec:
    label = f"{_LANDSAT_LABELS[sensor]} {up}"
    m = re.fullmatch(r"(SR_|ST_)?B(\d{1,2})", up)
    if m and int(m[2]) in _LANDSAT_BANDS[sensor]:
        key, common, center = _LANDSAT_BANDS[sensor][int(m[2])]
        if m[1] == "SR_":
            rescale = _LANDSAT_SR
        elif m[1] == "ST_":
            rescale = _LANDSAT_ST
        elif sensor == "oli" and level and level.upper().startswith("L1") and int(m[2]) <= 9:
            rescale = _LANDSAT_L1_TOA
        else:
            rescale = None
        return _BandSpec(key, common, center, label, rescale)
    if up.startswith(("QA_", "SR_QA", "SR_CLOUD_QA", "ST_QA")):
        return _BandSpec(up.lower(), None, None, label, (1.0, 0.0))
    if up in {"SAA", "SZA", "VAA", "VZA"}:
        return _BandSpec(up.lower(), None, None, f"{label} angle (degrees)", (0.01, 0.0))
    return _BandSpec(up.lower(), description=label)


def _s2_baseline_offset(path: Path) -> float:
    """-0.1 when a Sentinel-2 product name in the path says processing baseline >= 04.00, else 0."""
    for part in path.parts:
        m = _S2_PRODUCT.search(part)
        if m:
            return _S2_L2A_QUANT[1] if int(m[1]) >= 4 else 0.0
    return 0.0


# ---------------------------------------------------------------------------- reading files


def _read_file(path: Path, *, cloud_band: str | None) -> _FileMeta:
    """Metadata of one GeoTIFF; ImageryReadError if it cannot be opened, is truncated or not georeferenced."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None and not src.gcps[0]:
                raise ImageryReadError(
                    f"{path} has no coordinate reference system; georeference it "
                    "(gdal_edit.py -a_srs EPSG:XXXX) or move it out of the folder, then index again",
                    href=str(path),
                )
            _read_last_block(src)
            with warnings.catch_warnings():  # rio-stac cannot parse TIFF-style dates; _tag_datetime does
                warnings.filterwarnings("ignore", message="Could not get parse date", category=UserWarning)
                item = create_stac_item(
                    src,
                    input_datetime=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
                    id=path.stem,
                    asset_href=str(path),
                    with_proj=True,
                    with_raster=True,
                    with_eo=True,
                    geom_densify_pts=21,
                    geom_precision=8,
                )
            declared = any(s != 1.0 for s in src.scales) or any(o != 0.0 for o in src.offsets)
            descriptions = tuple(src.descriptions)
            pixel_area = abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d)
            tag_time = _tag_datetime(src)
            cloud = _cloud_from_mask(src, cloud_band) if cloud_band else None
            count = src.count
        is_cog = bool(cog_validate(str(path), quiet=True)[0])
    except ImageryReadError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "previous exception" in reason or "Read failed" in reason:
            reason = "its pixel data cannot be read"
        raise ImageryReadError(
            f"cannot read {path}: {reason}; the file looks truncated or is not a GeoTIFF, "
            "download or export it again (or move it out of the folder) and index again",
            href=str(path),
        ) from None
    props = item.properties
    asset = next(iter(item.assets.values()))
    bands = []
    for rb in asset.extra_fields.get("raster:bands", []):
        rb = {k: v for k, v in rb.items() if k != "histogram"}
        if not declared:
            rb.pop("scale", None), rb.pop("offset", None)
        bands.append(rb)
    tag_cloud = props.get("eo:cloud_cover")
    return _FileMeta(
        path=path,
        footprint=item.geometry,
        proj={
            "proj:code": f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None,
            **({"proj:wkt2": props["proj:wkt2"]} if props.get("proj:wkt2") else {}),
            "proj:bbox": list(props["proj:bbox"]),
            "proj:shape": list(props["proj:shape"]),
            "proj:transform": list(props["proj:transform"])[:6],
        },
        raster_bands=bands,
        descriptions=descriptions,
        declared_scale=declared,
        is_cog=is_cog,
        pixel_area=pixel_area,
        tag_datetime=tag_time,
        tag_cloud_cover=float(tag_cloud) if tag_cloud is not None else None,
        cloud_cover=cloud,
        count=count,
    )


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
        valid, cloud = a != 0, np.isin(a, (8, 9, 10))
    else:  # QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud
        a = a.astype(np.uint32)
        valid, cloud = (a & 1) == 0, (a & 0b1110) != 0
    n = int(valid.sum())
    return round(100.0 * int((cloud & valid).sum()) / n, 2) if n else None


# ---------------------------------------------------------------------------- items


def _make_item(scene: _Scene, root: Path, collection_id: str) -> pystac.Item:
    sensor = _sensor(scene)
    level = _landsat_level(scene) if sensor in _LANDSAT_BANDS else None
    assets: dict[str, tuple[pystac.Asset, _FileMeta]] = {}
    metas: list[_FileMeta] = []
    for found in scene.files:
        spec = (
            _band_spec(sensor, found.token, level=level, s2_offset=_s2_baseline_offset(found.path))
            if found.token
            else None
        )
        cloud_band = None
        if spec and spec.key == "scl" and sensor == "sentinel-2":
            cloud_band = "scl"
        elif spec and spec.key == "qa_pixel" and sensor in _LANDSAT_BANDS:
            cloud_band = "qa_pixel"
        meta = _read_file(found.path, cloud_band=cloud_band)
        metas.append(meta)
        key, asset = _make_asset(meta, spec)
        if key in assets:
            other = assets[key][1]
            if math.isclose(other.pixel_area, meta.pixel_area):
                raise CatalogError(
                    f"{other.path} and {meta.path} are both band {key} of scene {scene.id} at the same "
                    "resolution; move one of them out of the folder and index again"
                )
            if other.pixel_area <= meta.pixel_area:
                continue  # the same band at a coarser resolution (Sentinel-2 R20m/R60m copies)
        assets[key] = (asset, meta)

    mtl = _read_mtl(scene) if sensor in _LANDSAT_BANDS else {}
    when = _scene_datetime(scene, root, metas, mtl)
    geometry = _footprint([m for _, m in assets.values()])
    props: dict[str, Any] = {}
    cloud = mtl.get("cloud_cover")
    if cloud is None:
        cloud = next((m.tag_cloud_cover for m in metas if m.tag_cloud_cover is not None), None)
    if cloud is None:
        cloud = next((m.cloud_cover for m in metas if m.cloud_cover is not None), None)
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    codes = {m.proj["proj:code"] for _, m in assets.values()}
    if len(codes) == 1 and None not in codes:
        props["proj:code"] = codes.pop()
    props.update(_platform_props(sensor, [scene.id, *scene.files[0].path.parts[::-1]]))
    item = pystac.Item(
        id=scene.id,
        geometry=shapely.geometry.mapping(geometry),
        bbox=list(geometry.bounds),
        datetime=when,
        properties=props,
        stac_extensions=list(_EXTENSIONS),
        collection=collection_id,
    )
    for key in sorted(assets):
        item.add_asset(key, assets[key][0])
    return item


def _make_asset(meta: _FileMeta, spec: _BandSpec | None) -> tuple[str, pystac.Asset]:
    """The asset key and asset of one file: one eo:bands / raster:bands entry per band."""
    raster_bands = [dict(rb) for rb in meta.raster_bands]
    if spec is not None:
        key = spec.key
        names = [key]
        if meta.count > 1:
            names = [_known_name(d) or f"{key}_{i}" for i, d in enumerate(meta.descriptions, 1)]
        if spec.scale_offset and not meta.declared_scale:
            for rb in raster_bands:
                rb["scale"], rb["offset"] = spec.scale_offset
        roles = list(spec.roles)
    else:
        names = _unique([_known_name(d) for d in meta.descriptions])
        key = names[0] if meta.count == 1 else "data"
        roles = ["data"]
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
    extra: dict[str, Any] = {k: v for k, v in meta.proj.items() if v is not None or k == "proj:code"}
    extra["raster:bands"] = raster_bands
    extra["eo:bands"] = eo_bands
    asset = pystac.Asset(
        href=str(meta.path),
        title=meta.path.name,
        media_type=COG_MEDIA_TYPE if meta.is_cog else GEOTIFF_MEDIA_TYPE,
        roles=roles,
        extra_fields=extra,
    )
    return key, asset


def _known_name(description: str | None) -> str | None:
    """The canonical band a description names (``B02``, ``Red``, ``nir08``), or None.

    ``B1``..``B9`` are too vague to be taken for Sentinel-2 bands.
    """
    if not description or re.fullmatch(r"[Bb][1-9]", description.strip()):
        return None
    b = band_info(description)
    return b.name if b else None


def _unique(names: list[str | None]) -> list[str]:
    """Band names, ``band<i>`` where a name is unknown or repeated."""
    out: list[str] = []
    for i, name in enumerate(names, 1):
        out.append(name if name and name not in out and names.count(name) == 1 else f"band{i}")
    return out


def _footprint(metas: list[_FileMeta]) -> shapely.Geometry:
    shapes = [shapely.geometry.shape(m.footprint) for m in metas]
    if all(s.equals_exact(shapes[0], 0) for s in shapes[1:]):
        return shapes[0]
    return shapely.union_all(shapes)


def _platform_props(sensor: str | None, names: list[str]) -> dict[str, Any]:
    """Common metadata (constellation, platform, instruments) from the scene id or its folders."""
    if sensor == "sentinel-2":
        props: dict[str, Any] = {"constellation": "sentinel-2", "instruments": ["msi"]}
        m = next((m for n in names if (m := re.match(r"S2([A-D])_", n, re.IGNORECASE))), None)
        if m:
            props["platform"] = f"sentinel-2{m[1].lower()}"
        return props
    if sensor in _LANDSAT_BANDS:
        m = _LANDSAT_NAME.match(names[0])
        instruments = {"oli": ["oli", "tirs"], "etm": ["etm+"], "tm": ["tm"]}[sensor]
        props = {"constellation": "landsat", "instruments": instruments}
        if m:
            props["platform"] = f"landsat-{int(m['mission'])}"
        return props
    return {}


def _landsat_level(scene: _Scene) -> str | None:
    m = _LANDSAT_NAME.match(scene.id)
    return m["level"] if m and m["level"] else None


def _read_mtl(scene: _Scene) -> dict[str, Any]:
    """Cloud cover and acquisition time from a Landsat ``<scene>_MTL.txt`` beside the band files."""
    for folder in sorted({f.path.parent for f in scene.files}):
        path = folder / f"{scene.id}_MTL.txt"
        if not path.is_file():
            continue
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\"?([^\"\n]*)\"?\s*$", path.read_text(errors="replace"), re.M))
        out: dict[str, Any] = {}
        if fields.get("CLOUD_COVER"):
            try:
                cover = float(fields["CLOUD_COVER"])
                if cover >= 0:
                    out["cloud_cover"] = cover
            except ValueError:
                pass
        if fields.get("DATE_ACQUIRED"):
            time = fields.get("SCENE_CENTER_TIME", "00:00:00").rstrip("Z")[:8]
            try:
                out["datetime"] = dt.datetime.fromisoformat(f"{fields['DATE_ACQUIRED']}T{time}+00:00")
            except ValueError:
                pass
        return out
    return {}


def _date_in(text: str) -> dt.datetime | None:
    """The first valid ``YYYYMMDD[THHMMSS]`` or ``YYYY-MM-DD`` in a name, as UTC."""
    for m in _DATE.finditer(text):
        year, _, month, day, hh, mm, ss = m.groups()
        try:
            return dt.datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0),
                               tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def _scene_datetime(scene: _Scene, root: Path, metas: list[_FileMeta], mtl: dict[str, Any]) -> dt.datetime:
    if mtl.get("datetime"):
        return mtl["datetime"]
    names: list[str] = [scene.id, *(f.path.stem for f in scene.files)]
    parent = scene.files[0].path.parent
    while parent != root and root in parent.parents:
        names.append(parent.name)
        parent = parent.parent
    for name in names:
        when = _date_in(name)
        if when:
            return when
    for meta in metas:
        if meta.tag_datetime:
            return meta.tag_datetime
    raise CatalogError(
        f"no acquisition date for {scene.files[0].path}: put the date in the file or folder name "
        "as YYYYMMDD or YYYY-MM-DD (e.g. scene_20240301_B04.tif) or set its TIFFTAG_DATETIME, then index again"
    )


# ---------------------------------------------------------------------------- writing


def _check_out(out: Path) -> Path:
    """The folder the catalog goes into; OutputError if it cannot be written or holds another catalog."""
    folder = out.parent if out.name == "catalog.json" else out
    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file; give a folder for the catalog")
    existing = folder / "catalog.json"
    if existing.exists():
        try:
            other_id = json.loads(existing.read_text()).get("id")
        except (OSError, ValueError, AttributeError):
            other_id = None
        if other_id != INDEX_CATALOG_ID:
            raise OutputError(
                f"{folder} already holds another catalog ({existing}); give an empty folder for --out "
                "or delete that catalog first"
            )
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the catalog into {folder}: {ancestor} is not writable; pick another --out")
    return folder


def _write(items: list[pystac.Item], folder: Path, collection_id: str, title: str) -> Path:
    when = sorted(i.datetime for i in items)
    boxes = np.array([i.bbox for i in items], dtype=float)
    bbox = [float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())]
    collection = pystac.Collection(
        id=collection_id,
        description=f"GeoTIFFs of the folder {title}, indexed by geoloom catalog index",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[when[0], when[-1]]])),
        license="other",
    )
    for item in items:
        collection.add_item(item)
    catalog = pystac.Catalog(
        id=INDEX_CATALOG_ID,
        description=f"Local imagery from the folder {title}, one item per scene and one asset per band",
        title=title,
    )
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(folder))
    catalog.make_all_asset_hrefs_relative()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
    except OSError as exc:
        raise OutputError(
            f"cannot write the catalog into {folder}: {exc.strerror or exc}; pick another --out"
        ) from None
    return folder / "catalog.json"

