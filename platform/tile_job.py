"""One tile, start to finish: read and composite, run the model, crop the halo, write the core."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from geoloom.platform.catalog import Scene
from geoloom.platform.composite import composite_tile
from geoloom.platform.ledger import TileRecord
from geoloom.platform.models.base import Model
from geoloom.platform.mosaic import write_tile
from geoloom.platform.plan import TileTask
from geoloom.platform.reading import WarpGrid, gdal_env, read_band
from geoloom.platform.tile_stats import core_counts
from geoloom.platform.vectors import polygonize


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


def run_tile(task: TileTask, job: TileJob, model: Model) -> TileRecord:
    """Compute one tile and write it; raises on failure (the runtime retries and records)."""
    t0 = time.perf_counter()
    by_id = job.scene_by_id
    scenes = [by_id[s] for s in task.scene_ids if s in by_id]
    geobox = task.read_geobox
    with gdal_env():
        tile, _ = composite_tile(scenes, job.bands, geobox, lambda sc, b, gb: read_band(sc.assets[b], gb, job.grid))
    t1 = time.perf_counter()
    layers = model.predict(tile)
    t2 = time.perf_counter()
    h = task.halo
    cy, cx = task.core_shape_yx
    core = {name: np.asarray(layers[name])[h : h + cy, h : h + cx] for name in job.outputs}
    write_tile(job.store, task, core, tile_size=job.tile_size)
    n_det = 0
    if job.detection:
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
        part = Path(job.parts) / f"{task.key}.parquet"
        tmp = part.with_suffix(".tmp")
        gdf.to_parquet(tmp)
        os.replace(tmp, part)
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
