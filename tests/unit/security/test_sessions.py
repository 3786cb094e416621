from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.engine import create_engine
from gophergate.db.migrate import upgrade
from gophergate.security.sessions import Claims, SessionManager
from gophergate.security.users import User, create_user, update_user


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}"
    await asyncio.to_thread(upgrade, url)
    eng = create_engine(url)
    yield eng
    await eng.dispose()


async def _user(engine: AsyncEngine, name: str = "alice") -> User:
    row = await create_user(engine, name, "$2b$04$notarealhash", "admin")
    return User(row["id"], name, "admin")


def _manager(engine: AsyncEngine, key: bytes, idle: float = 60, max_s: float = 3600) -> SessionManager:
    return SessionManager(engine, key, idle_seconds=idle, max_seconds=max_s)


async def test_a_fresh_token_verifies_and_carries_the_claims(engine: AsyncEngine) -> None:
    mgr = _manager(engine, os.urandom(32))
    user = await _user(engine)
    token, session = await mgr.create(user, "127.0.0.1", "pytest")
    claims = mgr.decode(token)
    assert claims is not None and claims.user_id == user.id and claims.session_id == session.id
    assert len(session.id) == 32 and int(session.id, 16) >= 0
    assert claims.expires_at - claims.issued_at == 3600
    verified = await mgr.verify(token)
    assert verified is not None and verified.user == user and verified.csrf_token == session.csrf_token


async def test_tampered_and_foreign_tokens_are_refused(engine: AsyncEngine) -> None:
    key = os.urandom(32)
    mgr = _manager(engine, key)
    token, _ = await mgr.create(await _user(engine), None, None)
    payload, sig = token.split(".")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["u"] = 999
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()
    assert await mgr.verify(f"{forged_payload}.{sig}") is None
    assert await mgr.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert await _manager(engine, os.urandom(32)).verify(token) is None
    assert await mgr.verify("") is None and await mgr.verify("a.b.c") is None


async def test_an_expired_token_is_refused_even_with_a_good_signature(engine: AsyncEngine) -> None:
    mgr = _manager(engine, os.urandom(32))
    user = await _user(engine)
    _, session = await mgr.create(user, None, None)
    old = mgr.issue(Claims(user.id, session.id, 1, 2))
    assert await mgr.verify(old) is None


async def test_revocation_is_immediate_in_this_process(engine: AsyncEngine) -> None:
    mgr = _manager(engine, os.urandom(32))
    token, session = await mgr.create(await _user(engine), None, None)
    assert await mgr.verify(token) is not None
    await mgr.revoke(session.id)
    assert await mgr.verify(token) is None


async def test_another_process_sees_a_revocation_within_a_second(engine: AsyncEngine) -> None:
    key = os.urandom(32)
    here, there = _manager(engine, key), _manager(engine, key)
    user = await _user(engine)
    token, _ = await here.create(user, None, None)
    assert await there.verify(token) is not None
    await update_user(engine, user.id, password_hash="$2b$04$changed")  # a password change elsewhere
    await asyncio.sleep(SessionManager.RECHECK_SECONDS + 0.05)
    assert await there.verify(token) is None


async def test_idle_sessions_expire_and_activity_slides_the_window(engine: AsyncEngine) -> None:
    mgr = _manager(engine, os.urandom(32), idle=0.6)
    token, _ = await mgr.create(await _user(engine), None, None)
    for _ in range(3):
        await asyncio.sleep(0.3)
        assert await mgr.verify(token) is not None
    await asyncio.sleep(0.8)
    assert await mgr.verify(token) is None


async def test_csrf_token_is_bound_to_the_session(engine: AsyncEngine) -> None:
    mgr = _manager(engine, os.urandom(32))
    assert mgr.check_csrf("a" * 32, mgr.csrf_token("a" * 32))
    assert not mgr.check_csrf("a" * 32, mgr.csrf_token("b" * 32))
    assert not mgr.check_csrf("a" * 32, None)
