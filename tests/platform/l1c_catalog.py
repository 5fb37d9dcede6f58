"""A Level-1C-like copy of a generated (Level-2A) catalog: the same rasters read through item offsets
and scales that put an atmosphere back on top (per-band transmittance and path reflectance, of the
sizes measured between top-of-atmosphere and surface water), with the SCL band taken away."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

#: Path reflectance per band over clear ocean (top of atmosphere minus surface water).
PATH_REFLECTANCE = {"coastal": 0.113, "blue": 0.093, "green": 0.077, "red": 0.058, "rededge1": 0.045,
                    "rededge2": 0.035, "rededge3": 0.028, "nir": 0.022, "nir08": 0.015, "nir09": 0.012,
                    "swir16": 0.002, "swir22": 0.001}
#: Two-way transmittance of the surface signal per band.
TRANSMITTANCE = {"coastal": 0.80, "blue": 0.84, "green": 0.88, "red": 0.91, "rededge1": 0.92, "rededge2": 0.93,
                 "rededge3": 0.93, "nir": 0.94, "nir08": 0.94, "nir09": 0.80, "swir16": 0.95, "swir22": 0.93}


def l1c_copy(catalog: Path, dest: Path) -> Path:
    """Copy ``catalog``'s folder to ``dest`` and turn every item into a Level-1C look-alike."""
    shutil.copytree(catalog.parent, dest)
    for item_file in dest.rglob("*.json"):
        item = json.loads(item_file.read_text())
        if item.get("type") != "Feature":
            continue
        item["assets"].pop("scl", None)
        item["properties"]["processing:level"] = "L1C"
        for key, asset in item["assets"].items():
            if key in PATH_REFLECTANCE:
                rb = asset["raster:bands"][0]
                rb["scale"] = rb.get("scale", 1e-4) * TRANSMITTANCE[key]
                rb["offset"] = rb.get("offset", 0.0) * TRANSMITTANCE[key] + PATH_REFLECTANCE[key]
        item_file.write_text(json.dumps(item))
    return dest / catalog.name
