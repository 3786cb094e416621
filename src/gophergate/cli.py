"""Command line: ``gophergate serve|migrate|keys|init-env``. Wiring only; the logic lives in the packages."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
import sys
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
    """``serve`` migrates in a child process: the server's main process (which forks the workers) then never
    imports SQLAlchemy and Alembic, and stays small."""
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
    """Apply migrations, then serve the gateway (Granian, uvloop)."""
    settings = _settings(config, host=host, port=port, workers=workers)
    from gophergate.providers.config import provider_configs

    try:
        provider_configs(settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _migrate_in_subprocess()
    # Workers read their settings from the environment: hand the command-line overrides over that way.
    os.environ["GOPHERGATE_HOST"] = settings.host
    os.environ["GOPHERGATE_PORT"] = str(settings.port)
    # Replace this process with Granian's own launcher: the supervising process then holds only Granian
    # (~32 MB instead of ~46 MB with this CLI and pydantic loaded), and signals reach Granian directly.
    argv = [
        sys.executable, "-m", "granian",
        "--interface", "asgi",
        "--loop", "uvloop",
        "--factory",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", str(settings.workers),
        "--log-level", settings.log_level,
        "--backlog", "2048",
        "gophergate.app:factory",
    ]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


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


def _run(coro_factory: Any, settings: Settings) -> Any:
    from gophergate.db.engine import create_engine

    async def main() -> Any:
        engine = create_engine(settings.resolved_database_url)
        try:
            return await coro_factory(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key (who or what uses it).")],
    config: ConfigOption = None,
) -> None:
    """Create a client key and print it once (only its SHA-256 is stored)."""
    from gophergate.security.client_keys import create_key

    if not name.strip() or len(name) > 200:
        typer.echo("error: --name must be 1-200 characters", err=True)
        raise typer.Exit(2)
    settings = _settings(config)
    _migrate(settings)
    key_id, key = _run(lambda engine: create_key(engine, name.strip()), settings)
    typer.echo(f"created key {key_id} ({name.strip()}); it is shown only this once:", err=True)
    typer.echo(key)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List client keys (never the keys themselves)."""
    from gophergate.security.client_keys import list_keys

    settings = _settings(config)
    _migrate(settings)
    rows = _run(list_keys, settings)
    typer.echo(f"{'ID':>5}  {'NAME':<24} {'KEY':<16} {'CREATED':<20} STATUS")
    for row in rows:
        status = "revoked " + row["revoked_at"].strftime("%Y-%m-%d %H:%M") if row["revoked_at"] else "active"
        created = row["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{row['id']:>5}  {row['name'][:24]:<24} {row['key_hint']:<16} {created:<20} {status}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's ID (see `keys list`).")], config: ConfigOption = None
) -> None:
    """Revoke a client key; running servers refuse it within GOPHERGATE_KEY_REFRESH_SECONDS."""
    from gophergate.security.client_keys import revoke_key

    settings = _settings(config)
    _migrate(settings)
    if not _run(lambda engine: revoke_key(engine, key_id), settings):
        typer.echo(f"error: no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id}")


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
