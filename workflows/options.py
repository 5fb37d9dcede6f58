"""Shared CLI options, defined once and reused by every command (same words as the Python API).

Each group of options is one decorator (``region_options``, ``imagery_options``, ``grid_options``,
``execution_options``); the values reach the command as keyword arguments with the API's names.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from geoloom.platform.region import DEFAULT_MAX_AREA_KM2

Decorator = Callable[[Callable], Callable]


def _stack(*options: Decorator) -> Decorator:
    """Apply options so that ``--help`` lists them in the order given."""
    def apply(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return apply


region_options = _stack(
    click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
                 help="Region as west south east north, in degrees (EPSG:4326)."),
    click.option("--geojson", default=None, metavar="FILE",
                 help="A GeoJSON file (Polygon, MultiPolygon, Feature, FeatureCollection), or - for stdin."),
    click.option("--region", "region_file", default=None, metavar="FILE[:LAYER]",
                 help="A vector file in any CRS, all its polygons as one region: GeoPackage (area.gpkg:layer), "
                      "zipped Shapefile (.zip), KML, FlatGeobuf, GeoParquet, GeoJSON."),
    click.option("--preset", default=None, help="A sample region preset (geoloom regions)."),
    click.option("--place", default=None, help="A place name from the offline gazetteer (geoloom regions)."),
)

catalog_option = click.option(
    "--catalog", default=None, metavar="PATH|URL",
    help="STAC catalog: a static catalog (path or URL of catalog.json) or a STAC API URL "
         "(https://earth-search.aws.element84.com/v1); default the sample catalog.")

imagery_options = _stack(
    catalog_option,
    click.option("--collection", default=None, metavar="NAME",
                 help="Collection to search (needed with a STAC API, e.g. sentinel-2-l2a)."),
    click.option("--query", "query", multiple=True, metavar="PROP OP VALUE",
                 help="Property filter, repeatable: s2:mgrs_tile=31NBG, view:sun_elevation>30."),
    click.option("--sign", default=None, metavar="NAME",
                 help="Sign asset URLs at read time: planetary-computer, or module:function."),
    click.option("--start", default=None, metavar="YYYY-MM-DD", help="First day of imagery."),
    click.option("--end", default=None, metavar="YYYY-MM-DD", help="Last day of imagery (inclusive)."),
    click.option("--max-cloud", type=click.FloatRange(0, 100), default=None, help="Skip scenes cloudier than this (percent)."),
    click.option("--exclude", multiple=True, metavar="SCENE_ID",
                 help="Leave a scene out (repeatable; geoloom catalog search lists them)."),
)

grid_options = _stack(
    click.option("--resolution", type=float, default=None, help="Output resolution in metres (default: the model's)."),
    click.option("--crs", default=None, help="Output CRS (default: the region's UTM zone)."),
    click.option("--tile-size", type=int, default=None, help="Tile core size in pixels (default: the model card's)."),
)

model_options = _stack(
    click.option("--model", default="marine-debris", show_default=True, help="Model name (geoloom models) or a model folder."),
    click.option("--threshold", type=float, default=None, help="Detection threshold (default: the model card's)."),
)

hook_options = _stack(
    click.option("--on-alert", "on_alert", multiple=True, metavar="COMMAND",
                 help="Run COMMAND when an alert fires; {file} is the alerts GeoJSON (repeatable)."),
    click.option("--webhook", "webhooks", multiple=True, metavar="URL",
                 help="POST the alerts GeoJSON to URL when an alert fires (repeatable; retried, never fails the run)."),
)

monitoring_options = _stack(
    click.option("--per-date/--composite", "per_date", default=None,
                 help="One result per acquisition date, or one composite of the date range "
                      "(default: the model's card; per date for ephemeral targets such as marine debris)."),
    click.option("--alert-density", type=click.FloatRange(min=0), default=None, metavar="PX_PER_KM2",
                 help="Alert when a date's detected pixels per km2 of clear water exceed this (per-date runs)."),
    click.option("--alert-object", "alert_object_m2", type=click.FloatRange(min=0), default=None, metavar="M2",
                 help="Alert for every new detected object larger than this, in m2 (per-date runs)."),
    hook_options,
)

out_option = click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for the run's files.")

scheduler_option = click.option(
    "--scheduler", "--address", "cluster", default=None, metavar="ADDRESS",
    help="An existing cluster: a Dask scheduler tcp://HOST:PORT (or DASK_SCHEDULER_ADDRESS), "
         "or with --runtime ray a Ray address (auto, HOST:PORT, or RAY_ADDRESS).")

execution_options = _stack(
    click.option("--runtime", type=click.Choice(["dask", "in-process", "ray"]), default="dask", show_default=True),
    scheduler_option,
    click.option("--workers", type=click.IntRange(1, 256), default=None,
                 help="Workers of the embedded local cluster (default: cores)."),
    click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True, help="Retries of a failing tile."),
)

max_area_option = click.option("--max-area", "max_area_km2", type=float, default=DEFAULT_MAX_AREA_KM2, show_default=True,
                               help="Largest region accepted, km2.")


def pick_region(bbox: tuple | None, geojson: str | None, preset: str | None, place: str | None, *,
                region_file: str | None = None, max_area_km2: float | None) -> Any:
    """The one region the user gave (exactly one of the five options), validated by ``as_region``;
    its errors say what to do in the CLI's words."""
    from geoloom.platform.region import Region, as_region, region_hints

    given = [(n, v) for n, v in (("--bbox", bbox), ("--geojson", geojson), ("--region", region_file),
                                 ("--preset", preset), ("--place", place)) if v]
    if not given:
        raise click.UsageError("give a region: --bbox W S E N, --geojson FILE, --region FILE[:LAYER], --preset NAME "
                               "or --place NAME")
    if len(given) > 1:
        raise click.UsageError(f"give one region, not {' and '.join(n for n, _ in given)}")
    name, value = given[0]
    make = {"--bbox": lambda v: tuple(v), "--geojson": Region.from_geojson, "--region": Region.from_file,
            "--preset": Region.from_preset, "--place": Region.from_place}[name]
    with region_hints("cli"):
        return as_region(make(value), max_area_km2=max_area_km2)
