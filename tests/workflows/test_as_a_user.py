"""geoloom as a new user meets it: the README's snippets pasted into files and run as scripts from
outside the checkout, and the wheel installed into a fresh virtual environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: The files every finished run folder holds (the run's own layers come on top).
RUN_FILES = {"run.json", "request.json", "ledger.jsonl", "result.zarr", "result.tif", "quicklook.png"}


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def readme_snippet(marker: str) -> str:
    """The README's Python block that contains ``marker`` (exactly one must)."""
    blocks = [b for b in readme_python_blocks() if marker in b]
    assert len(blocks) == 1, f"README has {len(blocks)} Python blocks with {marker!r}"
    return blocks[0]


def readme_cli_quick_run() -> list[str]:
    """The first ``geoloom run --bbox ...`` line of the README, as arguments."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("geoloom run --bbox"):
            return line.split("#")[0].split()[1:]
    raise AssertionError("README has no 'geoloom run --bbox' line")


def run_py(python: str | Path, args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same files and the same result pixels."""
    names = lambda p: {f.name for f in p.iterdir() if not f.name.startswith(".")}  # noqa: E731
    assert RUN_FILES <= names(a) and names(a) == names(b), (names(a), names(b))
    with rasterio.open(a / "result.tif") as ra, rasterio.open(b / "result.tif") as rb:
        assert ra.transform == rb.transform and ra.crs == rb.crs
        np.testing.assert_array_equal(ra.read(), rb.read())
    if (a / "detections.geojson").exists():
        count = lambda p: (p / "detections.geojson").read_text().count('"Feature"')  # noqa: E731
        assert count(a) == count(b) > 0


def user_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "GEOLOOM_"))}
    env.update(GEOLOOM_DATA_DIR=str(data_dir), PYTHONWARNINGS="ignore", **extra)
    env.pop("PYTHONPATH", None)
    return env


def test_readme_snippets_run_as_scripts_without_a_main_guard(sample_catalog, tmp_path, geoloom_cli):
    """``python file.py``, ``python -m`` and ``python -c`` on the embedded Dask cluster; same files as the CLI."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample").symlink_to(sample_catalog.parent, target_is_directory=True)  # the default catalog
    env = user_env(data)
    python = sys.executable
    detect_src, smooth_src = readme_snippet("detect(\"sample-bay\", model=\"fdi\""), readme_snippet("map_tiles(")
    assert "__main__" not in detect_src + smooth_src

    script = tmp_path / "as_script"
    script.mkdir()
    (script / "snippet.py").write_text(detect_src)
    run_py(python, ["snippet.py"], script, env)
    cli = tmp_path / "as_cli"
    cli.mkdir()
    subprocess.run([*geoloom_cli, "run", "--preset", "sample-bay", "--model", "fdi", "--out", "runs/bay"],
                   cwd=cli, env=env, check=True, capture_output=True, timeout=600)
    assert_same_run(script / "runs" / "bay", cli / "runs" / "bay")
    (script / "watch.py").write_text(readme_snippet("update("))  # monitoring over time, as a script
    printed = run_py(python, ["watch.py"], script, env).stdout
    assert "['2024-01-14']" in printed and (script / "runs" / "watch" / "dates" / "2024-01-14" / "result.tif").is_file()

    module = tmp_path / "as_module"
    (module / "mypkg").mkdir(parents=True)
    (module / "mypkg" / "__init__.py").write_text("")
    (module / "mypkg" / "smooth.py").write_text(smooth_src)
    run_py(python, ["-m", "mypkg.smooth"], module, env)  # its function is defined in __main__
    inline = tmp_path / "as_c"
    inline.mkdir()
    run_py(python, ["-c", smooth_src], inline, env)
    assert_same_run(module / "runs" / "smooth", inline / "runs" / "smooth")


def test_a_function_from_the_scripts_own_module_reaches_the_workers(sample_catalog, tmp_path):
    """Pickled by reference, it must import in the workers from the script's folder."""
    (tmp_path / "helpers.py").write_text("def ident(tile):\n    return tile['nir']\n")
    (tmp_path / "main.py").write_text(textwrap.dedent(f"""
        from geoloom.workflows import map_tiles
        from helpers import ident
        run = map_tiles("sample-bay", ident, bands=["nir"], catalog={str(sample_catalog)!r}, out="out", workers=2)
        assert run.ok, run
    """))
    run_py(sys.executable, ["main.py"], tmp_path, user_env(tmp_path / "data"))
    assert (tmp_path / "out" / "result.tif").is_file()


def test_embedded_workers_end_with_a_killed_script(tmp_path):
    """A script SIGKILLed while its embedded cluster runs leaves no worker process behind."""
    import psutil

    code = textwrap.dedent("""
        import time
        from geoloom.runtime.executors import DaskExecutor
        ex = DaskExecutor(workers=2)
        print(sorted(ex.client.run(__import__("os").getpid).values()), flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        pids = [int(p) for p in proc.stdout.readline().strip("[]\n").split(",")]  # type: ignore[union-attr]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive, f"worker processes outlived their script: {alive}"


def test_an_embedded_worker_that_dies_is_started_again():
    import signal
    import time

    from geoloom.runtime.executors import DaskExecutor

    ex = DaskExecutor(workers=2)
    try:
        before = ex.client.run(os.getpid)
        os.kill(sorted(before.values())[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = ex.client.run(os.getpid, on_error="ignore")
            if len(after) == 2 and set(after.values()) != set(before.values()):
                break
            time.sleep(0.5)
        assert len(after) == 2 and sorted(before.values())[0] not in after.values()
    finally:
        ex.close()


# --------------------------------------------------------------------------- the wheel, installed
def source_tree_copy(dest: Path) -> Path:
    """The files a clean checkout has (tracked and not ignored), as they are now."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def site_packages_state(venv: Path) -> dict[str, tuple[int, int]]:
    site = next((venv / "lib").glob("python*/site-packages"))
    return {str(p.relative_to(site)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in site.rglob("*") if p.is_file() and p.suffix != ".pyc"}


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_works_from_an_empty_folder(tmp_path):
    src = source_tree_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-W", "always", "-c",
                            f"from setuptools import build_meta as b; print(b.build_wheel({str(dist)!r}))"],
                           cwd=src, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "Warning" not in build.stdout + build.stderr, (build.stdout + build.stderr)[-4000:]
    wheel = dist / build.stdout.strip().splitlines()[-1]

    venv = tmp_path / "venv"
    base = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1200, capture_output=True)
    subprocess.run([*pip, str(wheel)], check=True, timeout=1200, capture_output=True)

    home = tmp_path / "home"
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in user_env(tmp_path / "unused").items() if k not in ("GEOLOOM_DATA_DIR", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    before = site_packages_state(venv)
    geoloom = venv / "bin" / "geoloom"

    regions = subprocess.run([str(geoloom), "regions"], cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert regions.returncode == 0 and "sample-bay" in regions.stdout and "Accra" in regions.stdout, regions.stderr
    made = subprocess.run([str(geoloom), "sample-data"], cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    catalog = Path(made.stdout.strip().splitlines()[-1])
    assert home in catalog.parents, catalog  # the per-user data folder, not the package
    run = subprocess.run([str(geoloom), "run", "--preset", "sample-bay", "--model", "fdi", "--out", "r"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    quick = tmp_path / "quick"
    quick.mkdir()
    proc = subprocess.run([str(geoloom), *readme_cli_quick_run()], cwd=quick, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name, marker in (("snippet.py", "detect(\"sample-bay\", model=\"fdi\""), ("smooth.py", "map_tiles(")):
        (empty / name).write_text(readme_snippet(marker))
        run_py(venv / "bin" / "python", [name], empty, env)
    assert (empty / "runs" / "smooth" / "result.tif").is_file()
    assert_same_run(empty / "runs" / "bay", empty / "r")

    where = [str(venv / "bin" / "python"), "-c", "from geoloom.ui import assets; print(assets.vendor_dir())"]
    assert subprocess.run(where, env=env, capture_output=True, text=True, check=True).stdout.strip() == "None"
    run_py(venv / "bin" / "python", ["-m", "geoloom.ui.fetch_assets", "--user", "-q"], empty, env)  # as the app does
    vendor = Path(subprocess.run(where, env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert home in vendor.parents, vendor
    assert site_packages_state(venv) == before, "files under site-packages were created or changed"
