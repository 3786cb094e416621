"""The /api application (FastAPI), built once in the lifespan and mounted beside the raw-ASGI /v1 dispatcher.

Every router goes under ``api`` below, so the CSRF check (``deps.csrf_protect``) covers all of them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from gophergate import __version__
from gophergate.admin import analytics, auth, keys, models, providers, requests, routing, system, teams, users
from gophergate.admin.deps import csrf_protect
from gophergate.admin.docs import install_docs
from gophergate.admin.errors import install
from gophergate.runtime import Runtime

OPENAPI_URL = "/api/openapi.json"


def create_admin_app(runtime: Runtime, extra_routers: tuple[APIRouter, ...] = ()) -> FastAPI:
    app = FastAPI(
        title="GopherGate admin API",
        version=__version__,
        description="The dashboard's API. Log in with POST /api/auth/login (cookie session); send the returned "
        "csrf_token as X-CSRF-Token on every POST, PUT, PATCH and DELETE.",
        openapi_url=OPENAPI_URL,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: /api/docs is served from the package (docs.py)
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.cpu = system.CpuMeter()  # primed now, so the system page's first CPU reading measures something
    install(app)
    install_docs(app, OPENAPI_URL)
    api = APIRouter(dependencies=[Depends(csrf_protect)])
    for module in (auth, users, keys, teams, providers, models, routing, system, requests, analytics):
        api.include_router(module.router)
    for router in extra_routers:
        api.include_router(router)
    app.include_router(api)
    return app
