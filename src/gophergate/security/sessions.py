"""Dashboard sessions: a signed token in an HttpOnly cookie naming a server-side row.

Token: ``base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))``, the payload carrying the
user id, the session id (128 random bits), the issue time and the absolute expiry. The signing key is derived
from the encryption key (HMAC with a fixed label), so the raw key never signs anything itself.

The signature and the expiry are checked without I/O; the row decides the rest (revoked, user gone, idle for
too long). Rows are cached per process and re-read at most once a second per session, so a revocation is
immediate in the process that made it and reaches every other process or worker within about a second. The
sliding idle expiry is written back at those re-reads (at most one UPDATE per session per second).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.tables import sessions, users
from gophergate.security.users import User, role_of

SESSION_LABEL = b"gophergate/session-signing/v1"
CSRF_LABEL = b"gophergate/csrf/v1"
MAX_TOKEN_LENGTH = 512


def derive_key(master: bytes, label: bytes) -> bytes:
    return hmac.new(master, label, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    session_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: User
    csrf_token: str
    expires_at: dt.datetime  # absolute end of the session


@dataclass(slots=True)
class _Cached:
    user: User
    expires_at: float  # epoch seconds (absolute)
    last_seen: float  # epoch seconds, this process's latest knowledge
    stored_last_seen: float  # what the row says
    checked: float  # monotonic time of the last row read


def _epoch(value: dt.datetime) -> float:
    return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).timestamp()


def _at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class SessionManager:
    RECHECK_SECONDS = 1.0
    CACHE_MAX = 10_000

    def __init__(self, engine: AsyncEngine, master_key: bytes, *, idle_seconds: float, max_seconds: float) -> None:
        self._engine = engine
        self._sign_key = derive_key(master_key, SESSION_LABEL)
        self._csrf_key = derive_key(master_key, CSRF_LABEL)
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._cache: dict[str, _Cached] = {}

    # -- tokens (no I/O) --------------------------------------------------------------------------------------
    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._sign_key, payload.encode(), hashlib.sha256).digest())

    def issue(self, claims: Claims) -> str:
        payload = _b64(
            orjson.dumps(
                {"u": claims.user_id, "s": claims.session_id, "iat": claims.issued_at, "exp": claims.expires_at}
            )
        )
        return f"{payload}.{self._signature(payload)}"

    def decode(self, token: str) -> Claims | None:
        """The claims of a token signed with this key, or None (malformed, forged or tampered)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._signature(payload).encode(), signature.encode()):
            return None
        try:
            data: Any = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        uid, sid, iat, exp = data.get("u"), data.get("s"), data.get("iat"), data.get("exp")
        if not (isinstance(uid, int) and isinstance(sid, str) and isinstance(iat, int) and isinstance(exp, int)):
            return None
        return Claims(uid, sid, iat, exp)

    def csrf_token(self, session_id: str) -> str:
        """Bound to the session (never stored): the dashboard echoes it in ``X-CSRF-Token``."""
        return _b64(hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).digest())

    def check_csrf(self, session_id: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf_token(session_id).encode(), presented.encode())

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def create(self, user: User, ip: str | None, user_agent: str | None) -> tuple[str, Session]:
        now = time.time()
        sid = os.urandom(16).hex()
        expires = now + self.max_seconds
        async with self._engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=sid,
                    user_id=user.id,
                    created_at=_at(now),
                    last_seen_at=_at(now),
                    expires_at=_at(expires),
                    ip=(ip or None) and ip[:64],
                    user_agent=(user_agent or None) and user_agent[:300],
                )
            )
        self._remember(sid, _Cached(user, expires, now, now, time.monotonic()))
        token = self.issue(Claims(user.id, sid, int(now), int(expires)))
        return token, Session(sid, user, self.csrf_token(sid), _at(expires))

    async def verify(self, token: str) -> Session | None:
        """The live session a token names, or None: forged, tampered, expired, idle, revoked or user deleted."""
        claims = self.decode(token)
        if claims is None:
            return None
        now = time.time()
        if claims.expires_at <= now:
            return None
        sid = claims.session_id
        entry = self._cache.get(sid)
        if entry is None or time.monotonic() - entry.checked >= self.RECHECK_SECONDS:
            entry = await self._reload(sid, entry, now)
            if entry is None:
                self._cache.pop(sid, None)
                return None
        if entry.user.id != claims.user_id or entry.expires_at <= now or now - entry.last_seen > self.idle_seconds:
            self._cache.pop(sid, None)
            return None
        entry.last_seen = now
        return Session(sid, entry.user, self.csrf_token(sid), _at(entry.expires_at))

    async def _reload(self, sid: str, previous: _Cached | None, now: float) -> _Cached | None:
        query = (
            select(
                sessions.c.last_seen_at,
                sessions.c.expires_at,
                sessions.c.revoked_at,
                users.c.id,
                users.c.username,
                users.c.role,
            )
            .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
            .where(sessions.c.id == sid)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.revoked_at is not None:
            return None
        stored = _epoch(row.last_seen_at)
        last_seen = max(stored, previous.last_seen if previous is not None else stored)
        entry = _Cached(
            User(int(row.id), str(row.username), role_of(row.role)), _epoch(row.expires_at), last_seen, stored, 0.0
        )
        if now - last_seen > self.idle_seconds:
            return None
        if last_seen > stored:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(sessions)
                    .where(sessions.c.id == sid, sessions.c.last_seen_at < _at(last_seen))
                    .values(last_seen_at=_at(last_seen))
                )
            entry.stored_last_seen = last_seen
        entry.checked = time.monotonic()
        self._remember(sid, entry)
        return entry

    def _remember(self, sid: str, entry: _Cached) -> None:
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        self._cache[sid] = entry

    async def revoke(self, session_id: str) -> None:
        self._cache.pop(session_id, None)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(sessions)
                .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
                .values(revoked_at=_at(time.time()))
            )

    async def revoke_user(self, user_id: int) -> None:
        """Every session of a user (password changed, user deleted)."""
        self.forget_user(user_id)
        await revoke_user_sessions(self._engine, user_id)

    def forget(self, session_id: str) -> None:
        """Drop one cached session (revoked elsewhere), so its next use re-reads it."""
        self._cache.pop(session_id, None)

    def forget_user(self, user_id: int) -> None:
        """Drop cached rows of a user, so the next request re-reads them (role changed)."""
        for sid in [sid for sid, entry in self._cache.items() if entry.user.id == user_id]:
            self._cache.pop(sid, None)


async def revoke_user_sessions(engine: AsyncEngine, user_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
            .values(revoked_at=_at(time.time()))
        )
