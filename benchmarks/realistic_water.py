"""marine-debris on realistic water: the previous weights against the current (or a candidate) ones.

    python -m benchmarks.realistic_water [--candidate DIR] [--scenes N] [--quick]

Three sets of held-out generated scenes (384 x 384 px at 10 m, ``synthesize_scene``), whose seeds
3000-3299 are used nowhere else (training 1000-1159, validation 500-599, held-out catalogs 0-3):

* ``clean`` (seeds 3000-3099, no debris) with every real-water effect of
  ``geoloom.platform.models.training.realism`` (sensor noise at the L1C SNR, whitecaps, sun glint,
  wave texture, adjacency near land, correction offsets; each with p = 1): false debris pixels per
  km2 of sea (land, cloud and cloud shadow left out, as the model's SCL masks do), and on the
  ``water`` label alone (where the whitecaps are);
* ``debris`` (seeds 3100-3199) with the same effects: precision, recall and F1 of the labelled debris
  with a 1-pixel tolerance (a detection counts when a debris pixel lies in its 3 x 3 neighbourhood, a
  debris pixel is found when a detection lies in its 3 x 3 neighbourhood);
* ``standard`` (seeds 3200-3299) without the effects, every other one under a sediment plume, as the
  validation scenes are made: strict pixel precision, recall and F1, and with the 1-pixel tolerance.

Every scene is read as the platform reads it (20/60 m bands bilinear). Each model runs at the
threshold of its card. ``previous`` is the model of commit ``PREVIOUS`` (weights and card from git);
``current`` the weights and card in the package, or ``--candidate DIR`` (``marine-debris.pt`` and
``marine-debris.json`` as ``train_marine_debris`` writes them). Writes
``benchmarks/results/realistic_water.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, finish_report, new_report, row, write_report
from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.classes import CLOUD, CLOUD_SHADOW, DEBRIS, LABEL_NODATA, LAND, WATER
from geoloom.platform.models.training.data import add_turbidity, bilinear_coarse_bands
from geoloom.platform.models.training.realism import RealismConfig, add_realism

CASE = "realistic_water"
#: The commit whose marine-debris weights and card were shipped before the realism recipe.
PREVIOUS = "f73dfe8ebc9344ceeeb357753bf6341dc249bfb3"
WEIGHTS = "platform/models/weights/marine-debris.pt"
CARD = "platform/models/cards/marine-debris.json"
SIZE = 384
SEEDS = {"clean": 3000, "debris": 3100, "standard": 3200}
#: Every effect on every scene.
ALL_EFFECTS = RealismConfig(p_noise=1.0, p_whitecaps=1.0, p_glint=1.0, p_waves=1.0, p_adjacency=1.0, p_offsets=1.0)
KM2_PER_PX = 1e-4


def _git_bytes(path: str) -> bytes:
    return subprocess.run(["git", "show", f"{PREVIOUS}:{path}"], cwd=REPO, capture_output=True, check=True).stdout


def load_models(candidate: Path | None) -> dict[str, tuple[Any, float, str]]:
    """name -> (network, threshold, sha256 prefix) for the previous and the current/candidate weights."""
    import hashlib

    import torch

    from geoloom.platform.models.marine_debris import CHANNELS, DebrisNet

    def net_of(raw: bytes) -> Any:
        net = DebrisNet(channels=CHANNELS, fused=True)
        net.load_state_dict(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
        return net.eval()

    prev_w, prev_c = _git_bytes(WEIGHTS), json.loads(_git_bytes(CARD))
    if candidate is not None:
        cur_w, cur_c = (candidate / "marine-debris.pt").read_bytes(), json.loads((candidate / "marine-debris.json").read_text())
    else:
        cur_w, cur_c = (REPO / WEIGHTS).read_bytes(), json.loads((REPO / CARD).read_text())
    out = {"previous": (net_of(prev_w), float(prev_c["threshold"]), hashlib.sha256(prev_w).hexdigest()[:12])}
    out["candidate" if candidate is not None else "current"] = (
        net_of(cur_w), float(cur_c["threshold"]), hashlib.sha256(cur_w).hexdigest()[:12])
    return out


def scene(seed: int, *, debris: bool, realism: bool, plume: bool) -> tuple[np.ndarray, np.ndarray]:
    """One held-out scene (12, SIZE, SIZE) float32 as the platform reads it, and its labels."""
    from geoloom.platform.scenes import synthesize_scene

    bands, labels = synthesize_scene(seed, (SIZE, SIZE), debris=debris)
    x = np.stack([bands[b] for b in REFLECTANCE_BANDS])
    if plume:
        add_turbidity(x, labels, np.random.default_rng([seed, 0x7B]), strength=0.9, nodes=4)
    if realism:
        add_realism(x, labels, np.random.default_rng([seed, 0xBE7C]), ALL_EFFECTS)
    return bilinear_coarse_bands(x[None])[0], labels


def _near(mask: np.ndarray) -> np.ndarray:
    """Pixels with a True pixel in their 3 x 3 neighbourhood."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))


def _prf(tp_p: int, det: int, tp_r: int, truth: int) -> dict[str, float | None]:
    p = tp_p / det if det else None
    r = tp_r / truth if truth else None
    f1 = 2 * p * r / (p + r) if p and r else 0.0
    return {"precision": None if p is None else round(p, 4), "recall": None if r is None else round(r, 4),
            "f1": round(f1, 4)}


def score(kind: str, hits: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, Any]:
    """The scores of one set of scenes (see the module docstring)."""
    sea_px = water_px = fp_sea = fp_water = 0
    det = tp_p = tp_r = truth = s_tp = s_fp = s_fn = 0
    for hit, lab in zip(hits, labels, strict=True):
        sea = ~np.isin(lab, (LABEL_NODATA, LAND, CLOUD, CLOUD_SHADOW))
        h, d = hit & sea, lab == DEBRIS
        sea_px += int(sea.sum())
        water_px += int((lab == WATER).sum())
        fp_sea += int((h & ~d).sum())
        fp_water += int((h & (lab == WATER)).sum())
        det += int(h.sum())
        tp_p += int((h & _near(d)).sum())
        truth += int(d.sum())
        tp_r += int((d & _near(h)).sum())
        s_tp += int((h & d).sum())
        s_fp += int((h & ~d).sum())
        s_fn += int((d & ~h).sum())
    out: dict[str, Any] = {"scenes": len(hits), "sea_km2": round(sea_px * KM2_PER_PX, 2)}
    if kind == "clean":
        out.update(false_px=fp_sea, false_px_per_km2=round(fp_sea / (sea_px * KM2_PER_PX), 3),
                   false_px_per_km2_water_label=round(fp_water / max(water_px * KM2_PER_PX, 1e-9), 3))
        return out
    out.update({"debris_px": truth, "detected_px": det, "tolerance_1px": _prf(tp_p, det, tp_r, truth)})
    out["false_px_per_km2"] = round(s_fp / (sea_px * KM2_PER_PX), 3)
    if kind == "standard":
        out["strict"] = _prf(s_tp, s_tp + s_fp, s_tp, s_tp + s_fn)
    return out


def run(candidate: Path | None, n: int) -> dict[str, Any]:
    """Render the three sets, run every model on them, and return the report."""
    import torch

    from geoloom.platform.models.marine_debris import infer

    started = time.perf_counter()
    report = new_report(CASE, n < 100, {"scenes_per_set": n, "size_px": SIZE, "seeds": {
        k: f"{v}-{v + n - 1}" for k, v in SEEDS.items()}, "previous_commit": PREVIOUS,
        "candidate": str(candidate) if candidate else None, "effects": "all six, p = 1 (clean, debris sets)"})
    models = load_models(candidate)
    sets = {"clean": dict(debris=False, realism=True), "debris": dict(debris=True, realism=True),
            "standard": dict(debris=True, realism=False)}
    hits: dict[str, dict[str, list[np.ndarray]]] = {m: {k: [] for k in sets} for m in models}
    labels: dict[str, list[np.ndarray]] = {k: [] for k in sets}
    for kind, opts in sets.items():
        for i in range(n):
            seed = SEEDS[kind] + i
            x, lab = scene(seed, plume=kind == "standard" and i % 2 == 1, **opts)
            labels[kind].append(lab)
            for name, (net, thr, _) in models.items():
                p = infer(net, x[None], torch.device("cpu"))[0]
                hits[name][kind].append(p >= thr)
    report["models"] = {name: {"threshold": thr, "sha256": sha, **{k: score(k, hits[name][k], labels[k]) for k in sets}}
                        for name, (_, thr, sha) in models.items()}
    summary = []
    for name, m in report["models"].items():
        summary += [
            row(CASE, f"{name}: false px per km2, clean realistic sea", m["clean"]["false_px_per_km2"], None, None),
            row(CASE, f"{name}: F1 (1 px), realistic debris", m["debris"]["tolerance_1px"]["f1"], None, None),
            row(CASE, f"{name}: F1 strict, standard scenes", m["standard"]["strict"]["f1"], None, None),
        ]
    report["summary"] = summary
    finish_report(report, started)
    write_report(CASE, report)
    return report


def main() -> None:
    """Command line: ``python -m benchmarks.realistic_water``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", type=Path, default=None, help="a folder with marine-debris.pt and .json")
    ap.add_argument("--scenes", type=int, default=100, help="scenes per set (100 for the report)")
    ap.add_argument("--quick", action="store_true", help="8 scenes per set, report under results/quick")
    args = ap.parse_args()
    report = run(args.candidate, 8 if args.quick else args.scenes)
    for name, m in report["models"].items():
        c, d, s = m["clean"], m["debris"]["tolerance_1px"], m["standard"]
        print(f"{name:10} thr {m['threshold']:.2f}  clean FP/km2 {c['false_px_per_km2']:8.3f}  "
              f"debris P/R/F1(1px) {d['precision']}/{d['recall']}/{d['f1']}  "
              f"standard F1 strict {s['strict']['f1']} (1px {s['tolerance_1px']['f1']})")


if __name__ == "__main__":
    main()
