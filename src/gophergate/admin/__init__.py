"""The admin API under ``/api``: auth, users, keys, providers, models, system (and the routers of other
domains, included through ``create_admin_app``)."""

from gophergate.admin.app import create_admin_app

__all__ = ["create_admin_app"]
