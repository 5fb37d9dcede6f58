"""Where real scenes come from: two public PyPI sdists, or the user's own Sentinel-2 imagery.

:func:`fetch_registry_scenes` downloads two source distributions from PyPI with the user's own pip
(``pip download --no-deps --no-binary :all:``, nothing installed, nothing run) into a cache folder
(default ``<data>/real-scenes``, see :mod:`geoloom.platform.userdata`) and reads three real scenes
from their test data:

* ``s2cloudless==1.2.2``: ``s2cloudless/TestInputs/input_arrays.npz``, 856 x 512 px, all 13 Level-1C
  bands of the Betsiboka estuary (Madagascar) and its cloud mask; no georeference, so it is put on an
  assigned UTM grid with 10 m pixels (its true pixel size is unknown);
* ``eotdl==2025.4.2``: two 12-band GeoTIFFs of the Boadella reservoir (Catalonia), 13 and 28 January
  2020, taken as Level-2A, EPSG:4326 as delivered.

:func:`real_scenes_from_catalog` reads the user's own imagery: a folder that ``geoloom catalog index``
reads (Sentinel-2 SAFE folders or zips, loose JPEG 2000 / GeoTIFF band files), one SAFE folder or zip,
or a static STAC catalog (``catalog.json``, or a folder holding one). Each Sentinel-2 item with the 12
reflectance bands and a processing level (L1C or L2A) becomes a :class:`RealScene` on the grid of its
10 m blue band, every band resampled onto it (bilinear, as geoloom's reader does), B10 (cirrus) where
the item has it. A scene larger than ``max_px`` is cut to the ``max_px`` x ``max_px`` window holding
the most clear water by the independent water test (on a decimated overview of the scene; ties go to
the window nearest the scene's centre). The cloud mask (used only to place implants and to report
false alarms near clouds) is a simple test on the bands, independent of every model: blue reflectance
above 0.12 (L2A) or 0.22 (L1C, top of atmosphere), or cirrus (B10) above 0.012 where present,
dilated by 5 px.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.errors import CatalogError, ImageryReadError, NoImageryError
from geoloom.platform.models.training.real_scenes import (
    CLOUD_BLUE_MIN, CLOUD_DILATION, MNDWI_MIN, NDWI_MIN, RealScene, scene_from_eotdl, scene_from_s2cloudless,
)

__all__ = [
    "CIRRUS_MIN", "CLOUD_BLUE_MIN_L1C", "MAX_PX", "REGISTRY_SOURCES", "RegistrySource", "fetch_registry_file",
    "fetch_registry_scenes", "real_scenes_cache_dir", "real_scenes_from_catalog",
]

#: Largest side (px) of a scene read from the user's imagery.
MAX_PX = 2048
#: Blue top-of-atmosphere reflectance above which a Level-1C pixel is called cloud (L2A: CLOUD_BLUE_MIN).
CLOUD_BLUE_MIN_L1C = 0.22
#: Cirrus (B10) reflectance above which a pixel is called (cirrus) cloud.
CIRRUS_MIN = 0.012
#: Longest side (px) of the overview on which the window with the most clear water is found.
OVERVIEW_PX = 512
#: pip's network timeout (s) and retries: an offline machine fails within a minute, not after five.
PIP_TIMEOUT_S, PIP_RETRIES = 20, 1


@dataclass(frozen=True, slots=True)
class RegistrySource:
    """One real scene in a PyPI sdist: the pinned requirement and the member of its archive."""

    name: str
    requirement: str
    member: str


_EOTDL_DIR = "eotdl-2025.4.2/tests/unit/curation/stac/test_data/sentinel_2"
#: The real scenes of the public registry, by name.
REGISTRY_SOURCES: dict[str, RegistrySource] = {s.name: s for s in (
    RegistrySource("s2cloudless", "s2cloudless==1.2.2", "s2cloudless-1.2.2/s2cloudless/TestInputs/input_arrays.npz"),
    RegistrySource("boadella-2020-01-13", "eotdl==2025.4.2", f"{_EOTDL_DIR}/Boadella_2020-01-13.tif"),
    RegistrySource("boadella-2020-01-28", "eotdl==2025.4.2", f"{_EOTDL_DIR}/Boadella_2020-01-28.tif"),
)}


def real_scenes_cache_dir() -> Path:
    """The default cache of the registry scenes: ``real-scenes`` in the per-user data folder."""
    from geoloom.platform.userdata import data_dir

    return data_dir() / "real-scenes"


# --------------------------------------------------------------------------- the public registry
def fetch_registry_file(name: str, cache_dir: str | Path | None = None) -> Path:
    """The file of :data:`REGISTRY_SOURCES` ``name``, from its sdist (downloaded and unpacked once)."""
    source = REGISTRY_SOURCES[name]
    cache = Path(cache_dir) if cache_dir is not None else real_scenes_cache_dir()
    target = cache / "files" / source.member
    if target.exists():
        return target
    sdists = cache / "sdists"
    archive = sdists / f"{source.requirement.replace('==', '-')}.tar.gz"
    if not archive.exists():
        _pip_download(source.requirement, sdists)
    try:
        with tarfile.open(archive) as tar:
            src = tar.extractfile(tar.getmember(source.member))
            if src is None:
                raise KeyError(source.member)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_suffix(target.suffix + ".part")
            part.write_bytes(src.read())
            part.replace(target)
    except (OSError, KeyError, tarfile.TarError) as exc:
        raise ImageryReadError(f"cannot read {source.member} from {archive} ({type(exc).__name__}: {exc}); delete "
                               f"{archive} and run again", href=str(archive)) from None
    return target


def _pip_download(requirement: str, folder: Path) -> None:
    """``pip download`` of one sdist (no dependencies, no wheels, nothing installed) into ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(f"cannot create the cache folder {folder} ({exc.strerror}); set GEOLOOM_DATA_DIR to a "
                           "writable folder") from None
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
           "--timeout", str(PIP_TIMEOUT_S), "--retries", str(PIP_RETRIES), "-q", "-d", str(folder), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is not None and proc.returncode == 0:
        return
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()] if proc else []
    why = lines[-1] if lines else "pip took more than 10 minutes"
    if "No module named pip" in why:
        why = "this Python has no pip"
    raise CatalogError(f"cannot download {requirement} from PyPI with pip ({why[:200]}); connect to the internet "
                       f"(or set PIP_INDEX_URL to a mirror) and run again, or score on your own imagery with --real PATH")


def fetch_registry_scenes(cache_dir: str | Path | None = None) -> list[RealScene]:
    """The three real scenes of the public registry (Betsiboka L1C, Boadella 13 and 28 January 2020),
    their sdists downloaded into ``cache_dir`` (default :func:`real_scenes_cache_dir`) the first time."""
    scenes = [scene_from_s2cloudless(fetch_registry_file("s2cloudless", cache_dir))]
    for day in ("2020-01-13", "2020-01-28"):
        when = dt.datetime.fromisoformat(f"{day}T10:40:00+00:00")
        scenes.append(scene_from_eotdl(fetch_registry_file(f"boadella-{day}", cache_dir), name=f"boadella-{day}",
                                       when=when))
    return scenes


# --------------------------------------------------------------------------- the user's imagery
def real_scenes_from_catalog(path: str | Path, *, max_px: int = MAX_PX) -> list[RealScene]:
    """Every Sentinel-2 item of a folder, SAFE product, zip or static STAC catalog as a :class:`RealScene`
    (see the module's description); NoImageryError when none has the 12 reflectance bands and a level."""
    from geoloom.platform.catalog import open_catalog
    from geoloom.platform.catalog_index import index_folder

    root = Path(path).expanduser()
    if not root.exists():
        raise CatalogError(f"{root} does not exist; give a folder of Sentinel-2 imagery (SAFE folders or zips, "
                           "band files), a STAC catalog.json, or 'registry' for the public scenes")
    catalog_file = root / "catalog.json" if root.is_dir() and (root / "catalog.json").is_file() else None
    if root.is_file() and root.suffix.lower() == ".json":
        catalog_file = root
    with tempfile.TemporaryDirectory(prefix="geoloom-real-") as tmp:
        if catalog_file is None:
            catalog_file = index_folder(root, Path(tmp) / "catalog")
        items = list(open_catalog(catalog_file).get_items(recursive=True))
        scenes, skipped = [], []
        for item in sorted(items, key=lambda i: i.id):
            scene, why = _item_scene(item, max_px=max_px)
            if scene is None:
                skipped.append(f"{item.id} ({why})")
            else:
                scenes.append(scene)
    if not scenes:
        also = f"; skipped: {', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}" if skipped else ""
        raise NoImageryError(f"no Sentinel-2 scene with the 12 reflectance bands and a processing level (L1C or L2A) "
                             f"in {root}{also}; give Sentinel-2 products or band files B01-B12 and B8A")
    return scenes


def _item_scene(item: Any, *, max_px: int) -> tuple[RealScene | None, str]:
    """The scene of one STAC item, or None and why not."""
    from geoloom.platform.catalog import scene_from_item

    scene = scene_from_item(item)
    missing = [b for b in REFLECTANCE_BANDS if b not in scene.assets]
    if missing:
        return None, f"no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
    if scene.level not in ("L1C", "L2A"):
        return None, "processing level unknown"
    geobox = _window(scene, max_px)
    if geobox is None:
        return None, "its blue band has no CRS"
    return _read_scene(item, scene, geobox), ""


def _window(scene: Any, max_px: int) -> Any:
    """The grid of the scene's blue band, cut to the ``max_px`` window with the most clear water."""
    import rasterio
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from geoloom.platform.reading import gdal_env, read_overview

    blue = scene.assets["blue"]
    with gdal_env(), rasterio.open(blue.href) as src:
        if src.crs is None:
            return None
        h, w, transform, crs = src.height, src.width, src.transform, src.crs.to_string()
    if h <= max_px and w <= max_px:
        return GeoBox((h, w), transform, crs)
    k = max(1, math.ceil(max(h, w) / OVERVIEW_PX))
    shape = (math.ceil(h / k), math.ceil(w / k))
    bands = {b: read_overview(scene.assets[b], shape) for b in ("blue", "green", "nir", "swir16")}
    water = _water_test(bands) & ~(bands["blue"] > _cloud_blue(scene.level))
    wy, wx = min(shape[0], math.ceil(max_px / k)), min(shape[1], math.ceil(max_px / k))
    csum = np.pad(water.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = csum[wy:, wx:] - csum[:-wy, wx:] - csum[wy:, :-wx] + csum[:-wy, :-wx]
    rows, cols = np.nonzero(counts == counts.max())
    centre = ((shape[0] - wy) / 2, (shape[1] - wx) / 2)
    best = int(np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2))
    row0, col0 = min(int(rows[best]) * k, max(h - max_px, 0)), min(int(cols[best]) * k, max(w - max_px, 0))
    return GeoBox((min(h, max_px), min(w, max_px)), transform * Affine.translation(col0, row0), crs)


def _water_test(bands: dict[str, np.ndarray]) -> np.ndarray:
    """The independent water test of :func:`~geoloom.platform.models.training.real_scenes.water_mask`."""
    g, n, s = (bands[b].astype(np.float64) for b in ("green", "nir", "swir16"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((g - n) / (g + n) > NDWI_MIN) & ((g - s) / (g + s) > MNDWI_MIN)


def _cloud_blue(level: str) -> float:
    return CLOUD_BLUE_MIN_L1C if level == "L1C" else CLOUD_BLUE_MIN


def _read_scene(item: Any, scene: Any, geobox: Any) -> RealScene:
    """Every reflectance band (and B10) of ``scene`` on ``geobox``, with the cloud mask of the bands."""
    from scipy.ndimage import binary_dilation

    from geoloom.platform.reading import read_band

    keys = [*REFLECTANCE_BANDS, *(["cirrus"] if "cirrus" in scene.assets else [])]
    bands = {b: np.ascontiguousarray(read_band(scene.assets[b], geobox), dtype=np.float32) for b in keys}
    cloud = bands["blue"] > _cloud_blue(scene.level)
    if "cirrus" in bands:
        cloud |= bands["cirrus"] > CIRRUS_MIN
    cloud = binary_dilation(cloud, iterations=CLOUD_DILATION)
    tile = _tile(item, geobox)
    h, w = geobox.shape.yx
    full = _full_shape(scene)
    window = "whole scene" if full == (h, w) else f"{h} x {w} px window of {full[0]} x {full[1]} px (most clear water)"
    note = f"{scene.id}: real {scene.level}, {window}, {abs(geobox.transform.a):g} m pixels"
    return RealScene(_safe_name(item.id), scene.level, bands, str(geobox.crs), geobox.transform, scene.time, tile,
                     cloud, note)


def _full_shape(scene: Any) -> tuple[int, int]:
    import rasterio

    from geoloom.platform.reading import gdal_env

    with gdal_env(), rasterio.open(scene.assets["blue"].href) as src:
        return src.height, src.width


def _tile(item: Any, geobox: Any) -> str:
    """The MGRS tile of the item (its properties or id), else a stand-in ``<zone>XXX`` from its UTM CRS."""
    for key in ("s2:mgrs_tile", "mgrs:tile", "s2:tile_id", "grid:code"):
        value = str(item.properties.get(key) or "")
        if m := re.search(r"(\d{2}[A-Z]{3})", value.upper()):
            return m[1]
    if m := re.search(r"(?:^|_)T(\d{2}[A-Z]{3})(?:_|$)", item.id.upper()):
        return m[1]
    epsg = geobox.crs.epsg or 0
    return f"{epsg % 100:02d}XXX" if 32601 <= epsg <= 32760 else "00XXX"


def _safe_name(item_id: str) -> str:
    """A file-name-safe scene name; underscores become hyphens so that no product name (``S2B_MSIL2A_..._N0509_``)
    survives into the written files, whose baseline add-offset the indexer would otherwise apply a second time."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", item_id).strip("-.") or "scene"
