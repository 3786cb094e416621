"""/api/routing (any user): the model groups as configured, and what this process knows of each target it has
routed to (open, cooling down or half open after a cooldown, requests in flight, time to first token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from gophergate.admin.deps import CurrentUser, Rt
from gophergate.admin.responses import ok
from gophergate.core.errors import ModelNotFound

router = APIRouter(prefix="/api/routing", tags=["routing"])


@router.get("", summary="Model groups and the state of their targets")
async def routing(rt: Rt, _: CurrentUser) -> Response:
    resolver = rt.routing.resolver
    groups: list[dict[str, Any]] = []
    for name, group in sorted(resolver.groups.items()):

        def described(model: str) -> dict[str, Any]:
            try:
                route = resolver.resolve_target(model)
            except ModelNotFound:
                return {"model": model, "provider": None, "upstream_model": None}
            return {"model": model, "provider": route.provider, "upstream_model": route.model}

        groups.append(
            {
                "name": name,
                "strategy": group.strategy,
                "targets": [{**described(t.model), "weight": t.weight} for t in group.targets],
                "fallbacks": [described(model) for model in group.fallbacks],
                "rules": len(group.rules),
                "retries": group.retries,
                "retry_on": sorted(group.retry_on),
                "first_token_timeout_s": group.first_token_timeout_s,
                "affinity": group.affinity,
            }
        )
    shared = rt.router.shared
    return ok(
        {
            "groups": groups,
            "targets": rt.router.snapshot(),
            "shared": None if shared is None else {"redis": True, "connected": shared.connected},
        }
    )
