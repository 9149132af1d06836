"""The managers' dashboard at /dashboard: goals, KPI forecasts, the funnel, who to target, the
best open leads and model health, for `viewer` keys and up, served by the API app."""

from serve.dashboard.routes import router

__all__ = ["router"]
