"""Shared CLI options, defined once and reused by every command (same words as the Python API)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from geoloom.platform.errors import GeoloomError


def bbox_option(f: Callable) -> Callable:
    return click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
                        help="Region as west south east north, in degrees (EPSG:4326).")(f)


def region_options(f: Callable) -> Callable:
    """--bbox / --geojson / --preset / --place; exactly one is needed."""
    f = click.option("--place", default=None, help="A place name from the offline gazetteer (geoloom regions).")(f)
    f = click.option("--preset", default=None, help="A sample region preset (geoloom regions).")(f)
    f = click.option("--geojson", default=None, metavar="FILE", help="A GeoJSON file (Polygon, MultiPolygon, Feature, FeatureCollection), or - for stdin.")(f)
    return bbox_option(f)


def pick_region(bbox: tuple | None, geojson: str | None, preset: str | None, place: str | None, *, max_area_km2: float | None) -> Any:
    """The one region the user gave, validated."""
    from geoloom.platform.region import Region, as_region

    given = [(n, v) for n, v in (("--bbox", bbox), ("--geojson", geojson), ("--preset", preset), ("--place", place)) if v]
    if not given:
        raise click.UsageError("give a region: --bbox W S E N, --geojson FILE, --preset NAME or --place NAME")
    if len(given) > 1:
        raise click.UsageError(f"give one region, not {' and '.join(n for n, _ in given)}")
    name, value = given[0]
    if name == "--bbox":
        region = Region.from_bbox(value)
    elif name == "--geojson":
        if value != "-" and not value.lower().endswith((".json", ".geojson")):
            from pathlib import Path

            if not Path(value).exists():
                from geoloom.platform.errors import RegionError

                raise RegionError(f"GeoJSON file {value} does not exist; check the path")
        region = Region.from_geojson(value)
    elif name == "--preset":
        region = Region.from_preset(value)
    else:
        region = Region.from_place(value)
    return as_region(region, max_area_km2=max_area_km2)


def search_options(f: Callable) -> Callable:
    f = click.option("--max-cloud", type=click.FloatRange(0, 100), default=None, help="Skip scenes cloudier than this (percent).")(f)
    f = click.option("--end", default=None, metavar="YYYY-MM-DD", help="Last day of imagery (inclusive).")(f)
    f = click.option("--start", default=None, metavar="YYYY-MM-DD", help="First day of imagery.")(f)
    f = click.option("--sign", default=None, metavar="NAME",
                     help="Sign asset URLs at read time: planetary-computer, or module:function.")(f)
    f = click.option("--query", "query", multiple=True, metavar="PROP OP VALUE",
                     help="Property filter, repeatable: s2:mgrs_tile=31NBG, view:sun_elevation>30.")(f)
    f = click.option("--collection", default=None, metavar="NAME",
                     help="Collection to search (needed with a STAC API, e.g. sentinel-2-l2a).")(f)
    f = click.option("--catalog", default=None, metavar="PATH|URL",
                     help="STAC catalog: a static catalog (path or URL of catalog.json) or a STAC API URL "
                          "(https://earth-search.aws.element84.com/v1); default the sample catalog.")(f)
    return f


def verbosity(f: Callable) -> Callable:
    f = click.option("-q", "--quiet", is_flag=True, help="Print only errors and the result folder.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail; -vv shows tracebacks of bugs.")(f)
    return f


def user_errors(f: Callable) -> Callable:
    """Turn a GeoloomError into one line on stderr and exit 2 (no traceback)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except GeoloomError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None

    return wrapper
