"""/api/teams: teams and their limits (viewers read; admins create, change and delete). A team's limits apply to
the sum of its keys (docs/governance.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from gophergate.admin.deps import AdminUser, CurrentUser, Rt
from gophergate.admin.errors import conflict, invalid, not_found
from gophergate.admin.keys import Limits, limit_error, limit_values
from gophergate.admin.responses import ok
from gophergate.admin.services import teams as service
from gophergate.admin.services.limits import LimitError
from gophergate.runtime import Runtime
from gophergate.security.client_keys import policy_from_row

router = APIRouter(prefix="/api/teams", tags=["teams"])

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class TeamIn(BaseModel):
    name: Name
    limits: Limits | None = None


class TeamPatch(BaseModel):
    name: Name | None = None
    limits: Limits | None = None


async def _item(rt: Runtime, team_id: int) -> dict[str, Any]:
    team = await service.get(rt.engine, team_id)
    if team is None:
        raise not_found(f"No team with id {team_id}.")
    return team


def _exists(name: str) -> Exception:
    return conflict(f"A team named {name!r} already exists.", code="team_exists")


@router.get("", summary="List teams by name, with their limits and how many keys each has")
async def list_teams(rt: Rt, _: CurrentUser) -> Response:
    return ok({"data": await service.list_all(rt.engine)})


@router.post("", status_code=201, summary="Create a team")
async def create_team(body: TeamIn, rt: Rt, _: AdminUser) -> Response:
    name = body.name.strip()
    try:
        team_id = await service.create(rt.engine, name, limit_values(body.limits) if body.limits else {})
    except LimitError as exc:
        raise limit_error(exc) from None
    except service.TeamExists:
        raise _exists(name) from None
    await rt.apply_change("keys")  # teams are read with the keys
    return ok(await _item(rt, team_id), 201)


@router.patch("/{team_id}", summary="Rename a team and/or set its limits")
async def update_team(team_id: int, body: TeamPatch, rt: Rt, _: AdminUser) -> Response:
    values: dict[str, Any] = {}
    if body.name is not None:
        values["name"] = body.name.strip()
    if body.limits is not None:
        values.update(limit_values(body.limits))
    if not values:
        raise invalid("Give 'name' and/or 'limits'.", param="name")
    try:
        changed = await service.change(rt.engine, team_id, values)
    except LimitError as exc:
        raise limit_error(exc) from None
    except service.TeamExists:
        raise _exists(values["name"]) from None
    if not changed:
        raise not_found(f"No team with id {team_id}.")
    await rt.apply_change("keys")  # a team's limits apply on /v1 at once here, and in the cluster
    return ok(await _item(rt, team_id))


@router.get("/{team_id}/usage", summary="A team's usage now (the sum of its keys): this minute, in flight, budget")
async def team_usage(team_id: int, rt: Rt, _: CurrentUser) -> Response:
    team = await _item(rt, team_id)
    return ok(await rt.governance.usage("team", team_id, policy_from_row(team["limits"])))


@router.delete("/{team_id}", summary="Delete a team (refused while keys belong to it)")
async def delete_team(team_id: int, rt: Rt, _: AdminUser) -> Response:
    try:
        deleted = await service.remove(rt.engine, team_id)
    except service.TeamHasKeys as exc:
        raise conflict(
            f"Team {team_id} still has {exc.count} key(s); move or delete them first.", code="team_has_keys"
        ) from None
    if not deleted:
        raise not_found(f"No team with id {team_id}.")
    await rt.apply_change("keys")
    return ok({"deleted": team_id})
