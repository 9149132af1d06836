"""The FastAPI service: routers, schemas, auth and the dashboard.

Imports `scoring`; never imports `training` (DESIGN §6).
"""
