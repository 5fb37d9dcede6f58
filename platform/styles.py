"""The colours of result layers, in one place: the quicklook, the UI's map and legend, and QGIS styles.

A float layer is drawn on :data:`VIRIDIS` between :func:`value_range`; a class or mask layer gives
each class value but 0 a colour from :data:`CLASS_COLOURS` (0, "nothing found", stays transparent).

>>> class_colours([0, 1, 2])
[(1, '#ff2e88'), (2, '#ffb000')]
>>> hex_rgb(VIRIDIS[0])
(68, 1, 84)
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

import numpy as np

from geoloom.platform.models.card import OutputSpec

__all__ = ["CLASS_COLOURS", "PROBABILITY_OPAQUE", "VIRIDIS", "class_colours", "hex_rgb", "qgis_style", "value_range"]

#: The colour ramp of float layers (viridis), low to high.
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")

#: Colours of class values 1, 2, ... (value 0, "nothing found", is left transparent).
CLASS_COLOURS = ("#ff2e88", "#ffb000", "#00c2ff", "#7cff3a", "#b26bff", "#ff6b3d", "#3dffd0", "#ffffff")

#: Probability at and above which the UI's map draws a probability layer fully opaque.
PROBABILITY_OPAQUE = 0.5

#: Percentiles of the values that bound the ramp of an index layer (robust to outliers).
INDEX_PERCENTILES = (2.0, 98.0)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as three 0-255 integers."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def class_colours(values: Iterable[int]) -> list[tuple[int, str]]:
    """The colour of each class value but 0, in the order given (the colours repeat after eight)."""
    coloured = [int(v) for v in values if int(v) != 0]
    return [(v, CLASS_COLOURS[i % len(CLASS_COLOURS)]) for i, v in enumerate(coloured)]


def value_range(kind: str | None, values: np.ndarray) -> tuple[float, float]:
    """The values the ramp spans: 0-1 for probabilities and masks, else the 2nd-98th percentile."""
    if kind in ("probability", "mask"):
        return 0.0, 1.0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, INDEX_PERCENTILES))
    return lo, (hi if hi > lo else lo + 1e-6)


# -- QGIS -----------------------------------------------------------------------------------------


def qgis_style(spec: OutputSpec, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A QGIS layer style (``.qml``) for one layer: the ramp from ``vmin`` to ``vmax``, or its class colours."""
    title = spec.description or spec.name
    if spec.dtype.startswith("float"):
        renderer = _pseudocolour(float(vmin), float(vmax))
    else:
        renderer = _paletted(spec)
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28.0" styleCategories="Symbology">\n'
        f"  <!-- {_comment(spec.name)}: {_comment(title)} -->\n"
        "  <pipe>\n"
        f"{renderer}"
        '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
        '    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0"/>\n'
        '    <rasterresampler maxOversampling="2"/>\n'
        "  </pipe>\n"
        "  <blendMode>0</blendMode>\n"
        "</qgis>\n"
    )


def _pseudocolour(vmin: float, vmax: float) -> str:
    n = len(VIRIDIS) - 1
    stops = ":".join(f"{i / n:g};{_rgba(c)}" for i, c in enumerate(VIRIDIS[1:-1], start=1))
    items = "".join(
        f'          <item alpha="255" value="{vmin + (vmax - vmin) * i / n!r}" '
        f'label="{vmin + (vmax - vmin) * i / n:.4g}" color="{c}"/>\n'
        for i, c in enumerate(VIRIDIS)
    )
    return (
        f'    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" '
        f'classificationMin="{vmin!r}" classificationMax="{vmax!r}" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>"
        "<statAccuracy>Estimated</statAccuracy></minMaxOrigin>\n"
        "      <rastershader>\n"
        f'        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" '
        f'minimumValue="{vmin!r}" maximumValue="{vmax!r}" labelPrecision="4">\n'
        '          <colorramp type="gradient" name="[source]">\n'
        '            <Option type="Map">\n'
        f'              <Option type="QString" name="color1" value="{_rgba(VIRIDIS[0])}"/>\n'
        f'              <Option type="QString" name="color2" value="{_rgba(VIRIDIS[-1])}"/>\n'
        f'              <Option type="QString" name="stops" value="{stops}"/>\n'
        '              <Option type="QString" name="discrete" value="0"/>\n'
        '              <Option type="QString" name="rampType" value="gradient"/>\n'
        "            </Option>\n"
        "          </colorramp>\n"
        f"{items}"
        "        </colorrampshader>\n"
        "      </rastershader>\n"
        "    </rasterrenderer>\n"
    )


def _paletted(spec: OutputSpec) -> str:
    classes = spec.classes or {0: "no", 1: "yes"}
    colours = dict(class_colours(classes))
    entries = "".join(
        f'        <paletteEntry value="{v}" color="{colours.get(v, "#000000")}" alpha="{255 if v in colours else 0}" '
        f"label={quoteattr(str(label))}/>\n"
        for v, label in classes.items()
    )
    return (
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent>"
        "<statAccuracy>Estimated</statAccuracy></minMaxOrigin>\n"
        f"      <colorPalette>\n{entries}      </colorPalette>\n"
        "    </rasterrenderer>\n"
    )


def _rgba(colour: str) -> str:
    return ",".join(str(v) for v in hex_rgb(colour)) + ",255"


def _comment(text: str) -> str:
    return str(text).replace("--", "- -")
