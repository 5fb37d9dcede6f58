"""Label classes of the generated sample scenes (uint8 label rasters, 0 = no data)."""

from __future__ import annotations

LABEL_NODATA = 0

#: code -> class name, as written in every ``labels`` asset.
LABEL_CLASSES: dict[int, str] = {
    1: "water",
    2: "marine debris",
    3: "sargassum",
    4: "ship",
    5: "foam",
    6: "cloud",
    7: "cloud shadow",
    8: "turbid water",
    9: "land",
}

WATER, DEBRIS, SARGASSUM, SHIP, FOAM, CLOUD, CLOUD_SHADOW, TURBID, LAND = range(1, 10)

#: Classes that look like debris to a spectral index: the hard negatives.
HARD_NEGATIVES: dict[int, str] = {k: LABEL_CLASSES[k] for k in (FOAM, TURBID, SARGASSUM, SHIP)}
