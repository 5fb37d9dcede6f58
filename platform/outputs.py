"""Output folders and STAC catalogs that geoloom writes: one check of a folder, one catalog writer.

Used by runs (``--out``), ``geoloom catalog index`` and ``geoloom sample-data``: a folder that is a
file, cannot be written or holds someone else's catalog is refused with a one-line
:class:`OutputError`, before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import pystac

from geoloom.platform.errors import OutputError

__all__ = ["check_catalog_folder", "items_extent", "writable_folder", "write_catalog"]


def writable_folder(folder: str | Path, *, what: str = "the output", create: bool = True) -> Path:
    """``folder`` made absolute (and created with ``create``); OutputError if it is a file or cannot be written."""
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file; give a folder for {what}")
    if not create:
        ancestor = folder
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {what} into {folder}: {ancestor} is not writable; pick another --out")
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {folder} ({exc.strerror or exc}); choose a writable --out folder") from None
    return folder


def check_catalog_folder(folder: str | Path, catalog_id: str) -> Path:
    """The folder a catalog goes into (``.../catalog.json`` accepted too): refused when it holds a catalog
    of another id (a catalog of the same id is geoloom's own and is replaced)."""
    folder = Path(folder).expanduser()
    folder = (folder.parent if folder.name == "catalog.json" else folder).absolute()
    existing = folder / "catalog.json"
    if existing.is_file():
        try:
            other = json.loads(existing.read_text()).get("id")
        except (OSError, ValueError, AttributeError):
            other = None
        if other != catalog_id:
            raise OutputError(f"{folder} already holds another catalog ({existing}); give an empty folder "
                              "for --out or delete that catalog first")
    return writable_folder(folder, what="the catalog", create=False)


def items_extent(items: Sequence[pystac.Item]) -> pystac.Extent:
    """The spatial and temporal extent covering ``items``."""
    boxes = [i.bbox for i in items if i.bbox]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = sorted(i.datetime for i in items if i.datetime)
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[times[0], times[-1]]]))


def write_catalog(folder: Path, catalog: pystac.Catalog) -> Path:
    """Save a catalog (its collections and items) into ``folder`` as a self-contained static catalog; returns
    the ``catalog.json`` path. Local files are linked relative to the items (the catalog moves with the
    imagery); GDAL paths (``/vsizip/<zip>/...``, which name the zip absolutely) stay as they are."""
    catalog.normalize_hrefs(str(folder))
    items = list(catalog.get_items(recursive=True))
    gdal_paths = {(item.id, key): a.href for item in items for key, a in item.assets.items() if a.href.startswith("/vsi")}
    catalog.make_all_asset_hrefs_relative()
    for item in items:
        for key, asset in item.assets.items():
            asset.href = gdal_paths.get((item.id, key), asset.href)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
    except OSError as exc:
        raise OutputError(f"cannot write the catalog into {folder}: {exc.strerror or exc}; pick another --out") from None
    return folder / "catalog.json"
