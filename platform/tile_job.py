"""One tile, start to finish: read and composite, run the model, crop the halo, write the core."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from geoloom.platform.catalog import Scene
from geoloom.platform.composite import composite_tile, geobox_coords
from geoloom.platform.ledger import TileRecord
from geoloom.platform.models.base import Model
from geoloom.platform.mosaic import write_tile
from geoloom.platform.plan import TileTask
from geoloom.platform.reading import WarpGrid, gdal_env, read_band
from geoloom.platform.tile_stats import core_counts
from geoloom.platform.vectors import polygonize


#: How far inside its footprint (degrees, about 200 m) a tile must lie to be decided from SCL alone:
#: the bands' own edges (60 m pixels, resampled) then lie outside it.
FOOTPRINT_MARGIN_DEG = 0.002


@dataclass(frozen=True, slots=True)
class TileJob:
    """What every tile of a run shares: where to write, which scenes and bands, which outputs."""

    store: str
    parts: str
    scenes: tuple[Scene, ...]
    bands: tuple[str, ...]
    tile_size: int
    outputs: tuple[str, ...]
    grid: WarpGrid
    detection: str | None = None
    score: str | None = None
    label: str = "detection"
    primary: str | None = None  # the layer whose values tell where the model saw something (pixel counts)

    @property
    def scene_by_id(self) -> dict[str, Scene]:
        """The run's scenes by id."""
        return {s.id: s for s in self.scenes}


def classes_decide(task: TileTask, job: TileJob, scenes: list[Scene], model: Model,
                   read_ahead: dict[tuple[str, str], np.ndarray]) -> tuple[xr.Dataset, dict[str, np.ndarray]] | None:
    """The tile and its outputs without reading a reflectance band, where the model can tell every pixel
    from the scene classification alone (``model.outputs_from_classes``: e.g. marine-debris on a tile of
    land and cloud); None otherwise. Only for a tile of one scene, well inside its footprint, whose SCL
    has data everywhere, so that its bands would have data everywhere too and the outputs equal
    ``predict``'s. What was read is left in ``read_ahead`` for the composite when the model must look."""
    decide = getattr(model, "outputs_from_classes", None)
    if decide is None or len(scenes) != 1 or "scl" not in job.bands or "scl" not in scenes[0].assets:
        return None
    scene, geobox = scenes[0], task.read_geobox
    if not scene.footprint.contains(geobox.extent.to_crs("EPSG:4326").geom.buffer(FOOTPRINT_MARGIN_DEG)):
        return None
    scl = read_band(scene.assets["scl"], geobox, job.grid)
    read_ahead[(scene.id, "scl")] = scl  # for the composite, should the model need to look
    if not (np.isfinite(scl) & (scl != 0)).all():
        return None

    def read_more(band: str) -> np.ndarray:  # a band the model asks for (kept for the composite too)
        arr = read_band(scene.assets[band], geobox, job.grid)
        read_ahead[(scene.id, band)] = arr
        return arr

    layers = decide(scl, read_more)
    if layers is None:
        return None
    read_ahead.clear()
    index = np.zeros(scl.shape, dtype=np.int16)
    tile = xr.Dataset({"scl": (("y", "x"), scl), "scene_index": (("y", "x"), index)}, coords=geobox_coords(geobox))
    return tile, layers


def run_tile(task: TileTask, job: TileJob, model: Model) -> TileRecord:
    """Compute one tile and write it; raises on failure (the runtime retries and records)."""
    t0 = time.perf_counter()
    by_id = job.scene_by_id
    scenes = [by_id[s] for s in task.scene_ids if s in by_id]
    geobox = task.read_geobox
    read_ahead: dict[tuple[str, str], np.ndarray] = {}

    def read(sc: Scene, b: str, gb: GeoBox) -> np.ndarray:
        ahead = read_ahead.pop((sc.id, b), None)
        return ahead if ahead is not None and gb == geobox else read_band(sc.assets[b], gb, job.grid)

    with gdal_env():
        decided = classes_decide(task, job, scenes, model, read_ahead)
        if decided is None:
            tile, _ = composite_tile(scenes, job.bands, geobox, read)
    t1 = time.perf_counter()
    if decided is None:
        layers = model.predict(tile)
    else:
        tile, layers = decided
    t2 = time.perf_counter()
    h = task.halo
    cy, cx = task.core_shape_yx
    core = {name: np.asarray(layers[name])[h : h + cy, h : h + cx] for name in job.outputs}
    write_tile(job.store, task, core, tile_size=job.tile_size)
    n_det = 0
    if job.detection:
        part = Path(job.parts) / f"{task.key}.parquet"
        if (np.asarray(core[job.detection]) == 1).any():
            y0, _, x0, _ = task.core_yx
            core_transform = Affine(*task.read_transform) * Affine.translation(h, h)
            scene_index = tile["scene_index"].values[h : h + cy, h : h + cx]
            gdf = polygonize(
                core[job.detection],
                core.get(job.score) if job.score else None,
                core_transform,
                task.crs,
                tile=task.key,
                label=job.label,
                scene_index=scene_index,
                scenes=tuple((s.id, s.datetime) for s in scenes),
            )
            n_det = len(gdf)
            tmp = part.with_suffix(".tmp")
            gdf.to_parquet(tmp)
            os.replace(tmp, part)
        else:  # most tiles find nothing: no part (publishing reads a missing part as an empty one)
            part.unlink(missing_ok=True)
    t3 = time.perf_counter()
    used = tuple(scenes[i].id for i in np.unique(tile["scene_index"].values) if i >= 0)
    counts = core_counts(tile, core, halo=h, primary=job.primary or job.outputs[0], detection=job.detection)
    return TileRecord(
        key=task.key,
        row=task.row,
        col=task.col,
        state="done",
        seconds={"read": round(t1 - t0, 4), "model": round(t2 - t1, 4), "write": round(t3 - t2, 4), "total": round(t3 - t0, 4)},
        detections=n_det,
        scenes=used,
        counts=counts,
    )
