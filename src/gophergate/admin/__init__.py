"""The dashboard's admin API (FastAPI, mounted under /api)."""
