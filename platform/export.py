"""A run's results in formats GIS tools and web maps open: a GeoPackage, a PMTiles archive or a KMZ.

``export_run(folder, to=...)`` reads what publishing wrote (``run.json``, the COGs,
``detections.parquet``). ``to="gpkg"`` writes one GeoPackage with three layers:

- ``detections``: the detected objects, as in ``detections.parquet`` (EPSG:4326);
- ``layers``: one row per raster layer, its footprint (EPSG:4326) with file, kind, CRS, resolution,
  size, data type, nodata and QGIS style file;
- ``region``: the run's region with its name, source and area.

``to="pmtiles"`` writes the primary layer as web map tiles in the map's colours
(:mod:`geoloom.platform.export_tiles`); ``to="kmz"`` the detections and the primary layer for
Google Earth (:mod:`geoloom.platform.export_kml`). A per-date run's primary layer is that of its
most recent date.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
from dataclasses import dataclass
from typing import Any

from geoloom.platform.errors import OutputError

__all__ = ["EXPORT_FORMATS", "PLANNED_FORMATS", "PrimaryLayer", "export_run", "layer_files", "primary_layer",
           "raster_layers"]

#: Formats :func:`export_run` writes.
EXPORT_FORMATS: tuple[str, ...] = ("gpkg", "pmtiles", "kmz")
#: Formats asked for that are not written yet (a clear error, not a usage error).
PLANNED_FORMATS: tuple[str, ...] = ()
#: The asset key of a per-date run's COG of one day (``result-2024-01-09``).
_DATE_ASSET = re.compile(r"^result-\d{4}-\d{2}-\d{2}$")


def export_run(folder: str | Path, *, to: str = "gpkg", out: str | Path | None = None) -> Path:
    """Write a finished run in the format ``to`` (default ``RUN/run.gpkg``); returns the file written."""
    folder = Path(folder).expanduser()
    fmt = to.lower().lstrip(".")
    if fmt in PLANNED_FORMATS:
        raise OutputError(f"export to {fmt} is not available yet; use --to gpkg (QGIS, ArcGIS, GDAL open it) "
                          "or the run's detections.geojson and COGs")
    if fmt not in EXPORT_FORMATS:
        raise OutputError(f"cannot export to {to!r}; use one of: {', '.join(EXPORT_FORMATS)}")
    manifest = _manifest(folder)
    dst = Path(out).expanduser() if out is not None else folder / f"run.{fmt}"
    if dst.is_dir():
        raise OutputError(f"{dst} is a folder; give a file name for the export (e.g. {dst / f'run.{fmt}'})")
    if not dst.parent.is_dir():
        raise OutputError(f"the folder of {dst} does not exist; create it or give another --out")
    if fmt == "pmtiles":
        from geoloom.platform.export_tiles import write_pmtiles

        return write_pmtiles(folder, manifest, dst)
    if fmt == "kmz":
        from geoloom.platform.export_kml import write_kmz

        return write_kmz(folder, manifest, dst)
    return _write_gpkg(folder, manifest, dst)


@dataclass(frozen=True, slots=True)
class PrimaryLayer:
    """The raster layer a run is shown by: its COG, name, kind, class labels and when it was seen."""

    path: Path
    name: str
    kind: str
    description: str = ""
    classes: tuple[tuple[int, str], ...] = ()
    date: str = ""

    @property
    def class_values(self) -> tuple[int, ...] | None:
        """The class values the card lists, or None (then the COG's own values are used)."""
        return tuple(v for v, _ in self.classes) or None


def layer_files(folder: str | Path, manifest: dict[str, Any] | None = None) -> list[tuple[str, Path]]:
    """The run's COGs that exist, as (asset key, path) in the manifest's order."""
    folder = Path(folder)
    manifest = manifest or _manifest(folder)
    found = []
    for key, asset in manifest.get("assets", {}).items():
        href = str(asset.get("href", ""))
        path = folder / href.removeprefix("./")
        if href.endswith(".tif") and path.is_file():
            found.append((key, path))
    return found


def primary_layer(folder: str | Path, manifest: dict[str, Any] | None = None) -> PrimaryLayer:
    """The run's primary layer (``result.tif``; for a per-date run, that of its most recent date)."""
    import rasterio

    folder = Path(folder)
    manifest = manifest or _manifest(folder)
    files = dict(layer_files(folder, manifest))
    dated = sorted(k for k in files if _DATE_ASSET.match(k))
    key = "result" if "result" in files else (dated[-1] if dated else None)
    if key is None:
        raise OutputError(f"{folder} has no result.tif to export; run geoloom there again (--resume) to publish it")
    with rasterio.open(files[key]) as src:
        tags = src.tags(1)
    name = tags.get("name", key)
    spec = _card_output(folder, name)
    classes = tuple(sorted((int(v), str(label)) for v, label in (spec.get("classes") or {}).items()))
    return PrimaryLayer(path=files[key], name=name, kind=tags.get("kind") or spec.get("kind", ""),
                        description=spec.get("description", ""), classes=classes,
                        date=key.removeprefix("result-") if key in dated else "")


def _card_output(folder: Path, name: str) -> dict[str, Any]:
    """The model card's entry for output ``name`` (from ``request.json``), or {}."""
    path = folder / "request.json"
    try:
        outputs = json.loads(path.read_text(encoding="utf-8")).get("card", {}).get("outputs", [])
    except (OSError, ValueError):
        return {}
    return next((o for o in outputs if isinstance(o, dict) and o.get("name") == name), {})


def raster_layers(folder: str | Path, manifest: dict[str, Any] | None = None) -> Any:
    """The run's raster layers as a GeoDataFrame (EPSG:4326 footprints with file, kind, grid and style)."""
    import geopandas as gpd
    import rasterio
    from shapely.geometry import box

    from geoloom.platform.region_sources import to_lonlat

    folder = Path(folder)
    manifest = manifest or _manifest(folder)
    rows, geoms = [], []
    for key, path in layer_files(folder, manifest):
        with rasterio.open(path) as src:
            tags = src.tags(1)
            style = path.with_suffix(".qml")
            rows.append({
                "layer": tags.get("name", key), "file": path.name, "kind": tags.get("kind", ""),
                "crs": src.crs.to_string() if src.crs else "", "resolution_m": float(abs(src.res[0])),
                "width": int(src.width), "height": int(src.height), "dtype": src.dtypes[0],
                "nodata": "" if src.nodata is None else str(src.nodata),
                "style": style.name if style.is_file() else "",
            })
            geoms.append(to_lonlat(box(*src.bounds), src.crs.to_wkt()) if src.crs else box(*src.bounds))
    frame = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    run_id, model = manifest.get("id", ""), (manifest.get("properties", {}).get("geoloom:model") or {}).get("name", "")
    return frame.assign(run_id=run_id, model=model)


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "run.json"
    if not path.is_file():
        raise OutputError(f"{folder} holds no finished run (no run.json); run geoloom there first or --resume it")
    return json.loads(path.read_text(encoding="utf-8"))


def _region(manifest: dict[str, Any]) -> Any:
    import geopandas as gpd
    from shapely.geometry import shape

    info = manifest.get("properties", {}).get("geoloom:region") or {}
    row = {"name": info.get("name", "region"), "source": info.get("source", ""),
           "area_km2": float(info.get("area_km2", 0.0)), "run_id": manifest.get("id", "")}
    return gpd.GeoDataFrame([row], geometry=[shape(manifest["geometry"])], crs="EPSG:4326")


def _write_gpkg(folder: Path, manifest: dict[str, Any], dst: Path) -> Path:
    """Every layer into a temporary GeoPackage, renamed over ``dst`` when whole."""
    import geopandas as gpd

    part = dst.with_name(f"{dst.stem}.part{dst.suffix or '.gpkg'}")  # GDAL wants a .gpkg ending
    part.unlink(missing_ok=True)
    layers: list[tuple[str, Any]] = []
    detections = folder / "detections.parquet"
    if detections.is_file():
        layers.append(("detections", gpd.read_parquet(detections)))
    layers += [("layers", raster_layers(folder, manifest)), ("region", _region(manifest))]
    try:
        for name, frame in layers:
            frame.to_file(part, layer=name, driver="GPKG", engine="pyogrio")
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    return dst
