"""Index a folder of imagery as a static STAC catalog: one item per scene, one asset per band.

``geoloom catalog index PATH --out CATALOG`` calls :func:`index_folder`. PATH holds any mix of

- Sentinel-2 products as ESA delivers them, SAFE folders and their zips, Level-1C and Level-2A
  (:mod:`geoloom.platform.sentinel2_safe`): one item per granule, read in place, zips never unpacked;
- loose band files, GeoTIFF or JPEG 2000, named as Sentinel-2 and Landsat downloads name them
  (:mod:`geoloom.platform.band_files`): one item per scene;
- any other GeoTIFF: an item of its own.

PATH may also be one SAFE folder or one zip. Nothing is written unless every file can be read
and dated, and the same PATH always gives the same catalog (sorted traversal, no creation times).
"""

from __future__ import annotations

import os
from pathlib import Path

import pystac

from geoloom.platform.band_files import file_scene_item, group_files
from geoloom.platform.errors import CatalogError, ProductError
from geoloom.platform.outputs import check_catalog_folder, items_extent, write_catalog
from geoloom.platform.raster_assets import RASTER_SUFFIXES
from geoloom.platform.sentinel2_safe import ProductSource, folder_product, product_items, zip_products

__all__ = ["INDEX_CATALOG_ID", "index_folder"]

#: Id of every catalog this module writes; an ``--out`` folder holding another catalog is refused.
INDEX_CATALOG_ID = "geoloom-index"

#: Folders of a SAFE product that hold no bands (masks, previews, auxiliary data): never walked.
_SAFE_ANCILLARY = frozenset({"QI_DATA", "AUX_DATA", "DATASTRIP", "HTML", "rep_info"})


def index_folder(folder: str | Path, out: str | Path, *, collection_id: str = "local-imagery") -> Path:
    """Write a STAC catalog of the imagery under ``folder`` (or of one SAFE folder or zip) into ``out``.

    Returns the path of the new ``catalog.json``.
    """
    root = Path(folder).expanduser()
    if not root.exists() or (root.is_file() and root.suffix.lower() != ".zip"):
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise CatalogError(f"cannot index {root}: it {what}; give the folder that holds your imagery "
                           "(GeoTIFFs, JPEG 2000 band files, Sentinel-2 SAFE folders or zips)")
    root = root.resolve()
    out_dir = _check_out(Path(out).expanduser())

    rasters, products = _find(root)
    if not rasters and not products:
        raise CatalogError(
            f"no GeoTIFF (.tif/.tiff), JPEG 2000 (.jp2) or Sentinel-2 product (.SAFE folder or .zip) found "
            f"under {root}; put your imagery there (convert other formats with gdal_translate -of COG) "
            "and index again"
        )
    base = root if root.is_dir() else root.parent
    made = [(item, source.label) for source in products for item in product_items(source, collection_id)]
    made += [(file_scene_item(scene, base, collection_id), str(scene.files[0].path))
             for scene in group_files(rasters, base)]
    return _write(_unique(made), out_dir, collection_id, root.name)


# ---------------------------------------------------------------------------- finding


def _find(root: Path) -> tuple[list[Path], list[ProductSource]]:
    """Raster files and Sentinel-2 products under ``root``, in sorted order; hidden ones are skipped."""
    if root.is_file():
        return [], zip_products(root)
    rasters: list[Path] = []
    products: list[ProductSource] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        product = folder_product(here)
        if product is not None:
            products.append(product)
            dirnames[:] = []
            continue
        if here.name.lower().endswith(".safe"):
            _check_partial(here)
        if any(p.lower().endswith(".safe") for p in (root.name, *here.relative_to(root).parts)):
            dirnames[:] = [d for d in dirnames if d not in _SAFE_ANCILLARY]
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if name.startswith("."):
                continue
            if suffix in RASTER_SUFFIXES:
                rasters.append(here / name)
            elif suffix == ".zip":
                products += zip_products(here / name)
    return rasters, products


def _check_partial(safe: Path) -> None:
    """ProductError for a SAFE folder with JPEG 2000 bands but without its product metadata."""
    if any(safe.glob("S2*_OPER_MTD_SAF*.xml")):
        raise ProductError(
            f"{safe} is a Sentinel-2 product in the format used before December 2016, which geoloom does not "
            "read; download the reprocessed product from the Copernicus Data Space and index again",
            path=str(safe),
        )
    if any(p.suffix.lower() == ".jp2" for p in safe.rglob("*")):
        raise ProductError(
            f"{safe} holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml, so it is not a complete Sentinel-2 product; "
            "download it again (or unpack its zip completely) and index again",
            path=str(safe),
        )


def _unique(made: list[tuple[pystac.Item, str]]) -> list[pystac.Item]:
    """The items sorted by id; CatalogError when two sources give the same item (a product twice)."""
    seen: dict[str, str] = {}
    for item, origin in made:
        if item.id in seen:
            raise CatalogError(
                f"{seen[item.id]} and {origin} are both scene {item.id}; move one of them out of the folder "
                "and index again"
            )
        seen[item.id] = origin
    return sorted((item for item, _ in made), key=lambda i: i.id)


# ---------------------------------------------------------------------------- writing


def _check_out(out: Path) -> Path:
    """The folder the catalog goes into; OutputError if it cannot be written or holds another catalog."""
    return check_catalog_folder(out, INDEX_CATALOG_ID)


def _write(items: list[pystac.Item], folder: Path, collection_id: str, title: str) -> Path:
    collection = pystac.Collection(
        id=collection_id,
        description=f"Imagery of the folder {title}, indexed by geoloom catalog index",
        extent=items_extent(items),
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
    return write_catalog(folder, catalog)
