"""Services behind the /api routers: database statements and runtime updates, no HTTP."""
