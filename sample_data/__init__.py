"""geoloom's shipped region presets (``presets/<name>.geojson``) and offline gazetteer (``gazetteer.json``).

Installed as the package data of ``geoloom.sample_data``; generated sample imagery is written to the
per-user data folder instead (``geoloom.platform.userdata``).
"""
