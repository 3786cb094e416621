"""Command line: ``gophergate serve|migrate|keys|teams|users|registry|prices|init-env``.

Wiring only; the logic lives in the packages."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import stat
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from gophergate.settings import (
    CONFIG_VAR,
    ENCRYPTION_KEY_VAR,
    Settings,
    describe_settings_error,
    load_settings,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="GopherGate: a self-hosted LLM gateway.")
keys_app = typer.Typer(no_args_is_help=True, help="Client keys for the /v1 API.")
app.add_typer(keys_app, name="keys")
teams_app = typer.Typer(no_args_is_help=True, help="Teams: limits shared by their keys (stored; enforced next).")
app.add_typer(teams_app, name="teams")
registry_app = typer.Typer(no_args_is_help=True, help="The model registry (models.dev) used for routing and prices.")
app.add_typer(registry_app, name="registry")
prices_app = typer.Typer(no_args_is_help=True, help="Price overrides and discounts (win over the registry).")
app.add_typer(prices_app, name="prices")
users_app = typer.Typer(no_args_is_help=True, help="Dashboard users (roles admin and viewer).")
app.add_typer(users_app, name="users")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML configuration file (also GOPHERGATE_CONFIG).")
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    """Load and validate settings, or exit non-zero with one line naming the variable."""
    if config is not None:
        if not config.is_file():
            typer.echo(f"error: {CONFIG_VAR}: no such file: {config}", err=True)
            raise typer.Exit(2)
        os.environ[CONFIG_VAR] = str(config.resolve())
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:
        typer.echo(f"error: {describe_settings_error(exc)}", err=True)
        raise typer.Exit(2) from None


def _migrate(settings: Settings) -> None:
    from gophergate.db.migrate import upgrade

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade(settings.resolved_database_url)
    except Exception as exc:
        typer.echo(f"error: database migration failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _migrate_in_subprocess() -> None:
    """``serve`` migrates in a child process: the serving process then never imports Alembic, and stays
    smaller by the ~10 MB it would keep."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "gophergate", "migrate", "--quiet"], check=False)
    if result.returncode != 0:
        raise typer.Exit(result.returncode)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (GOPHERGATE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GOPHERGATE_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (GOPHERGATE_WORKERS).")] = None,
) -> None:
    """Apply migrations, then serve the gateway (on Granian: HTTP/1.1, uvloop; see GOPHERGATE_WORKERS)."""
    settings = _settings(config, host=host, port=port, workers=workers)
    from gophergate.providers.config import provider_configs

    try:
        provider_configs(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _migrate_in_subprocess()
    raise typer.Exit(_serve(settings))


def _serve(settings: Settings) -> int:
    from gophergate.logs import setup_logging
    from gophergate.serve import serve

    setup_logging(settings.log_level, settings.log_format)
    return serve(settings)


@app.command()
def migrate(
    config: ConfigOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing on success.")] = False,
) -> None:
    """Apply database migrations and exit."""
    settings = _settings(config)
    _migrate(settings)
    if not quiet:
        typer.echo("database is up to date")


def _run(coro_factory: Any, settings: Settings, announce: dict[str, Any] | None = None) -> Any:
    """Run ``coro_factory(engine)``; with ``announce`` (a change, e.g. ``{"what": "keys"}``) and GOPHERGATE_REDIS_URL,
    the running gateways are told at once through the cluster bus (they would notice at their next poll)."""
    from gophergate.db.engine import create_engine

    async def main() -> Any:
        engine = create_engine(settings.resolved_database_url)
        try:
            result = await coro_factory(engine)
        finally:
            await engine.dispose()
        if announce is not None and settings.redis_url is not None:
            import orjson

            from gophergate.cluster.bus import publish_once

            url = settings.redis_url.get_secret_value()
            await publish_once(url, settings.redis_key_prefix, "change", orjson.dumps(announce))
        return result

    return asyncio.run(main())


KEYS_CHANGED = {"what": "keys"}
PRICES_CHANGED = {"what": "prices"}


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# Limits flags shared by `keys create|update` and `teams create|update`: strings, so that "none" can clear one.
RpmOption = Annotated[str | None, typer.Option("--rpm", help="Requests per minute (0 or none clears).")]
TpmOption = Annotated[str | None, typer.Option("--tpm", help="Tokens per minute, prompt + completion (0/none clears).")]
ParallelOption = Annotated[
    str | None, typer.Option("--max-parallel", help="Requests in flight at once (0 or none clears).")
]
BudgetOption = Annotated[
    str | None, typer.Option("--budget", help="USD per budget period; needs --budget-period (0 or none clears).")
]
PeriodOption = Annotated[
    str | None,
    typer.Option("--budget-period", help="day, week (from Monday), month or total (never resets)."),
]
ModelsOption = Annotated[
    str | None,
    typer.Option("--models", help="Allowed model patterns, comma-separated (gpt-4o*,anthropic/*); none = all."),
]
CapOption = Annotated[
    str | None, typer.Option("--max-tokens-cap", help="Largest max_tokens a request may ask (0 or none clears).")
]
_CLEAR = ("0", "none")


def _whole(flag: str, value: str) -> int | None:
    if value.strip().lower() in _CLEAR:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 1:
        raise _fail(f"{flag} must be a whole number >= 1 (0 or none clears it)")
    return number


def _limits(
    rpm: str | None,
    tpm: str | None,
    max_parallel: str | None,
    budget: str | None,
    budget_period: str | None,
    models: str | None,
    max_tokens_cap: str | None,
) -> dict[str, Any]:
    """The limits given on the command line (absent flags are left out), or exit 2 naming the flag."""
    from gophergate.admin.services.limits import PERIODS

    values: dict[str, Any] = {}
    for column, flag, value in (
        ("rpm", "--rpm", rpm),
        ("tpm", "--tpm", tpm),
        ("max_parallel", "--max-parallel", max_parallel),
        ("max_tokens_cap", "--max-tokens-cap", max_tokens_cap),
    ):
        if value is not None:
            values[column] = _whole(flag, value)
    if budget is not None:
        if budget.strip().lower() in _CLEAR:
            values["budget_usd"] = None
        else:
            number = _decimal_option("--budget", budget)
            if number is None or number == 0:
                raise _fail("--budget must be a number > 0 (0 or none clears it)")
            values["budget_usd"] = number
    if budget_period is not None:
        if budget_period not in PERIODS:
            raise _fail(f"--budget-period must be one of {', '.join(PERIODS)}")
        values["budget_period"] = budget_period
    if models is not None:
        patterns = [] if models.strip().lower() == "none" else [p.strip() for p in models.split(",") if p.strip()]
        if any(len(p) > 300 for p in patterns):
            raise _fail("--models patterns must be at most 300 characters each")
        values["allowed_models"] = patterns
    return values


_LIMIT_FLAGS = {"budget_usd": "--budget", "budget_period": "--budget-period"}


def _limit_error(exc: Any) -> typer.Exit:
    flag = _LIMIT_FLAGS.get(exc.field, exc.field)
    return _fail(f"{flag} {str(exc).replace('a budget period', '--budget-period').replace('a budget', '--budget')}")


def _expires(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _fail("--expires must be an ISO-8601 time such as 2027-01-31T18:00:00Z") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _team_id(settings: Settings, name: str, flag: str = "--team") -> int:
    from gophergate.admin.services import teams

    team = _run(lambda engine: teams.find(engine, name), settings)
    if team is None:
        raise _fail(f"{flag}: no team named {name}")
    return int(team["id"])


def _limits_text(limits: dict[str, Any]) -> str:
    parts = []
    for name, label in (("rpm", "rpm"), ("tpm", "tpm"), ("max_parallel", "parallel"), ("max_tokens_cap", "cap")):
        if limits[name] is not None:
            parts.append(f"{label} {limits[name]}")
    if limits["budget_usd"] is not None:
        parts.append(f"${limits['budget_usd']}/{limits['budget_period']}")
    if limits["allowed_models"]:
        parts.append("models " + ",".join(limits["allowed_models"]))
    return "; ".join(parts) or "-"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key (who or what uses it).")],
    team: Annotated[str | None, typer.Option("--team", help="The team (by name) the key belongs to.")] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    models: ModelsOption = None,
    max_tokens_cap: CapOption = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Expiry, ISO-8601 (UTC if no offset).")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a client key and print it once (only its SHA-256 is stored), with its team, limits and expiry."""
    from gophergate.admin.services import keys
    from gophergate.admin.services.limits import LimitError

    if not name.strip() or len(name) > 200:
        raise _fail("--name must be 1-200 characters")
    values = _limits(rpm, tpm, max_parallel, budget, budget_period, models, max_tokens_cap)
    if expires is not None:
        values["expires_at"] = _expires(expires)
    settings = _settings(config)
    _migrate(settings)
    if team is not None:
        values["team_id"] = _team_id(settings, team)
    try:
        key_id, key = _run(lambda engine: keys.create(engine, name.strip(), values), settings, KEYS_CHANGED)
    except LimitError as exc:
        raise _limit_error(exc) from None
    typer.echo(f"created key {key_id} ({name.strip()}); it is shown only this once:", err=True)
    typer.echo(key)


@keys_app.command("update")
def keys_update(
    key_id: Annotated[int, typer.Argument(help="The key's ID (see `keys list`).")],
    team: Annotated[str | None, typer.Option("--team", help="Move the key to this team (by name).")] = None,
    no_team: Annotated[bool, typer.Option("--no-team", help="Take the key out of its team.")] = False,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    models: ModelsOption = None,
    max_tokens_cap: CapOption = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Expiry, ISO-8601 (UTC if no offset).")] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="The key never expires.")] = False,
    config: ConfigOption = None,
) -> None:
    """Change a key's team, limits or expiry (flags not given are left as they are)."""
    from gophergate.admin.services import keys
    from gophergate.admin.services.limits import LimitError

    if team is not None and no_team:
        raise _fail("--team and --no-team exclude each other")
    if expires is not None and no_expiry:
        raise _fail("--expires and --no-expiry exclude each other")
    values = _limits(rpm, tpm, max_parallel, budget, budget_period, models, max_tokens_cap)
    if expires is not None:
        values["expires_at"] = _expires(expires)
    if no_expiry:
        values["expires_at"] = None
    if no_team:
        values["team_id"] = None
    if not values and team is None:
        raise _fail("give at least one change: --team/--no-team, a limit flag, or --expires/--no-expiry")
    settings = _settings(config)
    _migrate(settings)
    if team is not None:
        values["team_id"] = _team_id(settings, team)
    try:
        found = _run(lambda engine: keys.change(engine, key_id, values), settings, KEYS_CHANGED)
    except LimitError as exc:
        raise _limit_error(exc) from None
    if not found:
        raise _fail(f"no key with id {key_id}", 1)
    typer.echo(f"updated key {key_id}")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List client keys (never the keys themselves), with their team, expiry and limits."""
    from gophergate.admin.services import keys

    settings = _settings(config)
    _migrate(settings)
    rows = list(reversed(_run(lambda engine: keys.list_page(engine, None, 1_000_000), settings)))
    typer.echo(
        f"{'ID':>5}  {'NAME':<24} {'KEY':<16} {'CREATED':<20} {'STATUS':<24} {'TEAM':<16} {'EXPIRES':<17} LIMITS"
    )
    for row in rows:
        status = "revoked " + row["revoked_at"].strftime("%Y-%m-%d %H:%M") if row["revoked_at"] else "active"
        created = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        team = row["team"]["name"][:16] if row["team"] else "-"
        expires = row["expires_at"].strftime("%Y-%m-%d %H:%M") if row["expires_at"] else "-"
        typer.echo(
            f"{row['id']:>5}  {row['name'][:24]:<24} {row['hint']:<16} {created:<20} {status:<24} {team:<16} "
            f"{expires:<17} {_limits_text(row['limits'])}"
        )


def _usage_lines(doc: dict[str, Any], reserved_known: bool) -> list[str]:
    lines = [f"limits counted: {doc['mode']}"]
    budget = doc["budget"]
    if budget is not None:
        since = f"since {budget['period_start']}, " if budget["period_start"] else ""
        resets = f"resets {budget['resets_at']}" if budget["resets_at"] else "never resets"
        reserved = f"${budget['reserved_usd']}" if reserved_known else "n/a (held in the server's memory)"
        lines.append(
            f"budget: ${budget['spend_usd']} spent of ${budget['limit_usd']} ({budget['period']}; {since}{resets})"
        )
        lines.append(f"reserved: {reserved}; remaining: ${budget['remaining_usd']}")
    else:
        lines.append("budget: none")
    for name, label in (("requests", "requests"), ("tokens", "tokens")):
        part = doc[name]
        limit = f" of {part['limit']} ({part['remaining']} left)" if part["limit"] is not None else " (no limit)"
        lines.append(f"{label} in the current minute: {part['used']}{limit}")
    if reserved_known:
        flight = doc["in_flight"]
        limit = f" of {flight['limit']}" if flight["limit"] is not None else " (no limit)"
        lines.append(f"in flight: {flight['used']}{limit}")
    if doc.get("expires_at"):
        lines.append(f"expires: {doc['expires_at']}{' (expired)' if doc['expired'] else ''}")
    return lines


@keys_app.command("usage")
def keys_usage(
    key_id: Annotated[int, typer.Argument(help="The key's id (gophergate keys list).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the usage as JSON (as GET /api/keys/ID/usage).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """A key's usage now: the current budget period's spend, reserved and remaining, and the requests and tokens of
    the current minute. With GOPHERGATE_REDIS_URL these are the cluster's live counters; without it, spend and the
    minute's counts are read from the request log (reservations live in the server's memory: see the dashboard)."""
    import orjson

    from gophergate.admin.services import keys
    from gophergate.core.errors import GatewayError
    from gophergate.gateway.governance import log_minute
    from gophergate.runtime import build_governance
    from gophergate.security.client_keys import KeyCache, policy_from_row

    settings = _settings(config)
    _migrate(settings)

    async def main(engine: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        key = await keys.get(engine, key_id)
        if key is None:
            return None
        expires = key["expires_at"]
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.UTC)
        governance = build_governance(settings, engine, KeyCache(engine))
        try:
            doc = await governance.usage("key", key_id, policy_from_row(key["limits"]), expires)
        finally:
            await governance.aclose()
        if governance.mode == "memory":
            doc = await log_minute(engine, doc)
        return key, doc

    try:
        found = _run(main, settings)
    except GatewayError as exc:
        raise _fail(f"cannot read the usage: {exc.message}", 1) from None
    if found is None:
        raise _fail(f"no key with id {key_id}", 1)
    key, doc = found
    if as_json:
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    team = f", team {key['team']['name']}" if key["team"] else ""
    typer.echo(f"key {key_id} ({key['name']}{team})")
    for line in _usage_lines(doc, reserved_known=doc["mode"] != "memory"):
        typer.echo("  " + line)


@teams_app.command("create")
def teams_create(
    name: Annotated[str, typer.Option("--name", help="The team's name (unique).")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    models: ModelsOption = None,
    max_tokens_cap: CapOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a team; its limits apply to the sum of its keys (docs/governance.md)."""
    from gophergate.admin.services import teams
    from gophergate.admin.services.limits import LimitError

    if not name.strip() or len(name) > 200:
        raise _fail("--name must be 1-200 characters")
    values = _limits(rpm, tpm, max_parallel, budget, budget_period, models, max_tokens_cap)
    settings = _settings(config)
    _migrate(settings)
    try:
        team_id = _run(lambda engine: teams.create(engine, name.strip(), values), settings, KEYS_CHANGED)
    except LimitError as exc:
        raise _limit_error(exc) from None
    except teams.TeamExists:
        raise _fail(f"a team named {name.strip()} already exists", 1) from None
    typer.echo(f"created team {name.strip()} (id {team_id})")


@teams_app.command("list")
def teams_list(config: ConfigOption = None) -> None:
    """List teams with their key counts and limits."""
    from gophergate.admin.services import teams

    settings = _settings(config)
    _migrate(settings)
    rows = _run(teams.list_all, settings)
    typer.echo(f"{'ID':>5}  {'NAME':<24} {'KEYS':>5}  LIMITS")
    for row in rows:
        typer.echo(f"{row['id']:>5}  {row['name'][:24]:<24} {row['keys']:>5}  {_limits_text(row['limits'])}")


@teams_app.command("update")
def teams_update(
    name: Annotated[str, typer.Argument(help="The team's name.")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    models: ModelsOption = None,
    max_tokens_cap: CapOption = None,
    config: ConfigOption = None,
) -> None:
    """Change a team's limits (flags not given are left as they are)."""
    from gophergate.admin.services import teams
    from gophergate.admin.services.limits import LimitError

    values = _limits(rpm, tpm, max_parallel, budget, budget_period, models, max_tokens_cap)
    if not values:
        raise _fail("give at least one limit flag (--rpm, --tpm, --max-parallel, --budget, --models, ...)")
    settings = _settings(config)
    _migrate(settings)
    team_id = _team_id(settings, name, "NAME")
    try:
        _run(lambda engine: teams.change(engine, team_id, values), settings, KEYS_CHANGED)
    except LimitError as exc:
        raise _limit_error(exc) from None
    typer.echo(f"updated team {name}")


@teams_app.command("delete")
def teams_delete(name: Annotated[str, typer.Argument(help="The team's name.")], config: ConfigOption = None) -> None:
    """Delete a team; refused while keys (revoked ones too) belong to it."""
    from gophergate.admin.services import teams

    settings = _settings(config)
    _migrate(settings)
    team_id = _team_id(settings, name, "NAME")
    try:
        _run(lambda engine: teams.remove(engine, team_id), settings, KEYS_CHANGED)
    except teams.TeamHasKeys as exc:
        raise _fail(
            f"team {name} still has {exc.count} key(s); move them out first (keys update ID --no-team)", 1
        ) from None
    typer.echo(f"deleted team {name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's ID (see `keys list`).")], config: ConfigOption = None
) -> None:
    """Revoke a client key; running servers refuse it within GOPHERGATE_KEY_REFRESH_SECONDS."""
    from gophergate.security.client_keys import revoke_key

    settings = _settings(config)
    _migrate(settings)
    if not _run(lambda engine: revoke_key(engine, key_id), settings, KEYS_CHANGED):
        typer.echo(f"error: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id}")


def _read_password(confirm: bool = True) -> str:
    """From a prompt (twice) on a terminal, else the first line of stdin; checked against the policy."""
    from gophergate.security.passwords import check_policy

    if sys.stdin.isatty():
        password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = check_policy(password)
    if problem is not None:
        typer.echo(f"error: the password {problem}", err=True)
        raise typer.Exit(2)
    return password


def _user_id(settings: Settings, username: str) -> int:
    from gophergate.security.users import find_user

    found = _run(lambda engine: find_user(engine, username), settings)
    if found is None:
        typer.echo(f"error: no user named {username}", err=True)
        raise typer.Exit(1)
    return int(found[0].id)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option("--username", help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="admin (everything) or viewer (read-only).")] = "viewer",
    config: ConfigOption = None,
) -> None:
    """Create a dashboard user; the password comes from a prompt, or from stdin when it is not a terminal."""
    from gophergate.security.passwords import hash_password
    from gophergate.security.users import ROLES, USERNAME, UserExists, create_user

    if role not in ROLES:
        typer.echo("error: --role must be admin or viewer", err=True)
        raise typer.Exit(2)
    if not USERNAME.fullmatch(username):
        typer.echo(
            "error: --username must be 1-100 letters, digits or . _ @ -, starting with a letter or digit", err=True
        )
        raise typer.Exit(2)
    settings = _settings(config)
    password = _read_password()
    _migrate(settings)

    async def main(engine: Any) -> Any:
        return await create_user(engine, username, await hash_password(password), role)

    try:
        row = _run(main, settings)
    except UserExists:
        typer.echo(f"error: a user named {username} already exists", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {role} {username} (id {row['id']})")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List dashboard users (never their password hashes)."""
    from gophergate.security.users import list_users

    settings = _settings(config)
    _migrate(settings)
    rows = _run(list_users, settings)
    typer.echo(f"{'ID':>5}  {'USERNAME':<24} {'ROLE':<7} CREATED")
    for row in reversed(rows):
        typer.echo(f"{row['id']:>5}  {row['username'][:24]:<24} {row['role']:<7} {row['created_at']:%Y-%m-%d %H:%M:%S}")


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="The user whose password changes.")], config: ConfigOption = None
) -> None:
    """Set a user's password (prompt, or stdin); their sessions end at once (within a second on running servers)."""
    from gophergate.security.passwords import hash_password
    from gophergate.security.users import update_user

    settings = _settings(config)
    _migrate(settings)
    user_id = _user_id(settings, username)
    password = _read_password()

    async def main(engine: Any) -> bool:
        return await update_user(engine, user_id, password_hash=await hash_password(password))

    _run(main, settings, {"what": "sessions", "user_id": user_id})
    typer.echo(f"password changed for {username}; their sessions are revoked")


@users_app.command("delete")
def users_delete(
    username: Annotated[str, typer.Argument(help="The user to delete.")], config: ConfigOption = None
) -> None:
    """Delete a user and revoke their sessions."""
    from gophergate.security.users import delete_user

    settings = _settings(config)
    _migrate(settings)
    user_id = _user_id(settings, username)
    _run(lambda engine: delete_user(engine, user_id), settings, {"what": "sessions", "user_id": user_id})
    typer.echo(f"deleted user {username}")


@registry_app.command("refresh")
def registry_refresh(config: ConfigOption = None) -> None:
    """Fetch the registry now (unconditionally) and save it; running servers load it within a minute. With
    GOPHERGATE_REDIS_URL the copy is also shared with the cluster: every instance loads it within a minute."""
    from gophergate.pricing.cluster import ClusterUnavailable, RegistryCluster
    from gophergate.pricing.registry import Registry

    settings = _settings(config)
    cluster = None
    if settings.redis_url is not None:
        from gophergate.limits.redis import connect

        cluster = RegistryCluster(
            connect(settings.redis_url.get_secret_value(), max_connections=4), settings.redis_key_prefix
        )
    registry = Registry(
        settings.registry_url, settings.data_dir, refresh_hours=settings.registry_refresh_hours, cluster=cluster
    )

    async def main() -> tuple[Any, str | None]:
        try:
            await asyncio.to_thread(registry.load_saved)
            result = await registry.refresh(force=True)
            shared = None
            if result.outcome != "failed" and registry.shares:
                try:
                    shared = "shared with the cluster" if await registry.publish() else None
                except ClusterUnavailable as exc:
                    shared = f"not shared with the cluster (Redis: {exc})"
            return result, shared
        finally:
            await registry.close()

    result, shared = asyncio.run(main())
    if result.outcome == "failed":
        typer.echo(f"error: registry refresh failed: {result.detail}; the saved copy is unchanged", err=True)
        raise typer.Exit(1)
    catalog = registry.catalog
    assert catalog is not None
    typer.echo(f"registry {result.outcome}: {catalog.model_count} models, snapshot {catalog.snapshot}")
    if shared is not None:
        typer.echo(f"registry copy {shared}", err=shared.startswith("not"))


@registry_app.command("show")
def registry_show(
    model: Annotated[str, typer.Argument(help="A model id, optionally provider-prefixed (openai/gpt-4o).")],
    config: ConfigOption = None,
) -> None:
    """Show the registry entry and the price a model resolves to (from the saved copy and overrides)."""
    from gophergate.pricing.overrides import from_config, load_overrides, merge, split_key
    from gophergate.pricing.pricebook import PriceBook
    from gophergate.pricing.registry import Registry

    settings = _settings(config)
    _migrate(settings)
    registry = Registry(settings.registry_url, settings.data_dir)
    catalog = registry.load_saved()
    table = _run(load_overrides, settings)
    known = _provider_names(settings)
    provider, bare = split_key(model, known)
    book = PriceBook(catalog, merge(from_config(settings.prices, known), table))
    if catalog is None:
        from gophergate.pricing.fallback import GenaiPrices

        book = PriceBook(None, book.overrides, fallback=GenaiPrices())
    priced = book.lookup(provider or None, bare)
    entry = priced.entry
    if entry is None:
        typer.echo(f"{model}: not in the registry ({book.source})")
    else:
        typer.echo(f"{model}: {entry.provider_id}/{entry.id} ({entry.name})")
        typer.echo(f"  context {entry.context_window}, max output {entry.max_output_tokens}")
        typer.echo(f"  input {','.join(entry.input_modalities)}; output {','.join(entry.output_modalities)}")
    if priced.price is None:
        typer.echo("  price: unknown (requests are logged with cost NULL and price_unknown)")
        return
    rates = ", ".join(f"{k} {format(v, 'f')}" for k, v in priced.price.table.base.as_dict().items())
    typer.echo(f"  price (USD per 1M tokens): {rates}  [{priced.price.source}]")
    for tier in priced.price.table.tiers:
        tier_rates = ", ".join(f"{k} {format(v, 'f')}" for k, v in tier.rates.as_dict().items())
        typer.echo(f"  prompt over {tier.size} tokens: {tier_rates}")
    if priced.price.discount is not None:
        d = priced.price.discount
        typer.echo(f"  discount {format(d.percent, 'f')}% until {d.until.isoformat()}")


def _provider_names(settings: Settings) -> tuple[str, ...]:
    from gophergate.providers.config import provider_names

    return provider_names(settings)


def _decimal_option(name: str, value: str | None, *, maximum: Decimal | None = None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0 or (maximum is not None and number > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        typer.echo(f"error: {name} must be a number >= 0{bound}", err=True)
        raise typer.Exit(2)
    return number


PriceOption = Annotated[str | None, typer.Option(help="USD per 1M tokens.")]


@prices_app.command("set")
def prices_set(
    model: Annotated[str, typer.Argument(help="provider/model, or a bare model for every provider.")],
    input: PriceOption = None,
    output: PriceOption = None,
    cache_read: PriceOption = None,
    cache_write: PriceOption = None,
    reasoning: PriceOption = None,
    discount: Annotated[str | None, typer.Option(help="Percent off every token class (0-100).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Discount end, exclusive: YYYY-MM-DD (midnight UTC) or an ISO datetime.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Set (replace) the price override of a model; running servers apply it within GOPHERGATE_PRICE_REFRESH_SECONDS."""
    from gophergate.pricing.catalog import Rates
    from gophergate.pricing.overrides import set_override, split_key, until_datetime

    settings = _settings(config)
    rates = Rates(
        _decimal_option("--input", input),
        _decimal_option("--output", output),
        _decimal_option("--cache-read", cache_read),
        _decimal_option("--cache-write", cache_write),
        _decimal_option("--reasoning", reasoning),
    )
    percent = _decimal_option("--discount", discount, maximum=Decimal(100))
    if (percent is None) != (until is None):
        typer.echo("error: --discount and --until go together", err=True)
        raise typer.Exit(2)
    if percent is not None and percent <= 0:
        typer.echo("error: --discount must be more than 0", err=True)
        raise typer.Exit(2)
    end: dt.datetime | None = None
    if until is not None:
        try:
            end = until_datetime(dt.datetime.fromisoformat(until) if "T" in until else dt.date.fromisoformat(until))
        except ValueError:
            typer.echo("error: --until must be YYYY-MM-DD or an ISO datetime", err=True)
            raise typer.Exit(2) from None
    if rates == Rates() and percent is None:
        typer.echo("error: give at least one price (--input, --output, ...) or a --discount", err=True)
        raise typer.Exit(2)
    known = _provider_names(settings)
    provider, bare = split_key(model, known)
    _migrate(settings)
    _run(
        lambda engine: set_override(engine, provider, bare, rates=rates, discount_percent=percent, discount_until=end),
        settings,
        PRICES_CHANGED,
    )
    typer.echo(f"price override set for {model}")


@prices_app.command("list")
def prices_list(config: ConfigOption = None) -> None:
    """List price overrides: the database's (set here) and the TOML file's."""
    from gophergate.pricing.overrides import from_config, load_overrides, merge

    settings = _settings(config)
    _migrate(settings)
    table = _run(load_overrides, settings)
    known = _provider_names(settings)
    merged = merge(from_config(settings.prices, known), table)
    if not merged:
        typer.echo("no price overrides")
        return
    for override in sorted(merged.values(), key=lambda o: o.key):
        parts = [f"{k} {format(v, 'f')}" for k, v in override.rates.as_dict().items()]
        if override.discount is not None:
            parts.append(
                f"discount {format(override.discount.percent, 'f')}% until {override.discount.until.isoformat()}"
            )
        typer.echo(f"{override.key:<40} {'; '.join(parts)}  ({override.origin})")


@prices_app.command("unset")
def prices_unset(
    model: Annotated[str, typer.Argument(help="provider/model or bare model, as given to `prices set`.")],
    config: ConfigOption = None,
) -> None:
    """Remove a price override set with `prices set` (TOML ones are edited in the file)."""
    from gophergate.pricing.overrides import split_key, unset_override

    settings = _settings(config)
    known = _provider_names(settings)
    provider, bare = split_key(model, known)
    _migrate(settings)
    if not _run(lambda engine: unset_override(engine, provider, bare), settings, PRICES_CHANGED):
        typer.echo(f"error: no price override for {model} in the database", err=True)
        raise typer.Exit(1)
    typer.echo(f"price override removed for {model}")


@app.command("init-env")
def init_env(path: Annotated[Path, typer.Option(help="The .env file to create or complete.")] = Path(".env")) -> None:
    """Write a fresh random GOPHERGATE_ENCRYPTION_KEY into PATH (mode 0600) unless one is set there."""
    existing = path.read_text() if path.exists() else ""
    if any(line.strip().startswith(f"{ENCRYPTION_KEY_VAR}=") for line in existing.splitlines()):
        typer.echo(f"{path}: {ENCRYPTION_KEY_VAR} already set", err=True)
        return
    line = f"{ENCRYPTION_KEY_VAR}={secrets.token_hex(32)}\n"
    text = existing + ("" if not existing or existing.endswith("\n") else "\n") + line
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    typer.echo(f"{path}: wrote a new {ENCRYPTION_KEY_VAR} (keep this file; it decrypts stored secrets)", err=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
