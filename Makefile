# geoloom: `make demo` (set up, make the sample data, run a detection) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
OUT    ?= runs/demo
PRESET ?= sample-bay
MODEL  ?= marine-debris

.PHONY: setup demo test test-fast sample-data ui bench bench-quick clean-runs browser web-assets

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,ray]'
	touch $@

# Leaflet, Leaflet.draw, ... from the npm registry, served by the app itself (works offline).
web-assets: $(VENV)/.installed
	$(PY) -m geoloom.ui.fetch_assets

setup: $(VENV)/.installed web-assets

# into the per-user data folder (GEOLOOM_DATA_DIR overrides it); kept when already there
sample-data: $(VENV)/.installed
	$(VENV)/bin/geoloom sample-data --if-missing

demo: setup sample-data
	$(VENV)/bin/geoloom run --preset $(PRESET) --model $(MODEL) --out $(OUT) --overwrite
	@echo "Maps: $(OUT)/dates/*/result.tif (one per acquisition date)  time series: $(OUT)/timeseries.csv $(OUT)/timeseries.png"
	@echo "Tables: $(OUT)/detections.geojson $(OUT)/detections.parquet  quicklook: $(OUT)/quicklook.png"

# Debian's Chromium for the browser tests (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

ui: setup sample-data
	$(VENV)/bin/geoloom ui

bench: setup sample-data
	$(PY) -m benchmarks

# a few-minute smoke run of every case (reports in benchmarks/results/quick/)
bench-quick: setup sample-data
	$(PY) -m benchmarks --quick

clean-runs:
	rm -rf runs
