"""The ``geoloom`` command line: thin commands over the library.

One group; shared options from :mod:`geoloom.workflows.options`; one error handler for every
command (a :class:`GeoloomError` is one line and exit 2; a bug is one line too, with its traceback
at ``-vv``); ``-v``/``-q`` on the group set logging.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from geoloom.platform.errors import GeoloomError
from geoloom.platform.export import EXPORT_FORMATS, PLANNED_FORMATS
from geoloom.workflows.options import (
    catalog_option, execution_options, grid_options, imagery_options, max_area_option, model_options, monitoring_options,
    out_option, pick_region, region_options, scheduler_option,
)

EXIT_PARTIAL = 3
EXIT_USER_ERROR = 2
EXIT_BUG = 1


class GeoloomGroup(click.Group):
    """A click group whose commands share one error handler."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a GeoloomError exits with its code, a bug with EXIT_BUG (a traceback at -vv)."""
        try:
            return super().invoke(ctx)
        except GeoloomError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if _verbosity(ctx) >= 2:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"Error: unexpected {type(exc).__name__}: {first} (run with -vv for the traceback; "
                       "this is a bug, please report it)", err=True)
            ctx.exit(EXIT_BUG)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        """A subgroup that shares the same error handler."""
        kwargs.setdefault("cls", GeoloomGroup)
        return super().group(*args, **kwargs)


def _verbosity(ctx: click.Context) -> int:
    root = ctx.find_root()
    return int((root.obj or {}).get("verbosity", 0))


@click.group(cls=GeoloomGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More detail (-v info, -vv debug and tracebacks of bugs).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the result.")
@click.version_option(package_name="geoloom")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """geoloom: pick a region and a model; geoloom finds the imagery, tiles it, runs the model and stitches the maps."""
    _set_logging(-1 if quiet else verbose)
    ctx.obj = {"verbosity": -1 if quiet else verbose}


def _set_logging(verbosity: int) -> None:
    """-q: geoloom's errors only; default: its warnings; -v: its progress notes; -vv: every library's debug log."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.getLogger("geoloom").setLevel(level)
    if verbosity >= 1:
        logging.basicConfig(level=logging.DEBUG if verbosity >= 2 else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")


def _quiet(ctx: click.Context) -> bool:
    return _verbosity(ctx) < 0


def _command_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """``-q``/``-v`` given after a command name: the same as before it (``geoloom run -q`` = ``geoloom -q run``)."""
    if not value:
        return
    level = -1 if param.name == "quiet" else int(value)
    root = ctx.find_root()
    root.obj = {**(root.obj or {}), "verbosity": level}
    _set_logging(level)


def verbosity_options(f: Any) -> Any:
    """-v/-q on a command as well as on the group."""
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_command_verbosity,
                     help="Only errors and the result (as geoloom -q).")(f)
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_command_verbosity,
                        help="More detail (as geoloom -v).")(f)


@cli.command()
@region_options
@imagery_options
@model_options
@grid_options
@monitoring_options
@execution_options
@out_option
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None, metavar="DIR", help="Finish an interrupted run in DIR.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@click.option("--dry-run", is_flag=True, help="Print the plan (tiles, pixels, bytes, scenes, estimate) and read no pixels.")
@click.option("--by", default=None, metavar="COLUMN",
              help="One run per value of COLUMN of the --region file (its rows unioned), each into --out/VALUE.")
@max_area_option
@verbosity_options
@click.pass_context
def run(ctx: click.Context, bbox, geojson, region_file, preset, place, resume_dir, overwrite, dry_run, by, runtime, cluster,
        workers, retries, out, max_area_km2, **options: Any) -> None:
    """Run a model over a region and publish maps and tables into --out."""
    from geoloom.workflows.request import Execution, build_request, request_from_folder
    from geoloom.workflows.runs import prepare

    if by is not None:
        _run_by(ctx, by, (bbox, geojson, region_file, preset, place), out=resume_dir or out, resume=bool(resume_dir),
                overwrite=overwrite, dry_run=dry_run, max_area_km2=max_area_km2,
                options=dict(options, runtime=runtime, cluster=cluster, workers=workers, retries=retries))
        return
    execution = Execution(runtime=runtime, cluster=cluster, workers=workers, retries=retries)
    if resume_dir:
        req = request_from_folder(resume_dir).replace(execution=execution)
    else:
        region = pick_region(bbox, geojson, preset, place, region_file=region_file, max_area_km2=max_area_km2)
        if out is None and not dry_run:
            raise click.UsageError("give --out DIR, a folder for the run's files")
        options["query"] = list(options["query"]) or None
        options["exclude"] = list(options["exclude"])
        options["on_alert"], options["webhooks"] = list(options["on_alert"]), list(options["webhooks"])
        req = build_request(region, out=out or ".", runtime=runtime, cluster=cluster, workers=workers, retries=retries,
                            max_area_km2=None, **options)
    prepared = prepare(req)
    summary = prepared.summary()
    if dry_run:
        click.echo(json.dumps(summary, indent=2))
        return
    folder = _execute_with_bar(prepared, resume=bool(resume_dir), overwrite=overwrite, quiet=_quiet(ctx))
    _report(folder, quiet=_quiet(ctx))


def _run_by(ctx: click.Context, by: str, regions: tuple, *, out: str | None, resume: bool, overwrite: bool,
            dry_run: bool, max_area_km2: float, options: dict[str, Any]) -> None:
    """``run --by COLUMN``: one run per value of the column of the --region file; a line per run, exit 3 if any failed."""
    from geoloom.platform.errors import RegionError
    from geoloom.platform.region import region_hints
    from geoloom.runtime.progress import ProgressBar
    from geoloom.workflows.by_rows import detect_rows, prepare_rows

    bbox, geojson, region_file, preset, place = regions
    given = [n for n, v in zip(("--bbox", "--geojson", "--region", "--preset", "--place"), regions) if v]
    if len(given) > 1:
        raise click.UsageError(f"give one region, not {' and '.join(given)}")
    table = region_file or (geojson if geojson != "-" else None)
    if table is None:
        shown = given[0] if given else "no region"
        raise RegionError(f"--by {by} needs a table of regions, one run per row, not {shown}; give the regions with "
                          "--region FILE[:LAYER] (or --geojson FILE), or drop --by")
    if out is None and not dry_run:
        raise click.UsageError("give --out DIR, a folder for the runs' folders")
    options["query"] = list(options["query"]) or None
    options["exclude"] = list(options["exclude"])
    options["on_alert"], options["webhooks"] = list(options["on_alert"]), list(options["webhooks"])
    quiet = _quiet(ctx)
    with region_hints("cli"):
        if dry_run:
            planned = prepare_rows(table, by=by, out=out or ".", options=options, max_area_km2=max_area_km2, door="cli")
            click.echo(json.dumps({row.label: p.summary() for row, p in planned}, indent=2, default=str))
            return
        bar = ProgressBar(disable=True if quiet else None)

        def on_cluster(info: Any) -> None:
            if not quiet:
                dashboard = f" (dashboard {info.dashboard})" if info.dashboard else ""
                click.echo(f"cluster: {info.describe()}{dashboard}", err=True)

        runs = detect_rows(table, by=by, out=out, options=options, resume=resume, overwrite=overwrite, progress=bar,
                           on_cluster=on_cluster, max_area_km2=max_area_km2, door="cli")
    failed = []
    for line in runs.summary().itertuples():
        click.echo(line.folder)
        if not quiet:
            state = "ok" if line.ok else "failed tiles"
            click.echo(f"  {line.label}: {line.area_km2:g} km2, {line.tiles} tile(s), {line.detections} detection(s), "
                       f"{state}", err=True)
        if not line.ok:
            failed.append(line.folder)
    if failed:
        click.echo(f"{len(failed)} of {len(runs)} runs have failed tiles; the rest is published. Fix the cause and "
                   f"run: geoloom run --resume {failed[0]}" + (" (and the others)" if len(failed) > 1 else ""), err=True)
        sys.exit(EXIT_PARTIAL)


def _execute_with_bar(prepared: Any, *, resume: bool, overwrite: bool, quiet: bool) -> Path:
    """Execute with a progress bar on stderr (off when not a terminal)."""
    from geoloom.runtime.progress import ProgressBar
    from geoloom.workflows.runs import execute

    summary = prepared.summary()
    matched = f" ({prepared.matched} item(s) matched)" if prepared.matched is not None else ""
    headline = (f"{summary['tiles']} tiles, {summary['pixels'] / 1e6:.1f} Mpx, {len(summary['scenes'])} scene(s){matched}, "
                f"model {summary['model']} -> {prepared.request.out}")
    bar = ProgressBar(disable=True if quiet else None)

    def on_cluster(info: Any) -> None:  # called once the output folder and the cluster are known to be usable
        if not quiet:
            click.echo(headline, err=True)
            dashboard = f" (dashboard {info.dashboard})" if info.dashboard else ""
            click.echo(f"cluster: {info.describe()}{dashboard}", err=True)

    try:
        return execute(prepared, resume=resume, overwrite=overwrite, progress=bar, on_cluster=on_cluster)
    finally:
        bar.close()


def _report(folder: Path, *, quiet: bool) -> None:
    """Print the folder (stdout), what it holds and the failed tiles (stderr); exit 3 if some failed."""
    from geoloom.workflows.api import Run

    result = Run(folder)
    click.echo(str(folder))
    if not quiet:
        for name in ("result.tif", "detections.geojson", "detections.parquet", "quicklook.png", "timeseries.csv",
                     "timeseries.png", "alerts.geojson", "run.json"):
            if (folder / name).exists():
                click.echo(f"  {name}", err=True)
        if result.dates:
            click.echo(f"  dates/: one run per acquisition date ({len(result.dates)}: {result.dates[0]} .. "
                       f"{result.dates[-1]})", err=True)
        if (folder / "detections.parquet").exists():
            click.echo(f"  {len(result.detections)} detection(s)", err=True)
    tiles = result.tiles
    if tiles.failed or tiles.missing:
        for t in result.failed_tiles:
            click.echo(f"failed tile {t['key']}: {t['error']}", err=True)
        click.echo(f"{tiles.failed} of {tiles.total} tiles failed; the rest is published. "
                   f"Fix the cause and run: geoloom run --resume {folder}", err=True)
        sys.exit(EXIT_PARTIAL)


@cli.command("export")
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--to", "fmt", type=click.Choice([*EXPORT_FORMATS, *PLANNED_FORMATS]), default="gpkg", show_default=True,
              help="gpkg: a GeoPackage with the detections, the raster layers' footprints and the region; "
                   "pmtiles: the primary layer as a raster PMTiles archive (web maps, in the map's colours); "
                   "kmz: the detections and the primary layer for Google Earth.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="File to write (default: RUN/run.<format>).")
def export(run_dir, fmt, out) -> None:
    """Write a finished run in a format GIS tools open (QGIS, ArcGIS, GDAL, web maps, Google Earth)."""
    from geoloom.platform.export import export_run

    click.echo(str(export_run(run_dir, to=fmt, out=out)))


@cli.command("sample-data")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder (default: 'sample' in the per-user data folder, or $GEOLOOM_DATA_DIR/sample).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["small", "tile"]), default="small", show_default=True)
@click.option("--dates", type=click.IntRange(1, 60), default=None, metavar="N",
              help="The same coast on N acquisition dates, 5 days apart, debris drifting and forming between "
                   "them (small size only; default: 2 dates).")
@click.option("--if-missing", is_flag=True, help="Keep a sample catalog that is already there.")
def sample_data(out, seed, size, dates, if_missing) -> None:
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

    path = generate_sample_data(folder, seed=seed, size=size, dates=dates, progress=progress)
    bar.close()
    click.echo(str(path))


@cli.group()
def catalog() -> None:
    """Index your own imagery as a STAC catalog, and search catalogs."""


@catalog.command("search")
@region_options
@imagery_options
def catalog_search(bbox, geojson, region_file, preset, place, catalog, collection, query, sign, start, end, max_cloud,
                   exclude) -> None:
    """Print the scenes that match a region, dates, cloud limit and filters."""
    from geoloom.platform.stac_api import parse_query
    from geoloom.workflows.request import Imagery, default_catalog
    from geoloom.workflows.runs import search_imagery

    region = pick_region(bbox, geojson, preset, place, region_file=region_file, max_area_km2=None)
    imagery = Imagery(str(catalog or default_catalog()), collection=collection, start=start, end=end,
                      max_cloud=max_cloud, query=parse_query(list(query)) or None, sign=sign, exclude=tuple(exclude))
    scenes = search_imagery(imagery, region)
    for s in scenes:
        cloud = f"{s.cloud_cover:.1f}%" if s.cloud_cover is not None else "?"
        click.echo(f"{s.id}\t{s.datetime[:19]}\tcloud {cloud}\t{s.crs or ''}\t{','.join(sorted(s.bands))}")
    click.echo(f"{len(scenes)} scene(s) cover the region; {scenes.matched} item(s) matched the search", err=True)


@catalog.command("collections")
@click.argument("url")
def catalog_collections(url) -> None:
    """List the collections of a STAC API (id and title)."""
    from geoloom.platform.stac_api import list_collections

    for cid, title in list_collections(url):
        click.echo(f"{cid}\t{title}")


@catalog.command("index")
@click.argument("path", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=True), required=True, help="Folder for the new catalog.json.")
def catalog_index(path, out) -> None:
    """Make a STAC catalog from imagery: a folder of GeoTIFFs or band files, Sentinel-2 SAFE folders or
    zips (one item per scene or granule, an asset per band)."""
    from geoloom.platform.catalog_index import index_folder

    click.echo(str(index_folder(path, out)))


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx) -> None:
    """List models; show, train and evaluate them."""
    if ctx.invoked_subcommand is None:
        from geoloom.platform.models.registry import list_cards

        for card in list_cards():
            click.echo(f"{card.name:14s} {card.title}")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The whole card as JSON (every score and training detail).")
def models_show(name, as_json) -> None:
    """Print a model's card."""
    from geoloom.platform.models.registry import card_text, get_card

    card = get_card(name)
    click.echo(json.dumps(card.to_dict(), indent=2, default=str) if as_json else card_text(card))


def _stage_progress(stage: str, done: int, total: int) -> None:
    click.echo(f"\r{stage}: {done}/{total}", err=True, nl=done >= total)


@models.command("train")
@click.argument("name", type=click.Choice(["marine-debris"]))
@click.option("--out", type=click.Path(file_okay=False), default="marine-debris-model", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 200), default=6, show_default=True)
@click.option("--install", is_flag=True,
              help="Also make it your marine-debris (kept in the per-user models folder; the shipped model stays).")
@click.option("--jpeg2000", is_flag=True,
              help="Also code half the patches as lossy JPEG 2000 (the shipped model: --seed 1 --jpeg2000).")
def models_train(name, out, seed, epochs, install, jpeg2000) -> None:
    """Train a model on generated scenes (deterministic for a seed)."""
    from geoloom.platform.models.training import train_marine_debris

    click.echo(str(train_marine_debris(out, seed=seed, epochs=epochs, progress=_stage_progress, install=install,
                                       jpeg2000=jpeg2000)))


@models.command("install")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def models_install(folder) -> None:
    """Make a model trained with 'geoloom models train' your marine-debris (per-user models folder)."""
    from geoloom.platform.models.training import install_marine_debris

    click.echo(str(install_marine_debris(folder)))


@models.command("eval")
@click.argument("name")
@click.option("--catalog", "catalogs", multiple=True, metavar="PATH", help="Catalog(s) with label rasters (default: the sample catalog).")
@click.option("--threshold", type=float, default=None, help="Detection threshold (default: the card's).")
@click.option("--real", "real", default=None, metavar="registry|PATH",
              help="Score on real Sentinel-2 pixels instead, with windrows implanted into clear water: 'registry' "
                   "(three public scenes, downloaded once from PyPI with pip into the per-user data folder) or PATH "
                   "(your own imagery: a folder of SAFE products, zips or band files, or a STAC catalog.json).")
@click.option("--seeds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="With --real: implant seeds (one implanted copy of each scene per seed).")
@click.option("--card-file", type=click.Path(dir_okay=False), default=None,
              help="With --real: also write the scores into this card data file under metrics.real_scenes "
                   "(default: print only).")
def models_eval(name, catalogs, threshold, real, seeds, card_file) -> None:
    """Pixel precision, recall, F1, IoU and object recall of a model against label rasters; with --real,
    precision, recall and F1 (1 px) on implanted windrows and false alarms on real scenes (the JSON report on
    stdout, a markdown table on stderr)."""
    from geoloom.workflows.api import detect

    if real is None:
        if card_file is not None:
            raise click.UsageError("--card-file records real-scene scores: give it with --real")
        from geoloom.platform.models.training import evaluate
        from geoloom.workflows.request import default_catalog

        result = evaluate(name, list(catalogs) or [str(default_catalog())], threshold=threshold, run_detect=detect,
                          progress=_stage_progress)
        click.echo(json.dumps(result, indent=2, default=str))
        return
    if catalogs or threshold is not None:
        raise click.UsageError("--real scores at the card's threshold on real scenes: leave out --catalog and --threshold")
    import tempfile

    from geoloom.platform.models.registry import get_card
    from geoloom.platform.models.training.real_scenes import (
        card_scores, evaluate_real_scene, real_scores_table, write_card_scores,
    )
    from geoloom.platform.models.training.real_sources import fetch_registry_scenes, real_scenes_from_catalog

    from geoloom.platform.errors import ModelError

    if get_card(name).detection is None:  # an unknown model fails here too, before anything is downloaded or read
        raise ModelError(f"model {name!r} makes no detection layer, so --real cannot score it; give a detector "
                         "(marine-debris, fdi)")
    scenes = fetch_registry_scenes() if real == "registry" else real_scenes_from_catalog(real)
    results = []
    with tempfile.TemporaryDirectory(prefix="geoloom-real-eval-") as work:
        for i, scene in enumerate(scenes):
            _stage_progress("real scenes", i, len(scenes))
            results.append(evaluate_real_scene(scene, run_detect=detect, models=(name,), seeds=tuple(range(seeds)),
                                               workdir=Path(work) / f"{i:03d}"))
        _stage_progress("real scenes", len(scenes), len(scenes))
    scores = card_scores(results, name)
    report = {"model": name, "source": real, "seeds": seeds, "scores": scores, "scenes": results}
    if card_file is not None:
        data_line = f"geoloom models eval {name} --real {real} --seeds {seeds}"
        report["card_file"] = str(write_card_scores(card_file, scores, data_line=data_line))
    click.echo(json.dumps(report, indent=2, default=str))
    click.echo(real_scores_table(results), err=True)


@models.command("heldout")
@click.option("--catalog", "catalogs", multiple=True, metavar="PATH",
              help="Held-out catalog(s) (default: the generated catalogs of the evaluation seeds).")
@click.option("--model", "names", multiple=True, help="Model(s) to score (default: marine-debris and fdi).")
@click.option("--card-file", type=click.Path(dir_okay=False), default=None,
              help="Card data to write the scores into (default: your installed marine-debris).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None, help="Keep the catalogs and runs here.")
@click.option("--runtime", type=click.Choice(["dask", "in-process"]), default="in-process", show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Workers of the embedded local cluster.")
def models_heldout(catalogs, names, card_file, workdir, runtime, workers) -> None:
    """Score models side by side on held-out catalogs and record the scores in the card data."""
    from geoloom.platform.models.training import heldout_report
    from geoloom.workflows.api import detect

    report = heldout_report(list(catalogs) or None, models=tuple(names) or ("marine-debris", "fdi"), workdir=workdir,
                            card_file=card_file, runtime=runtime, workers=workers, run_detect=detect,
                            progress=_stage_progress)
    click.echo(json.dumps(report, indent=2, default=str))


@cli.command()
def regions() -> None:
    """List region presets and gazetteer places."""
    from geoloom.platform.region import list_places

    for p in list_places():
        click.echo(f"{p['name']:32s} {p['kind']:12s} {', '.join(f'{v:g}' for v in p['bbox'])}")


@cli.command()
@catalog_option
@scheduler_option
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True, help="Folder for runs and their history.")
@click.option("--port", type=int, default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--service", default=None, metavar="URL",
              help="Send runs to a geoloom job service (geoloom serve; or GEOLOOM_SERVICE) instead of running them "
                   "inside the UI's server.")
def ui(catalog, cluster, runs, port, host, service) -> None:
    """Start the web UI (Streamlit) on the embedded defaults: with a job service of its own (runs go to one
    warm cluster and outlive the page) unless --service names one or GEOLOOM_RUNTIME=in-process."""
    import os
    import subprocess
    from importlib.util import find_spec

    env = dict(os.environ, GEOLOOM_RUNS=str(Path(runs).resolve()))
    if catalog:
        env["GEOLOOM_CATALOG"] = str(Path(catalog).resolve()) if "://" not in catalog else catalog
    if cluster:
        env["GEOLOOM_SCHEDULER"] = cluster
    service = service or env.get("GEOLOOM_SERVICE")
    own_service = None
    _stop_on_signals()
    try:  # from the moment the service runs: an interrupt anywhere below still stops it
        if not service and env.get("GEOLOOM_RUNTIME", "dask") not in ("in-process", "local", "inprocess"):
            own_service, service = _start_ui_service(Path(runs).resolve(), cluster, env)
        if service:
            env["GEOLOOM_SERVICE"] = service
        app = Path(find_spec("geoloom.ui").origin).with_name("app.py")  # the script only; workflows never imports ui
        cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
               "--server.address", host, "--server.headless", "true", "--server.enableStaticServing", "true",
               "--browser.gatherUsageStats", "false"]
        click.echo(f"geoloom UI on http://{host}:{port}", err=True)
        code = subprocess.call(cmd, env=env)
    finally:
        if own_service is not None:
            own_service.terminate()  # running jobs go back to the queue and resume at the next start
            try:
                own_service.wait(60)
            except subprocess.TimeoutExpired:
                own_service.kill()
                own_service.wait()
    raise SystemExit(code)


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (what a process manager or ``docker stop`` sends) both end the UI through its
    clean-up, which stops its job service; also where it was started with SIGINT ignored, as a shell
    starts the background commands of a script."""
    import signal

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _start_ui_service(runs: Path, cluster: str | None, env: dict[str, str]) -> tuple[Any, str]:
    """A job service for the UI (its job database in the runs folder), once it answers; (process, URL)."""
    import socket
    import subprocess
    import time

    from geoloom.platform.errors import RunError
    from geoloom.workflows.service_client import ServiceClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", "from geoloom.workflows.cli import main; main()", "serve", "--port", str(port),
           "--db", str(runs / "jobs.sqlite")] + (["--scheduler", cluster] if cluster else [])
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    client, deadline = ServiceClient(url, timeout_s=2), time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                client.health()
                click.echo(f"job service on {url} (jobs in {runs / 'jobs.sqlite'})", err=True)
                return proc, url
            except GeoloomError:
                time.sleep(0.3)
    except BaseException:  # interrupted while it starts: it must not outlive the UI
        proc.kill()
        raise
    proc.kill()
    raise RunError("the UI's job service did not start; see the messages above, or give --service URL")


from geoloom.workflows.cli_jobs import jobs, serve, submit  # noqa: E402 - the job service's commands

cli.add_command(serve)
cli.add_command(submit)
cli.add_command(jobs)

from geoloom.workflows.cli_monitor import update  # noqa: E402 - the monitoring command

cli.add_command(update)


def main() -> None:
    """The console script."""
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"Warning: {message}\n"
    cli()


if __name__ == "__main__":
    main()
