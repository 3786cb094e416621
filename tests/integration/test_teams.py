"""Teams and key limits through the admin API of a real gateway, stored and shown (enforced: test_governance.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.test_admin_api import VIEWER_PASSWORD, Dash, dash, error_of

__all__ = ["dash"]  # the module-scoped gateway of test_admin_api, one for this module too

LIMITS = {
    "rpm": 30,
    "tpm": 40_000,
    "max_parallel": 4,
    "budget_usd": "25.5",
    "budget_period": "week",
    "allowed_models": ["gpt-4o*", "anthropic/*"],
    "max_tokens_cap": 2048,
}


def _key(c: httpx.Client, key_id: int) -> dict[str, Any]:
    return next(k for k in c.get("/api/keys").json()["data"] if k["id"] == key_id)


def test_team_lifecycle_keys_join_and_leave_and_delete_is_refused_while_keys_belong(dash: Dash) -> None:
    with dash.login() as c:
        created = c.post("/api/teams", json={"name": "research", "limits": LIMITS})
        assert created.status_code == 201, created.text
        team = created.json()
        assert team["name"] == "research" and team["limits"] == LIMITS and team["keys"] == 0

        key_body = {
            "name": "notebook",
            "team_id": team["id"],
            "expires_at": "2030-01-31T18:00:00+01:00",
            "limits": {"rpm": 5, "allowed_models": ["gpt-4o-mini"], "max_tokens_cap": 512},
        }
        made = c.post("/api/keys", json=key_body)
        assert made.status_code == 201, made.text
        dash.secrets_shown.add(made.json()["secret"])
        key = _key(c, made.json()["key"]["id"])
        assert key["team"] == {"id": team["id"], "name": "research"}
        assert key["expires_at"] == "2030-01-31T17:00:00Z"
        assert key["limits"]["allowed_models"] == ["gpt-4o-mini"] and key["limits"]["max_tokens_cap"] == 512
        assert key["limits"]["budget_usd"] is None and key["limits"]["max_parallel"] is None

        # A rotation's successor keeps the team, the expiry and the limits.
        rotated = c.post(f"/api/keys/{key['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        dash.secrets_shown.add(rotated.json()["secret"])
        successor = rotated.json()["key"]
        assert successor["id"] != key["id"]
        assert {k: successor[k] for k in ("team", "expires_at", "limits")} == {
            k: key[k] for k in ("team", "expires_at", "limits")
        }
        key = successor

        listed = {t["id"]: t for t in c.get("/api/teams").json()["data"]}
        assert listed[team["id"]]["keys"] == 2  # the revoked predecessor still belongs to it

        refused = c.delete(f"/api/teams/{team['id']}")
        assert refused.status_code == 409 and error_of(refused)["code"] == "team_has_keys"

        changed = c.patch(
            f"/api/teams/{team['id']}", json={"name": "research-2", "limits": {"budget_usd": None, "rpm": 60}}
        )
        assert changed.status_code == 200, changed.text
        limits = changed.json()["limits"]
        assert changed.json()["name"] == "research-2"
        assert limits["budget_usd"] is None and limits["budget_period"] is None  # the period goes with the budget
        assert limits["rpm"] == 60 and limits["tpm"] == 40_000  # limits not sent are left as they were

        moved = c.patch(f"/api/keys/{key['id']}", json={"team_id": None, "expires_at": None, "limits": {"rpm": None}})
        assert moved.status_code == 200, moved.text
        assert moved.json()["team"] is None and moved.json()["expires_at"] is None
        assert moved.json()["limits"]["rpm"] is None and moved.json()["limits"]["max_tokens_cap"] == 512

        still = c.delete(f"/api/teams/{team['id']}")  # the revoked predecessor is still in it
        assert still.status_code == 409 and error_of(still)["code"] == "team_has_keys"
        assert c.patch(f"/api/keys/{made.json()['key']['id']}", json={"team_id": None}).status_code == 200
        assert c.delete(f"/api/teams/{team['id']}").status_code == 200
        assert c.delete(f"/api/teams/{team['id']}").status_code == 404
        assert team["id"] not in {t["id"] for t in c.get("/api/teams").json()["data"]}


def test_viewers_read_teams_but_cannot_change_them(dash: Dash) -> None:
    with dash.login() as admin:
        team = admin.post("/api/teams", json={"name": "ops", "limits": {"tpm": 1000}}).json()
    with dash.login("viewer", VIEWER_PASSWORD) as viewer:
        teams = viewer.get("/api/teams")
        assert teams.status_code == 200
        assert {"name": "ops", "tpm": 1000} in [
            {"name": t["name"], "tpm": t["limits"]["tpm"]} for t in teams.json()["data"]
        ]
        refused = viewer.patch(f"/api/teams/{team['id']}", json={"limits": {"tpm": None}})
        assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
        assert viewer.delete(f"/api/teams/{team['id']}").status_code == 403
    with dash.login() as admin:
        assert admin.delete(f"/api/teams/{team['id']}").status_code == 200


def test_limit_validation_errors_name_the_field(dash: Dash) -> None:
    with dash.login() as c:
        assert c.post("/api/teams", json={"name": "dupe"}).status_code == 201
        again = c.post("/api/teams", json={"name": "dupe"})
        assert again.status_code == 409 and error_of(again)["code"] == "team_exists"
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("/api/teams", {"name": "t", "limits": {"budget_usd": "10"}}, "limits.budget_period"),
            ("/api/teams", {"name": "t", "limits": {"budget_period": "day"}}, "limits.budget_usd"),
            (
                "/api/teams",
                {"name": "t", "limits": {"budget_usd": "5", "budget_period": "year"}},
                "limits.budget_period",
            ),
            ("/api/teams", {"name": "t", "limits": {"rpm": 0}}, "limits.rpm"),
            ("/api/teams", {"name": "t", "limits": {"max_parallel": "many"}}, "limits.max_parallel"),
            ("/api/teams", {"name": "t", "limits": {"allowed_models": "gpt-4o"}}, "limits.allowed_models"),
            ("/api/teams", {"name": "t", "limits": {"max_tokens_cap": -1}}, "limits.max_tokens_cap"),
            ("/api/teams", {"name": "t", "limits": {"budget": "5"}}, "limits.budget"),
            ("/api/teams", {"name": " "}, "name"),
            ("/api/keys", {"name": "k", "team_id": 999999}, "team_id"),
            ("/api/keys", {"name": "k", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
            ("/api/keys", {"name": "k", "expires_at": "soon"}, "expires_at"),
            ("/api/keys", {"name": "k", "limits": {"budget_usd": "0", "budget_period": "day"}}, "limits.budget_usd"),
        ]
        for path, body, param in cases:
            r = c.post(path, json=body)
            assert r.status_code == 400, (body, r.text)
            assert error_of(r)["param"] == param, (body, r.text)
        assert "t" not in {t["name"] for t in c.get("/api/teams").json()["data"]}
        assert "k" not in {k["name"] for k in c.get("/api/keys").json()["data"]}
        assert c.patch("/api/teams/999999", json={"name": "x"}).status_code == 404
        # A key whose budget has a period: changing only the period keeps the budget; a period alone is refused.
        key = c.post("/api/keys", json={"name": "k2", "limits": {"budget_usd": "3", "budget_period": "day"}}).json()
        dash.secrets_shown.add(key["secret"])
        kid = key["key"]["id"]
        moved = c.patch(f"/api/keys/{kid}", json={"limits": {"budget_period": "total"}})
        assert moved.json()["limits"]["budget_usd"] == "3" and moved.json()["limits"]["budget_period"] == "total"
        bad = c.patch(f"/api/keys/{kid}", json={"limits": {"budget_period": None}})
        assert bad.status_code == 400 and error_of(bad)["param"] == "limits.budget_period"
