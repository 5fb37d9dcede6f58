"""Unpack the map's JavaScript/CSS from pinned npm packages into ``ui/static/vendor``.

Run once in a checkout (``make setup`` does): ``python -m geoloom.ui.fetch_assets``; ``--user``
writes into the per-user data folder instead, as ``geoloom ui`` does for an installed package.
It uses ``npm pack`` when npm is installed, otherwise it downloads the same tarballs from the
npm registry; either way each tarball is checked against its pinned sha512 before unpacking.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from geoloom.ui.assets import PACKAGES, VENDOR_DIR, NpmPackage, missing_files, target_path, user_vendor_dir


class FetchError(Exception):
    """A package could not be fetched or did not match its pinned checksum."""


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _npm_pack(pkg: NpmPackage, dest: Path) -> Path:
    npm = shutil.which("npm")
    assert npm is not None
    proc = subprocess.run(
        [npm, "pack", pkg.spec, "--json", "--silent", "--pack-destination", str(dest)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        raise FetchError(f"npm pack {pkg.spec} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    info = json.loads(proc.stdout)[0]
    return dest / info["filename"]


def _download(pkg: NpmPackage, dest: Path) -> Path:
    out = dest / f"{pkg.folder}-{pkg.version}.tgz"
    try:
        with urllib.request.urlopen(pkg.tarball_url, timeout=120) as resp, open(out, "wb") as f:
            shutil.copyfileobj(resp, f)
    except OSError as exc:
        raise FetchError(f"cannot download {pkg.tarball_url} ({exc}); install npm or check the network") from None
    return out


def _unpack(pkg: NpmPackage, tgz: Path, folder: Path | None = None) -> list[Path]:
    got = _integrity(tgz)
    if got != pkg.integrity:
        raise FetchError(f"{pkg.spec}: checksum {got[:24]}... differs from the pinned {pkg.integrity[:24]}...")
    written = []
    with tarfile.open(tgz, "r:gz") as tar:
        for member in pkg.files:
            try:
                info = tar.getmember(f"package/{member}")
            except KeyError:
                raise FetchError(f"{pkg.spec} has no file {member}") from None
            if not info.isfile():
                raise FetchError(f"{pkg.spec}: {member} is not a regular file")
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            target = target_path(pkg, member, folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
    return written


def fetch(*, force: bool = False, use_npm: bool | None = None, quiet: bool = False,
          folder: Path | None = None) -> list[Path]:
    """Fetch every package whose files are missing from ``folder`` (default: the package's own
    ``static/vendor``; all of them with ``force``)."""
    folder = folder or VENDOR_DIR
    if not force and not missing_files(folder):
        if not quiet:
            print(f"map assets already in {folder}")
        return []
    use_npm = shutil.which("npm") is not None if use_npm is None else use_npm
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in PACKAGES:
            tgz = _npm_pack(pkg, Path(tmp)) if use_npm else _download(pkg, Path(tmp))
            written += _unpack(pkg, tgz, folder)
            if not quiet:
                print(f"{pkg.spec}: {len(pkg.files)} file(s)")
    (folder / "packages.json").write_text(
        json.dumps({p.name: {"version": p.version, "integrity": p.integrity} for p in PACKAGES}, indent=2)
    )
    if not quiet:
        print(f"map assets written to {folder}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: fetch the map's files; 2 when a package could not be fetched."""
    parser = argparse.ArgumentParser(prog="python -m geoloom.ui.fetch_assets", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even when the files are present")
    parser.add_argument("--no-npm", action="store_true", help="download the tarballs from the registry without npm")
    parser.add_argument("--user", action="store_true", help="write into the per-user data folder, not the package")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        fetch(force=args.force, use_npm=False if args.no_npm else None, quiet=args.quiet,
              folder=user_vendor_dir() if args.user else None)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
