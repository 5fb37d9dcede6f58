"""Pixel and object scores of a debris mask against label rasters, and their Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geoloom.platform.classes import CLOUD, CLOUD_SHADOW, DEBRIS, HARD_NEGATIVES, LABEL_CLASSES

__all__ = ["pixel_scores", "scores_table"]


def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU from pixel counts."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "iou": round(iou, 4)}


def _best_threshold(prob: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, float]]:
    """The threshold (0.05 steps) with the best F1, and the scores there."""
    bins = np.linspace(0.0, 1.0, 101)
    pos = np.histogram(prob[target], bins)[0][::-1].cumsum()[::-1]
    neg = np.histogram(prob[~target], bins)[0][::-1].cumsum()[::-1]
    n_pos = int(target.sum())
    best = (-1.0, 0.5, {})
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        k = int(round(t * 100))
        tp, fp = int(pos[k]), int(neg[k])
        s = pixel_scores(tp, fp, n_pos - tp)
        if s["f1"] > best[0]:
            best = (s["f1"], float(t), s)
    return best[1], best[2]


def _count(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Pixel and object counts of a debris mask (1 = debris) against labels (0 = no label)."""
    from scipy import ndimage

    valid = labels != 0
    hit = (pred == 1) & valid
    truth = labels == DEBRIS
    objects, n = ndimage.label(truth)  # 4-connected
    hit_objects = np.unique(objects[hit & truth])
    fp_classes = np.bincount(labels[hit & ~truth], minlength=256)
    class_pixels = np.bincount(labels[valid], minlength=256)
    return {
        "tp": int((hit & truth).sum()), "fp": int((hit & ~truth).sum()), "fn": int((truth & ~hit).sum()),
        "objects": int(n), "objects_hit": int((hit_objects > 0).sum()),
        "fp_by_code": fp_classes, "pixels_by_code": class_pixels, "pixels": int(valid.sum()),
    }


def _summary(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of summed counts: pixel scores, object recall and false positives by class."""
    tp, fp, fn = (sum(c[k] for c in counts) for k in ("tp", "fp", "fn"))
    objects, hit = sum(c["objects"] for c in counts), sum(c["objects_hit"] for c in counts)
    fp_codes = sum(c["fp_by_code"] for c in counts)
    px_codes = sum(c["pixels_by_code"] for c in counts)
    fps = {name: int(fp_codes[code]) for code, name in LABEL_CLASSES.items() if code != DEBRIS}
    rates = {name: round(float(fp_codes[code]) / float(px_codes[code]), 5) if px_codes[code] else None
             for code, name in LABEL_CLASSES.items() if code != DEBRIS}
    out = pixel_scores(tp, fp, fn)
    fp_clear = fp - int(fp_codes[CLOUD]) - int(fp_codes[CLOUD_SHADOW])
    out.update({
        "cloud_free": {**pixel_scores(tp, fp_clear, fn),
                       "note": "false positives on labelled cloud and cloud shadow left out"},
        "object_recall": round(hit / objects, 4) if objects else 0.0,
        "objects": objects, "objects_hit": hit, "tp": tp, "fp": fp, "fn": fn,
        "pixels": sum(c["pixels"] for c in counts),
        "false_positives_by_class": fps,
        "false_positive_rate_by_class": rates,
        "false_positives_hard_negatives": sum(fps[name] for name in HARD_NEGATIVES.values()),
    })
    return out


def scores_table(report: dict[str, Any], models: Sequence[str] = ("marine-debris", "fdi")) -> str:
    """Markdown tables of a held-out report: scores side by side, then false positives by class."""
    rows = [("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("IoU", "iou"),
            ("object recall", "object_recall")]
    lines = ["| score | " + " | ".join(f"`{m}`" for m in models) + " |", "| --- |" + " ---: |" * len(models)]
    for title, key in rows:
        lines.append(f"| {title} | " + " | ".join(f"{report[m][key]:.3f}" for m in models) + " |")
    lines.append("| F1 without cloud pixels | " + " | ".join(f"{report[m]['cloud_free']['f1']:.3f}" for m in models)
                 + " |")
    lines.append("| debris objects hit | " + " | ".join(f"{report[m]['objects_hit']} of {report[m]['objects']}"
                                                    for m in models) + " |")
    lines += ["", "| false positives (pixels) on | " + " | ".join(f"`{m}`" for m in models) + " |",
              "| --- |" + " ---: |" * len(models)]
    names = list(report[models[0]]["false_positives_by_class"])
    hard = set(HARD_NEGATIVES.values())
    for name in sorted(names, key=lambda n: (n not in hard, n)):
        cells = []
        for m in models:
            n = report[m]["false_positives_by_class"][name]
            rate = report[m]["false_positive_rate_by_class"].get(name)
            cells.append(f"{n:,}" + (f" ({100 * rate:.2f}% of its pixels)" if rate else ""))
        lines.append(f"| {name}{' (hard negative)' if name in hard else ''} | " + " | ".join(cells) + " |")
    lines.append("| all false positives | " + " | ".join(f"{report[m]['fp']:,}" for m in models) + " |")
    return "\n".join(lines)
