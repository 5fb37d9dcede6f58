"""The map's JavaScript and CSS, served by the app itself (no CDN at run time).

``python -m geoloom.ui.fetch_assets`` unpacks pinned npm packages into ``ui/static/vendor`` (a
checkout; a wheel built from it carries them); Streamlit serves that folder under ``/app/static/``
when ``server.enableStaticServing`` is on. An installed package without them fetches them once
into the per-user data folder (``geoloom ui`` does), from where they are inlined as ``data:`` URLs,
as they are whenever static serving is off.
"""

from __future__ import annotations

import base64
import functools
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The package's own copy (served as static files).
VENDOR_DIR = Path(__file__).resolve().with_name("static") / "vendor"


@dataclass(frozen=True, slots=True)
class NpmPackage:
    """One pinned npm package and the files the page needs from it (paths inside the tarball)."""

    name: str
    version: str
    integrity: str
    files: tuple[str, ...]
    folder: str

    @property
    def spec(self) -> str:
        """The npm spec, ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def tarball_url(self) -> str:
        """Where the npm registry serves this version's tarball."""
        base = self.name.split("/")[-1]
        return f"https://registry.npmjs.org/{self.name}/-/{base}-{self.version}.tgz"


_LEAFLET_IMAGES = ("layers-2x.png", "layers.png", "marker-icon-2x.png", "marker-icon.png", "marker-shadow.png")

PACKAGES: tuple[NpmPackage, ...] = (
    NpmPackage(
        "leaflet", "1.9.4",
        "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA==",
        ("dist/leaflet.js", "dist/leaflet.css", *(f"dist/images/{n}" for n in _LEAFLET_IMAGES)),
        "leaflet",
    ),
    NpmPackage(
        "leaflet-draw", "1.0.4",
        "sha512-rsQ6saQO5ST5Aj6XRFylr5zvarWgzWnrg46zQ1MEOEIHsppdC/8hnN8qMoFvACsPvTioAuysya/TVtog15tyAQ==",
        ("dist/leaflet.draw.js", "dist/leaflet.draw.css", "dist/images/spritesheet.png",
         "dist/images/spritesheet-2x.png", "dist/images/spritesheet.svg"),
        "leaflet-draw",
    ),
    NpmPackage(
        "jquery", "3.7.1",
        "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
        ("dist/jquery.min.js",),
        "jquery",
    ),
    NpmPackage(
        "world-atlas", "2.0.2",
        "sha512-IXfV0qwlKXpckz1FhwXVwKRjiIhOnWttOskm5CtxMsjgE/MXAYRHWJqgXOpM8IkcPBoXnyTU5lFHcYa5ChG0LQ==",
        ("countries-50m.json", "LICENSE"),
        "world-atlas",
    ),
    NpmPackage(
        "bootstrap", "5.2.2",
        "sha512-dEtzMTV71n6Fhmbg4fYJzQsw1N29hJKO1js5ackCgIpDcGid2ETMGC6zwSYw09v05Y+oRdQ9loC54zB1La3hHQ==",
        ("dist/js/bootstrap.bundle.min.js", "dist/css/bootstrap.min.css"),
        "bootstrap",
    ),
)

# What folium's Map and the Draw plug-in load, by their folium names, as paths under VENDOR_DIR.
# Left out on purpose: Font Awesome, Leaflet.awesome-markers, the Bootstrap 3 glyphicons and
# folium's rotate CSS, which only style icon markers; the app draws no icon markers.
MAP_JS = (
    ("leaflet", "leaflet/leaflet.js"),
    ("jquery", "jquery/jquery.min.js"),
    ("bootstrap", "bootstrap/js/bootstrap.bundle.min.js"),
)
MAP_CSS = (
    ("leaflet_css", "leaflet/leaflet.css"),
    ("bootstrap_css", "bootstrap/css/bootstrap.min.css"),
)
DRAW_JS = (("leaflet_draw_js", "leaflet-draw/leaflet.draw.js"),)
DRAW_CSS = (("leaflet_draw_css", "leaflet-draw/leaflet.draw.css"),)
#: Natural Earth countries (TopoJSON, 1:50m): land, coasts and borders, the offline basemap.
WORLD_COUNTRIES = "world-atlas/countries-50m.json"


def user_vendor_dir() -> Path:
    """The per-user copy, for an installed package that does not carry the files."""
    from geoloom.workflows import web_assets_dir

    return web_assets_dir()


def target_path(pkg: NpmPackage, member: str, folder: Path | None = None) -> Path:
    """Where a tarball member lands: ``dist/`` is dropped, the rest kept under the package folder."""
    rel = member[len("dist/"):] if member.startswith("dist/") else member
    return (folder or VENDOR_DIR) / pkg.folder / rel


def missing_files(folder: Path | None = None) -> list[str]:
    """Vendor files the map needs that are not in ``folder`` (default: the package's copy)."""
    needed = [p for _, p in (*MAP_JS, *MAP_CSS, *DRAW_JS, *DRAW_CSS)] + [WORLD_COUNTRIES]
    return [p for p in needed if not ((folder or VENDOR_DIR) / p).is_file()]


def vendor_dir() -> Path | None:
    """The folder holding every file the map needs: the package's copy, else the per-user one."""
    for folder in (VENDOR_DIR, user_vendor_dir()):
        if not missing_files(folder):
            return folder
    return None


@dataclass(frozen=True, slots=True)
class MapAssets:
    """URLs for folium's ``default_js``/``default_css`` of the Map and of the Draw plug-in."""

    map_js: list[tuple[str, str]]
    map_css: list[tuple[str, str]]
    draw_js: list[tuple[str, str]]
    draw_css: list[tuple[str, str]]
    mode: str  # "static" (served by the app), "inline" (data: URLs) or "missing"
    folder: Path | None = None  # where the files are (the offline outlines are read from it)


def static_url(rel: str, base_path: str = "") -> str:
    """The URL under which the app serves a vendor file (``base_path``: the server's base URL path)."""
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    return f"{base}/app/static/vendor/{rel}"


def map_assets(*, static_serving: bool, base_path: str = "") -> MapAssets:
    """The asset URLs for this server: static files when the package's copy is served, inlined otherwise."""
    folder = vendor_dir()
    if folder is None:
        return MapAssets([], [], [], [], "missing")
    if static_serving and folder == VENDOR_DIR:
        def url(rel: str) -> str:
            return static_url(rel, base_path)
        mode = "static"
    else:
        def url(rel: str) -> str:
            return _inline_url(str(folder / rel))
        mode = "inline"
    pairs = lambda items: [(name, url(rel)) for name, rel in items]  # noqa: E731
    return MapAssets(pairs(MAP_JS), pairs(MAP_CSS), pairs(DRAW_JS), pairs(DRAW_CSS), mode, folder)


@functools.lru_cache(maxsize=32)
def _inline_url(file: str) -> str:
    """A ``data:`` URL of a vendor file; CSS gets its ``url(images/...)`` references inlined too."""
    path = Path(file)
    root = path.parent
    while root.parent != root and root.name not in {p.folder for p in PACKAGES}:
        root = root.parent
    if path.suffix == ".css":
        text = path.read_text(encoding="utf-8")

        def repl(m: re.Match[str]) -> str:
            ref = m.group(2)
            if ref.startswith(("data:", "#", "http:", "https:")):
                return m.group(0)
            target = (path.parent / ref).resolve()
            if not target.is_file() or root not in target.parents:
                return m.group(0)
            return f"url({_data_url(target)})"

        text = re.sub(r"url\((['\"]?)([^'\")]+)\1\)", repl, text)
        return "data:text/css;base64," + base64.b64encode(text.encode()).decode()
    return _data_url(path)


@functools.lru_cache(maxsize=2)
def world_outlines(folder: str, tolerance_deg: float = 0.03) -> dict:
    """Natural Earth countries as compact GeoJSON (simplified to ``tolerance_deg``, coordinates to
    0.001 degree, no properties): land, coastlines and borders on the map with no internet."""
    import geopandas as gpd

    countries = gpd.read_file(Path(folder) / WORLD_COUNTRIES, layer="countries").set_crs(4326, allow_override=True)
    data = json.loads(countries.geometry.simplify(tolerance_deg).to_json())

    def rounded(value: Any) -> Any:
        return [rounded(v) for v in value] if isinstance(value, list) else round(value, 3)

    features = [{"type": "Feature", "properties": {},
                 "geometry": {"type": f["geometry"]["type"], "coordinates": rounded(f["geometry"]["coordinates"])}}
                for f in data["features"] if f.get("geometry")]
    return {"type": "FeatureCollection", "features": features}


def _data_url(path: Path) -> str:
    mime = {".js": "text/javascript", ".svg": "image/svg+xml"}.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return f"data:{mime or 'application/octet-stream'};base64," + base64.b64encode(path.read_bytes()).decode()
