"""Small Sentinel-2 products written for the tests: SAFE folders, their zips and loose band files.

The metadata files have the element names and nesting of ESA's MTD_MSIL1C.xml, MTD_MSIL2A.xml
and MTD_TL.xml for every field geoloom reads; the bands are lossless JPEG 2000 written by GDAL,
at 120 x 120 px (10 m), 60 x 60 px (20 m) and 20 x 20 px (60 m) in UTM zone 33N. The western
quarter of every band is 0 (no data), as on the edge of an orbit, and the metadata footprint
leaves it out.
"""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

EPSG = 32633
ULX, ULY = 399_960.0, 5_800_020.0  # about 13.6 E, 52.3 N
SIZE_10M = 120
NODATA_COLS_10M = 30  # the western quarter is outside the orbit

#: Native resolution (m) of every band file of a granule, as ESA names them.
NATIVE_RES = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}
L1C_BANDS = tuple(NATIVE_RES)
L2A_BANDS = tuple(b for b in NATIVE_RES if b != "B10")
BAND_IDS = {b: i for i, b in enumerate(NATIVE_RES)}  # ESA band_id: 0 = B01 ... 12 = B12
JP2_OPTIONS = {"QUALITY": "100", "REVERSIBLE": "YES"}


@dataclass(frozen=True)
class Product:
    """What a test product is: level, processing baseline, tile, time, platform, cloud cover."""

    level: str = "L2A"
    baseline: str = "05.09"
    tile: str = "33UUU"
    sensed: dt.datetime = dt.datetime(2023, 6, 6, 10, 25, 59, tzinfo=dt.timezone.utc)
    spacecraft: str = "S2B"
    cloud: float = 12.5
    seed: int = 0
    ulx: float = ULX

    @property
    def name(self) -> str:
        """The product name (the SAFE folder without ``.SAFE``)."""
        t = self.sensed.strftime("%Y%m%dT%H%M%S")
        gen = (self.sensed + dt.timedelta(hours=3)).strftime("%Y%m%dT%H%M%S")
        return f"{self.spacecraft}_MSI{self.level}_{t}_N{self.baseline.replace('.', '')}_R108_T{self.tile}_{gen}"

    @property
    def granule_scene(self) -> str:
        """The prefix of the band file names: ``T33UUU_20230606T102559``."""
        return f"T{self.tile}_{self.sensed.strftime('%Y%m%dT%H%M%S')}"

    @property
    def granule_dir(self) -> str:
        return f"{self.level}_T{self.tile}_A032562_{self.sensed.strftime('%Y%m%dT%H%M%S')}"

    @property
    def offset_dn(self) -> int:
        """BOA/RADIO add-offset: -1000 DN from processing baseline 04.00 on."""
        return -1000 if int(self.baseline.split(".")[0]) >= 4 else 0

    @property
    def tile_sensing_time(self) -> dt.datetime:
        """The granule's SENSING_TIME (MTD_TL), a few seconds after the datatake start."""
        return self.sensed + dt.timedelta(seconds=6, microseconds=125508)

    def bands(self) -> tuple[str, ...]:
        return L1C_BANDS if self.level == "L1C" else L2A_BANDS


# ---------------------------------------------------------------------------- pixels


def grid(res: int, ulx: float = ULX) -> tuple[Affine, int]:
    """The transform and size (pixels per side) of the granule grid at ``res`` metres."""
    return Affine(res, 0.0, ulx, 0.0, -res, ULY), SIZE_10M * 10 // res


def band_dn(product: Product, band: str, res: int) -> np.ndarray:
    """The stored numbers of a band: uint16 DN 1..12000 (SCL: classes), 0 in the western quarter."""
    n = SIZE_10M * 10 // res
    rng = np.random.default_rng([product.seed, BAND_IDS.get(band, 20), res])
    if band == "SCL":
        data = np.full((n, n), 6, np.uint8)  # water
        data[: n // 4, :] = 9  # a band of cloud (high probability) along the top
    elif band in ("AOT", "WVP"):
        data = rng.integers(80, 400, size=(n, n), dtype=np.uint16)
    else:
        data = rng.integers(1, 12000, size=(n, n), dtype=np.uint16)
    data[:, : NODATA_COLS_10M * 10 // res] = 0
    return data


def write_jp2(path: Path, data: np.ndarray, transform: Affine) -> Path:
    """A lossless JPEG 2000 (GDAL's JP2OpenJPEG), no nodata declared, as ESA writes its bands."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype.name, crs=f"EPSG:{EPSG}", transform=transform,
                       **JP2_OPTIONS) as dst:
        dst.write(data)
    return path


def footprint_lonlat(product: Product) -> list[tuple[float, float]]:
    """The data footprint (lon, lat): the granule without its western quarter, closed ring."""
    x0, x1 = product.ulx + NODATA_COLS_10M * 10, product.ulx + SIZE_10M * 10
    y0, y1 = ULY - SIZE_10M * 10, ULY
    xs, ys = [x0, x1, x1, x0, x0], [y1, y1, y0, y0, y1]
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(xs, ys)
    return list(zip(lon, lat))


# ---------------------------------------------------------------------------- files of a product


def image_files(product: Product) -> list[tuple[str, str, int]]:
    """(path in the SAFE without extension, band token, resolution) of every image file, as in the MTD."""
    img = f"GRANULE/{product.granule_dir}/IMG_DATA"
    scene = product.granule_scene
    if product.level == "L1C":
        return [(f"{img}/{scene}_{b}", b, NATIVE_RES.get(b, 10)) for b in (*L1C_BANDS, "TCI")]
    out = []
    for res in (10, 20, 60):
        tokens = [b for b in L2A_BANDS if NATIVE_RES[b] == res]
        tokens += {10: ["TCI", "AOT", "WVP"], 20: ["B02", "SCL", "AOT"], 60: ["B02", "B8A", "SCL"]}[res]
        out += [(f"{img}/R{res}m/{scene}_{b}_{res}m", b, res) for b in tokens]
    return out


def write_safe(folder: Path, product: Product) -> Path:
    """Write ``<folder>/<product>.SAFE`` (metadata and JPEG 2000 bands); return the SAFE folder."""
    safe = folder / f"{product.name}.SAFE"
    files = image_files(product)
    for rel, band, res in files:
        transform, _ = grid(res, product.ulx)
        if band == "TCI":
            data = np.stack([(band_dn(product, b, res) // 48).astype(np.uint8) for b in ("B04", "B03", "B02")])
        else:
            data = band_dn(product, band, res)
        write_jp2(safe / f"{rel}.jp2", data, transform)
    qi = safe / "GRANULE" / product.granule_dir / "QI_DATA"
    transform, _ = grid(20, product.ulx)
    write_jp2(qi / "MSK_CLDPRB_20m.jp2", np.zeros((60, 60), np.uint8), transform)
    write_jp2(qi / f"{product.granule_scene}_PVI.jp2", np.zeros((3, 20, 20), np.uint8), grid(60, product.ulx)[0])
    (safe / f"MTD_MSI{product.level}.xml").write_text(product_xml(product, [f for f, _, _ in files]))
    (safe / "GRANULE" / product.granule_dir / "MTD_TL.xml").write_text(tile_xml(product))
    manifest = '<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1"/>\n'
    (safe / "manifest.safe").write_text(manifest)
    (safe / "DATASTRIP").mkdir()
    (safe / "AUX_DATA").mkdir()
    return safe


def zip_safe(safe: Path, out_dir: Path) -> Path:
    """A zip of the SAFE folder (``<name>.SAFE/...`` inside) as the Copernicus Data Space delivers it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{safe.stem}.SAFE.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(safe.rglob("*")):
            zf.write(p, f"{safe.name}/{p.relative_to(safe).as_posix()}" + ("/" if p.is_dir() else ""))
    return path


def copy_band_files(safe: Path, out_dir: Path, *, pattern: str = "*.jp2") -> list[Path]:
    """The IMG_DATA band files of a SAFE copied flat into ``out_dir`` (loose files, standard names)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted(safe.glob(f"GRANULE/*/IMG_DATA/**/{pattern}")):
        copied.append(Path(shutil.copy2(p, out_dir / p.name)))
    return copied


# ---------------------------------------------------------------------------- metadata XML


def _iso(t: dt.datetime, digits: int = 3) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[: 20 + digits] + "Z"


def product_xml(product: Product, files: list[str]) -> str:
    """MTD_MSIL1C.xml / MTD_MSIL2A.xml with ESA's element names for what geoloom reads."""
    level = product.level
    root = "Level-1C_User_Product" if level == "L1C" else "Level-2A_User_Product"
    ptype = "S2MSI1C" if level == "L1C" else "S2MSI2A"
    bl = product.baseline
    datatake = f"G{product.spacecraft}_{product.sensed:%Y%m%dT%H%M%S}_032562_N{bl}"
    images = "\n".join(f"            <IMAGE_FILE>{f}</IMAGE_FILE>" for f in files)
    footprint = " ".join(f"{lat!r} {lon!r}" for lon, lat in footprint_lonlat(product))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:{root} xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{_iso(product.sensed)}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{_iso(product.sensed)}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{product.name}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>{ptype}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{bl}</PROCESSING_BASELINE>
      <GENERATION_TIME>{_iso(product.sensed + dt.timedelta(hours=3), 6)}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="{datatake}">
        <SPACECRAFT_NAME>Sentinel-2{product.spacecraft[-1]}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{_iso(product.sensed)}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>108</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{product.spacecraft}_OPER_MSI_{level}_DS_2BPS_{product.sensed:%Y%m%dT%H%M%S}_N{bl}" granuleIdentifier="{product.spacecraft}_OPER_MSI_{level}_TL_2BPS_{product.sensed:%Y%m%dT%H%M%S}_A032562_T{product.tile}_N{bl}" imageFormat="JPEG2000">
{images}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
{_radiometry_xml(product)}
{_spectral_xml()}
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint>
      <Product_Footprint>
        <Global_Footprint>
          <EXT_POS_LIST>{footprint} </EXT_POS_LIST>
        </Global_Footprint>
      </Product_Footprint>
      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Product_Footprint>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{product.cloud}</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:{root}>
"""


def _radiometry_xml(product: Product) -> str:
    """Quantification value(s) and, from baseline 04.00, the per-band add-offsets."""
    if product.level == "L1C":
        quant = '      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        tag, group = "RADIO_ADD_OFFSET", "Radiometric_Offset_List"
    else:
        quant = ("      <QUANTIFICATION_VALUES_LIST>\n"
                 '        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>\n'
                 '        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>\n'
                 '        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>\n'
                 "      </QUANTIFICATION_VALUES_LIST>")
        tag, group = "BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST"
    if not product.offset_dn:
        return quant
    rows = "\n".join(f'        <{tag} band_id="{i}">{product.offset_dn}</{tag}>' for i in range(13))
    return f"{quant}\n      <{group}>\n{rows}\n      </{group}>"


def _spectral_xml() -> str:
    rows = [f'        <Spectral_Information bandId="{i}" physicalBand="{b.replace("B0", "B")}">\n'
            f"          <RESOLUTION>{NATIVE_RES[b]}</RESOLUTION>\n        </Spectral_Information>"
            for b, i in BAND_IDS.items()]
    return "      <Spectral_Information_List>\n" + "\n".join(rows) + "\n      </Spectral_Information_List>"


def tile_xml(product: Product) -> str:
    """The granule's MTD_TL.xml: tile id, sensing time, tile geocoding, cloudy pixel percentage."""
    level = product.level
    root = "Level-1C_Tile_ID" if level == "L1C" else "Level-2A_Tile_ID"
    sizes = "\n".join(
        f'      <Size resolution="{r}">\n        <NROWS>{grid(r)[1]}</NROWS>\n        <NCOLS>{grid(r)[1]}</NCOLS>\n      </Size>'
        for r in (10, 20, 60))
    geopos = "\n".join(
        f'      <Geoposition resolution="{r}">\n        <ULX>{product.ulx:.0f}</ULX>\n        <ULY>{ULY:.0f}</ULY>\n'
        f"        <XDIM>{r}</XDIM>\n        <YDIM>-{r}</YDIM>\n      </Geoposition>" for r in (10, 20, 60))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:{root} xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{level[1:]}_Tile_Metadata.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{product.spacecraft}_OPER_MSI_{level}_TL_2BPS_{product.sensed:%Y%m%dT%H%M%S}_A032562_T{product.tile}_N{product.baseline}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{product.spacecraft}_OPER_MSI_{level}_DS_2BPS_{product.sensed:%Y%m%dT%H%M%S}_N{product.baseline}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{_iso(product.tile_sensing_time, 6)}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone 33N</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{EPSG}</HORIZONTAL_CS_CODE>
{sizes}
{geopos}
    </Tile_Geocoding>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <CLOUDY_PIXEL_PERCENTAGE>{product.cloud:.6f}</CLOUDY_PIXEL_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:{root}>
"""
