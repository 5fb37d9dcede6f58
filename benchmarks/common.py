"""Shared helpers of the benchmark cases: machine facts, child processes with peak memory,
regions cut from a scene's grid, ledger stage sums and the JSON reports."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform as _platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil
from affine import Affine
from odc.geo.geobox import GeoBox

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
CACHE = BENCH / ".cache"
SAMPLE_CATALOG = CACHE / "sample" / "catalog.json"
TILE_CATALOG = CACHE / "tile" / "catalog.json"
MiB = 2**20


# --------------------------------------------------------------------------- machine and numbers
def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or "CPU"


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU, library versions and the load right now."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cores_usable": cores,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "ram_available_gib": round(psutil.virtual_memory().available / 2**30, 1),
        "python": _platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "os": f"{_platform.system()} {_platform.release()}",
        "load_average": load_average(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """A short description of the machine for the summary table."""
    return f"{info['cores_usable']} cores, {info['ram_gib']:g} GiB, load {info['load_average'][0]:g}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- child processes
@dataclass
class ChildResult:
    """A finished child process: exit code, wall time, peak memory and what it reported."""

    rc: int
    wall_s: float
    peak_tree_rss_mb: float
    peak_single_rss_mb: float
    peak_tree_at_s: float
    maxrss_mb: float
    processes_seen: int
    result: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    peak_by_role: dict[str, dict[str, float]] = field(default_factory=dict)
    tree_at_peak_mb: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stderr_tail")
        return d


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def _role(p: psutil.Process, main_pid: int) -> str:
    """main (the child itself), worker (a Dask worker process), or helper (resource tracker, ...)."""
    if p.pid == main_pid:
        return "main"
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "helper"
    return "worker" if "spawn_main" in cmd or "dask_spec" in cmd else "helper"


def run_child(
    args: Sequence[str],
    *,
    timeout: float = 3600,
    poll_s: float = 0.1,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> ChildResult:
    """Run ``python args...`` with ``--result FILE`` appended; poll its process tree for peak RSS.

    Peak memory is sampled every ``poll_s`` seconds as the sum of the RSS of the child and all
    its descendants (a Dask run: the client with the scheduler and nannies in it, and the
    worker processes), with the peak of each role (main, worker, helper) and the tree's make-up
    at its peak, plus the child's own ``ru_maxrss`` from ``wait4``.
    """
    with tempfile.TemporaryDirectory(prefix="geoloom-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        err_file = Path(tmp) / "stderr.txt"
        cmd = [sys.executable, *args, "--result", str(result_file)]
        full_env = dict(os.environ, **(env or {}))
        full_env.setdefault("PYTHONPATH", str(REPO))
        t0 = time.perf_counter()
        with open(err_file, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=full_env, cwd=cwd or REPO)
        ps = psutil.Process(proc.pid)
        peak_tree = peak_single = 0
        peak_at = 0.0
        seen: set[int] = set()
        roles: dict[int, str] = {}
        by_role: dict[str, dict[str, float]] = {}
        at_peak: dict[str, float] = {}
        rusage = None
        status = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - t0
            if elapsed > timeout:
                for p in reversed(_tree(ps)):
                    p.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            procs = _tree(ps)
            seen.update(p.pid for p in procs)
            sizes = [_rss(p) for p in procs]
            names = [roles.setdefault(p.pid, _role(p, proc.pid)) for p in procs]
            if sum(sizes) > peak_tree:
                peak_tree, peak_at = sum(sizes), elapsed
                at_peak = {}
                for name, size in zip(names, sizes):
                    at_peak[name] = round(at_peak.get(name, 0.0) + size / MiB, 1)
            for name, size in zip(names, sizes):
                if size / MiB > by_role.get(name, {}).get("peak_mb", 0.0):
                    by_role[name] = {"peak_mb": round(size / MiB, 1), "at_s": round(elapsed, 2)}
            peak_single = max(peak_single, max(sizes, default=0))
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        tail = err_file.read_text()[-3000:]
    return ChildResult(
        rc=proc.returncode, wall_s=round(wall, 3), peak_tree_rss_mb=round(peak_tree / MiB, 1),
        peak_single_rss_mb=round(peak_single / MiB, 1), peak_tree_at_s=round(peak_at, 2), maxrss_mb=round(rusage.ru_maxrss / 1024, 1),
        processes_seen=len(seen), result=result, stderr_tail=tail, peak_by_role=by_role, tree_at_peak_mb=at_peak,
    )


def memory_story(child: dict[str, Any]) -> str:
    """Where a run's memory peak sits: the tree's make-up at its peak and each role's own peak."""
    wall = child["wall_s"]
    publish = child.get("result", {}).get("timings", {}).get("seconds", {}).get("publish")
    at = ", ".join(f"{k} {v:.0f}" for k, v in child.get("tree_at_peak_mb", {}).items())
    roles = "; ".join(f"{k} peaks at {v['peak_mb']:.0f} MB at {v['at_s']:.0f} s"
                      for k, v in child.get("peak_by_role", {}).items())
    when = f" (publishing from about {wall - publish:.0f} s)" if publish else ""
    text = f"tree peak {child['peak_tree_rss_mb']:.0f} MB at {child['peak_tree_at_s']:.0f} s of {wall:.0f} s{when}"
    return text + (f" [{at} MB]" if at else "") + (f"; {roles}" if roles else "")


def check(child: ChildResult, what: str) -> ChildResult:
    """Raise with the child's stderr when it failed."""
    if child.rc != 0:
        raise RuntimeError(f"{what} failed with exit code {child.rc}:\n{child.stderr_tail}")
    return child


def geoloom_exe() -> str:
    """The ``geoloom`` command of this environment."""
    exe = Path(sys.executable).with_name("geoloom")
    return str(exe) if exe.exists() else "geoloom"


def detect_child(spec: dict[str, Any], **kwargs: Any) -> ChildResult:
    """One ``detect`` run in a fresh process (see ``benchmarks.child``)."""
    return check(run_child(["-m", "benchmarks.child", "detect", json.dumps(spec)], **kwargs), f"detect {spec.get('model')}")


# --------------------------------------------------------------------------- data and regions
def ensure_sample_catalog() -> Path:
    """The small sample catalog, generated once."""
    if not SAMPLE_CATALOG.exists():
        from geoloom.platform.sampledata import generate_sample_data

        generate_sample_data(SAMPLE_CATALOG.parent)
    return SAMPLE_CATALOG


def sample_scene() -> tuple[Path, Path, SceneGrid, str]:
    """The sample catalog's 30NZM scene (west of the other granule): catalog, item file, grid and day."""
    catalog = ensure_sample_catalog()
    item = next(p for p in scene_items(catalog) if "30NZM" in p.name)
    day = json.loads(item.read_text())["properties"]["datetime"][:10]
    return catalog, item, SceneGrid.from_item(item), day


def ensure_tile_catalog() -> Path:
    """The full 10980 x 10980 px tile (``geoloom sample-data --size tile``), generated once into the cache."""
    if not TILE_CATALOG.exists():
        from geoloom.platform.sampledata import generate_sample_data

        TILE_CATALOG.parent.mkdir(parents=True, exist_ok=True)
        generate_sample_data(TILE_CATALOG.parent.resolve(), size="tile")
    return TILE_CATALOG


def scene_items(catalog: Path) -> list[Path]:
    """The STAC item files of a static catalog, sorted by path."""
    return sorted(p for p in catalog.parent.glob("*/*/*.json"))


@dataclass(frozen=True)
class SceneGrid:
    """A scene's 10 m grid (an odc-geo GeoBox, from its STAC item) and the windows cut from it."""

    item: Path
    geobox: GeoBox

    @classmethod
    def from_item(cls, item: Path, band: str = "nir") -> SceneGrid:
        """The grid of ``band`` of a STAC item file."""
        a = json.loads(item.read_text())["assets"][band]
        crs = a.get("proj:code") or f"EPSG:{a['proj:epsg']}"
        return cls(item, GeoBox(tuple(a["proj:shape"]), Affine(*a["proj:transform"][:6]), crs))

    @property
    def shape_yx(self) -> tuple[int, int]:
        """Rows and columns of the scene."""
        return tuple(self.geobox.shape.yx)

    @property
    def epsg(self) -> int:
        """The scene's EPSG code."""
        return int(self.geobox.crs.epsg)

    def window_region(self, row: int, col: int, height: int, width: int) -> dict[str, Any]:
        """A GeoJSON polygon (EPSG:4326) whose grid in this CRS is exactly the pixel window.

        The window's extent, 2 m inside, densified and turned into lon/lat; geoloom's planner snaps
        it back outward onto the same 10 m pixels.
        """
        from shapely.geometry import mapping

        window = self.geobox[row:row + height, col:col + width]
        inset = window.extent.buffer(-2.0)
        lonlat = inset.to_crs("epsg:4326", resolution=max(window.shape.yx) * 10.0 / 200)
        return {"type": "Feature", "properties": {"name": f"window-{row}-{col}-{height}x{width}"},
                "geometry": mapping(lonlat.geom)}

    def centred(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A window of the given size at the middle of the scene, on the 60 m grid."""
        h, w = self.shape_yx
        r = (h - height) // 2 // 6 * 6
        c = (w - width) // 2 // 6 * 6
        return r, c, height, width

    def around(self, centre_yx: tuple[int, int], height: int, width: int) -> tuple[int, int, int, int]:
        """A window of the given size centred on ``centre_yx`` as far as the scene allows, on the 60 m grid."""
        h, w = self.shape_yx
        r = min(max(centre_yx[0] - height // 2, 0), h - height) // 6 * 6
        c = min(max(centre_yx[1] - width // 2, 0), w - width) // 6 * 6
        return r, c, height, width


# --------------------------------------------------------------------------- ledger and run folders
def ledger_stages(folder: str | Path) -> dict[str, Any]:
    """Worker-seconds per stage summed over the done tiles of a run's ledger, and the workers used."""
    from geoloom.platform.ledger import Ledger

    recs = [r for r in Ledger(Path(folder) / "ledger.jsonl").records().values() if r.state == "done"]
    sums = {k: 0.0 for k in ("read", "model", "write", "total")}
    for r in recs:
        for k in sums:
            sums[k] += r.seconds.get(k, 0.0)
    per_tile = {k: v / len(recs) for k, v in sums.items()} if recs else {}
    return {
        "tiles": len(recs),
        "workers": sorted({r.worker for r in recs if r.worker}),
        "worker_seconds": {k: round(v, 3) for k, v in sums.items()},
        "per_tile_s": {k: round(v, 4) for k, v in per_tile.items()},
    }


def run_timings(folder: str | Path) -> dict[str, Any]:
    """The timings the run recorded in its manifest (execute, publish, per-stage sums)."""
    p = Path(folder) / "run.json"
    if not p.exists():
        return {}
    return json.loads(p.read_text())["properties"].get("geoloom:timings", {})


# --------------------------------------------------------------------------- reports
def results_dir(quick: bool) -> Path:
    """Where reports go: ``benchmarks/results``, or its ``quick`` folder for smoke runs."""
    return RESULTS / "quick" if quick else RESULTS


def write_report(case: str, report: dict[str, Any]) -> Path:
    """``<results>/<case>.json``, written atomically."""
    folder = results_dir(bool(report.get("quick")))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def case_main(doc: str, run: Callable[[bool], dict[str, Any]]) -> None:
    """``python -m benchmarks.CASE [--quick]``: run one case and print its summary rows."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    for r in run(ap.parse_args().quick)["summary"]:
        print(r)


def row(case: str, metric: str, measured: float | None, target: str | None, met: bool | None,
        note: str = "") -> dict[str, Any]:
    """One line of the summary table."""
    return {"case": case, "metric": metric, "measured": measured, "target": target, "met": met, "note": note}


SOURCE_DIRS = ("platform", "runtime", "workflows", "ui")


def code_version() -> dict[str, Any]:
    """The geoloom commit measured: HEAD, the last commit that changed the source, and the
    source files changed since (uncommitted)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:].startswith(tuple(d + "/" for d in SOURCE_DIRS))]
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "source_commit": git("log", "-1", "--format=%h", "--", *SOURCE_DIRS) or None,
            "uncommitted_source_changes": changed}


def same_source(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two code versions ran the same geoloom source (benchmark-only commits aside)."""
    keys = ("source_commit", "uncommitted_source_changes")
    return bool(a and b) and all(a.get(k) == b.get(k) for k in keys)


def new_report(case: str, quick: bool, parameters: dict[str, Any]) -> dict[str, Any]:
    """The common head of every report; ``finish_report`` adds the load and the code version after."""
    return {"case": case, "quick": quick, "started": now(), "code": code_version(), "machine": machine_info(),
            "parameters": parameters}


def finish_report(report: dict[str, Any], started: float) -> dict[str, Any]:
    report["finished"] = now()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["load_average_after"] = load_average()
    after = code_version()
    if not same_source(after, report.get("code")):
        report["code_after"] = after  # the source changed while this case ran: its numbers mix versions
    return report
