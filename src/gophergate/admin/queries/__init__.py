"""Read-side queries of the admin API, one module per domain (plain functions over an AsyncEngine)."""
