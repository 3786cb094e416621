"""Governance on /v1: a key's and its team's access rules and limits, checked in the issue's order.

1. expired key -> 401 ``key_expired``;
2. model not allowed (the key's patterns and the team's) -> 403 ``model_not_allowed``;
3. ``max_tokens`` above the cap -> 400 naming the field;
4. rpm / tpm / max_parallel -> 429 ``rate_limit_exceeded`` (type ``requests`` or ``tokens``) with ``retry-after``;
5. budget -> 429 type ``insufficient_quota``, code ``budget_exceeded``, with the period's reset time.

Steps 4 and 5 are one ``LimitsStore.admit`` (``gophergate.limits``): in process, or in Redis. A request of a key
or team with ``tpm`` or a budget reserves its worst case: its prompt counted locally (o200k) plus the output it
may produce (its own limit, else the cap, else the model's output limit) and what that costs at the routed
model's price. The record is settled once, when it is billed (``Metering``); the lease on ``max_parallel`` ends
when the request does. Keys and teams without limits skip all of it: one dict lookup per request.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import fnmatch
import functools
import itertools
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import case, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.core.errors import AuthenticationFailed, GatewayError, InvalidRequest
from gophergate.core.record import RequestRecord
from gophergate.db.tables import client_keys, request_log, rollup_table
from gophergate.limits import Admitted, Limits, LimitsStore, MemoryLimits, RateHeaders, Refused, Scope
from gophergate.limits import Usage as Usage_
from gophergate.limits.memory import UNSEEDED
from gophergate.limits.types import LimitsUnavailable
from gophergate.security.client_keys import KeyCache, Policy, Principal

log = logging.getLogger(__name__)

UNKNOWN_OUTPUT_LIMIT = 32_768  # tokens reserved for output when neither the request, the cap nor the registry says
_ZERO = Decimal(0)
_PICO = Decimal("1e-12")
_SPLIT = 1_000_000  # sums as (pUSD // 1e6, pUSD % 1e6): no 64-bit overflow in SQLite's SUM
SETTLE_DRAIN_SECONDS = 5.0
_COUNT_INLINE_CHARS = 32_768  # longer prompts are counted off the event loop's thread


@dataclass(frozen=True, slots=True)
class Rules:
    """What governs one key's requests (built once per key and team version, reused by every request)."""

    key: Scope
    team: Scope | None
    team_name: str | None
    patterns: tuple[tuple[re.Pattern[str], ...], ...]  # each non-empty list (key's, team's) must match
    cap: int | None  # the smaller of the key's and the team's max_tokens_cap
    expires_at: float | None
    counted: bool  # rpm, tpm, max_parallel or a budget applies: admission goes through the store
    needs_tokens: bool  # tpm or a budget applies: the prompt is counted
    budget: bool


def _limits(policy: Policy | None) -> Limits:
    if policy is None:
        return Limits()
    return Limits(
        rpm=policy.rpm,
        tpm=policy.tpm,
        max_parallel=policy.max_parallel,
        budget_usd=policy.budget_usd,
        budget_period=policy.budget_period or "total",  # type: ignore[arg-type]
    )


def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(p)) for p in patterns)


def build_rules(principal: Principal, team: Policy | None, team_name: str | None) -> Rules | None:
    key_policy = principal.policy
    if key_policy is None and team is None and principal.expires_at is None:
        return None
    key_limits, team_limits = _limits(key_policy), _limits(team)
    caps = [p.max_tokens_cap for p in (key_policy, team) if p is not None and p.max_tokens_cap is not None]
    patterns = tuple(_compile(p.allowed_models) for p in (key_policy, team) if p is not None and p.allowed_models)
    both = (key_limits, team_limits)
    counted = any(
        lim.rpm is not None or lim.tpm is not None or lim.max_parallel is not None or lim.budget_usd is not None
        for lim in both
    )
    return Rules(
        key=Scope("key", str(principal.key_id), key_limits),
        team=None if team is None or principal.team_id is None else Scope("team", str(principal.team_id), team_limits),
        team_name=team_name,
        patterns=patterns,
        cap=min(caps) if caps else None,
        expires_at=principal.expires_at,
        counted=counted,
        needs_tokens=any(lim.tpm is not None or lim.budget_usd is not None for lim in both),
        budget=any(lim.budget_usd is not None for lim in both),
    )


def reset_text(seconds: float) -> str:
    """A reset as OpenAI writes it: ``1s``, ``6m0s``, ``350ms`` (rounded up to the millisecond: never earlier than
    the real reset)."""
    return _reset_ms_text(max(0, math.ceil(seconds * 1000)))


def _reset_ms_text(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    minutes, rest = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"


_RESETS: dict[int, bytes] = {}  # ms -> the header value; windows are a minute, so at most ~60k of them


def _reset_bytes(seconds: float) -> bytes:
    ms = max(0, math.ceil(seconds * 1000))
    text = _RESETS.get(ms)
    if text is None:
        if len(_RESETS) >= 100_000:
            _RESETS.clear()
        text = _RESETS[ms] = _reset_ms_text(ms).encode()
    return text


def rate_headers(headers: RateHeaders, budget_remaining: Decimal | None) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if headers.limit_requests is not None:
        out.append((b"x-ratelimit-limit-requests", str(headers.limit_requests).encode()))
        out.append((b"x-ratelimit-remaining-requests", str(headers.remaining_requests).encode()))
        out.append((b"x-ratelimit-reset-requests", _reset_bytes(headers.reset_requests or 0.0)))
    if headers.limit_tokens is not None:
        out.append((b"x-ratelimit-limit-tokens", str(headers.limit_tokens).encode()))
        out.append((b"x-ratelimit-remaining-tokens", str(headers.remaining_tokens).encode()))
        out.append((b"x-ratelimit-reset-tokens", _reset_bytes(headers.reset_tokens or 0.0)))
    if budget_remaining is not None:
        out.append((b"x-gophergate-budget-remaining-usd", format(budget_remaining, "f").encode()))
    return out


def requested_output(data: dict[str, Any], fields: tuple[str, ...]) -> tuple[str, int] | None:
    """The output limit the request asks for: the largest of ``fields`` it sets (validated as integers before)."""
    found: tuple[str, int] | None = None
    for name in fields:
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and (found is None or value > found[1]):
            found = name, value
    return found


_SKIPPED_FIELDS = frozenset(("image_url", "type", "role", "input_audio", "file_data"))


def _texts(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                out.append(item)
            else:
                _texts(item, out)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name in _SKIPPED_FIELDS:
                continue
            if isinstance(item, str):
                if name != "url" or not item.startswith("data:"):
                    out.append(item)
            else:
                _texts(item, out)


def prompt_texts(prompt: Any, data: dict[str, Any]) -> list[str]:
    """Every text the request sends as input: its messages (``prompt``) and its tool definitions."""
    out: list[str] = []
    _texts(prompt, out)
    _texts(data.get("tools"), out)
    return out


class PromptCounter:
    """Counts prompt tokens with the o200k tokenizer, loaded on first need off the event loop (it costs ~150 MB
    and ~1 s). Until it is loaded, and if it cannot be, a text counts as its UTF-8 length: a token is at least
    one byte, so the count stays an upper bound. Counts of short texts are remembered (a system prompt, and every
    earlier turn of a conversation, come back with each request)."""

    PER_TEXT = 4  # framing tokens per message or part, as chat models count them
    CACHED_CHARS = 8192  # texts up to this long are remembered ...
    CACHE_SIZE = 4096  # ... this many of them (at most ~32 MB of text)

    def __init__(self) -> None:
        self._encode: Callable[[str], list[int]] | None = None
        self._cached: Callable[[str], int] | None = None
        self._loading: asyncio.Task[None] | None = None

    def warm(self) -> None:
        if self._encode is None and self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        try:
            from gophergate.gateway.estimate import _encoding

            encoding = await asyncio.to_thread(_encoding)
            encode = self._encode = encoding.encode_ordinary
            self._cached = functools.lru_cache(maxsize=self.CACHE_SIZE)(lambda text: len(encode(text)))
        except Exception:
            log.warning("the tokenizer could not be loaded: prompts are counted by their UTF-8 length", exc_info=True)

    def _count(self, texts: list[str]) -> int:
        encode, cached = self._encode, self._cached
        if encode is None or cached is None:
            return sum(len(t.encode()) + self.PER_TEXT for t in texts)
        limit = self.CACHED_CHARS
        return sum((cached(t) if len(t) <= limit else len(encode(t))) + self.PER_TEXT for t in texts)

    def count_now(self, texts: list[str]) -> int | None:
        """The count, made now; None when the texts are long enough to be counted off the loop (``count``)."""
        encode, cached = self._encode, self._cached
        if encode is None or cached is None:
            self.warm()
            return self._count(texts)
        total = size = 0
        limit = self.CACHED_CHARS
        for text in texts:
            length = len(text)
            size += length
            if size > _COUNT_INLINE_CHARS:
                return None
            total += (cached(text) if length <= limit else len(encode(text))) + self.PER_TEXT
        return total

    async def count_with_tokenizer(self, texts: list[str]) -> int:
        """The count once the tokenizer is loaded (an answer that is the count itself, not a bound for a limit:
        /v1/messages/count_tokens); the UTF-8 upper bound only if it cannot be loaded."""
        self.warm()
        loading = self._loading
        if loading is not None and not loading.done():
            await asyncio.shield(loading)
        return await self.count(texts)

    async def count(self, texts: list[str]) -> int:
        counted = self.count_now(texts)
        if counted is None:
            return await asyncio.to_thread(self._count, texts)
        return counted


def worst_rates(price: Any) -> tuple[Decimal, Decimal]:
    """USD per token: the highest input-side and output-side rates of any of the price's tiers, undiscounted. A
    request's tokens at these rates cost at least what they will be billed: an upper bound, two multiplications."""
    table = price.table
    tiers = [table.base, *(table.base.with_overrides(tier.rates) for tier in table.tiers)]
    inputs = [r for t in tiers for r in (t.input, t.cache_read, t.cache_write) if r is not None]
    outputs = [r for t in tiers for r in (t.output, t.reasoning) if r is not None]
    return max(inputs, default=_ZERO).scaleb(-6), max(outputs, default=_ZERO).scaleb(-6)


async def ledger_spend(engine: AsyncEngine, scope: Scope, start: dt.datetime | None) -> Decimal:
    """A key's or team's spend since ``start`` (None: ever), from the log's rollups: hour buckets from the first
    whole hour on, minute buckets before it (a period may start on a half hour). Exact (integer pico-USD). A
    team's spend is its current keys' spend."""
    hours, minutes = rollup_table("hour", "_client"), rollup_table("minute", "_client")
    if scope.kind == "key":
        keys: Any = [int(scope.id)]
    else:
        keys = select(client_keys.c.id).where(client_keys.c.team_id == int(scope.id)).scalar_subquery()
    total = 0
    async with engine.connect() as conn:
        parts: list[tuple[Any, dt.datetime | None, dt.datetime | None]]
        if start is None:
            parts = [(hours, None, None)]
        else:
            start = start.astimezone(dt.UTC)  # hour buckets are UTC hours
            first_hour = start.replace(minute=0, second=0, microsecond=0)
            if first_hour < start:
                first_hour += dt.timedelta(hours=1)
            parts = [(hours, first_hour, None), (minutes, start, first_hour)]
        for table, lo, hi in parts:
            if lo is not None and hi is not None and lo >= hi:
                continue
            query = select(func.sum(table.c.cost_pusd // _SPLIT), func.sum(table.c.cost_pusd % _SPLIT))
            query = query.where(table.c.client_key_id.in_(keys))
            if lo is not None:
                query = query.where(table.c.bucket >= lo)
            if hi is not None:
                query = query.where(table.c.bucket < hi)
            high, low = (await conn.execute(query)).one()
            total += int(high or 0) * _SPLIT + int(low or 0)
    return Decimal(total) * _PICO


def _refusal(refused: Refused, rules: Rules, extra: list[tuple[bytes, bytes]]) -> GatewayError:
    whose = f"team '{rules.team_name}'" if refused.scope == "team" else "this key"
    limits = (rules.team if refused.scope == "team" and rules.team is not None else rules.key).limits
    headers = {name.decode(): value.decode() for name, value in extra}
    if refused.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(refused.retry_after)))
    if refused.limit == "budget":
        budget = format(limits.budget_usd or _ZERO, "f")
        if refused.resets_at is not None:
            when = f"it resets at {refused.resets_at.isoformat().replace('+00:00', 'Z')}"
        else:
            when = "it is a total budget and does not reset"
        if refused.budget_remaining is not None and refused.budget_remaining > 0:
            message = (
                f"The {limits.budget_period} budget of {whose} (${budget}) is fully reserved by requests in flight; "
                f"retry shortly ({when})."
            )
        else:
            message = f"The {limits.budget_period} budget of {whose} (${budget}) is exhausted; {when}."
        return GatewayError(message, status=429, type="insufficient_quota", code="budget_exceeded", headers=headers)
    wait = "" if refused.retry_after is None else f" Retry after {max(1, math.ceil(refused.retry_after))} s."
    if refused.limit == "requests":
        message, kind = f"Rate limit reached for {whose}: {limits.rpm} requests per minute.{wait}", "requests"
    elif refused.limit == "tokens":
        message, kind = f"Rate limit reached for {whose}: {limits.tpm} tokens per minute.{wait}", "tokens"
    else:
        message, kind = f"Too many requests in flight for {whose}: at most {limits.max_parallel}.{wait}", "requests"
    return GatewayError(message, status=429, type=kind, code="rate_limit_exceeded", headers=headers)


# A limit's name (limits/types.py) as the metrics' reason.
_REASONS = {"requests": "rpm", "tokens": "tpm", "parallel": "in_flight", "budget": "budget"}


def _unavailable() -> GatewayError:
    return GatewayError(
        "The gateway cannot check this key's limits right now; retry shortly.",
        status=503,
        type="server_error",
        code="limits_unavailable",
        headers={"retry-after": "1"},
    )


class Governance:
    """Checks and counts /v1 requests against their key's and team's rules (see the module)."""

    def __init__(
        self,
        store: LimitsStore,
        keys: KeyCache,
        *,
        mode: str,
        unknown_price: Literal["deny", "allow"] = "deny",
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.mode = mode  # memory | redis (for /readyz and the usage pages)
        self._keys = keys
        self._unknown_price = unknown_price
        self._now = now
        self._rules: dict[int, tuple[Principal, Policy | None, Rules | None]] = {}
        self._memory = store if isinstance(store, MemoryLimits) else None
        self._pending: set[asyncio.Task[None]] = set()  # releases on their way to the store
        self._rates: dict[int, tuple[Any, Decimal, Decimal]] = {}
        # Admission ids: unique per process (a random prefix) and cluster (the random part is 64 bits).
        self._instance = f"{secrets.token_hex(8)}-"
        self._tickets = itertools.count(1)  # id(price) -> (price, input, output per token)
        self.counter = PromptCounter()
        self.settle_failures = 0
        # Requests refused, by reason (the limit, or the rule): read by the metrics (telemetry/metrics.py).
        self.refusals: collections.Counter[str] = collections.Counter()

    # -- the request path -------------------------------------------------------------------------------------
    def rules(self, principal: Principal) -> Rules | None:
        """The key's rules (None: nothing governs it); 401 ``key_expired`` once its expiry has passed."""
        team = None if principal.team_id is None else self._keys.teams.get(principal.team_id)
        cached = self._rules.get(principal.key_id)
        if cached is not None and cached[0] is principal and cached[1] is team:
            rules = cached[2]
        elif cached is not None and cached[0] == principal and cached[1] == team:
            # The key cache re-read an unchanged row (its poll has a margin): same rules, new objects.
            rules = cached[2]
            self._rules[principal.key_id] = (principal, team, rules)
        else:
            name = None if principal.team_id is None else self._keys.team_names.get(principal.team_id)
            rules = build_rules(principal, team, name)
            self._rules[principal.key_id] = (principal, team, rules)
            if rules is not None and rules.needs_tokens:
                self.counter.warm()
        if rules is not None and rules.expires_at is not None and self._now() >= rules.expires_at:
            when = dt.datetime.fromtimestamp(rules.expires_at, dt.UTC).isoformat().replace("+00:00", "Z")
            self.refusals["key_expired"] += 1
            raise AuthenticationFailed(f"This API key expired at {when}.", code="key_expired")
        return rules

    @staticmethod
    def allows(rules: Rules, requested: str, provider: str, model: str) -> bool:
        """The key (and its team) may use the model: its name as asked, ``provider/model`` or the bare id matches
        one of each rule set's patterns."""
        if not rules.patterns:
            return True
        names = (requested, f"{provider}/{model}", model)
        return all(any(p.match(name) for p in patterns for name in names) for patterns in rules.patterns)

    def check(
        self, rules: Rules, data: dict[str, Any], requested: str, provider: str, model: str, fields: tuple[str, ...]
    ) -> None:
        """Steps 2 and 3: the model, the output limit. A request without one gets the cap as its limit."""
        if rules.patterns and not self.allows(rules, requested, provider, model):
            self.refusals["model_not_allowed"] += 1
            raise GatewayError(
                f"This key may not use the model '{requested}'.",
                status=403,
                type="invalid_request_error",
                code="model_not_allowed",
                param="model",
            )
        if rules.cap is not None and fields:
            asked = requested_output(data, fields)
            if asked is None:
                data[fields[0]] = rules.cap
            elif asked[1] > rules.cap:
                self.refusals["max_tokens"] += 1
                raise InvalidRequest(
                    f"'{asked[0]}' is {asked[1]}, above this key's limit of {rules.cap} output tokens.",
                    param=asked[0],
                    code="max_tokens_exceeded",
                )

    async def admit(
        self,
        record: RequestRecord,
        rules: Rules,
        data: dict[str, Any],
        prompt: Any,
        fields: tuple[str, ...],
        price: Any,
        output_limit: int | None,
    ) -> list[tuple[bytes, bytes]] | None:
        """Steps 4 and 5: the rate-limit headers of every answer to the admitted request; None when nothing is
        counted. Raises the refusal."""
        if not rules.counted:
            return None
        tokens = 0
        cost = _ZERO
        if rules.needs_tokens:
            if rules.budget and price is None and self._unknown_price == "deny":
                self.refusals["unpriced_model"] += 1
                raise GatewayError(
                    f"The model '{record.requested_model}' has no known price, and this key has a budget: it cannot "
                    "be used until a price is set (or GOPHERGATE_BUDGET_UNKNOWN_PRICE=allow).",
                    status=403,
                    type="invalid_request_error",
                    code="budget_unpriced_model",
                    param="model",
                )
            texts = prompt_texts(prompt, data)
            counted = self.counter.count_now(texts)
            prompt_tokens = counted if counted is not None else await self.counter.count(texts)
            asked = requested_output(data, fields) if fields else None
            output = 0 if not fields else asked[1] if asked else rules.cap or output_limit or UNKNOWN_OUTPUT_LIMIT
            choices = data.get("n")
            if output and isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
                output *= choices  # each choice may produce the whole output
            tokens = prompt_tokens + output
            if price is not None:
                rates = self._rates.get(id(price))
                if rates is None or rates[0] is not price:
                    if len(self._rates) > 4096:
                        self._rates.clear()
                    rates = self._rates[id(price)] = (price, *worst_rates(price))
                cost = rates[1] * prompt_tokens + rates[2] * output
        try:
            ticket = f"{self._instance}{next(self._tickets)}"
            memory = self._memory
            result: Admitted | Refused
            if memory is not None:  # decided now, without a coroutine, unless a budget's spend must be loaded
                now = memory.admit_now(ticket, rules.key, rules.team, tokens=tokens, cost=cost)
                if now is UNSEEDED:
                    result = await memory.admit(ticket, rules.key, rules.team, tokens=tokens, cost=cost)
                else:
                    result = now  # type: ignore[assignment]
            else:
                result = await self.store.admit(ticket, rules.key, rules.team, tokens=tokens, cost=cost)
        except LimitsUnavailable:
            raise _unavailable() from None
        except Exception:
            log.warning("admitting request %s against its limits failed", record.request_id, exc_info=True)
            raise _unavailable() from None
        headers = rate_headers(result.headers, result.budget_remaining)
        if isinstance(result, Refused):
            self.refusals[_REASONS[result.limit]] += 1
            raise _refusal(result, rules, headers)
        record.admission = ticket
        return headers

    # -- the end of a request (Metering) ------------------------------------------------------------------------
    def settle(self, record: RequestRecord) -> None:
        """Replace the request's reservations with its real tokens and cost (once; never blocks)."""
        ticket = record.admission
        if ticket is None:
            return
        record.admission = None
        tokens = record.prompt_tokens + record.completion_tokens
        cost = record.cost_usd or _ZERO
        if record.prior_cost:  # earlier attempts of a routed request (usually nothing: they failed before tokens)
            cost += record.prior_cost
        self.store.settle_nowait(ticket, tokens=tokens, cost=cost)

    def release(self, record: RequestRecord) -> None:
        """End the request's in-flight lease now; its settle comes later (its tokens are being estimated)."""
        ticket = record.admission
        if ticket is None:
            return
        if self._memory is not None:
            self._memory.release_now(ticket)
            return
        self._spawn(self.store.release(ticket))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._quietly(coro))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _quietly(self, coro: Any) -> None:
        try:
            await coro
        except Exception:
            self.settle_failures += 1
            log.warning("settling a request's limits failed; its reservation expires on its own", exc_info=True)

    async def close(self) -> None:
        """Wait (a little) for the settles still on their way to the store, then close its connections."""
        waiting = [*self._pending, asyncio.ensure_future(self.store.drain())]
        _, late = await asyncio.wait(waiting, timeout=SETTLE_DRAIN_SECONDS)
        for task in late:
            task.cancel()
        await self.aclose()

    async def aclose(self) -> None:
        closing = getattr(self.store, "aclose", None)
        if closing is not None:
            try:
                await closing()
            except Exception:
                log.warning("closing the limits store failed", exc_info=True)

    def status(self) -> dict[str, Any]:
        """Where the counters live, for /readyz: ``memory`` (this process), ``redis``, or ``redis-unavailable``
        (Redis did not answer the last call: per ``GOPHERGATE_LIMITS_ON_REDIS_ERROR``, refused or counted here)."""
        degraded = bool(getattr(self.store, "degraded", False))
        failures = self.settle_failures + self.store.settle_failures
        return {"mode": f"{self.mode}-unavailable" if degraded else self.mode, "settle_failures": failures}

    # -- usage (admin API) ---------------------------------------------------------------------------------------
    async def usage(
        self, kind: Literal["key", "team"], ident: int, policy: Policy | None, expires_at: dt.datetime | None = None
    ) -> dict[str, Any]:
        """A key's or team's usage now, as ``GET /api/keys/{id}/usage`` answers it (see ``usage_document``)."""
        scope = Scope(kind, str(ident), _limits(policy))
        try:
            usage = await self.store.usage(scope)
        except Exception:
            log.warning("reading the usage of %s %s failed", kind, ident, exc_info=True)
            raise _unavailable() from None
        return usage_document(scope, usage, self.status()["mode"], expires_at, self._now())


async def log_minute(engine: AsyncEngine, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with this minute's requests and tokens read from the request log (rows written in the last 60 s):
    what a process without the live counters (the CLI, without Redis) can say."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    column = request_log.c.client_key_id
    if doc["scope"] == "key":
        where = column == doc["id"]
    else:
        where = column.in_(select(client_keys.c.id).where(client_keys.c.team_id == doc["id"]).scalar_subquery())
    # A retried request has a row per attempt: it counts once (its final row), its tokens are every attempt's.
    c = request_log.c
    requests = func.count(case((c.final.is_(true()), 1)))
    query = select(requests, func.sum(c.prompt_tokens + c.completion_tokens)).where(where, c.created_at >= since)
    async with engine.connect() as conn:
        count, tokens = (await conn.execute(query)).one()
    out = dict(doc)
    for name, used in (("requests", int(count or 0)), ("tokens", int(tokens or 0))):
        limit = doc[name]["limit"]
        out[name] = {"limit": limit, "used": used, "remaining": None if limit is None else max(0, limit - used)}
    return out


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize() if value else _ZERO, "f")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def usage_document(
    scope: Scope, usage: Usage_, mode: str, expires_at: dt.datetime | None, now: float
) -> dict[str, Any]:
    """Requests and tokens in the current minute, requests in flight, and the budget's current period."""
    limits = scope.limits
    budget = None
    if limits.budget_usd is not None:
        budget = {
            "limit_usd": _money(limits.budget_usd),
            "period": limits.budget_period,
            "spend_usd": _money(usage.spend),
            "reserved_usd": _money(usage.reserved),
            "remaining_usd": _money(max(usage.remaining or _ZERO, _ZERO)),
            "period_start": _iso(usage.period_start),
            "resets_at": _iso(usage.resets_at),
        }
    return {
        "scope": scope.kind,
        "id": int(scope.id),
        "mode": mode,
        "requests": {
            "limit": limits.rpm,
            "used": usage.requests,
            "remaining": None if limits.rpm is None else max(0, limits.rpm - usage.requests),
        },
        "tokens": {
            "limit": limits.tpm,
            "used": usage.tokens,
            "remaining": None if limits.tpm is None else max(0, limits.tpm - usage.tokens),
        },
        "in_flight": {"limit": limits.max_parallel, "used": usage.in_flight},
        "budget": budget,
        "expires_at": _iso(expires_at),
        "expired": expires_at is not None and expires_at.timestamp() <= now,
    }
