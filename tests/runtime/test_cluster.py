"""Real Dask processes on loopback: external scheduler, killed workers, killed CLI + resume, GPU placement."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from geoloom.platform.errors import RunError
from geoloom.workflows import detect, map_tiles

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_outputs(a: Path, b: Path) -> None:
    files = [p.relative_to(a) for p in sorted(a.rglob("*")) if p.is_file() and p.name not in ("ledger.jsonl", "run.json")]
    assert files
    for f in files:
        assert (b / f).exists(), f"{f} missing"
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs"
    extra = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} - set(files) - {Path("ledger.jsonl"), Path("run.json")}
    assert not extra, extra


@pytest.fixture()
def external_cluster():
    """`dask scheduler` + 2 `dask worker` processes started as a user would, on loopback."""
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    time.sleep(1.5)
    for _ in range(2):
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", addr, "--nworkers", "1", "--nthreads", "1",
                                       "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    client = Client(addr, timeout="30s")
    client.wait_for_workers(2, timeout=60)
    try:
        yield addr, client
    finally:
        client.close()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def test_external_scheduler_equals_embedded_run_and_loads_model_once_per_worker(sample_catalog, tmp_path, external_cluster):
    addr, client = external_cluster
    remote = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "remote", cluster=addr, tile_size=128)
    local = detect("sample-bay", model="fdi", catalog=sample_catalog, out=tmp_path / "local", runtime="in-process", tile_size=128)
    same_outputs(local.folder, remote.folder)
    assert remote.manifest["properties"]["geoloom:timings"]["cluster"]["workers"] == 2
    from geoloom.runtime.model_cache import loads_in_this_process

    loads = client.run(loads_in_this_process)
    assert set(loads.values()) <= {0, 1}, loads  # once per worker process, never once per tile
    assert sum(loads.values()) >= 1


def slow_smooth_factory(delay: float):
    def slow_smooth(tile: xr.Dataset) -> xr.DataArray:
        time.sleep(delay)
        from scipy import ndimage

        return xr.DataArray(ndimage.uniform_filter(tile["nir"].values, size=5, mode="nearest"), dims=("y", "x"))

    return slow_smooth


def test_sigkill_of_a_worker_mid_run_costs_only_its_tiles(sample_catalog, tmp_path, external_cluster):
    addr, client = external_cluster
    fn = slow_smooth_factory(0.25)
    ref = map_tiles("sample-bay", fn, bands=["nir"], halo=2, tile_size=64, catalog=sample_catalog,
                    out=tmp_path / "ref", runtime="in-process")
    pids = client.run(os.getpid)
    killed = []

    def progress(p):
        if p.finished >= 3 and not killed:
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    run = map_tiles("sample-bay", fn, bands=["nir"], halo=2, tile_size=64, catalog=sample_catalog,
                    out=tmp_path / "killed", cluster=addr, progress=progress)
    assert killed, "a worker was killed mid-run"
    assert run.ok, run.failed_tiles
    same_outputs(ref.folder, run.folder)


def test_cli_killed_mid_run_then_resume_computes_only_missing_tiles(geoloom_cli, sample_catalog, tmp_path):
    ref = detect("zone-border", model="fdi", catalog=sample_catalog, out=tmp_path / "ref", runtime="in-process", tile_size=64)
    out = tmp_path / "run"
    proc = subprocess.Popen([*geoloom_cli, "run", "--preset", "zone-border", "--model", "fdi", "--catalog", str(sample_catalog),
                             "--out", str(out), "--runtime", "in-process", "--tile-size", "64", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ledger = out / "ledger.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not ledger.exists() or len(ledger.read_text().splitlines()) < 5):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {json.loads(line)["key"] for line in ledger.read_text().splitlines() if line.strip()}
    total = ref.tiles.total
    assert 5 <= len(done_before) < total, "the CLI was killed mid-run"
    assert not (out / "run.json").exists()
    resumed = subprocess.run([*geoloom_cli, "run", "--resume", str(out), "--runtime", "in-process", "-q"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    recomputed = [r["key"] for r in records[len(done_before):]]
    assert not set(recomputed) & done_before, "tiles already done were not computed again"
    assert len(set(recomputed)) == total - len(done_before)
    same_outputs(ref.folder, out)


def test_a_tile_that_always_raises_is_recorded_failed_and_the_rest_published(sample_catalog, tmp_path):
    def fragile(tile: xr.Dataset) -> xr.DataArray:
        if float(tile.x.min()) < 827_500 < float(tile.x.max()):  # one column of tiles in the bay
            raise ValueError("this tile is cursed")
        return tile["nir"]

    run = map_tiles("sample-bay", fragile, bands=["nir"], tile_size=64, catalog=sample_catalog,
                    out=tmp_path / "run", runtime="in-process", retries=1)
    failed = run.failed_tiles
    assert failed and all("this tile is cursed" in f["error"] for f in failed)
    assert all(r.attempts == 2 for r in run.ledger.itertuples() if r.state == "failed")
    assert 0 < run.tiles.failed < run.tiles.total
    assert run.path("result.tif").exists() and not run.ok


def test_gpu_model_without_gpu_workers_falls_back_or_fails_clearly(sample_catalog, tmp_path):
    ident = lambda tile: tile["nir"]  # noqa: E731
    with pytest.warns(UserWarning, match="prefers a GPU"):
        run = map_tiles("sample-bay", ident, bands=["nir"], catalog=sample_catalog, out=tmp_path / "p",
                        runtime="in-process", gpu="prefers")
    assert run.ok
    with pytest.raises(RunError, match="requires a GPU"):
        map_tiles("sample-bay", ident, bands=["nir"], catalog=sample_catalog, out=tmp_path / "r",
                  runtime="in-process", gpu="requires")


@pytest.mark.parametrize("per_date", [False, True])
def test_no_worker_of_an_embedded_cluster_outlives_its_run(sample_catalog, tmp_path, per_date, dask_workers_below):
    run = detect("sample-bay", catalog=sample_catalog, out=tmp_path / "run", workers=2, progress=False,
                 per_date=per_date, **({} if per_date else {"start": "2024-01-09", "end": "2024-01-09"}))
    assert run.tiles.done == run.tiles.total > 0
    assert not dask_workers_below()


def _wait(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_idle_embedded_workers_are_killed_at_close_busy_ones_asked_to_exit(dask_workers_below):
    """Idle workers have written all they will write: killing them spares 0.5 s of teardown each.
    A worker still running a task gets SIGTERM, and Dask's orderly exit."""
    from geoloom.runtime.executors import DaskExecutor

    ex = DaskExecutor(workers=2)
    assert ex.client.submit(_wait, 0.01).result() == 0.01
    procs = [w._process for w in ex._own_cluster.workers.values()]
    ex.close()
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    assert not dask_workers_below()
    import logging  # the scheduler's note about a cut stream to a killed worker stays out of the user's terminal

    assert logging.getLogger("distributed.batched").getEffectiveLevel() >= logging.WARNING

    ex = DaskExecutor(workers=1)
    busy = ex.client.submit(_wait, 2.0)
    deadline = time.time() + 30
    while not any(ex.client.processing().values()) and time.time() < deadline:
        time.sleep(0.05)
    procs = [w._process for w in ex._own_cluster.workers.values()]
    ex.close()
    assert busy is not None and procs[0].returncode != -signal.SIGKILL
    assert not dask_workers_below()


def compose_commands(port: int) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The service commands of docker-compose.yml, pointed at loopback instead of the compose network,
    and the environment its services share (its Dask and malloc settings; the paths are the image's)."""
    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    out = {}
    for name in ("scheduler", "cpu-worker", "gpu-worker"):
        cmd = [str(c) for c in compose["services"][name]["command"]]
        cmd = [c.replace("tcp://scheduler:8786", f"tcp://127.0.0.1:{port}").replace("0.0.0.0", "127.0.0.1")
               .replace(":8787", ":0").replace("8786", str(port)) for c in cmd]
        cmd[0] = str(BIN / cmd[0])
        out[name] = cmd
    shared = compose["x-geoloom"]["environment"]
    env = {**os.environ, **{k: str(v) for k, v in shared.items() if k.startswith(("DASK_", "MALLOC_"))}}
    return out, env


def test_docker_compose_services_run_a_job_and_survive_a_killed_worker(sample_catalog, tmp_path):
    port = free_port()
    cmds, env = compose_commands(port)
    assert "--resources" in cmds["gpu-worker"] and "GPU=1" in cmds["gpu-worker"]
    procs = [subprocess.Popen(cmds["scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.5)
        for name in ("cpu-worker", "cpu-worker", "gpu-worker"):
            procs.append(subprocess.Popen(cmds[name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
            client.wait_for_workers(3, timeout=90)
            info = client.scheduler_info()["workers"]
            assert sum((w.get("resources") or {}).get("GPU", 0) for w in info.values()) == 1
            pids = client.run(os.getpid)
            import dask.config

            assert set(client.run(dask.config.get, "distributed.worker.profile.enabled").values()) == {False}
        fn = slow_smooth_factory(0.2)
        ref = map_tiles("sample-bay", fn, bands=["nir"], halo=2, tile_size=64, catalog=sample_catalog,
                        out=tmp_path / "ref", runtime="in-process")
        killed = []

        def progress(p):
            if p.finished >= 2 and not killed:
                victim = sorted(pids.values())[-1]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        run = map_tiles("sample-bay", fn, bands=["nir"], halo=2, tile_size=64, catalog=sample_catalog,
                        out=tmp_path / "compose", cluster=f"tcp://127.0.0.1:{port}", progress=progress)
        assert killed and run.ok
        same_outputs(ref.folder, run.folder)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _malloc_settings() -> tuple[str | None, ...]:
    return tuple(os.environ.get(f"MALLOC_{k}_") for k in ("MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"))


def _page_faults_per_tile(tiles: int = 4) -> list[int]:
    """Minor page faults of this thread for each of ``tiles`` rounds of tile-sized work: 13 bands of a 560 px
    tile and their 12-band stack (30 MB), all freed at the end of the round as a tile's arrays are."""
    import resource

    import numpy as np

    faults = []
    for _ in range(tiles):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        bands = [np.ones((560, 560), np.float32) for _ in range(13)]
        stack = np.stack(bands[:12])
        del bands, stack
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    return faults


def _tile_code_imported() -> bool:
    return "geoloom.runtime.tasks" in sys.modules


def _worker_profiler(dask_worker) -> tuple[bool, bool]:
    import dask.config

    return dask.config.get("distributed.worker.profile.enabled"), "profile" in dask_worker.periodic_callbacks


def test_embedded_workers_keep_tile_arrays_on_the_heap_run_without_the_profiler_and_import_early(monkeypatch):
    """Dask's trim setting alone turns every tile-sized array into a fresh mmap (2x slower reads) and hands
    a tile's pages back to the system for the next tile to fault in again; its statistical profiler
    stalls each task every 10 ms. A user's own setting turns the profiler back on."""
    from geoloom.runtime.executors import WORKER_ENVIRON, DaskExecutor
    from geoloom.runtime.local_cluster import PROFILER_SETTING

    monkeypatch.delenv(PROFILER_SETTING, raising=False)
    ex = DaskExecutor(workers=1)
    try:
        seen = list(ex.client.run(_malloc_settings).values())
        faults = list(ex.client.run(_page_faults_per_tile).values())[0]
        profiler = list(ex.client.run(_worker_profiler).values())
        deadline = time.time() + 60  # the tile code imports on a thread as the worker starts, before any task
        while not all(ex.client.run(_tile_code_imported).values()) and time.time() < deadline:
            time.sleep(0.1)
        imported = list(ex.client.run(_tile_code_imported).values())
    finally:
        ex.close()
    assert seen == [(WORKER_ENVIRON["MALLOC_MMAP_THRESHOLD_"], "65536", WORKER_ENVIRON["MALLOC_TOP_PAD_"])]
    # the first tile faults its pages in (about 4,500); the next ones reuse them (as many again without the pad)
    assert faults[0] > 2000 and max(faults[1:]) < faults[0] / 10, faults
    assert profiler == [(False, False)]
    assert imported == [True]

    monkeypatch.setenv(PROFILER_SETTING, "True")
    ex = DaskExecutor(workers=1)
    try:
        profiler = list(ex.client.run(_worker_profiler).values())
    finally:
        ex.close()
    assert profiler == [(True, True)]


def test_gpu_count_without_torch_follows_the_driver_and_cuda_visible_devices(monkeypatch, tmp_path):
    from geoloom.runtime import executors

    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a client that never imported it
    real = Path("/proc/driver/nvidia/gpus")
    n = len(list(real.iterdir())) if real.is_dir() else len(list(Path("/dev").glob("nvidia[0-9]*")))
    assert executors._local_gpus() == n
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors._local_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    assert executors._local_gpus() == min(n, 1)
    assert "torch" not in sys.modules
