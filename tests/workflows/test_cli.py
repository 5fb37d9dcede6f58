"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors, nothing harmed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pystac
import pytest


def geoloom(cli: list[str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def assert_user_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_run_publishes_all_outputs(geoloom_cli, sample_catalog, tmp_path):
    out = tmp_path / "run"
    proc = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--model", "fdi", "--catalog", sample_catalog,
                   "--out", out, "--runtime", "in-process")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out.resolve())
    for name in ("run.json", "result.zarr", "result.tif", "detections.parquet", "detections.geojson", "quicklook.png", "ledger.jsonl"):
        assert (out / name).exists(), name
    item = pystac.Item.from_file(str(out / "run.json"))
    assert item.properties["geoloom:tiles"]["failed"] == 0
    assert item.properties["geoloom:model"]["name"] == "fdi"


def test_dry_run_plans_without_reading_pixels(geoloom_cli, catalog_copy, tmp_path):
    for tif in catalog_copy.parent.rglob("*.tif"):
        tif.unlink()  # a dry run must not need a single pixel
    proc = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--catalog", catalog_copy, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["tiles"] >= 1 and summary["pixels"] > 0 and summary["bytes_to_read"] > 0
    assert summary["scenes"] and summary["estimated_seconds"] > 0


@pytest.mark.parametrize(
    "args,words",
    [
        (["--bbox", "200", "5", "201", "6"], ["-180..180", "--bbox"]),
        (["--bbox", "0", "6", "1", "5"], ["south"]),
        (["--preset", "atlantis"], ["preset"]),
        (["--preset", "sample-bay", "--model", "nosuchmodel"], ["unknown model", "fdi"]),
        (["--preset", "sample-bay", "--start", "2030-01-01", "--end", "2020-01-01"], ["empty"]),
        (["--preset", "sample-bay", "--start", "2001-01-01", "--end", "2001-02-01"], ["no scene"]),
        (["--preset", "sample-bay", "--start", "yesterday"], ["date"]),
        (["--bbox", "10", "10", "10.1", "10.1"], ["no scene"]),
    ],
    ids=["lon-range", "south-north", "preset", "model", "empty-dates", "no-scenes-dates", "bad-date", "no-scenes-place"],
)
def test_bad_input_is_one_line_exit_2(geoloom_cli, sample_catalog, tmp_path, args, words):
    proc = geoloom(geoloom_cli, "run", *args, "--catalog", sample_catalog, "--out", tmp_path / "o", "--runtime", "in-process")
    assert_user_error(proc, *words)
    assert not (tmp_path / "o" / "run.json").exists()


def test_existing_run_is_not_harmed_and_read_only_out_is_refused(geoloom_cli, sample_catalog, tmp_path):
    out = tmp_path / "run"
    first = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--catalog", sample_catalog, "--out", out, "--runtime", "in-process")
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = geoloom(geoloom_cli, "run", "--preset", "zone-border", "--catalog", sample_catalog, "--out", out, "--runtime", "in-process")
    assert_user_error(again, "already holds", "--resume")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits
            pytest.skip("running as root: a read-only folder is writable; covered by the /proc case below")
        proc = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--catalog", sample_catalog, "--out", ro / "x", "--runtime", "in-process")
        assert_user_error(proc, "cannot write")
    finally:
        ro.chmod(0o755)


def test_unwritable_out_is_refused(geoloom_cli, sample_catalog):
    proc = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--catalog", sample_catalog, "--out", "/proc/geoloom-run", "--runtime", "in-process")
    assert_user_error(proc, "cannot write")


def test_missing_band_is_refused_before_running(geoloom_cli, catalog_copy, tmp_path):
    cat = pystac.Catalog.from_file(str(catalog_copy))
    for item in cat.get_items(recursive=True):
        item.assets.pop("swir16", None)
    cat.save()
    proc = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--model", "fdi", "--catalog", catalog_copy, "--out", tmp_path / "o")
    assert_user_error(proc, "swir16")


def test_truncated_geotiff_fails_its_tiles_publishes_the_rest_exit_3(geoloom_cli, catalog_copy, tmp_path):
    out = tmp_path / "run"
    cat = pystac.Catalog.from_file(str(catalog_copy))
    items = sorted(cat.get_items(recursive=True), key=lambda i: i.id)
    # truncate the NIR file of the scenes in UTM 31N: tiles they cover fail, tiles far west of 0 degrees do not
    damaged = []
    for item in items:
        if item.properties.get("proj:code") == "EPSG:32631":
            nir = Path(item.assets["nir"].get_absolute_href())
            nir.write_bytes(nir.read_bytes()[: 4096])
            damaged.append(str(nir))
    assert damaged
    proc = geoloom(geoloom_cli, "run", "--preset", "sample-area", "--model", "fdi", "--catalog", catalog_copy,
                   "--out", out, "--runtime", "in-process", "--retries", "0", "--tile-size", "256")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    failed = [r for r in ledger if r["state"] == "failed"]
    done = [r for r in ledger if r["state"] == "done"]
    assert failed and done
    assert all(any(name in r["error"] for name in damaged) for r in failed)
    assert (out / "result.tif").exists() and (out / "run.json").exists()


def test_models_and_regions_listings(geoloom_cli):
    proc = geoloom(geoloom_cli, "models")
    assert proc.returncode == 0 and "fdi" in proc.stdout and "water" in proc.stdout
    show = geoloom(geoloom_cli, "models", "show", "fdi")
    assert show.returncode == 0 and "Biermann" in show.stdout and "red" in show.stdout
    card = geoloom(geoloom_cli, "models", "show", "marine-debris")
    assert "held out:     marine-debris: precision" in card.stdout and "real scene:   s2cloudless-betsiboka (L1C)" in card.stdout
    full = json.loads(geoloom(geoloom_cli, "models", "show", "marine-debris", "--json").stdout)
    assert full["metrics"]["real_scenes"]["scenes"]["s2cloudless-betsiboka"]["f1_1px"] > 0
    bad = geoloom(geoloom_cli, "models", "show", "fdj")
    assert_user_error(bad, "did you mean fdi")
    regions = geoloom(geoloom_cli, "regions")
    assert regions.returncode == 0 and "sample-bay" in regions.stdout


def test_catalog_search_prints_matching_scenes(geoloom_cli, sample_catalog):
    proc = geoloom(geoloom_cli, "catalog", "search", "--preset", "zone-border", "--catalog", sample_catalog)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 2
    assert {"EPSG:32630", "EPSG:32631"} <= {line.split("\t")[3] for line in lines}


def test_every_command_turns_a_user_error_into_one_line(geoloom_cli, tmp_path):
    assert_user_error(geoloom(geoloom_cli, "models", "show", "no-such-model"), "unknown model")
    assert_user_error(geoloom(geoloom_cli, "catalog", "index", tmp_path / "missing", "--out", tmp_path / "c"))
    assert_user_error(geoloom(geoloom_cli, "catalog", "search", "--bbox", "0", "0", "1", "1", "--catalog",
                              tmp_path / "none.json"))


def test_a_bug_is_one_line_and_its_traceback_shows_with_vv(monkeypatch):
    from click.testing import CliRunner

    from geoloom.platform import region
    from geoloom.workflows.cli import cli

    def broken() -> list:
        raise ZeroDivisionError("a bug\nsecond line")

    monkeypatch.setattr(region, "list_places", broken)  # an unexpected failure inside a command
    plain = CliRunner().invoke(cli, ["regions"])
    assert plain.exit_code == 1 and "Traceback" not in plain.output
    assert plain.output.strip().splitlines() == ["Error: unexpected ZeroDivisionError: a bug (run with -vv for the "
                                                 "traceback; this is a bug, please report it)"]
    loud = CliRunner().invoke(cli, ["-vv", "regions"])
    assert isinstance(loud.exception, ZeroDivisionError)


def test_models_commands_are_offered(geoloom_cli):
    for sub in ("train", "eval", "heldout", "install", "show"):
        proc = geoloom(geoloom_cli, "models", sub, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout, sub


def test_a_scene_left_out_is_not_listed_nor_used(geoloom_cli, sample_catalog, tmp_path):
    listed = geoloom(geoloom_cli, "catalog", "search", "--preset", "sample-bay", "--catalog", sample_catalog)
    first = listed.stdout.split("\t")[0]
    fewer = geoloom(geoloom_cli, "catalog", "search", "--preset", "sample-bay", "--catalog", sample_catalog,
                    "--exclude", first)
    assert fewer.returncode == 0 and first not in fewer.stdout and len(fewer.stdout.splitlines()) == len(
        listed.stdout.splitlines()) - 1
    plan = geoloom(geoloom_cli, "run", "--preset", "sample-bay", "--model", "fdi", "--catalog", sample_catalog,
                   "--exclude", first, "--dry-run")
    assert plan.returncode == 0 and first not in json.loads(plan.stdout)["scenes"]
