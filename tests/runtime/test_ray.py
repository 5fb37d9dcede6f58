"""The optional Ray runtime: same outputs as the in-process run, from Python and from the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ray")

from geoloom.workflows import detect  # noqa: E402

pytestmark = pytest.mark.slow


def same_outputs(a: Path, b: Path) -> None:
    files = [p.relative_to(a) for p in sorted(a.rglob("*")) if p.is_file() and p.name not in ("ledger.jsonl", "run.json")]
    assert files
    for f in files:
        assert (b / f).exists(), f"{f} missing"
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs"
    extra = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} - set(files) - {Path("ledger.jsonl"), Path("run.json")}
    assert not extra, extra


@pytest.fixture(scope="module")
def reference(sample_catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray-ref") / "run"
    return detect("sample-bay", model="fdi", catalog=sample_catalog, out=out, runtime="in-process", tile_size=128).folder


def test_ray_run_equals_in_process_run(sample_catalog, reference, tmp_path):
    import ray

    run = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "ray", runtime="ray", tile_size=128, workers=2)
    assert not ray.is_initialized(), "the local Ray started for the run is shut down after it"
    assert run.tiles.failed == 0 and run.tiles.missing == 0
    assert run.manifest["properties"]["geoloom:timings"]["cluster"]["engine"] == "ray"
    same_outputs(reference, run.folder)


def test_cli_run_with_ray_runtime(geoloom_cli, sample_catalog, reference, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([*geoloom_cli, "run", "--preset", "sample-bay", "--model", "fdi", "--catalog", str(sample_catalog),
                           "--out", str(out), "--runtime", "ray", "--workers", "2", "--tile-size", "128"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "cluster: ray" in done.stderr
    same_outputs(reference, out)
