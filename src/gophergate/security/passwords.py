"""Dashboard passwords: bcrypt with work factor 12 (~200 ms per hash or check), always off the event loop."""

from __future__ import annotations

import asyncio

import bcrypt

ROUNDS = 12
MIN_LENGTH = 8
MAX_BYTES = 72  # bcrypt reads at most 72 bytes; longer passwords are refused rather than silently cut


def check_policy(password: str) -> str | None:
    """Why a password is unacceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password.encode()) > MAX_BYTES:
        return f"must be at most {MAX_BYTES} bytes (UTF-8)"
    return None


def hash_password_sync(password: str, rounds: int = ROUNDS) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def check_password_sync(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # a malformed hash, or a password past 72 bytes
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password, ROUNDS)


async def verify_password(password: str, hashed: str | None) -> bool:
    """Constant work whether or not the user exists: an unknown user is checked against a dummy hash."""
    target = hashed if hashed is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(check_password_sync, password, target)
    return ok and hashed is not None


# A valid cost-12 hash of a random password, so "no such user" costs what a wrong password costs.
_DUMMY_HASH = "$2b$12$YiWVTv2qvKwByvK7zmRrIuhR46JCmAGdegTue7p5Nylc5hTq7Go.a"
