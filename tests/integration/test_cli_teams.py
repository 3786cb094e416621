"""`gophergate teams ...` and the limits flags of `keys create|update`, run as the real command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import Gateway


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)  # not started: only its command line and database are used


def _row(listing: str, name: str) -> str:
    return next(line for line in listing.splitlines() if f" {name} " in line)


def _fails(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_teams_and_key_limits_round_trip_through_the_cli(tmp_path: Path, database_url: str) -> None:
    gw = Gateway(tmp_path, database_url=database_url)  # on SQLite and on PostgreSQL
    made = gw.cli(
        "teams", "create", "--name", "research", "--tpm", "40000", "--budget", "100", "--budget-period", "month"
    )
    assert "created team research" in made.stdout
    assert "tpm 40000; $100/month" in _row(gw.cli("teams", "list").stdout, "research")

    key = gw.cli(
        "keys", "create", "--name", "notebook", "--team", "research", "--rpm", "30", "--max-parallel", "2",
        "--budget", "5.5", "--budget-period", "week", "--models", "gpt-4o*, anthropic/*", "--max-tokens-cap", "4096",
        "--expires", "2030-01-31T18:00:00+01:00",
    )  # fmt: skip
    assert key.stdout.strip().startswith("sk-gg-")
    key_id = key.stderr.split()[2]
    row = _row(gw.cli("keys", "list").stdout, "notebook")
    assert " research " in row and "2030-01-31 17:00" in row
    assert "rpm 30; parallel 2; cap 4096; $5.5/week; models gpt-4o*,anthropic/*" in row
    assert key.stdout.strip() not in gw.cli("keys", "list").stdout
    assert _row(gw.cli("teams", "list").stdout, "research").split()[2] == "1"  # ID NAME KEYS

    refused = gw.cli("teams", "delete", "research", check=False)
    _fails(refused, 1, "research", "1 key")
    assert " research " in gw.cli("teams", "list").stdout

    gw.cli("teams", "update", "research", "--tpm", "none", "--rpm", "600", "--budget", "0")
    assert _row(gw.cli("teams", "list").stdout, "research").endswith("rpm 600")

    gw.cli(
        "keys",
        "update",
        key_id,
        "--no-team",
        "--rpm",
        "0",
        "--models",
        "none",
        "--no-expiry",
        "--budget-period",
        "total",
    )
    row = _row(gw.cli("keys", "list").stdout, "notebook")
    assert " research " not in row and row.endswith("parallel 2; cap 4096; $5.5/total")

    gw.cli("keys", "update", key_id, "--team", "research", "--expires", "2031-06-01")
    row = _row(gw.cli("keys", "list").stdout, "notebook")
    assert " research " in row and "2031-06-01 00:00" in row
    gw.cli("keys", "update", key_id, "--no-team")
    assert "deleted team research" in gw.cli("teams", "delete", "research").stdout
    assert " research " not in gw.cli("teams", "list").stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("keys", "create", "--name", "k", "--rpm", "abc"), "--rpm"),
        (("keys", "create", "--name", "k", "--tpm", "1.5"), "--tpm"),
        (("keys", "create", "--name", "k", "--max-parallel", "-3"), "--max-parallel"),
        (("keys", "create", "--name", "k", "--max-tokens-cap", "lots"), "--max-tokens-cap"),
        (("keys", "create", "--name", "k", "--budget", "-1", "--budget-period", "day"), "--budget"),
        (("keys", "create", "--name", "k", "--budget", "5"), "--budget-period"),
        (("keys", "create", "--name", "k", "--budget-period", "day"), "--budget"),
        (("keys", "create", "--name", "k", "--budget", "5", "--budget-period", "year"), "--budget-period"),
        (("keys", "create", "--name", "k", "--expires", "tomorrow"), "--expires"),
        (("keys", "create", "--name", "k", "--team", "nobody"), "--team"),
        (("keys", "update", "1", "--team", "a", "--no-team"), "--team"),
        (("keys", "update", "1", "--expires", "2030-01-01", "--no-expiry"), "--expires"),
        (("teams", "create", "--name", "t", "--rpm", "0.5"), "--rpm"),
        (("teams", "update", "nobody", "--rpm", "5"), "nobody"),
    ],
)
def test_bad_limit_flags_exit_2_with_one_line_naming_the_flag(gw: Gateway, args: tuple[str, ...], flag: str) -> None:
    _fails(gw.cli(*args, check=False), 2, flag)
    listing = gw.cli(args[0], "list").stdout  # and nothing was created
    assert not [line for line in listing.splitlines()[1:] if line.split()[1] in ("k", "t")]


def test_team_names_are_unique_and_an_unknown_key_is_an_error(gw: Gateway) -> None:
    gw.cli("teams", "create", "--name", "ops")
    _fails(gw.cli("teams", "create", "--name", "ops", check=False), 1, "ops", "already exists")
    _fails(gw.cli("keys", "update", "424242", "--rpm", "5", check=False), 1, "424242")
