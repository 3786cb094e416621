"""A routed request: a model group's targets tried in the router's order, with retries, fallbacks and a stream
hold-back, one log row per attempt.

Each attempt is a call to one target. One that fails with a class the group retries on (``retry_on``) before
anything reached the client is retried on the same target (``retries`` times, backing off with jitter, honouring
``retry-after`` up to ``[routing] max_retry_after_s``), then the next target is tried; a ``context_window_exceeded``
goes to the next target at once. Anything else (a client error, a refused provider key) is the answer.

A stream is held back until its first content-bearing event (text, reasoning, a tool call, the end of the answer):
what came before it (role-only and empty deltas, a Responses stream's opening events) stays in the gateway, so a
failure, a cut or ``first_token_timeout_s`` within that window moves on and the client sees one clean stream from
the target that succeeded. Once content has reached the client nothing is replayed: a later failure ends the
stream with an error event, as for a plain model.

Every attempt is a row (``attempt`` 1..n, only the last ``final``); a failed attempt that produced nothing costs
nothing. The limits admission made for the request moves to each new attempt's record and is settled once, on the
final row, with the sum of the attempts' costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import orjson

from gophergate.core.calls import ChatCall, Conversation, EndpointCall, Meter
from gophergate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gophergate.core.record import RequestRecord
from gophergate.gateway.endpoints import EndpointSpec
from gophergate.gateway.governance import Rules, prompt_texts, requested_output
from gophergate.gateway.resolve import Route
from gophergate.gateway.router import Facts, Group, Router
from gophergate.http.disconnect import unless_disconnected
from gophergate.http.io import client_headers

if TYPE_CHECKING:
    from gophergate.http.v1 import V1
    from gophergate.runtime import Routing

log = logging.getLogger(__name__)

SEP = "\x1f"
HOLD_EVENTS = 64  # a stream's events held back before its first content, at most ...
HOLD_BYTES = 256 * 1024  # ... and their bytes; past either, the stream is released (and no longer fails over)
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 4.0


class _Retry(Exception):
    """An attempt failed before anything reached the client, with a class the group acts on."""

    def __init__(self, error: GatewayError, retry_after: float | None) -> None:
        self.error = error
        self.retry_after = retry_after


def retry_after_seconds(error: GatewayError) -> float | None:
    """The upstream's ``retry-after`` (seconds, or ``retry-after-ms``), when it sent one."""
    headers = error.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def backoff(retry: int, rng: random.Random) -> float:
    """The wait before retry number ``retry`` (1, 2, ...) of a target: from 0.25 s doubling, at most 4 s, with full
    jitter over its upper half."""
    ceiling: float = min(BACKOFF_START_S * 2.0 ** (retry - 1), BACKOFF_MAX_S)
    return ceiling / 2 + rng.random() * ceiling / 2


def has_content(chunk: bytes) -> bool:
    """A chunk of a translated stream (OpenAI chat SSE, Responses or Anthropic Messages events) carries content:
    text, reasoning, a tool call, a refusal, the answer's end or its usage. Role-only and empty deltas, the opening
    events of a Responses or Messages stream (``message_start``, ``content_block_start``, ``ping``) and error events
    do not."""
    for line in chunk.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        try:
            event = orjson.loads(line[6:])
        except orjson.JSONDecodeError:
            return True  # not ours to judge: release it
        if not isinstance(event, dict) or "error" in event:
            continue
        kind = event.get("type")
        if isinstance(kind, str):  # a Responses API event
            if kind not in _RESPONSES_PREAMBLE:
                return True
            continue
        choices = event.get("choices")
        if not choices:
            if event.get("usage"):
                return True
            continue
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                return True
            delta = choice.get("delta")
            if isinstance(delta, dict) and any(delta.get(name) for name in _CONTENT_FIELDS):
                return True
    return False


_CONTENT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls", "refusal", "function_call", "audio")
_RESPONSES_PREAMBLE = frozenset(
    (
        "message_start",  # Anthropic Messages events (/v1/messages)
        "content_block_start",
        "ping",
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.failed",
        "error",
    )
)


Candidates = tuple[list[tuple[Route, float]], list[Route]]


class _CandidateCache:
    """``_candidates``' answers for the current routing snapshot only (a new snapshot empties it, so an old one is
    never kept alive by it)."""

    def __init__(self) -> None:
        self.routing: Routing | None = None
        self.entries: dict[tuple[int, int, Any], tuple[Group, Candidates]] = {}


_CACHE = _CandidateCache()


def _candidates(routing: Routing, group: Group, targets: tuple[Any, ...], capability: type | None) -> Candidates:
    """The targets (with weights) and fallbacks of a group that this routing snapshot can call for an endpoint:
    resolved, served by a configured provider that has the endpoint, not switched off. Worked out once per
    snapshot, group, target list and endpoint (copies are returned: the caller may filter them)."""
    cache = _CACHE
    if cache.routing is not routing:
        cache.routing = routing
        cache.entries = {}
    key = (id(group), id(targets), capability)
    cached = cache.entries.get(key)
    if cached is not None and cached[0] is group:
        weighted, fallbacks = cached[1]
        return list(weighted), list(fallbacks)
    resolver = routing.resolver

    def callable_(name: str) -> Route | None:
        try:
            route = resolver.resolve_target(name)
        except ModelNotFound:
            return None
        if routing.disabled_models and (route.provider, route.model) in routing.disabled_models:
            return None
        provider = routing.providers.get(route.provider)
        if provider is None or (capability is not None and not isinstance(provider, capability)):
            return None
        return route

    weighted = [(route, t.weight) for t in targets if (route := callable_(t.model)) is not None]
    fallbacks = [route for name in group.fallbacks if (route := callable_(name)) is not None]
    if len(cache.entries) >= 4096:  # plain names under [routing]'s defaults are groups of their own
        cache.entries = {}
    cache.entries[key] = (group, (weighted, fallbacks))
    return list(weighted), list(fallbacks)


def header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _hold(chunks: AsyncIterator[bytes]) -> tuple[list[bytes], bool]:
    """Read the stream until its first content (or the hold bounds): (held chunks, the stream ended)."""
    held: list[bytes] = []
    size = 0
    iterator = chunks.__aiter__()
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return held, True
        held.append(chunk)
        size += len(chunk)
        if has_content(chunk) or len(held) >= HOLD_EVENTS or size >= HOLD_BYTES:
            return held, False


async def _open_and_hold(opening: Awaitable[AsyncIterator[bytes]]) -> tuple[AsyncIterator[bytes], list[bytes], bool]:
    """The stream opened and read up to its first content: (the stream, held chunks, it ended already)."""
    chunks = await opening
    try:
        held, ended = await _hold(chunks)
    except BaseException:
        await _aclose(chunks)
        raise
    return chunks, held, ended


async def _aclose(chunks: Any) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


class RoutedRequest:
    """One client request routed over a group: ``run`` tries the plan's targets and finishes every attempt's row.
    It never raises but a cancellation (the gateway stopping)."""

    def __init__(
        self,
        v1: V1,
        scope: Any,
        receive: Any,
        send: Any,
        spec: EndpointSpec,
        record: RequestRecord,
        data: dict[str, Any],
        rules: Rules | None,
        checked: Any,
        prompt: Any,
        route: Route,
        routing: Routing,
        body_size: int,
    ) -> None:
        assert route.group is not None
        self.v1 = v1
        self.scope = scope
        self.conversation: Conversation | None = None  # /v1/responses: set by the caller
        self.receive = receive
        self.send = send
        self.spec = spec
        self.record = record
        self.data = data
        self.rules = rules
        self.checked = checked
        self.prompt = prompt
        self.group: Group = route.group
        self.routing = routing
        self.body_size = body_size  # the request body's bytes: a bound on its prompt tokens
        self.meter: Meter | None = None
        self.call: ChatCall | EndpointCall | None = None
        self.stream: bool = checked[1]
        self.pin: str | None = None  # the affinity pin of this request, when the group has affinity
        record.model_group = self.group.name

    # -- the plan ---------------------------------------------------------------------------------------------
    async def _prompt_tokens(self, output: int) -> int:
        """The prompt's tokens, counted exactly only when something depends on the figure: a rule on it, the cost
        strategy, or a target whose context window the body's size does not fit (a token is at least one byte of
        the text, and the text is inside the body). So a group of short prompts never loads the tokenizer."""
        group = self.group
        if not group.count_tokens:
            smallest = self.routing.resolver.smallest_window(group)
            if smallest is None or self.body_size + output <= smallest:
                return self.body_size
        return await self.v1.rt.governance.counter.count(prompt_texts(self.prompt, self.data))

    def _output(self) -> int:
        fields = self.spec.output_fields
        asked = requested_output(self.data, fields) if fields else None
        return asked[1] if asked else 0

    async def plan(self) -> list[Route]:
        """The targets to try, in order (see ``gateway/router.py``); raises when none can serve the request."""
        group, routing, router = self.group, self.routing, self.v1.rt.router
        output = self._output()
        tokens = await self._prompt_tokens(output)
        facts = Facts(self.data, self.prompt, tokens) if group.rules or group.strategy == "cost" else None
        targets = group.targets
        if facts is not None:
            for rule in group.rules:
                if rule.matches(facts):
                    targets = rule.targets
                    break
        candidates, fallbacks = _candidates(routing, group, targets, self.spec.capability)
        rules = self.rules
        allowed = rules is not None and rules.patterns
        smallest = routing.resolver.smallest_window(group)
        fits = smallest is None or tokens + output <= smallest  # every target's window holds the request
        too_small: list[Route] = []

        def usable(route: Route) -> bool:
            if rules is not None and rules.patterns:
                requested = self.record.requested_model or ""
                if not self.v1.rt.governance.allows(rules, requested, route.provider, route.model):
                    return False
            if not fits:
                window = route.entry.context_window if route.entry is not None else None
                if window and tokens + output > window:
                    too_small.append(route)
                    return False
            return True

        if allowed or not fits:
            candidates = [(route, weight) for route, weight in candidates if usable(route)]
            fallbacks = [route for route in fallbacks if usable(route)]
        ordered = router.order(group.strategy, candidates, facts, output)
        if fallbacks:
            seen = {(r.provider, r.model) for r in ordered}
            for route in fallbacks:
                if (route.provider, route.model) not in seen:
                    seen.add((route.provider, route.model))
                    ordered.append(route)
        if not ordered:
            if too_small:
                raise InvalidRequest(
                    f"The request's {tokens} prompt tokens (plus {output} for the output) do not fit "
                    f"the context window of any target of '{self.record.requested_model}'.",
                    param="messages",
                    code="context_length_exceeded",
                )
            raise ModelNotFound(
                f"No target of the model '{self.record.requested_model}' can serve this request on this gateway.",
                param="model",
            )
        open_ = [r for r in ordered if router.available((r.provider, r.model))]
        if not open_:  # every target is cooling down: the one whose cooldown ends first
            open_ = [min(ordered, key=lambda r: router.cooling_ends((r.provider, r.model)))]
        if group.affinity != "none" and len(open_) > 1:
            self.pin = self._pin_key()
            if self.pin is not None:
                shared = router.shared
                pinned = await shared.pinned(self.pin) if shared is not None else router.pinned(self.pin)
                if pinned is not None:  # its target first, while it is open; else the pin moves with the answer
                    for index, route in enumerate(open_):
                        if (route.provider, route.model) == pinned:
                            open_.insert(0, open_.pop(index))
                            break
        elif group.affinity != "none":
            self.pin = self._pin_key()
        return open_

    def _pin_key(self) -> str | None:
        """The affinity pin: per group and client key, the session (``x-gophergate-session``, else the request's
        ``user``) or a hash of the request's stable prefix (tools, system prompt, first user message)."""
        group, data = self.group, self.data
        owner = f"{group.name}{SEP}{self.record.client_key_id or 0}{SEP}"
        if group.affinity == "session":
            session = header(self.scope, b"x-gophergate-session") or data.get("user")
            if not isinstance(session, str) or not session:
                return None
            return owner + "s" + hashlib.blake2b(session.encode(), digest_size=16).hexdigest()
        messages = self.prompt if isinstance(self.prompt, list) else []
        system = [m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")]
        first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        stable = [data.get("tools"), data.get("instructions"), system, first_user]
        digest = hashlib.blake2b(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
        return owner + "p" + digest

    # -- the attempts -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        rt = self.v1.rt
        router: Router = rt.router
        group = self.group
        max_wait = rt.settings.routing.max_retry_after_s
        try:
            try:
                plan = await self.plan()
            except GatewayError as exc:
                await self.v1._failed(self.send, exc, self.record, None)
                return
            last: _Retry | None = None
            for route in plan:
                key = (route.provider, route.model)
                for retry in range(group.retries + 1):
                    probe = router.claim(key)
                    try:
                        if probe and router.shared is not None and not await router.shared.acquire_probe(key):
                            router.ended(key, False)  # another process or instance probes it: the next target
                            break
                        if last is not None:
                            wait = 0.0
                            if retry > 0:
                                wait = backoff(retry, router.rng)
                                if last.retry_after is not None:
                                    wait = max(wait, last.retry_after)
                            self._next_record()
                            rt.metrics.attempted_again(retry > 0)
                            if wait:
                                await unless_disconnected(self.receive, asyncio.sleep(wait))
                    except BaseException:
                        router.ended(key, probe)
                        raise
                    try:
                        await self._attempt(route, router, probe)
                        return
                    except _Retry as failed:
                        last = failed
                        error = failed.error
                        v1_fail(self.record, error)
                        if error.error_class == "context_window_exceeded":
                            break  # the next target, at once
                        if failed.retry_after is not None and failed.retry_after > max_wait:
                            break  # waiting that long is worse than another target
            if last is None:  # every target was being probed elsewhere: the first one anyway
                route = plan[0]
                key = (route.provider, route.model)
                try:
                    await self._attempt(route, router, router.claim(key))
                    return
                except _Retry as failed:
                    last = failed
                    v1_fail(self.record, failed.error)
            assert last is not None
            await self.v1._failed(self.send, last.error, self.record, self.meter)
        except asyncio.CancelledError:
            from gophergate.http.v1 import _stopped

            await _stopped(self.send, self.record)
            raise
        except Exception as exc:
            await self.v1._failed(self.send, exc, self.record, self.meter)
        finally:
            self._finish(self.record)

    def _next_record(self) -> None:
        """Finish the failed attempt's row and start the next one's."""
        old = self.record
        self.record = old.next_attempt(time.perf_counter())
        meter = self.meter
        if meter is not None:  # a failed attempt that produced nothing is not estimated (it costs nothing)
            meter.output_text.clear()
            meter.output_events = []
        self._finish(old)
        if old.cost_usd:
            self.record.prior_cost = (old.prior_cost or 0) + old.cost_usd
        elif old.prior_cost:
            self.record.prior_cost = old.prior_cost
        self.meter = None
        self.call = None

    def _finish(self, record: RequestRecord) -> None:
        call = self.call
        self.v1.rt.metering.finish(record, self.meter, self.prompt, call.priced if call is not None else None)

    async def _attempt(self, route: Route, router: Router, probe: bool) -> None:
        """One call to ``route``: returns when the answer (or a final error) went to the client; raises ``_Retry``
        when it failed before anything did, with a class the group acts on."""
        record, spec, group = self.record, self.spec, self.group
        record.provider, record.model, record.served_by = route.provider, route.model, route.served_by
        price = record.price = route.price
        provider = self.routing.providers[route.provider]
        limit = route.entry.max_output_tokens if route.entry is not None else None
        data = dict(self.data)  # each attempt's own copy: a provider may change the body it is given
        call = self.call = spec.make_call(
            data,
            route.model,
            record.request_id,
            self.checked,
            price.cost if price is not None else None,
            limit,
            client_headers(self.scope, spec.forwarded_headers) if spec.forwarded_headers else None,
            self.conversation,
            route.entry.reasoning if route.entry is not None else None,
        )
        meter = self.meter = Meter()
        if record.trace is not None:
            record.trace.call(record)
        key = (route.provider, route.model)
        started = time.perf_counter()
        try:
            if not self.stream:
                try:
                    body = await unless_disconnected(self.receive, spec.call(provider, call, meter))
                except GatewayError as exc:
                    raise self._retry_or_raise(exc, key, router) from None
                self._succeeded(router, key, started)
                await self.v1._answer(self.send, record, meter, body, call.cost)
                return
            assert spec.open_stream is not None
            timeout = group.first_token_timeout_s
            opening = _open_and_hold(spec.open_stream(provider, call, meter))
            try:
                if timeout is None:
                    chunks, held, ended = await unless_disconnected(self.receive, opening)
                else:
                    async with asyncio.timeout(timeout):
                        chunks, held, ended = await unless_disconnected(self.receive, opening)
            except TimeoutError:
                error = UpstreamTimeout(
                    f"Upstream provider '{route.provider}' sent no content within {timeout:g} s "
                    "(first_token_timeout_s).",
                    error_class="timeout",
                )
                raise self._retry_or_raise(error, key, router) from None
            except GatewayError as exc:
                raise self._retry_or_raise(exc, key, router) from None
            if ended and meter.stream_error is not None:  # it failed before any content: nothing was sent
                failure = UpstreamUnavailable(
                    meter.stream_error,
                    code="upstream_stream_error",
                    error_class=meter.stream_error_class,  # type: ignore[arg-type]
                )
                outcome = self._retry_or_raise(failure, key, router)
                if isinstance(outcome, _Retry):
                    raise outcome
                # Not a class the group acts on: relayed as a plain model's stream is (its error event).
            else:
                self._succeeded(router, key, started)
            prefix = b"".join(held)  # what was held back goes first, in one write
            await self.v1._relay(
                self.send, self.receive, record, meter, chunks, done=spec.ends_with_done, prefix=prefix
            )
        finally:
            router.ended(key, probe)

    def _succeeded(self, router: Router, key: tuple[str, str], started: float) -> None:
        router.succeeded(key, time.perf_counter() - started)
        pin = self.pin
        if pin is not None:  # pinned (or refreshed) to the target that answered
            ttl = self.group.affinity_ttl_s
            if router.shared is not None:
                router.shared.pin(pin, key, ttl)
            else:
                router.pin(pin, key, ttl)

    def _retry_or_raise(self, error: GatewayError, key: tuple[str, str], router: Router) -> Exception:
        """What a failed attempt leads to: ``_Retry`` for a class the group acts on (the target's failure is
        counted towards its cooldown), else the error itself (the client's answer)."""
        kind = error.error_class
        if kind is None or (kind not in self.group.retry_on and kind != "context_window_exceeded"):
            return error
        retry_after = retry_after_seconds(error)
        router.failed(key, kind, retry_after, kind in self.group.retry_on)
        return _Retry(error, retry_after)


def v1_fail(record: RequestRecord, error: GatewayError) -> None:
    record.status = error.status
    record.error_type = error.code or error.type
    record.error_message = error.message
    record.error_class = error.error_class
