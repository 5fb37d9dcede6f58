"""A run as KMZ for Google Earth and QGIS: the detections as placemarks over the primary layer as an image.

``doc.kml`` holds a ``GroundOverlay`` of the primary layer (a per-date run's most recent one),
reprojected to lon/lat and coloured as on the map (``files/overlay.png``, at most
:data:`MAX_OVERLAY_PX` on its long side), and a folder of placemarks, one per detection, with its
polygon, score, area, date and scene.
"""

from __future__ import annotations

import io
import math
import os
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform import xyz_tiles, styles
from geoloom.platform.export import PrimaryLayer, primary_layer
from geoloom.platform.export_tiles import legend, style_of

__all__ = ["MAX_OVERLAY_PX", "KML_NS", "overlay_image", "write_kmz"]

#: The most pixels on the long side of the overlay image.
MAX_OVERLAY_PX = 4096
#: The KML 2.2 namespace.
KML_NS = "http://www.opengis.net/kml/2.2"
#: Where the overlay image lies inside the KMZ.
_OVERLAY = "files/overlay.png"
#: The detection fields a placemark's description and data carry, in this order.
_FIELDS = ("score", "area_m2", "date", "datetime", "scene", "class", "model")


def overlay_image(layer: PrimaryLayer, style: xyz_tiles.LayerStyle, *,
                  max_px: int = MAX_OVERLAY_PX) -> tuple[bytes, tuple[float, float, float, float]]:
    """The layer reprojected to lon/lat and coloured (PNG), with its (west, south, east, north)."""
    import rasterio
    from PIL import Image
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(layer.path) as src:
        crs, bounds, nodata, dtype = src.crs, src.bounds, src.nodata, src.dtypes[0]
        transform, width, height = calculate_default_transform(crs, "EPSG:4326", src.width, src.height, *bounds)
        levels = src.overviews(1)
    scale = max(width, height) / max_px
    if scale > 1:
        width, height = max(1, round(width / scale)), max(1, round(height / scale))
        transform, width, height = calculate_default_transform(crs, "EPSG:4326", src.width, src.height, *bounds,
                                                               dst_width=width, dst_height=height)
    usable = [i for i, f in enumerate(levels) if f <= scale]  # the coarsest overview still as fine as the image
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    fill = nodata if nodata is not None else (np.nan if floating else 0)
    values = np.full((height, width), fill, dtype=dtype)
    with rasterio.open(layer.path, **({"overview_level": usable[-1]} if usable else {})) as src:
        reproject(rasterio.band(src, 1), values, dst_transform=transform, dst_crs="EPSG:4326",
                  src_nodata=nodata, dst_nodata=fill, resampling=Resampling.nearest)
    if floating and (nodata is None or math.isnan(nodata)):
        valid = np.isfinite(values)
    else:
        valid = values != fill if nodata is not None else np.ones(values.shape, dtype=bool)
    buf = io.BytesIO()
    Image.fromarray(xyz_tiles.colour(values, valid, style), mode="RGBA").save(buf, format="PNG")
    west, north = transform.c, transform.f
    east, south = west + width * transform.a, north + height * transform.e
    return buf.getvalue(), (west, south, east, north)


def write_kmz(folder: Path, manifest: dict[str, Any], dst: Path) -> Path:
    """``doc.kml`` (placemarks and overlay) and the overlay image zipped into ``dst``; returns ``dst``."""
    layer = primary_layer(folder, manifest)
    style = style_of(layer)
    png, bounds = overlay_image(layer, style)
    detections = _detections(folder)
    kml = _document(manifest.get("id", folder.name), layer, legend(layer, style), bounds, detections)
    part = dst.with_name(dst.name + ".part")
    try:
        with zipfile.ZipFile(part, "w") as zf:  # doc.kml first: Google Earth reads the first .kml
            zf.writestr("doc.kml", kml, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(_OVERLAY, png, compress_type=zipfile.ZIP_STORED)
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    return dst


def _detections(folder: Path) -> Any:
    import geopandas as gpd

    source = folder / "detections.parquet"
    if not source.is_file():
        return None
    frame = gpd.read_parquet(source)
    return frame.to_crs("EPSG:4326") if frame.crs is not None else frame


def _document(run_id: str, layer: PrimaryLayer, key: dict[str, Any], bounds: tuple[float, float, float, float],
              detections: Any) -> bytes:
    """The KML text of a run."""
    ET.register_namespace("", KML_NS)
    root = ET.Element(_tag("kml"))
    doc = _sub(root, "Document")
    _sub(doc, "name", run_id)
    _sub(doc, "description", f"geoloom run {run_id}")
    colour = styles.hex_rgb(styles.CLASS_COLOURS[0])
    kml_colour = "{:02x}{:02x}{:02x}".format(*reversed(colour))  # KML colours are aabbggrr
    look = _sub(doc, "Style", id="detection")
    line = _sub(look, "LineStyle")
    _sub(line, "color", "ff" + kml_colour)
    _sub(line, "width", "2")
    _sub(_sub(look, "PolyStyle"), "color", "4d" + kml_colour)
    overlay = _sub(doc, "GroundOverlay")
    _sub(overlay, "name", layer.name + (f" {layer.date}" if layer.date else ""))
    _sub(overlay, "description", _legend_text(layer, key))
    _sub(_sub(overlay, "Icon"), "href", _OVERLAY)
    box = _sub(overlay, "LatLonBox")
    west, south, east, north = bounds
    for name, value in (("north", north), ("south", south), ("east", east), ("west", west)):
        _sub(box, name, f"{value:.9f}")
    if detections is not None:
        found = _sub(doc, "Folder")
        _sub(found, "name", "detections")
        rows = detections.drop(columns=detections.geometry.name).to_dict("records")
        for row, geom in zip(rows, detections.geometry, strict=True):
            _placemark(found, row, geom)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _placemark(parent: ET.Element, row: dict[str, Any], geom: Any) -> None:
    mark = _sub(parent, "Placemark")
    _sub(mark, "name", str(row.get("id", "")))
    fields = {k: row[k] for k in _FIELDS if k in row and row[k] is not None and str(row[k]) != "nan"}
    _sub(mark, "description", ", ".join(f"{k}: {_text(v)}" for k, v in fields.items()))
    when = str(fields.get("datetime") or fields.get("date") or "")
    if when:
        _sub(_sub(mark, "TimeStamp"), "when", when)
    _sub(mark, "styleUrl", "#detection")
    data = _sub(mark, "ExtendedData")
    for k, v in fields.items():
        _sub(_sub(data, "Data", name=k), "value", _text(v))
    _geometry(mark, geom)


def _geometry(parent: ET.Element, geom: Any) -> None:
    """A shapely polygon, multi-polygon or collection as KML geometry (other kinds by their centroid)."""
    if geom is None or geom.is_empty:
        return
    if geom.geom_type == "Polygon":
        poly = _sub(parent, "Polygon")
        _sub(_sub(_sub(poly, "outerBoundaryIs"), "LinearRing"), "coordinates", _coords(geom.exterior.coords))
        for ring in geom.interiors:
            _sub(_sub(_sub(poly, "innerBoundaryIs"), "LinearRing"), "coordinates", _coords(ring.coords))
    elif hasattr(geom, "geoms"):
        multi = _sub(parent, "MultiGeometry")
        for part in geom.geoms:
            _geometry(multi, part)
    else:
        _sub(_sub(parent, "Point"), "coordinates", _coords(geom.centroid.coords))


def _coords(xy: Any) -> str:
    return " ".join(f"{x:.7f},{y:.7f}" for x, y, *_ in xy)


def _legend_text(layer: PrimaryLayer, key: dict[str, Any]) -> str:
    head = layer.description or layer.name
    if "classes" in key:
        return f"{head}: " + ", ".join(f"{c['label']} {c['colour']}" for c in key["classes"])
    if "vmin" in key:
        return f"{head}: {key['vmin']:.4g} (dark purple) to {key['vmax']:.4g} (yellow)"
    return head


def _text(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _tag(name: str) -> str:
    return f"{{{KML_NS}}}{name}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, _tag(tag), attrs)
    if text is not None:
        node.text = text
    return node
