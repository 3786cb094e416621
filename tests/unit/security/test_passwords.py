from __future__ import annotations

import time

import bcrypt

from gophergate.security import passwords


def test_production_hashes_use_work_factor_12() -> None:
    assert passwords.ROUNDS == 12
    assert passwords._DUMMY_HASH.startswith("$2b$12$")


async def test_hash_and_verify_off_the_event_loop() -> None:
    hashed = await passwords.hash_password("correct horse")
    assert hashed.startswith("$2b$12$")
    assert await passwords.verify_password("correct horse", hashed)
    assert not await passwords.verify_password("wrong horse!", hashed)


async def test_an_unknown_user_costs_a_full_check_and_never_verifies() -> None:
    started = time.perf_counter()
    assert not await passwords.verify_password("anything", None)
    assert time.perf_counter() - started > 0.05  # a real cost-12 bcrypt check ran


def test_lower_level_helper_accepts_explicit_rounds() -> None:
    hashed = passwords.hash_password_sync("pw-for-tests", rounds=4)
    assert bcrypt.checkpw(b"pw-for-tests", hashed.encode())
    assert passwords.check_password_sync("pw-for-tests", hashed)
    assert not passwords.check_password_sync("pw-for-tests", "not a hash")


def test_policy_refuses_short_and_overlong_passwords() -> None:
    assert passwords.check_policy("short") is not None
    assert passwords.check_policy("x" * 73) is not None
    assert passwords.check_policy("long enough") is None
