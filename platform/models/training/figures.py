"""Comparison figures: a one-date run beside its natural colour, its labels and a baseline run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.classes import DEBRIS
from geoloom.platform.models.training.evaluate import PipelineRun, _catalog_dates, _label_mosaic, run_date, run_geobox

__all__ = ["LABEL_COLOURS", "comparison_figure"]

#: Label colours for figures (RGB), by label code.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    0: (40, 40, 40), 1: (22, 52, 96), 2: (255, 40, 40), 3: (230, 170, 20), 4: (255, 255, 255),
    5: (150, 220, 255), 6: (190, 190, 190), 7: (90, 90, 110), 8: (150, 110, 60), 9: (70, 110, 50),
}


def comparison_figure(run: PipelineRun, catalog: str | Path, out_png: str | Path, *,
                      baseline: PipelineRun | None = None, scale: int = 2,
                      panels: Sequence[str] = ("colour", "labels", "probability", "detections", "baseline")) -> Path:
    """A PNG of a one-date run beside the truth, panels among: natural ``colour``, ``labels``,
    ``probability``, ``detections`` and the ``baseline`` run's detections.

    ``run`` and ``baseline`` are opened run folders (``geoloom.workflows.open_run(folder)``).
    """
    from geoloom.platform.models.registry import get_card
    from geoloom.platform.publish import colorize

    geobox = run_geobox(run)
    items = _catalog_dates(catalog)[run_date(run)]
    labels = _label_mosaic(items, geobox)
    rgb = _natural_colour(catalog, items, geobox)
    card = get_card(run.manifest["properties"]["geoloom:model"]["name"])
    ds = run.dataset
    prob = np.asarray(ds[card.score or card.primary].values, dtype=np.float32)
    shown = {"colour": ("natural colour", rgb), "labels": ("labels (red: debris)", _paint_labels(labels)),
             "probability": (f"{card.name} probability", colorize(prob, 0.0, 1.0)[..., :3]),
             "detections": (f"{card.name} detections", _paint_hits(np.asarray(ds[card.detection].values), labels))}
    if baseline is not None:
        bcard = get_card(baseline.manifest["properties"]["geoloom:model"]["name"])
        shown["baseline"] = (f"{bcard.name} detections",
                             _paint_hits(np.asarray(baseline.dataset[bcard.detection].values), labels))
    return _contact_sheet([shown[p] for p in panels if p in shown], geobox.shape.yx, scale, Path(out_png))


def _natural_colour(catalog: str | Path, items: list[Any], geobox: Any) -> np.ndarray:
    """Red, green and blue of ``items`` on ``geobox`` (first item first), gamma-stretched to uint8."""
    from geoloom.platform.catalog import iter_scenes
    from geoloom.platform.reading import gdal_env, read_band

    scenes = {s.id: s for s in iter_scenes(catalog)}
    rgb = np.zeros(geobox.shape.yx + (3,), dtype=np.float32)
    with gdal_env():
        for k, band in enumerate(("red", "green", "blue")):
            layer = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
            for item in items:
                v = read_band(scenes[item.id].assets[band], geobox)
                layer = np.where(np.isnan(layer), v, layer)
            rgb[..., k] = np.nan_to_num(layer)
    return (np.clip((rgb / 0.16) ** (1 / 2.2), 0, 1) * 255).astype(np.uint8)


def _contact_sheet(panels: list[tuple[str, np.ndarray]], shape_yx: tuple[int, int], scale: int, out: Path) -> Path:
    """Titled panels side by side, each ``scale`` times its pixel size, saved as a PNG."""
    from PIL import Image, ImageDraw

    h, w = shape_yx
    pad, head = 8, 22
    sheet = Image.new("RGB", (len(panels) * (w * scale + pad) + pad, h * scale + head + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (title, img) in enumerate(panels):
        x0 = pad + i * (w * scale + pad)
        sheet.paste(Image.fromarray(np.ascontiguousarray(img[..., :3])).resize((w * scale, h * scale), Image.NEAREST),
                    (x0, head))
        draw.text((x0, 5), title, fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def _paint_labels(labels: np.ndarray) -> np.ndarray:
    """Labels in their :data:`LABEL_COLOURS`."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for code, colour in LABEL_COLOURS.items():
        lut[code] = colour
    return lut[labels]


def _paint_hits(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Detections on a dark background: hits on debris green, false alarms orange, misses red."""
    img = np.full(labels.shape + (3,), 30, dtype=np.uint8)
    img[labels == 0] = (70, 70, 70)
    img[(mask == 255)] = (120, 120, 120)
    truth, hit = labels == DEBRIS, mask == 1
    img[truth & ~hit] = (255, 40, 40)
    img[truth & hit] = (60, 230, 90)
    img[~truth & hit] = (255, 170, 0)
    return img
