"""The funnelcast core: data contract, mappings, store, KPIs, models, forecasts and goals.

Importing this package has no side effects: no folders are created, no logging is configured and
no tracking URI is set. Entry points (the CLI, the app factory, notebooks) do the wiring.
"""
