"""What a region error tells the user to do, in the words of the front door they used.

The Python API, the CLI and the UI name the same things differently (``region=(W, S, E, N)``,
``--bbox W S E N``, "type the box"); a message asks :func:`hint` for the phrase and the front door
says which words to use with :func:`region_hints` (Python's by default).

>>> hint("bbox")
'give region=(W, S, E, N) in degrees (EPSG:4326)'
>>> with region_hints("cli"):
...     hint("bbox")
'give --bbox W S E N in degrees (EPSG:4326)'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["FRONT_DOORS", "hint", "region_hints"]

_HINTS: dict[str, dict[str, str]] = {
    "python": {
        "bbox": "give region=(W, S, E, N) in degrees (EPSG:4326)",
        "instead": "give region=(W, S, E, N) or a vector file path instead",
        "max_area": "pass a larger max_area_km2=",
        "crs": "pass crs= with the coordinates' CRS (e.g. crs='EPSG:32630') or reproject them to EPSG:4326",
        "layer": "name one as region='{path}:{layer}'",
    },
    "cli": {
        "bbox": "give --bbox W S E N in degrees (EPSG:4326)",
        "instead": "give --bbox W S E N or --region FILE[:LAYER] instead",
        "max_area": "pass a larger --max-area",
        "crs": "reproject it to EPSG:4326 (e.g. ogr2ogr -t_srs EPSG:4326), or give a GeoPackage or Shapefile "
               "that records its CRS with --region FILE",
        "layer": "name one as --region {path}:{layer}",
    },
    "ui": {
        "bbox": "type the box as W S E N in degrees (EPSG:4326)",
        "instead": "draw the area on the map or upload a file instead",
        "max_area": "draw or upload a smaller area",
        "crs": "reproject it to EPSG:4326, or upload a GeoPackage or zipped Shapefile that records its CRS",
        "layer": "upload a file with one layer (e.g. only '{layer}')",
    },
}

#: The front doors whose words :func:`hint` knows.
FRONT_DOORS: tuple[str, ...] = tuple(_HINTS)

_DOOR: ContextVar[str] = ContextVar("geoloom_region_door", default="python")


@contextmanager
def region_hints(door: str) -> Iterator[None]:
    """Within the block, region errors say what to do in the words of ``door`` ("python", "cli", "ui")."""
    if door not in _HINTS:
        raise ValueError(f"unknown front door {door!r}; use one of {', '.join(FRONT_DOORS)}")
    token = _DOOR.set(door)
    try:
        yield
    finally:
        _DOOR.reset(token)


def hint(key: str, **fields: str) -> str:
    """The phrase for ``key`` in the current front door's words, with ``fields`` filled in."""
    return _HINTS[_DOOR.get()][key].format(**fields)
