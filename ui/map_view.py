"""The folium map: offline assets, basemap with fallback, region, tiles, result layers, detections.

Layers that change while the user looks (tile states, result overlays, detections, the selected
detection, the legend) go into feature groups that streamlit-folium updates in place; the base map
(basemap, region, draw tools) changes only with the region, so the map is not reloaded (and keeps
the user's zoom) when a run starts, progresses, ends or is explored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import folium
import folium.plugins
import numpy as np
from branca.element import Element, MacroElement
from jinja2 import Template
from pyproj import Transformer

from geoloom.workflows import Region

from geoloom.ui.assets import MapAssets, world_outlines
from geoloom.ui.jobs import TileGrid
from geoloom.ui.rendering import Legend, LayerImage, TiledLayer

TILE_COLOURS = {"pending": "#9e9e9e", "running": "#1e88e5", "done": "#43a047", "failed": "#e53935"}
TILE_LABELS = {"pending": "waiting", "running": "running", "done": "done", "failed": "failed"}
REGION_COLOUR = "#ff9800"
DETECTION_COLOUR = "#ff1744"
BACKGROUND = "#dfe7ec"  # the sea
LAND_COLOUR = "#f3f0e6"
SCENE_COLOUR = "#5b6b8c"
MAP_HEIGHT = 620
#: The deepest zoom of the map: a 10 m pixel is some 17 screen pixels wide there.
MAX_ZOOM = 18


class BasemapFallback(MacroElement):
    """Drops online tile layers that cannot load (no internet) and says so on the map."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (map) {
            map.eachLayer(function (layer) {
                if (!(layer instanceof L.TileLayer)) { return; }
                var loaded = false, errors = 0;
                layer.on('tileload', function () { loaded = true; });
                layer.on('tileerror', function () {
                    errors += 1;
                    if (loaded || errors < 2 || !map.hasLayer(layer)) { return; }
                    map.removeLayer(layer);
                    var note = L.control({position: 'bottomleft'});
                    note.onAdd = function () {
                        var div = L.DomUtil.create('div', 'geoloom-offline-note');
                        div.style.cssText = 'background:rgba(255,255,255,.85);padding:2px 6px;'
                            + 'border-radius:3px;font:12px sans-serif';
                        div.innerHTML = 'Offline: the online basemap cannot be reached';
                        return div;
                    };
                    note.addTo(map);
                });
            });
        })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )


class MapLegend(MacroElement):
    """A legend box in the map's bottom-right corner, as a layer: it comes and goes with its group."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = new (L.Layer.extend({
            onAdd: function (map) {
                this._control = L.control({position: 'bottomright'});
                this._control.onAdd = function () {
                    var div = L.DomUtil.create('div', 'geoloom-legend');
                    div.style.cssText = 'background:rgba(255,255,255,.9);padding:6px 8px;border-radius:4px;'
                        + 'box-shadow:0 0 4px rgba(0,0,0,.3)';
                    div.innerHTML = {{ this.html|tojson }};
                    return div;
                };
                this._control.addTo(map);
            },
            onRemove: function (map) {
                if (this._control) { map.removeControl(this._control); }
            }
        }))();
        {{ this.get_name() }}.addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, html: str) -> None:
        super().__init__()
        self._name = "MapLegend"
        self.html = html


@dataclass
class MapContent:
    """Everything the map shows."""

    assets: MapAssets
    region: Region | None = None
    extent_lonlat: tuple[float, float, float, float] | None = None
    draw: bool = True
    basemap: str = "osm"  # "osm" or "none"
    preview: LayerImage | None = None
    grid: TileGrid | None = None
    scenes: Sequence[tuple[str, Any]] = ()  # (scene id, lon/lat footprint) the plan uses
    tile_states: dict[str, str] = field(default_factory=dict)
    tile_errors: dict[str, str] = field(default_factory=dict)
    show_tiles: bool = True
    truecolour: LayerImage | TiledLayer | None = None
    result: LayerImage | TiledLayer | None = None
    result_name: str = "Result"
    opacity: float = 0.75
    detections: dict[str, Any] | None = None
    highlight: dict[str, Any] | None = None
    legends: Sequence[Legend] = ()
    focus_bounds: tuple[float, float, float, float] | None = None  # (W, S, E, N) to zoom to


@dataclass
class MapArgs:
    """What ``st_folium`` needs."""

    fig: folium.Map
    feature_groups: list[folium.FeatureGroup]
    layer_control: folium.LayerControl
    center: tuple[float, float] | None
    zoom: int | None


def build_map(c: MapContent) -> MapArgs:
    """The folium map of ``c`` and its layer groups, layer control, centre and zoom for ``st_folium``."""
    fit = c.region.bbox_lonlat if c.region is not None else c.extent_lonlat
    m = folium.Map(location=[5.59, 0.0] if fit is None else [(fit[1] + fit[3]) / 2, (fit[0] + fit[2]) / 2],
                   zoom_start=2 if fit is None else 11, tiles=None, control_scale=True, max_zoom=MAX_ZOOM)
    if c.assets.mode != "missing":
        m.default_js = list(c.assets.map_js)
        m.default_css = list(c.assets.map_css)
    m.get_root().header.add_child(Element(
        f"<style>.leaflet-container{{background:{BACKGROUND}}} .leaflet-image-layer{{image-rendering:auto}}</style>"
    ))
    if c.assets.folder is not None:
        outlines_layer(c.assets.folder).add_to(m)
    if c.basemap == "osm":
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap", control=True, max_zoom=19).add_to(m)
        BasemapFallback().add_to(m)
    if c.region is not None:
        folium.GeoJson(
            c.region.to_geojson(), name="Region",
            style_function=lambda _: {"color": REGION_COLOUR, "weight": 3, "fill": False, "dashArray": "6 4"},
            tooltip=f"{c.region.name}: {c.region.area_km2:,.1f} km²",
        ).add_to(m)
    if c.draw:
        draw = folium.plugins.Draw(
            export=False, position="topleft",
            draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                          "rectangle": {"shapeOptions": {"color": REGION_COLOUR}},
                          "polygon": {"allowIntersection": False, "shapeOptions": {"color": REGION_COLOUR}}},
            edit_options={"edit": False, "remove": True},
        )
        if c.assets.mode != "missing":
            draw.default_js = list(c.assets.draw_js)
            draw.default_css = list(c.assets.draw_css)
        draw.add_to(m)
    if fit is not None:
        w, s, e, n = fit
        m.fit_bounds([[s, w], [n, e]], padding=(10, 10))

    groups: list[folium.FeatureGroup] = []
    if c.preview is not None:
        fg = folium.FeatureGroup(name="Imagery preview (true colour)", show=True)
        _overlay(c.preview, 1.0, zindex=1).add_to(fg)
        groups.append(fg)
    if c.truecolour is not None:
        fg = folium.FeatureGroup(name="Imagery (true colour)", show=True)
        _raster(c.truecolour, 1.0, zindex=2).add_to(fg)
        groups.append(fg)
    if c.result is not None:
        fg = folium.FeatureGroup(name=c.result_name, show=True)
        _raster(c.result, c.opacity, zindex=3).add_to(fg)
        groups.append(fg)
    if c.scenes:
        fg = folium.FeatureGroup(name="Scene footprints", show=True)
        scenes_layer(c.scenes).add_to(fg)
        groups.append(fg)
    if c.grid is not None and c.show_tiles:
        fg = folium.FeatureGroup(name="Tiles", show=True)
        tiles_layer(c.grid, c.tile_states, c.tile_errors).add_to(fg)
        groups.append(fg)
    if c.detections is not None and c.detections.get("features"):
        fg = folium.FeatureGroup(name="Detections", show=True)
        detections_layer(c.detections).add_to(fg)
        groups.append(fg)
    if c.highlight is not None:
        fg = folium.FeatureGroup(name="Selected detection", show=True)
        folium.GeoJson(c.highlight, style_function=lambda _: {"color": "#ffea00", "weight": 4, "fillOpacity": 0.1}).add_to(fg)
        groups.append(fg)
    if c.legends:
        fg = folium.FeatureGroup(name="Legend", show=True, control=False)
        MapLegend("<hr style='margin:4px 0'>".join(lg.html() for lg in c.legends)).add_to(fg)
        groups.append(fg)
    center = zoom = None
    if c.focus_bounds is not None:
        w, s, e, n = c.focus_bounds
        center, zoom = ((s + n) / 2, (w + e) / 2), zoom_for(c.focus_bounds)
    return MapArgs(m, groups, folium.LayerControl(collapsed=False, position="topright"), center, zoom)


def outlines_layer(folder: Path) -> folium.FeatureGroup:
    """Land, coasts and borders (Natural Earth, served by the app) under everything else."""
    fg = folium.FeatureGroup(name="Land and borders (offline)", show=True, control=True)
    folium.GeoJson(world_outlines(str(folder)), interactive=False,
                   style_function=lambda _: {"color": "#8a8f99", "weight": 1, "fillColor": LAND_COLOUR,
                                             "fillOpacity": 1.0}).add_to(fg)
    return fg


def _raster(layer: LayerImage | TiledLayer, opacity: float, *, zindex: int) -> Any:
    """A result or true-colour layer: XYZ tiles from its COG when served so, else an image overlay."""
    if isinstance(layer, TiledLayer) and layer.url:
        (s, w), (n, e) = layer.bounds_latlon
        return folium.raster_layers.TileLayer(
            tiles=layer.url, attr="geoloom", name="tiles", overlay=True, control=False, opacity=float(opacity),
            max_zoom=MAX_ZOOM, max_native_zoom=MAX_ZOOM, bounds=[[s, w], [n, e]], zindex=zindex,
            class_name="geoloom-tiles")
    return _overlay(layer, opacity, zindex=zindex)


def _overlay(img: LayerImage, opacity: float, *, zindex: int = 2) -> folium.raster_layers.ImageOverlay:
    (s, w), (n, e) = img.bounds_latlon
    return folium.raster_layers.ImageOverlay(img.data_url, bounds=[[s, w], [n, e]], opacity=float(opacity),
                                             interactive=False, zindex=zindex)


def scenes_layer(scenes: Sequence[tuple[str, Any]]) -> folium.GeoJson:
    """The footprints of the scenes a run will use, named in their tooltips."""
    import shapely.geometry

    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"scene": sid}, "geometry": shapely.geometry.mapping(geom)}
        for sid, geom in scenes]}
    return folium.GeoJson(fc, name="Scene footprints", style_function=lambda _: {
        "color": SCENE_COLOUR, "weight": 1.5, "fill": False, "dashArray": "2 4"},
        tooltip=folium.GeoJsonTooltip(fields=["scene"], labels=False))


def tiles_layer(grid: TileGrid, states: dict[str, str], errors: dict[str, str]) -> folium.GeoJson:
    """The tiles' outlines coloured by state, with each tile's state (and error) as a tooltip."""
    fc = tile_features(grid, states, errors)

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        state = feature["properties"]["state"]
        colour = TILE_COLOURS.get(state, TILE_COLOURS["pending"])
        return {"color": colour, "weight": 2, "fillColor": colour,
                "fillOpacity": {"done": 0.0, "running": 0.25, "failed": 0.35}.get(state, 0.08),
                "dashArray": "4 4" if state == "pending" else None}

    return folium.GeoJson(fc, name="Tiles", style_function=style,
                          tooltip=folium.GeoJsonTooltip(fields=["label"], labels=False))


def tile_features(grid: TileGrid, states: dict[str, str], errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The tiles' cores as lon/lat polygons with their state (pending / running / done / failed)."""
    errors = errors or {}
    to_lonlat = Transformer.from_crs(grid.geobox.crs.to_wkt(), "EPSG:4326", always_xy=True)
    t = grid.geobox.transform
    h, w = grid.geobox.shape.yx
    ts = grid.tile_size
    features = []
    for key, row, col in grid.tiles:
        y0, y1 = row * ts, min((row + 1) * ts, h)
        x0, x1 = col * ts, min((col + 1) * ts, w)
        ring = _ring(x0, y0, x1, y1)
        xs, ys = t * (ring[:, 0], ring[:, 1])
        lon, lat = to_lonlat.transform(xs, ys)
        state = states.get(key, "pending")
        label = f"tile {row},{col}: {TILE_LABELS.get(state, state)}"
        if key in errors:
            label += f" ({errors[key]})"
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]]},
            "properties": {"key": key, "row": row, "col": col, "state": state, "label": label},
        })
    return {"type": "FeatureCollection", "features": features}


def _ring(x0: float, y0: float, x1: float, y1: float, n: int = 8) -> np.ndarray:
    """A densified closed rectangle in pixel coordinates (edges bend after reprojection)."""
    s = np.linspace(0, 1, n, endpoint=False)
    top = np.c_[x0 + (x1 - x0) * s, np.full(n, y0)]
    right = np.c_[np.full(n, x1), y0 + (y1 - y0) * s]
    bottom = np.c_[x1 - (x1 - x0) * s, np.full(n, y1)]
    left = np.c_[np.full(n, x0), y1 - (y1 - y0) * s]
    ring = np.vstack([top, right, bottom, left])
    return np.vstack([ring, ring[:1]])


def detections_layer(fc: dict[str, Any]) -> folium.GeoJson:
    """Detections as outlined polygons with a popup of their score, area, date, scene and class."""
    fields = [f for f in ("score", "area", "date", "scene", "class") if f in fc["features"][0]["properties"]]
    aliases = {"score": "Score", "area": "Area", "date": "Date", "scene": "Scene", "class": "Class"}
    return folium.GeoJson(
        fc, name="Detections",
        style_function=lambda _: {"color": DETECTION_COLOUR, "weight": 2, "fillColor": DETECTION_COLOUR, "fillOpacity": 0.35},
        highlight_function=lambda _: {"weight": 4, "fillOpacity": 0.6},
        popup=folium.GeoJsonPopup(fields=fields, aliases=[aliases[f] for f in fields], localize=False),
    )


def zoom_for(bounds: tuple[float, float, float, float], *, width_px: int = 700, height_px: int = MAP_HEIGHT) -> int:
    """The Web Mercator zoom level that fits ``(W, S, E, N)`` in the map, with some margin."""
    w, s, e, n = bounds
    lon_span = max(abs(e - w), 1e-6)
    y = lambda lat: math.log(math.tan(math.pi / 4 + math.radians(max(min(lat, 85), -85)) / 2))  # noqa: E731
    lat_span = max(abs(y(n) - y(s)), 1e-9)
    z_lon = math.log2(width_px * 360 / (256 * lon_span * 3))
    z_lat = math.log2(height_px * 2 * math.pi / (256 * lat_span * 3))
    return int(max(2, min(16, math.floor(min(z_lon, z_lat)))))
