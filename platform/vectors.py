"""Detections as polygons: per tile from the mask, then merged across tile borders."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

COLUMNS = ["geometry", "score", "class", "pixels", "scene", "datetime", "tile"]


def _empty(crs: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: pd.Series(dtype={"score": "float64", "pixels": "int64"}.get(c, "str")) for c in COLUMNS[1:]}, geometry=[], crs=crs)


def _majority(objects: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    """The most frequent non-negative value of ``values`` inside each object (-1 if none)."""
    sel = (objects > 0) & (values >= 0)
    out = np.full(n + 1, -1, dtype=np.int64)
    if not sel.any():
        return out[1:]
    pairs, counts = np.unique(np.stack([objects[sel], values[sel]]), axis=1, return_counts=True)
    order = np.lexsort((-pairs[1], counts, pairs[0]))  # per object, highest count last (ties: lowest value)
    last = np.r_[pairs[0][order][1:] != pairs[0][order][:-1], True]
    out[pairs[0][order][last]] = pairs[1][order][last]
    return out[1:]


def _object_stats(objects: np.ndarray, n: int, score: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The highest score (NaN without a score) and the pixel count of each object ``1 .. n``.

    Over the objects' pixels only: ``ndimage.maximum`` sorts the whole tile and took 10 ms of a
    560 px tile with 170 objects, this 0.2 ms.
    """
    pixels = np.bincount(objects.ravel(), minlength=n + 1)[1:]
    if score is None:
        return np.full(n, np.nan), pixels
    inside = objects > 0
    best = np.full(n + 1, -np.inf)
    np.maximum.at(best, objects[inside], score[inside])
    return best[1:], pixels


def polygonize(
    mask: np.ndarray,
    score: np.ndarray | None,
    transform: Affine,
    crs: str,
    *,
    tile: str,
    label: str,
    scene_index: np.ndarray | None = None,
    scenes: tuple[tuple[str, str], ...] = (),
) -> gpd.GeoDataFrame:
    """Polygons of the 4-connected objects in ``mask`` (== 1), with the highest score of each
    and the scene (id, datetime) that gave most of its pixels."""
    objects, n = ndimage.label(mask == 1)
    if n == 0:
        return _empty(crs)
    ids = np.arange(1, n + 1)
    best, pixels = _object_stats(objects, n, score)
    which = _majority(objects, n, scene_index) if scene_index is not None else np.full(n, -1)
    scene_col = [scenes[i][0] if 0 <= i < len(scenes) else "" for i in which]
    time_col = [scenes[i][1] if 0 <= i < len(scenes) else "" for i in which]
    geoms: dict[int, list] = {}
    for geom, value in shapes(objects.astype(np.int32), mask=objects > 0, transform=transform, connectivity=4):
        geoms.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    rows = [shapely.union_all(geoms[i]) if len(geoms[i]) > 1 else geoms[i][0] for i in ids]
    return gpd.GeoDataFrame(
        {
            "score": np.asarray(best, dtype=np.float64),
            "class": label,
            "pixels": np.asarray(pixels, dtype=np.int64),
            "scene": scene_col,
            "datetime": time_col,
            "tile": tile,
        },
        geometry=rows,
        crs=crs,
    )


def merge_across_tiles(parts: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Union objects of different tiles that share an edge, so an object cut by a border is one row."""
    if len(parts) == 0:
        return parts
    parts = parts.reset_index(drop=True)
    left, right = parts.sindex.query(parts.geometry, predicate="intersects")
    keep = (left < right) & (parts["tile"].values[left] != parts["tile"].values[right])
    left, right = left[keep], right[keep]
    if len(left):
        shared = shapely.intersection(parts.geometry.values[left], parts.geometry.values[right])
        edge = shapely.length(shared) > 0
        left, right = left[edge], right[edge]
    n = len(parts)
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    parts = parts.assign(_comp=comp)
    # the scene (and its time) that gave most of an object's pixels, over all its parts
    by_scene = parts.groupby(["_comp", "scene"], sort=False, dropna=False)["pixels"].sum().reset_index()
    top = by_scene.sort_values(["_comp", "pixels"], ascending=[True, False], kind="stable").drop_duplicates("_comp")
    scene_of = dict(zip(top["_comp"], top["scene"], strict=True))
    when_of = parts.drop_duplicates(["_comp", "scene"]).set_index(["_comp", "scene"])["datetime"].to_dict()
    merged = parts.dissolve(
        by="_comp",
        aggfunc={"score": "max", "pixels": "sum", "class": "first", "scene": "first", "datetime": "first", "tile": "first"},
    )
    merged["scene"] = [scene_of[c] for c in merged.index]
    merged["datetime"] = [when_of.get((c, scene_of[c]), merged.at[c, "datetime"]) for c in merged.index]
    merged = merged.reset_index(drop=True)
    merged["geometry"] = merged.geometry.make_valid()
    return merged


def read_parts(folder: str | Path, crs: str) -> gpd.GeoDataFrame:
    """All per-tile detection parts of a run, in tile-key order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # most tiles find nothing: skip their parts by the row count in the footer, then read the rest
    # as Arrow tables and decode their geometries once (a GeoDataFrame per part costs ~45 ms, most of
    # it the CRS: 4.5 s for the 103 non-empty parts of a Sentinel-2 tile, 0.2 s this way)
    files = [f for f in sorted(Path(folder).glob("*.parquet")) if pq.read_metadata(f).num_rows]
    if not files:
        return _empty(crs)
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    frame = table.to_pandas().reset_index(drop=True)
    geometry = gpd.GeoSeries.from_wkb(frame.pop("geometry"), crs=crs)
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=crs)[list(table.column_names)]


def finalize_detections(parts: gpd.GeoDataFrame, *, run_id: str, model: str) -> gpd.GeoDataFrame:
    """Merged detections in EPSG:4326 with area (m2), a stable order and the run's ids."""
    merged = merge_across_tiles(parts)
    if len(merged):
        merged["area_m2"] = merged.geometry.area.round(2)
        c = merged.geometry.centroid
        merged = merged.assign(_y=-c.y.round(3), _x=c.x.round(3)).sort_values(["_y", "_x"]).drop(columns=["_y", "_x"])
    else:
        merged["area_m2"] = pd.Series(dtype="float64")
    merged = merged.reset_index(drop=True)
    merged.insert(0, "id", pd.Series([f"{run_id}-{i}" for i in range(len(merged))], dtype="str"))
    merged["run_id"] = run_id
    merged["model"] = model
    out = merged.to_crs("EPSG:4326")
    return out[["id", "score", "class", "area_m2", "pixels", "scene", "datetime", "run_id", "model", "geometry"]]
