"""The ``geoloom`` command line: thin commands over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from geoloom.workflows.options import pick_region, region_options, search_options, user_errors, verbosity

EXIT_PARTIAL = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geoloom")
def cli() -> None:
    """geoloom: pick a region and a model; geoloom finds the imagery, tiles it, runs the model and stitches the maps."""


@cli.command()
@region_options
@search_options
@click.option("--model", default="marine-debris", show_default=True, help="Model name (geoloom models) or a model folder.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for the run's files.")
@click.option("--threshold", type=float, default=None, help="Detection threshold (default: the model card's).")
@click.option("--tile-size", type=int, default=None, help="Tile core size in pixels (default: the model card's).")
@click.option("--resolution", type=float, default=None, help="Output resolution in metres (default: the model's).")
@click.option("--crs", default=None, help="Output CRS (default: the region's UTM zone).")
@click.option("--runtime", type=click.Choice(["dask", "in-process", "ray"]), default="dask", show_default=True)
@click.option("--scheduler", "--address", "scheduler", default=None, metavar="ADDRESS",
              help="An existing cluster: a Dask scheduler tcp://HOST:PORT (or DASK_SCHEDULER_ADDRESS), "
                   "or with --runtime ray a Ray address (auto, HOST:PORT, or RAY_ADDRESS).")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Workers of the embedded local cluster (default: cores).")
@click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True, help="Retries of a failing tile.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None, metavar="DIR", help="Finish an interrupted run in DIR.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@click.option("--dry-run", is_flag=True, help="Print the plan (tiles, pixels, bytes, scenes, estimate) and read no pixels.")
@click.option("--max-area", type=float, default=50_000, show_default=True, help="Largest region accepted, km2.")
@verbosity
@user_errors
def run(bbox, geojson, preset, place, catalog, collection, query, sign, start, end, max_cloud, model, out, threshold, tile_size, resolution, crs,
        runtime, scheduler, workers, retries, resume_dir, overwrite, dry_run, max_area, verbose, quiet) -> None:
    """Run a model over a region and publish maps and tables into --out."""
    from geoloom.workflows.runs import prepare
    from geoloom.workflows.requests import request_from_folder, request_from_options

    if resume_dir:
        req = request_from_folder(resume_dir)
    else:
        region = pick_region(bbox, geojson, preset, place, max_area_km2=max_area)
        if out is None and not dry_run:
            raise click.UsageError("give --out DIR, a folder for the run's files")
        req = request_from_options(region, model=model, threshold=threshold, catalog=catalog, out=out or ".",
                                   start=start, end=end, max_cloud=max_cloud, tile_size=tile_size,
                                   resolution=resolution, crs=crs, retries=retries, collection=collection,
                                   query=list(query) or None, sign=sign)
    prepared = prepare(req)
    summary = prepared.summary()
    if dry_run:
        click.echo(json.dumps(summary, indent=2))
        return
    matched = f" ({prepared.matched} item(s) matched)" if prepared.matched is not None else ""
    headline = (f"{summary['tiles']} tiles, {summary['pixels'] / 1e6:.1f} Mpx, {len(summary['scenes'])} scene(s){matched}, "
                f"model {summary['model']} -> {req.out}")
    folder = _execute_with_bar(prepared, runtime=runtime, scheduler=scheduler, workers=workers,
                               resume=bool(resume_dir), overwrite=overwrite, quiet=quiet, headline=headline)
    from geoloom.workflows.api import Run

    result = Run(folder)
    tiles = result.tiles
    click.echo(str(folder))
    if not quiet:
        for name in ("result.tif", "detections.geojson", "detections.parquet", "quicklook.png", "run.json"):
            if (folder / name).exists():
                click.echo(f"  {name}", err=True)
        if (folder / "detections.parquet").exists():
            click.echo(f"  {len(result.detections)} detection(s)", err=True)
    if tiles["failed"] or tiles["missing"]:
        for t in result.failed_tiles:
            click.echo(f"failed tile {t['key']}: {t['error']}", err=True)
        click.echo(f"{tiles['failed']} of {tiles['total']} tiles failed; the rest is published. "
                   f"Fix the cause and run: geoloom run --resume {folder}", err=True)
        sys.exit(EXIT_PARTIAL)


def _execute_with_bar(prepared, *, runtime, scheduler, workers, resume, overwrite, quiet, headline) -> Path:
    from tqdm import tqdm

    from geoloom.workflows.runs import execute

    bar = tqdm(total=len(prepared.plan.tiles), unit="tile", disable=True if quiet else None, file=sys.stderr)

    def progress(p) -> None:
        bar.n = p.finished
        bar.set_postfix(failed=p.failed, refresh=False)
        bar.refresh()

    def on_cluster(info) -> None:  # called once the output folder and the cluster are known to be usable
        if not quiet:
            click.echo(headline, err=True)
            msg = f"cluster: {info.describe()}"
            if info.dashboard:
                msg += f" (dashboard {info.dashboard})"
            click.echo(msg, err=True)

    try:
        return execute(prepared, runtime=runtime, scheduler=scheduler, workers=workers, resume=resume,
                       overwrite=overwrite, progress=progress, on_cluster=on_cluster)
    finally:
        bar.close()


@cli.command("sample-data")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder (default: 'sample' in the per-user data folder, or $GEOLOOM_DATA_DIR/sample).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["small", "tile"]), default="small", show_default=True)
@click.option("--if-missing", is_flag=True, help="Keep a sample catalog that is already there.")
@user_errors
def sample_data(out, seed, size, if_missing) -> None:
    """Generate the sample Sentinel-2-like catalog (deterministic for a seed)."""
    from tqdm import tqdm

    from geoloom.platform.sampledata import default_sample_dir, generate_sample_data

    folder = Path(out).absolute() if out else default_sample_dir()
    if if_missing and (folder / "catalog.json").is_file():
        click.echo(str(folder / "catalog.json"))
        return
    bar = tqdm(total=1, unit="step", file=sys.stderr, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    path = generate_sample_data(folder, seed=seed, size=size, progress=progress)
    bar.close()
    click.echo(str(path))


@cli.group()
def catalog() -> None:
    """Index your own GeoTIFFs as a STAC catalog, and search catalogs."""


@catalog.command("search")
@region_options
@search_options
@user_errors
def catalog_search(bbox, geojson, preset, place, catalog, collection, query, sign, start, end, max_cloud) -> None:
    """Print the scenes that match a region, dates, cloud limit and filters."""
    from geoloom.platform.catalog import search_scenes
    from geoloom.workflows.runs import default_catalog

    region = pick_region(bbox, geojson, preset, place, max_area_km2=None)
    scenes = search_scenes(catalog or default_catalog(), region, start=start, end=end, max_cloud=max_cloud,
                           collection=collection, query=list(query) or None, sign=sign)
    for s in scenes:
        cloud = f"{s.cloud_cover:.1f}%" if s.cloud_cover is not None else "?"
        click.echo(f"{s.id}\t{s.datetime[:19]}\tcloud {cloud}\t{s.crs or ''}\t{','.join(sorted(s.bands))}")
    click.echo(f"{len(scenes)} scene(s) cover the region; {scenes.matched} item(s) matched the search", err=True)


@catalog.command("collections")
@click.argument("url")
@user_errors
def catalog_collections(url) -> None:
    """List the collections of a STAC API (id and title)."""
    from geoloom.platform.stac_api import list_collections

    for cid, title in list_collections(url):
        click.echo(f"{cid}\t{title}")


@catalog.command("index")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=True), required=True, help="Folder for the new catalog.json.")
@user_errors
def catalog_index(folder, out) -> None:
    """Make a STAC catalog from a folder of GeoTIFFs (one item per scene, an asset per band)."""
    from geoloom.platform.catalog_index import index_folder

    path = index_folder(folder, out)
    click.echo(str(path))


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx) -> None:
    """List models, show a card."""
    if ctx.invoked_subcommand is None:
        from geoloom.platform.models.registry import list_cards

        for card in list_cards():
            click.echo(f"{card.name:14s} {card.title}")


@models.command("show")
@click.argument("name")
@user_errors
def models_show(name) -> None:
    """Print a model's card."""
    from geoloom.platform.models.registry import card_text, get_card

    click.echo(card_text(get_card(name)))


@models.command("train")
@click.argument("name", type=click.Choice(["marine-debris"]))
@click.option("--out", type=click.Path(file_okay=False), default="marine-debris-model", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 200), default=6, show_default=True)
@click.option("--install", is_flag=True, help="Also make it your marine-debris (kept in the per-user models folder; the shipped model stays).")
@user_errors
def models_train(name, out, seed, epochs, install) -> None:
    """Train a model on generated scenes (deterministic for a seed)."""
    from geoloom.workflows.training import train_marine_debris

    def progress(stage: str, done: int, total: int) -> None:
        click.echo(f"\r{stage}: {done}/{total}", err=True, nl=done >= total)

    click.echo(str(train_marine_debris(out, seed=seed, epochs=epochs, progress=progress, install=install)))


@models.command("eval")
@click.argument("name")
@click.option("--catalog", "catalogs", multiple=True, metavar="PATH", help="Catalog(s) with label rasters (default: the sample catalog).")
@click.option("--threshold", type=float, default=None, help="Detection threshold (default: the card's).")
@user_errors
def models_eval(name, catalogs, threshold) -> None:
    """Pixel precision, recall, F1, IoU and object recall of a model against label rasters."""
    from geoloom.workflows.runs import default_catalog
    from geoloom.workflows.training import evaluate

    result = evaluate(name, list(catalogs) or [str(default_catalog())], threshold=threshold)
    click.echo(json.dumps(result, indent=2, default=str))


@cli.command()
def regions() -> None:
    """List region presets and gazetteer places."""
    from geoloom.platform.region import list_places

    for p in list_places():
        click.echo(f"{p['name']:32s} {p['kind']:12s} {', '.join(f'{v:g}' for v in p['bbox'])}")


@cli.command()
@click.option("--catalog", default=None, metavar="PATH", help="STAC catalog (default: the sample catalog).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="An existing Dask scheduler.")
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True, help="Folder for runs and their history.")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
def ui(catalog, scheduler, runs, port, host) -> None:
    """Start the web UI (Streamlit) on the embedded defaults."""
    import os
    import subprocess

    from importlib.util import find_spec

    env = dict(os.environ, GEOLOOM_RUNS=str(Path(runs).resolve()))
    if catalog:
        env["GEOLOOM_CATALOG"] = str(Path(catalog).resolve()) if "://" not in catalog else catalog
    if scheduler:
        env["GEOLOOM_SCHEDULER"] = scheduler
    app = Path(find_spec("geoloom.ui").origin).with_name("app.py")  # the script only; workflows never imports ui
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.address", host, "--server.headless", "true", "--server.enableStaticServing", "true", "--browser.gatherUsageStats", "false"]
    click.echo(f"geoloom UI on http://{host}:{port}", err=True)
    raise SystemExit(subprocess.call(cmd, env=env))


def main() -> None:
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"Warning: {message}\n"
    cli()


if __name__ == "__main__":
    main()
