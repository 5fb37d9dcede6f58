"""geoloom's web UI: ``geoloom ui`` runs this script with Streamlit.

Settings come from the environment: GEOLOOM_CATALOG (STAC catalog), GEOLOOM_SCHEDULER (a Dask
scheduler address), GEOLOOM_RUNS (runs folder and history), GEOLOOM_RUNTIME (dask or
in-process), GEOLOOM_BASEMAP (osm or none).
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="geoloom", page_icon=":ocean:", layout="wide")

from geoloom.ui.page import main  # noqa: E402  (after set_page_config, which must come first)

main()
