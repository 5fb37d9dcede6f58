"""Scoring detectors on real Sentinel-2 pixels: windrows implanted into clear real water, real false alarms.

A :class:`RealScene` is a real image (reflectance per band, a grid, a level, an independent cloud
mask). The evaluation writes it as loose Sentinel-2 band files (``T38LNJ_20200115T070000_B02.tif``,
uint16 DN = reflectance x 1e4), indexes them with geoloom's own indexer (Level-1C scenes then take
the dark-spectrum correction and the band-derived masks, as a user's download would) and runs each
model through the pipeline (``run_detect``, that is ``geoloom.workflows.detect``, passed in: nothing
here imports the runtime or the workflows).

Implants are thin windrows (1-3 px wide, 5-40 px long, some curved, some patchy) mixed linearly
into clear open water (an independent NDWI and MNDWI test, outside the cloud mask, at least 3 px
from land and cloud): ``pixel' = pixel + f * (debris - water_local)`` with ``f`` the sub-pixel
cover (25-90 %), ``debris`` MARIDA's marine-debris class mean and ``water_local`` the pixel's own
surface estimate: the pixel itself for Level-2A; for Level-1C the pixel minus a per-band dark-object
offset (the 1st percentile of the scene's clear water), which takes the atmosphere's transmittance
as 1 and the darkest water as black (an approximation: the implanted contrast is somewhat too
strong in the NIR, where transmittance is about 0.9, and too weak in the blue).

Scores (:func:`score_detections`) use a 1-pixel tolerance: a detection is correct when an implanted
pixel lies in its 3 x 3 neighbourhood, an implanted pixel is found when a detection lies in its
3 x 3 neighbourhood. Pixels the model leaves without a value (its own cloud and land masks) count as
not detected; the share of the independent water the model kept is reported beside the scores.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.models.training.evaluate import RunDetect, run_or_resume, region_mask, run_geobox
from geoloom.platform.spectra import ENDMEMBERS

__all__ = [
    "EOTDL_BANDS", "RealScene", "S2CLOUDLESS_BANDS", "Windrows", "card_scores", "dark_offsets", "evaluate_real_scene",
    "implant_windrows", "open_water", "real_scores_table", "scene_from_eotdl", "scene_from_s2cloudless",
    "scene_region", "score_detections", "surface_version", "to_run_grid", "water_mask", "write_card_scores",
    "write_scene_folder",
]

#: Band order of the s2cloudless test array (all 13 Level-1C bands).
S2CLOUDLESS_BANDS: tuple[str, ...] = REFLECTANCE_BANDS[:10] + ("cirrus",) + REFLECTANCE_BANDS[10:]
#: Band order of the eotdl Boadella GeoTIFFs (the 12 Level-2A bands, no B10).
EOTDL_BANDS: tuple[str, ...] = REFLECTANCE_BANDS
#: File token of each band key.
TOKENS: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}
#: Independent water test: NDWI (green vs NIR, McFeeters) and MNDWI (green vs SWIR-1, Xu) both above these.
NDWI_MIN, MNDWI_MIN = 0.05, 0.2
#: Blue reflectance above which a scene without a shipped cloud mask is called cloud (or haze).
CLOUD_BLUE_MIN = 0.12
#: Dilation (px) of cloud masks, and the distance (px) implants keep from land and cloud.
CLOUD_DILATION, SHORE_PX = 5, 3
#: Percentile of clear water taken as the Level-1C dark-object offset.
DARK_PERCENTILE = 1.0
#: Fewest open-water pixels for implants; below it a scene is scored for false alarms only.
MIN_OPEN_WATER_PX = 2000
DEBRIS_SPECTRUM = dict(zip(REFLECTANCE_BANDS, (float(v) for v in ENDMEMBERS["debris"]), strict=True))


@dataclass(frozen=True, slots=True)
class RealScene:
    """A real scene: reflectance per band key (h, w), grid, level, time, and an independent cloud mask."""

    name: str
    level: str
    bands: dict[str, np.ndarray]
    crs: str
    transform: Any
    when: dt.datetime
    tile: str
    cloud: np.ndarray
    note: str = ""

    @property
    def shape_yx(self) -> tuple[int, int]:
        """Rows and columns."""
        return tuple(self.cloud.shape)

    def with_bands(self, bands: dict[str, np.ndarray], **changes: Any) -> RealScene:
        """The same scene with other pixels (and other fields)."""
        return dataclasses.replace(self, bands=bands, **changes)


# --------------------------------------------------------------------------- loading
def scene_from_s2cloudless(npz: str | Path, *, crs: str = "EPSG:32738", origin_xy: tuple[float, float] = (637200.0,
                           8268300.0), res_m: float = 10.0) -> RealScene:
    """The s2cloudless 1.2.x test array (Level-1C TOA, 13 bands, Betsiboka estuary, Madagascar) on an
    assigned UTM grid (it has none; its true pixel size is unknown), with its shipped cloud mask dilated."""
    from affine import Affine
    from scipy.ndimage import binary_dilation

    data = np.load(npz)
    im = np.asarray(data["s2_im"][0], dtype=np.float32)
    bands = {k: np.ascontiguousarray(im[..., i]) for i, k in enumerate(S2CLOUDLESS_BANDS)}
    cloud = binary_dilation(np.asarray(data["cl_mask"][0]) > 0, iterations=CLOUD_DILATION)
    return RealScene("s2cloudless-betsiboka", "L1C", bands, crs, Affine(res_m, 0, origin_xy[0], 0, -res_m,
                     origin_xy[1]), dt.datetime(2020, 1, 15, 7, 0, 0, tzinfo=dt.timezone.utc), "38LNJ", cloud,
                     "s2cloudless 1.2.2 test array: real L1C without georeference; grid, date and tile assigned, pixel size "
                     "assigned as 10 m (true size unknown, probably coarser): per km² = per 10,000 px")


def scene_from_eotdl(tif: str | Path, *, name: str, when: dt.datetime, tile: str = "31TDG") -> RealScene:
    """An eotdl Boadella test GeoTIFF (12 bands int16 x 1e4, EPSG:4326, taken as Level-2A) as delivered,
    with a cloud (haze) mask from the blue band, dilated."""
    import rasterio
    from scipy.ndimage import binary_dilation

    with rasterio.open(tif) as src:
        raw = src.read().astype(np.float32) / 1e4
        crs, transform = src.crs.to_string(), src.transform
    bands = {k: np.ascontiguousarray(raw[i]) for i, k in enumerate(EOTDL_BANDS)}
    cloud = binary_dilation(bands["blue"] > CLOUD_BLUE_MIN, iterations=CLOUD_DILATION)
    return RealScene(name, "L2A", bands, crs, transform, when, tile, cloud,
                     "eotdl test GeoTIFF: real S2, 12 bands taken as L2A, EPSG:4326 as delivered")


# --------------------------------------------------------------------------- masks and offsets
def water_mask(scene: RealScene) -> np.ndarray:
    """Clear water by an independent test: NDWI and MNDWI above their minima, outside the cloud mask."""
    g, n, s = (scene.bands[b].astype(np.float64) for b in ("green", "nir", "swir16"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi, mndwi = (g - n) / (g + n), (g - s) / (g + s)
    return (ndwi > NDWI_MIN) & (mndwi > MNDWI_MIN) & ~scene.cloud


def open_water(water: np.ndarray, margin: int = SHORE_PX) -> np.ndarray:
    """Water pixels at least ``margin`` px (chessboard distance) from anything else or the scene edge."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(water, structure=np.ones((2 * margin + 1,) * 2, bool), border_value=0)


def dark_offsets(scene: RealScene, water: np.ndarray) -> dict[str, float]:
    """Per-band dark-object offset of a Level-1C scene (the 1st percentile of clear water); 0 for Level-2A."""
    if scene.level != "L1C" or not water.any():
        return {b: 0.0 for b in scene.bands}
    return {b: float(np.percentile(a[water], DARK_PERCENTILE)) for b, a in scene.bands.items()}


def surface_version(scene: RealScene, offsets: dict[str, float]) -> RealScene:
    """A Level-1C scene minus its dark-object offsets, without B10, as a Level-2A look-alike (a diagnostic)."""
    bands = {b: np.maximum(a - offsets.get(b, 0.0), 1e-4).astype(np.float32)
             for b, a in scene.bands.items() if b in REFLECTANCE_BANDS}
    return scene.with_bands(bands, level="L2A", name=f"{scene.name}-dos",
                            note=scene.note + "; dark-object subtracted by the benchmark, written as L2A")


# --------------------------------------------------------------------------- implants
@dataclass(frozen=True, slots=True)
class Windrows:
    """Implanted windrows: the scene with them, the cover fraction per pixel (0 outside) and each one's shape."""

    scene: RealScene
    cover: np.ndarray
    shapes: list[dict[str, Any]]

    @property
    def truth(self) -> np.ndarray:
        """Pixels holding debris."""
        return self.cover > 0


def _windrow(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """One windrow's pixel offsets (k, 2) around its start and its description."""
    length, width = int(rng.integers(5, 41)), int(rng.integers(1, 4))
    curved, patchy = bool(rng.random() < 0.4), bool(rng.random() < 0.3)
    angle, bend = rng.uniform(0, np.pi), (rng.uniform(-0.12, 0.12) if curved else 0.0)
    pts, y, x = [], 0.0, 0.0
    for i in range(length):
        if not (patchy and (i // 3) % 3 == 2):  # a patchy windrow: 3 px on, ... a third of it missing
            for j in range(width):  # across the line
                off = j - (width - 1) / 2
                pts.append((round(y - off * np.cos(angle)), round(x + off * np.sin(angle))))
        y, x, angle = y + np.sin(angle), x + np.cos(angle), angle + bend
    return np.unique(np.array(pts, dtype=int), axis=0), {"length_px": length, "width_px": width, "curved": curved,
                                                           "patchy": patchy}


def implant_windrows(scene: RealScene, eligible: np.ndarray, offsets: dict[str, float], *, seed: int,
                     count: int = 80, tries: int = 4000) -> Windrows:
    """Up to ``count`` windrows mixed into ``eligible`` pixels, each at least 3 px from the others."""
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng([seed, 0x5EA])
    h, w = scene.shape_yx
    cover = np.zeros((h, w), np.float32)
    free = eligible.copy()
    starts = np.argwhere(eligible)
    shapes: list[dict[str, Any]] = []
    for _ in range(tries):
        if len(shapes) >= count or starts.size == 0:
            break
        offs, info = _windrow(rng)
        pix = offs + starts[rng.integers(len(starts))]
        if (pix < 0).any() or (pix[:, 0] >= h).any() or (pix[:, 1] >= w).any() or not free[pix[:, 0], pix[:, 1]].all():
            continue
        base = rng.uniform(0.25, 0.9)
        f = np.clip(base + rng.normal(0, 0.08, len(pix)), 0.25, 0.9).astype(np.float32)
        cover[pix[:, 0], pix[:, 1]] = f
        one = np.zeros((h, w), bool)
        one[pix[:, 0], pix[:, 1]] = True
        free &= ~binary_dilation(one, iterations=SHORE_PX)
        shapes.append({**info, "pixels": len(pix), "cover_mean": round(float(f.mean()), 3),
                       "row": int(pix[:, 0].mean()), "col": int(pix[:, 1].mean())})
    bands = {}
    for b, a in scene.bands.items():
        if b in DEBRIS_SPECTRUM:
            local = a - offsets.get(b, 0.0)  # the pixel's surface-level estimate
            a = (a + cover * (DEBRIS_SPECTRUM[b] - local)).astype(np.float32)
        bands[b] = a  # the cirrus band (B10) sees no surface
    return Windrows(scene.with_bands(bands, name=f"{scene.name}-implants{seed}"), cover, shapes)


# --------------------------------------------------------------------------- files and grids
def write_scene_folder(scene: RealScene, folder: str | Path) -> Path:
    """The scene as loose Sentinel-2 band files, one GeoTIFF per band (uint16 DN, 0 = no data), in a
    folder ``S2_<level>_<name>`` under ``folder``, named as ESA names granule files: ``T<tile>_<time>_B02``
    for Level-1C, ``T<tile>_<time>_B02_10m`` for Level-2A (every band on the scene's one grid)."""
    import rasterio

    out = Path(folder) / f"S2_{scene.level}_{scene.name}"
    out.mkdir(parents=True, exist_ok=True)
    stamp = scene.when.strftime("%Y%m%dT%H%M%S")
    h, w = scene.shape_yx
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": "uint16", "crs": scene.crs,
               "transform": scene.transform, "nodata": 0, "compress": "deflate", "tiled": True,
               "blockxsize": 256, "blockysize": 256}
    for b, a in scene.bands.items():
        dn = np.where(np.isfinite(a), np.clip(np.rint(a * 1e4), 1, 65535), 0).astype(np.uint16)
        suffix = "_10m" if scene.level == "L2A" else ""
        with rasterio.open(out / f"T{scene.tile}_{stamp}_{TOKENS[b]}{suffix}.tif", "w", **profile) as dst:
            dst.write(dn, 1)
    return out


def scene_region(scene: RealScene) -> Any:
    """The scene's footprint (EPSG:4326, densified), a tenth of a pixel inside its edges."""
    from odc.geo.geobox import GeoBox

    gb = GeoBox(scene.shape_yx, scene.transform, scene.crs)
    inset = gb.extent.buffer(-0.1 * abs(scene.transform.a))
    return inset.to_crs("epsg:4326", resolution=abs(scene.transform.a) * max(scene.shape_yx) / 200).geom


def to_run_grid(mask: np.ndarray, scene: RealScene, geobox: Any) -> np.ndarray:
    """A scene-grid mask (bool) or cover map (float) on a run's grid, nearest neighbour."""
    from rasterio.warp import Resampling, reproject

    src = mask.astype(np.float32)
    out = np.zeros(geobox.shape.yx, np.float32)
    reproject(src, out, src_transform=scene.transform, src_crs=scene.crs, dst_transform=geobox.transform,
              dst_crs=str(geobox.crs), resampling=Resampling.nearest, src_nodata=None, dst_nodata=0)
    return out > 0.5 if mask.dtype == bool else out


# --------------------------------------------------------------------------- scores
def _near(mask: np.ndarray) -> np.ndarray:
    """Pixels with a True pixel in their 3 x 3 neighbourhood."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))


def score_detections(pred: np.ndarray, *, truth: np.ndarray | None, water: np.ndarray, open_water: np.ndarray,
                     scene: np.ndarray, km2_per_px: float, cloud: np.ndarray | None = None) -> dict[str, Any]:
    """Counts of one run's detection layer (1 = debris; 0; anything else = no value, not detected).

    ``truth``: implanted pixels (None for a scene without implants); ``water``/``open_water``: the
    independent clear-water masks; ``scene``: pixels of the scene's footprint; ``cloud``: the
    independent cloud mask (open-water detections within 10 px of it are counted apart).
    """
    from scipy.ndimage import binary_dilation

    hit = (pred == 1) & scene
    kept = np.isin(pred, (0, 1))
    near_cloud = binary_dilation(cloud, iterations=10) if cloud is not None and cloud.any() else np.zeros_like(hit)
    out: dict[str, Any] = {
        "scene_px": int(scene.sum()), "water_px": int(water.sum()), "open_water_px": int(open_water.sum()),
        "km2_per_px": km2_per_px, "detected_px": int(hit.sum()),
        "detected_water_px": int((hit & water).sum()), "detected_open_water_px": int((hit & open_water).sum()),
        "water_kept_px": int((kept & water).sum()), "scene_kept_px": int((kept & scene).sum()),
        "detected_open_water_near_cloud_px": int((hit & open_water & near_cloud).sum()),
        "open_water_near_cloud_px": int((open_water & near_cloud).sum()),
    }
    if truth is not None:
        near_truth = _near(truth)
        out.update(truth_px=int(truth.sum()), tp_precision=int((hit & near_truth).sum()),
                   tp_recall=int((truth & _near(hit)).sum()),
                   detected_water_tp=int((hit & water & near_truth).sum()),
                   false_open_water_px=int((hit & open_water & ~near_truth).sum()))
    return out


def _ratio(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def summarise(clean: dict[str, Any], implanted: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores of one scene x model: false alarms from the clean run, P/R/F1 (1 px) summed over the seeds."""
    km2 = clean["km2_per_px"]
    s: dict[str, Any] = {
        "false_px_per_km2_open_water": _ratio(clean["detected_open_water_px"], clean["open_water_px"] * km2, 3),
        "false_px_rate_open_water": _ratio(clean["detected_open_water_px"], clean["open_water_px"], 6),
        "false_px_per_km2_water": _ratio(clean["detected_water_px"], clean["water_px"] * km2, 3),
        "detected_px_per_km2_scene": _ratio(clean["detected_px"], clean["scene_px"] * km2, 3),
        "detected_px_rate_scene": _ratio(clean["detected_px"], clean["scene_px"], 6),
        "false_share_within_10px_of_cloud": _ratio(clean["detected_open_water_near_cloud_px"],
                                                    clean["detected_open_water_px"]),
        "open_water_share_within_10px_of_cloud": _ratio(clean["open_water_near_cloud_px"], clean["open_water_px"]),
        "water_kept": _ratio(clean["water_kept_px"], clean["water_px"]),
        "scene_kept": _ratio(clean["scene_kept_px"], clean["scene_px"]),
        "open_water_km2": round(clean["open_water_px"] * km2, 3), "scene_km2": round(clean["scene_px"] * km2, 3),
    }
    if implanted:
        tot = {k: sum(r[k] for r in implanted) for k in ("detected_px", "tp_precision", "tp_recall", "truth_px",
                                                          "detected_water_px", "detected_water_tp")}
        p, r = _ratio(tot["tp_precision"], tot["detected_px"]), _ratio(tot["tp_recall"], tot["truth_px"])
        s.update(precision=p, recall=r, f1=round(2 * p * r / (p + r), 4) if p and r else 0.0,
                 precision_water_only=_ratio(tot["detected_water_tp"], tot["detected_water_px"]),
                 implanted_px=tot["truth_px"], f1_per_seed=[_f1(x) for x in implanted])
    return s


def _f1(c: dict[str, Any]) -> float:
    p, r = _ratio(c["tp_precision"], c["detected_px"]), _ratio(c["tp_recall"], c["truth_px"])
    return round(2 * p * r / (p + r), 4) if p and r else 0.0


# --------------------------------------------------------------------------- the evaluation
def _run_scene(run_detect: RunDetect, scene: RealScene, model: str, work: Path, runtime: str) -> tuple[np.ndarray,
                                                                                                     Any, Any]:
    """Write, index and run one scene version; its detection layer, run grid and run."""
    from geoloom.platform.catalog_index import index_folder
    from geoloom.platform.errors import RunError
    from geoloom.platform.models.registry import get_card

    files = work / "files" / scene.name
    catalog = work / "catalogs" / scene.name / "catalog.json"
    if not catalog.exists():
        shutil.rmtree(files, ignore_errors=True)
        write_scene_folder(scene, files)
        catalog = index_folder(files, catalog.parent)
    run = run_or_resume(run_detect, work / "runs" / f"{scene.name}-{model}", scene_region(scene), model=model,
                         catalog=catalog, runtime=runtime, retries=0, per_date=False, progress=False)
    if not run.ok:
        reason = run.failed_tiles[0]["error"] if run.failed_tiles else "tiles missing"
        raise RunError(f"the run of {model} on {scene.name} is incomplete ({reason})")
    card = get_card(model)
    return np.asarray(run.dataset[card.detection].values), run_geobox(run), run


def _check_level(run: Any, scene: RealScene) -> dict[str, Any]:
    """What geoloom made of the files: the levels and bands of the scenes it planned, and its corrections."""
    scenes = run.plan.scenes if hasattr(run, "plan") else []
    params = run.manifest["properties"].get("geoloom:parameters", {})
    return {"levels": sorted({s.level for s in scenes}), "expected_level": scene.level,
            "bands": sorted(scenes[0].assets) if scenes else [],
            "l1c_correction": params.get("l1c_correction")}


def evaluate_real_scene(scene: RealScene, *, run_detect: RunDetect, models: Sequence[str] = ("marine-debris", "fdi"),
                        seeds: Sequence[int] = (0, 1, 2), count: int = 80, workdir: str | Path,
                        runtime: str = "in-process", diagnostic_surface: bool = False) -> dict[str, Any]:
    """Score ``models`` on a real scene: false alarms on the scene as it is, P/R/F1 (1 px) on implanted
    copies (one per seed). With ``diagnostic_surface`` (Level-1C only) also on the scene minus its
    dark-object offsets written as Level-2A, with the same implants and thresholds."""
    work = Path(workdir)
    water = water_mask(scene)
    eligible = open_water(water)
    offsets = dark_offsets(scene, water)
    variants: dict[str, tuple[RealScene, list[tuple[RealScene, np.ndarray]]]] = {}
    implants: list[Windrows] = []
    if int(eligible.sum()) >= MIN_OPEN_WATER_PX:
        implants = [implant_windrows(scene, eligible, offsets, seed=s, count=count) for s in seeds]
    variants[scene.name] = (scene, [(w.scene, w.truth) for w in implants])
    if diagnostic_surface and scene.level == "L1C":
        dos = surface_version(scene, offsets)
        variants[dos.name] = (dos, [(surface_version(w.scene, offsets), w.truth) for w in implants])
    result: dict[str, Any] = {
        "scene": scene.name, "level": scene.level, "note": scene.note, "shape_yx": list(scene.shape_yx),
        "crs": scene.crs, "pixel_m": [abs(scene.transform.a), abs(scene.transform.e)],
        "independent_masks": {"water_px": int(water.sum()), "open_water_px": int(eligible.sum()),
                              "cloud_px": int(scene.cloud.sum()), "water_test": f"NDWI > {NDWI_MIN} and MNDWI > "
                              f"{MNDWI_MIN}, outside the cloud mask; open water: >= {SHORE_PX} px from anything else"},
        "dark_offsets": {b: round(v, 5) for b, v in offsets.items()} if scene.level == "L1C" else None,
        "implants": {"seeds": list(seeds) if implants else [], "windrows_per_seed": [len(w.shapes) for w in implants],
                     "pixels_per_seed": [int(w.truth.sum()) for w in implants],
                     "cover_mean": [round(float(w.cover[w.truth].mean()), 3) for w in implants],
                     "skipped": None if implants else f"fewer than {MIN_OPEN_WATER_PX} open-water px"},
        "variants": {},
    }
    for vname, (clean, copies) in variants.items():
        per_model: dict[str, Any] = {}
        for model in models:
            t0 = time.perf_counter()
            pred, gb, run = _run_scene(run_detect, clean, model, work, runtime)
            masks = _masks_on_grid(scene, water, eligible, gb)
            c = score_detections(pred, truth=None, km2_per_px=_km2_per_px(scene, gb), **masks)
            counts = []
            for copy, truth in copies:
                pred_i, gb_i, _ = _run_scene(run_detect, copy, model, work, runtime)
                counts.append(score_detections(pred_i, truth=to_run_grid(truth, scene, gb_i),
                                               km2_per_px=_km2_per_px(scene, gb_i), **masks))
            per_model[model] = {"card_threshold": float(run.card.threshold) if hasattr(run, "card") else None,
                                "geoloom_read": _check_level(run, clean),
                                "grid": f"{gb.crs} {gb.width}x{gb.height} at {abs(gb.transform.a):g}",
                                "clean": c, "implanted": counts, **summarise(c, counts),
                                "seconds": round(time.perf_counter() - t0, 1)}
        result["variants"][vname] = {"level": clean.level, "models": per_model}
    return result


def _masks_on_grid(scene: RealScene, water: np.ndarray, eligible: np.ndarray, gb: Any) -> dict[str, np.ndarray]:
    """The independent masks and the scene's footprint on a run's grid."""
    footprint = region_mask(scene_region(scene), gb)
    return {"water": to_run_grid(water, scene, gb) & footprint, "scene": footprint,
            "open_water": to_run_grid(eligible, scene, gb) & footprint,
            "cloud": to_run_grid(scene.cloud, scene, gb) & footprint}


def _km2_per_px(scene: RealScene, gb: Any) -> float:
    """Area of a run pixel in km² (on a projected run grid: its resolution in metres)."""
    return abs(gb.transform.a * gb.transform.e) / 1e6


# --------------------------------------------------------------------------- the card and the table
#: The scores of a scene x model that go into a card (``metrics.real_scenes``) and the table.
CARD_FIELDS = ("precision", "recall", "f1_1px", "false_px_per_km2_open_water", "water_kept",
               "detected_px_per_km2_scene")
#: How the card's real-scene scores were measured, in one line.
CARD_METHOD = ("real Sentinel-2 pixels run through the pipeline at the card's threshold: windrows implanted into "
               "independent clear open water (NDWI > 0.05 and MNDWI > 0.2, outside a band-derived cloud mask), "
               "precision and recall with a 1 px tolerance summed over the implant seeds; false px per km² of open "
               "water and detected px per km² of the scene from the scene as it is; water kept: the share of the "
               "independent water the model gave a value")


def card_scores(results: Sequence[dict[str, Any]], model: str) -> dict[str, dict[str, Any]]:
    """Per scene (as delivered, never a diagnostic version): level, note, seeds and the scores of ``model``."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        v = r["variants"][r["scene"]]
        m = v["models"][model]
        out[r["scene"]] = {"model": model, "level": v["level"], **{k: m.get("f1" if k == "f1_1px" else k)
                                                                     for k in CARD_FIELDS},
                           "implant_seeds": len(r["implants"]["seeds"]), "implanted_px": m.get("implanted_px"),
                           "open_water_km2": m["open_water_km2"], "note": r["note"]}
    return out


def real_scores_table(results: Sequence[dict[str, Any]]) -> str:
    """Scene | level | model | precision | recall | F1 (1 px) | false px/km² open water | water kept, as markdown
    (every model and variant of every scene; "-" where a scene had no open water for implants)."""
    def fmt(v: float | None, pct: bool = False) -> str:
        return "-" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:.3g}")

    lines = ["| scene | level | model | precision | recall | F1 (1 px) | false px/km² open water | water kept |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for vname, v in r["variants"].items():
            label = vname + (" (diagnostic)" if vname != r["scene"] else "")
            for model, m in v["models"].items():
                lines.append(f"| {label} | {v['level']} | {model} | {fmt(m.get('precision'))} | {fmt(m.get('recall'))} "
                             f"| {fmt(m.get('f1'))} | {fmt(m['false_px_per_km2_open_water'])} "
                             f"| {fmt(m['water_kept'], True)} |")
    return "\n".join(lines)


def write_card_scores(card_file: str | Path, scores: dict[str, dict[str, Any]], *, data_line: str | None = None
                      ) -> Path:
    """Record real-scene scores in card data under ``metrics.real_scenes`` (replacing those of the same scenes;
    ``data_line`` says where the scenes came from), as ``geoloom models heldout`` records its scores under
    ``metrics.held_out``."""
    import json

    from geoloom.platform.errors import OutputError
    from geoloom.platform.models import registry

    path = Path(card_file).expanduser()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read the card data {path} ({exc}); give a card's JSON file with --card-file") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a card's JSON data (an object); give a card's JSON file with --card-file")
    real = data.setdefault("metrics", {}).setdefault("real_scenes", {})
    real["method"] = CARD_METHOD
    if data_line:
        real["data"] = data_line
    real.setdefault("scenes", {}).update(scores)
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write the card data {path} ({exc.strerror}); give a writable --card-file") from None
    registry.refresh()
    return path
