"""Runs over time in the page: the per-date choice and alert rules of a new run ("watch this region"),
and for an opened per-date run the date slider, the time-series chart and the alert history."""

from __future__ import annotations

import json
from typing import Any, Callable

import pandas as pd
import streamlit as st

import geoloom.workflows as gw

from geoloom.ui.resources import ss

#: Session keys of the form's monitoring fields.
PER_DATE, ALERT_DENSITY, ALERT_OBJECT = "per_date", "alert_density", "alert_object"


def monitoring_form(card: Any) -> None:
    """The "over time" part of the run form: one result per date, and the alert rules of a watch."""
    if card is not None and ss.get("per_date_model") != card.name:  # each model starts from its card's choice
        ss.per_date_model = card.name
        ss[PER_DATE] = bool(getattr(card, "ephemeral", False))
    st.checkbox("One result per acquisition date", key=PER_DATE,
                help="Each date's scenes give a map of their own, with a time series over the dates; off: one "
                     "composite of the whole date range (the most recent clear pixel wins).")
    if ss.get(PER_DATE):
        with st.expander("Watch this region: alert rules"):
            c1, c2 = st.columns(2)
            c1.number_input("Debris px per km² of clear water above", min_value=0.0, value=None, step=1.0,
                            key=ALERT_DENSITY, placeholder="off")
            c2.number_input("Objects larger than (m²)", min_value=0.0, value=None, step=100.0, key=ALERT_OBJECT,
                            placeholder="off")
            st.caption("Rules are judged on each date when it is first computed; \"Check for new imagery\" on the "
                       "opened run computes the dates that came since and lists the alerts.")


def monitoring_options(card: Any = None) -> dict[str, Any]:
    """The form's monitoring fields as keywords of ``build_request`` (``per_date`` None where the box
    says what the model's card says, as the CLI leaves it when not given)."""
    per_date = bool(ss.get(PER_DATE, getattr(card, "ephemeral", False)))
    default = bool(getattr(card, "ephemeral", False)) if card is not None else None
    return {"per_date": None if per_date == default else per_date,
            "alert_density": ss.get(ALERT_DENSITY) if per_date else None,
            "alert_object_m2": ss.get(ALERT_OBJECT) if per_date else None}


def pick_date(series: gw.Run) -> str | None:
    """The day of a per-date run the page shows (the slider's, else the most recent)."""
    days = series.dates
    if not days:
        return None
    if ss.get("view_date") not in days:
        ss.view_date = days[-1]
    return ss.view_date


def date_slider(series: gw.Run) -> None:
    """The time slider over a per-date run's acquisition dates."""
    days = series.dates
    if len(days) > 1:
        st.select_slider("Date", options=days, key="view_date", help="Each acquisition date's own result.")
    elif days:
        st.caption(f"Date: {days[0]} (the only one so far)")


def timeline_section(series: gw.Run, on_update: Callable[[gw.Run], None], busy: bool) -> None:
    """The run over time: the chart, the table per date, the alert rules and history, and the update."""
    st.subheader("Over time")
    ts = series.timeseries
    if len(ts):
        chart = ts.assign(date=ts["date"].dt.strftime("%Y-%m-%d")).set_index("date")
        c1, c2 = st.columns(2)
        with c1:
            st.caption("Detected pixels per km² of clear water")
            st.bar_chart(chart[["debris_px_per_km2"]], height=220, color="#d62728")
        with c2:
            st.caption("Clear water (km²) and cloud (%)")
            st.line_chart(chart[["clear_water_km2", "cloud_pct"]], height=220)
        st.dataframe(chart.reset_index(), hide_index=True, width="stretch", height=min(38 + 35 * len(ts), 260))
    rules = series.request.monitoring.alerts
    history = _history(series)
    if rules.active:
        parts = []
        if rules.density_per_km2 is not None:
            parts.append(f"debris above {rules.density_per_km2:g} px per km² of clear water")
        if rules.object_m2 is not None:
            parts.append(f"objects larger than {rules.object_m2:g} m²")
        st.markdown(f"**Watching for** {' or '.join(parts)}")
        if len(history):
            st.dataframe(history, hide_index=True, width="stretch")
        else:
            st.caption("No alert so far.")
    st.button("Check for new imagery", key="update_run", disabled=busy, on_click=on_update, args=(series,),
              help="Search the catalog again and compute only the dates this run does not hold yet.")
    files = [("Time series (CSV)", "timeseries.csv", "text/csv"), ("Chart (PNG)", "timeseries.png", "image/png"),
             ("Alerts (GeoJSON)", "alerts.geojson", "application/geo+json")]
    cols = st.columns(len(files))
    for col, (label, name, mime) in zip(cols, files):
        path = series.folder / name
        if path.is_file():
            col.download_button(label, data=path.read_bytes(), file_name=name, mime=mime, key=f"dl-series-{name}",
                                on_click="ignore")


def _history(series: gw.Run) -> pd.DataFrame:
    p = series.folder / "alerts.jsonl"
    if not p.exists():
        return pd.DataFrame()
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return pd.DataFrame(rows)
