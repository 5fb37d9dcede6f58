"""Loose raster files (GeoTIFF, JPEG 2000) as STAC items: the naming rules of ``catalog index``.

Files of one scene split per band, as Sentinel-2 and Landsat downloads come (``<scene>_B02.tif``,
``T33UUU_20170216T102101_B02.jp2``, ``<scene>_SR_B4.TIF``, ``<scene-folder>/B04.tif``), become
one item whose asset keys are the canonical band names the rest of geoloom reads (``blue``,
``nir``, ``scl`` ...); any other raster becomes an item of its own.

Naming rules, applied to the file stem (case-insensitive):

- ``<scene>[_-]<band>[_<res>m]`` where ``<band>`` is a Sentinel-2 or Landsat band token
  (``B02``, ``B8A``, ``SCL``, ``SR_B2``, ``ST_B10``, ``QA_PIXEL`` ...): band ``<band>`` of
  scene ``<scene>``; a stem that is only a band token (``B04``, ``red``) is a band of the
  scene named by its folder. Where a band comes at several resolutions, its native one is kept.
- Sentinel-2 (``S2A_``..., ``T31NBH_``..., a ``sentinel-2`` name, or zero-padded tokens,
  ``B8A`` or ``SCL``): bands keyed as in Earth Search (``B02`` -> ``blue``, ``B10`` -> ``cirrus``).
  The processing level comes from a product name in the path (``MSIL2A``), an ``L1C``/``L2A``
  part of a name (the indexed folder's own name included), else ESA's granule file names (``..._B02_10m`` and SCL are L2A, ``..._B02``
  is L1C). The add-offset (-1000 DN from processing baseline 04.00) comes from a product name
  in the path (``_N0509_``); ESA's own JPEG 2000 files acquired after baseline 04.00 went into
  operations always carry it.
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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
import shapely.geometry

from geoloom.platform.errors import CatalogError
from geoloom.platform.raster_assets import BandSpec, RasterMeta, footprint_of, make_asset, read_raster
from geoloom.platform.sensors import (
    LANDSAT_BANDS,
    LANDSAT_L1_TOA_RESCALE,
    LANDSAT_LABELS,
    LANDSAT_SENSORS,
    LANDSAT_SR_RESCALE,
    LANDSAT_ST_RESCALE,
    S2_AUX_QUANTIFICATION,
    S2_OFFSET_DN,
    S2_OFFSET_SINCE,
    band_info,
    s2_offset_dn,
    s2_scale_offset,
)

__all__ = ["FileScene", "STAC_EXTENSIONS", "PROCESSING_EXTENSION", "group_files", "file_scene_item", "s2_band_spec"]

STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
#: ``processing:level`` (L1C, L2A) of Sentinel-2 items.
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"

#: Band tokens recognised at the end of a file stem (Sentinel-2 and Landsat product files).
_TOKEN = (
    r"(?:SR_|ST_)?B\d{1,2}A?(?:_VCID_\d)?|SCL|AOT|WVP|TCI|QA_PIXEL|QA_RADSAT|SR_QA_AEROSOL"
    r"|SR_ATMOS_OPACITY|SR_CLOUD_QA|ST_QA|ST_TRAD|ST_URAD|ST_DRAD|ST_ATRAN|ST_EMIS|ST_EMSD"
    r"|ST_CDIST|SAA|SZA|VAA|VZA"
)
_RES = r"(?:[_\-](?P<res>\d{1,3})m)?"
_SPLIT_NAME = re.compile(rf"^(?P<scene>.+?)[_\-.](?P<band>{_TOKEN}){_RES}$", re.IGNORECASE)
_TOKEN_ONLY = re.compile(rf"^(?P<band>{_TOKEN}){_RES}$", re.IGNORECASE)

_S2_NAME = re.compile(r"(^|[_\-])(S2[A-D]|T\d{2}[A-Z]{3})([_\-]|$)|sentinel[_\-]?2", re.IGNORECASE)
_S2_TOKEN = re.compile(r"^(B0\d|B8A|SCL|AOT|WVP|TCI)$", re.IGNORECASE)
_S2_PRODUCT = re.compile(r"S2[A-D]_MSIL(1C|2A)_\d{8}T\d{6}_N(\d{2})(\d{2})_", re.IGNORECASE)
_S2_LEVEL_PART = re.compile(r"(?:^|[_\-])(L1C|L2A)(?:[_\-.]|$)", re.IGNORECASE)
_S2_L1C_FILE = re.compile(r"^T\d{2}[A-Z]{3}_\d{8}T\d{6}_(?:B\d{2}|B8A|TCI)$", re.IGNORECASE)
_MGRS = re.compile(r"(?:^|_)T(\d{2}[A-Z]{3})(?:_|$)", re.IGNORECASE)
_LANDSAT_NAME = re.compile(r"^L(?P<sensor>[CEMOT])(?P<mission>0\d)_(?P<level>L\w{3})?", re.IGNORECASE)

_DATE = re.compile(
    r"(?<!\d)(19[7-9]\d|20\d\d)(-?)(\d\d)\2(\d\d)(?:T?(\d\d):?(\d\d):?(\d\d))?(?!\d)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class _Found:
    """A raster file found in the folder and what its name says."""

    path: Path
    group: tuple[str, ...]  # files with the same group are one scene
    scene: str  # the item id asked for
    token: str | None  # band token from the name, None for a whole-file image
    res_m: int | None = None  # resolution suffix of the name (``_20m``)


@dataclass(slots=True)
class FileScene:
    """One item in the making: its id and its files."""

    id: str
    files: list[_Found] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _S2Facts:
    """What the names say about a Sentinel-2 scene: level, baseline, add-offset (DN), MGRS tile."""

    level: str | None
    baseline: str | None
    offset_dn: int
    tile: str | None


# ---------------------------------------------------------------------------- naming, grouping


def _parse_name(path: Path, root: Path) -> _Found:
    stem = path.stem
    m = _SPLIT_NAME.match(stem)
    if m:
        scene = m["scene"]
        return _Found(path, ("scene", scene), scene, m["band"], int(m["res"]) if m["res"] else None)
    m = _TOKEN_ONLY.match(stem)
    if (m or band_info(stem) is not None) and path.parent != root:
        # Earth Search style: <scene>/B04.tif or <scene>/red.tif
        token = m["band"] if m else stem
        res = int(m["res"]) if m and m["res"] else None
        return _Found(path, ("folder", str(path.parent)), path.parent.name, token, res)
    return _Found(path, ("file", str(path)), stem, None)


def group_files(paths: list[Path], root: Path) -> list[FileScene]:
    """Files grouped into scenes, each with a unique item id, sorted by id."""
    groups: dict[tuple[str, ...], FileScene] = {}
    for path in paths:
        found = _parse_name(path, root)
        groups.setdefault(found.group, FileScene(found.scene)).files.append(found)
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


def _sensor(scene: FileScene) -> str | None:
    """``sentinel-2``, ``oli``, ``etm``, ``tm`` or None, from the scene's name, folders and tokens."""
    names = [scene.id, scene.files[0].path.parent.name, scene.files[0].scene]
    for name in names:
        m = _LANDSAT_NAME.match(name)
        if m and (m["sensor"] + m["mission"]).upper() in LANDSAT_SENSORS:
            return LANDSAT_SENSORS[(m["sensor"] + m["mission"]).upper()]
    if any(_S2_NAME.search(name) for name in names):
        return "sentinel-2"
    if any(f.token and _S2_TOKEN.match(f.token) for f in scene.files):
        return "sentinel-2"
    return None


# ---------------------------------------------------------------------------- band meanings


def _band_spec(sensor: str | None, token: str, *, level: str | None, s2: _S2Facts | None) -> BandSpec:
    """The meaning of band token ``token`` of a sensor (None: unknown sensor)."""
    up = token.upper()
    if sensor == "sentinel-2":
        offset = s2.offset_dn if s2 else 0
        return s2_band_spec(up, s2_scale_offset(offset) if offset else None)
    if sensor in LANDSAT_BANDS:
        return _landsat_spec(sensor, up, level)
    b = band_info(token)
    if b is not None and not re.fullmatch(r"B\d{1,2}A?", up):
        return BandSpec(b.name, b.common_name, b.center_um)
    m = re.fullmatch(r"B(\d{1,2}A?)", up)
    return BandSpec(f"band{m[1].lstrip('0').lower()}" if m else token.lower())


def s2_band_spec(token: str, scale_offset: tuple[float, float] | None, *,
                 aux_quantification: float | None = None) -> BandSpec:
    """A Sentinel-2 band file's meaning.

    ``scale_offset`` turns a reflectance band's numbers into reflectance; ``aux_quantification``
    is the quantification value of the AOT and WVP layers (default: ESA's 1000).
    """
    up = token.upper()
    label = f"Sentinel-2 {up}"
    if up in {"AOT", "WVP"}:
        quant = aux_quantification or S2_AUX_QUANTIFICATION[up.lower()]
        return BandSpec(up.lower(), None, None, label, (1.0 / quant, 0.0))
    if up == "TCI":
        return BandSpec("visual", None, None, "Sentinel-2 true colour image", None, ("visual",), 10)
    b = band_info(up)
    if b is None:
        return BandSpec(up.lower(), description=label)
    if b.name == "scl":
        return BandSpec("scl", None, None, "Sentinel-2 scene classification", native_res_m=b.resolution_m)
    return BandSpec(b.name, b.common_name, b.center_um, f"{label} ({b.description})", scale_offset,
                    native_res_m=b.resolution_m)


def _landsat_spec(sensor: str, up: str, level: str | None) -> BandSpec:
    label = f"{LANDSAT_LABELS[sensor]} {up}"
    m = re.fullmatch(r"(SR_|ST_)?B(\d{1,2})", up)
    if m and int(m[2]) in LANDSAT_BANDS[sensor]:
        key, common, center = LANDSAT_BANDS[sensor][int(m[2])]
        if m[1] == "SR_":
            rescale = LANDSAT_SR_RESCALE
        elif m[1] == "ST_":
            rescale = LANDSAT_ST_RESCALE
        elif sensor == "oli" and level and level.upper().startswith("L1") and int(m[2]) <= 9:
            rescale = LANDSAT_L1_TOA_RESCALE
        else:
            rescale = None
        return BandSpec(key, common, center, label, rescale)
    if up.startswith(("QA_", "SR_QA", "SR_CLOUD_QA", "ST_QA")):
        return BandSpec(up.lower(), None, None, label, (1.0, 0.0))
    if up in {"SAA", "SZA", "VAA", "VZA"}:
        return BandSpec(up.lower(), None, None, f"{label} angle (degrees)", (0.01, 0.0))
    return BandSpec(up.lower(), description=label)


def _s2_facts(scene: FileScene, root: Path) -> _S2Facts:
    """Level, baseline, add-offset and tile of a Sentinel-2 scene, from its file and folder names."""
    parts = [p for f in scene.files for p in f.path.parts]
    product = next((m for p in parts if (m := _S2_PRODUCT.search(p))), None)
    below = [scene.id, *sorted({p for f in scene.files for p in f.path.relative_to(root).parts[:-1]})]
    tile = next((m[1].upper() for n in [scene.id, *below] if (m := _MGRS.search(n))), None)
    if product:
        baseline = f"{product[2]}.{product[3]}"
        return _S2Facts(f"L{product[1].upper()}", baseline, s2_offset_dn(baseline), tile)
    level = next((m[1].upper() for n in [*below, root.name] if (m := _S2_LEVEL_PART.search(n))), None)
    tokens = {(f.token or "").upper() for f in scene.files}
    if level is None and (any(f.res_m for f in scene.files) or tokens & {"SCL", "AOT", "WVP"}):
        level = "L2A"
    bands = [f for f in scene.files if f.token]
    if level is None and bands and all(_S2_L1C_FILE.match(f.path.stem) for f in bands):
        level = "L1C"
    when = _date_in(scene.id) or next((d for f in scene.files if (d := _date_in(f.path.stem))), None)
    esa_jp2 = all(f.path.suffix.lower() == ".jp2" for f in scene.files)
    offset = S2_OFFSET_DN if esa_jp2 and when is not None and when.date() >= S2_OFFSET_SINCE else 0
    return _S2Facts(level, None, offset, tile)


# ---------------------------------------------------------------------------- items


def _rank(spec: BandSpec | None, meta: RasterMeta) -> tuple[int, float]:
    """Lower is better: the band's native resolution first, then the finest."""
    native = spec is not None and spec.native_res_m is not None and math.isclose(meta.res_m, spec.native_res_m)
    return (0 if native else 1, meta.pixel_area)


def _cloud_band(spec: BandSpec | None, sensor: str | None) -> str | None:
    if spec and spec.key == "scl" and sensor == "sentinel-2":
        return "scl"
    if spec and spec.key == "qa_pixel" and sensor in LANDSAT_BANDS:
        return "qa_pixel"
    return None


def file_scene_item(scene: FileScene, root: Path, collection_id: str) -> pystac.Item:
    """The STAC item of one scene of loose files (read, checked, dated)."""
    sensor = _sensor(scene)
    level = _landsat_level(scene) if sensor in LANDSAT_BANDS else None
    s2 = _s2_facts(scene, root) if sensor == "sentinel-2" else None
    assets: dict[str, tuple[pystac.Asset, RasterMeta, BandSpec | None]] = {}
    metas: list[RasterMeta] = []
    for found in scene.files:
        spec = _band_spec(sensor, found.token, level=level, s2=s2) if found.token else None
        meta = read_raster(str(found.path), cloud_band=_cloud_band(spec, sensor))
        metas.append(meta)
        key, asset = make_asset(meta, spec)
        if key in assets:
            other = assets[key][1]
            if math.isclose(other.pixel_area, meta.pixel_area):
                raise CatalogError(
                    f"{other.href} and {meta.href} are both band {key} of scene {scene.id} at the same "
                    "resolution; move one of them out of the folder and index again"
                )
            if _rank(spec, other) <= _rank(spec, meta):
                continue  # the same band at another resolution (Sentinel-2 R20m/R60m copies)
        assets[key] = (asset, meta, spec)

    mtl = _read_mtl(scene) if sensor in LANDSAT_BANDS else {}
    when = _scene_datetime(scene, root, metas, mtl)
    geometry = footprint_of([m for _, m, _ in assets.values()])
    props = _properties(sensor, scene, s2, metas, [m for _, m, _ in assets.values()], mtl)
    extensions = list(STAC_EXTENSIONS) + ([PROCESSING_EXTENSION] if "processing:level" in props else [])
    item = pystac.Item(
        id=scene.id,
        geometry=shapely.geometry.mapping(geometry),
        bbox=list(geometry.bounds),
        datetime=when,
        properties=props,
        stac_extensions=extensions,
        collection=collection_id,
    )
    for key in sorted(assets):
        item.add_asset(key, assets[key][0])
    return item


def _properties(sensor: str | None, scene: FileScene, s2: _S2Facts | None, metas: list[RasterMeta],
                kept: list[RasterMeta], mtl: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    cloud = mtl.get("cloud_cover")
    if cloud is None:
        cloud = next((m.tag_cloud_cover for m in metas if m.tag_cloud_cover is not None), None)
    if cloud is None:
        cloud = next((m.cloud_cover for m in metas if m.cloud_cover is not None), None)
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    codes = {m.proj["proj:code"] for m in kept}
    if len(codes) == 1 and None not in codes:
        props["proj:code"] = codes.pop()
    props.update(_platform_props(sensor, [scene.id, *scene.files[0].path.parts[::-1]]))
    if s2 is not None:
        if s2.level:
            props["processing:level"] = s2.level
        if s2.baseline:
            props["s2:processing_baseline"] = s2.baseline
        if s2.tile:
            props["s2:mgrs_tile"] = s2.tile
    return props


def _platform_props(sensor: str | None, names: list[str]) -> dict[str, Any]:
    """Common metadata (constellation, platform, instruments) from the scene id or its folders."""
    if sensor == "sentinel-2":
        props: dict[str, Any] = {"constellation": "sentinel-2", "instruments": ["msi"]}
        m = next((m for n in names if (m := re.match(r"S2([A-D])_", n, re.IGNORECASE))), None)
        if m:
            props["platform"] = f"sentinel-2{m[1].lower()}"
        return props
    if sensor in LANDSAT_BANDS:
        m = _LANDSAT_NAME.match(names[0])
        instruments = {"oli": ["oli", "tirs"], "etm": ["etm+"], "tm": ["tm"]}[sensor]
        props = {"constellation": "landsat", "instruments": instruments}
        if m:
            props["platform"] = f"landsat-{int(m['mission'])}"
        return props
    return {}


def _landsat_level(scene: FileScene) -> str | None:
    m = _LANDSAT_NAME.match(scene.id)
    return m["level"] if m and m["level"] else None


def _read_mtl(scene: FileScene) -> dict[str, Any]:
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


def _scene_datetime(scene: FileScene, root: Path, metas: list[RasterMeta], mtl: dict[str, Any]) -> dt.datetime:
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
