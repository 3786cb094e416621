"""Thin /v1 handlers: authenticate, parse, route, call the provider, relay, and record exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from decimal import Decimal
from typing import Any

import orjson

from gophergate.core.asgi import Scope
from gophergate.core.calls import ChatCall, Conversation, EndpointCall, Meter
from gophergate.core.context import REQUEST_ID
from gophergate.core.errors import (
    ClientDisconnected,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    UnsupportedEndpoint,
)
from gophergate.core.record import RequestRecord
from gophergate.gateway.endpoints import (
    ENDPOINTS,
    GATEWAY_RESPONSE_PREFIX,
    MESSAGES,
    RESPONSES,
    EndpointSpec,
    check_count_tokens,
    count_message_tokens,
)
from gophergate.gateway.governance import Rules
from gophergate.gateway.resolve import Route
from gophergate.gateway.validate import check_model_length, parse_json_object
from gophergate.http.auth import authenticate
from gophergate.http.disconnect import unless_disconnected
from gophergate.http.io import base_headers, client_headers, read_body, request_id, send_bytes, send_error
from gophergate.http.relay import relay_stream
from gophergate.http.routed import RoutedRequest
from gophergate.runtime import Runtime

log = logging.getLogger(__name__)

OVERHEAD = b"x-gophergate-overhead-ms"
COST = b"x-gophergate-cost-usd"
ATTEMPTS = b"x-gophergate-attempts"
SERVED_BY = b"x-gophergate-served-by"
MODEL_GROUP = b"x-gophergate-model-group"
_COUNTS = [str(n).encode() for n in range(64)]
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def _overhead(record: RequestRecord, meter: Meter | None, now: float) -> bytes:
    total = now - record.started
    if meter is not None and meter.upstream_started is not None:
        total -= (meter.upstream_done or meter.upstream_headers or now) - meter.upstream_started
    return f"{max(total, 0.0) * 1000.0:.3f}".encode()


def _client_ip(scope: Scope) -> str | None:
    """The client's address (behind a trusted reverse proxy, the one it forwarded: ``http/forwarded.py``)."""
    client = scope.get("client")
    return client[0] if client else None


def _route_headers(headers: list[tuple[bytes, bytes]], record: RequestRecord) -> None:
    """x-gophergate-attempts, -served-by (once a target was called) and -model-group (for a group)."""
    attempt = record.attempt
    headers.append((ATTEMPTS, _COUNTS[attempt] if attempt < 64 else str(attempt).encode()))
    if record.served_by is not None:
        headers.append((SERVED_BY, record.served_by))
    if record.model_group is not None:
        headers.append((MODEL_GROUP, record.model_group.encode()))


def _fail(record: RequestRecord, error: GatewayError) -> None:
    record.status = error.status
    record.error_type = error.code or error.type
    record.error_message = error.message
    record.error_class = error.error_class


def _disabled(model: str) -> ModelNotFound:
    return ModelNotFound(f"The model '{model}' is disabled on this gateway by an administrator.", param="model")


def _number(value: Decimal) -> orjson.Fragment:
    return orjson.Fragment(format(value, "f").encode())


def _model_object(public: str, created: int, route: Route) -> dict[str, Any]:
    """An OpenAI model object, with the registry's limits, modalities, capabilities and prices beside it."""
    obj: dict[str, Any] = {"id": public, "object": "model", "created": created, "owned_by": route.provider}
    entry = route.entry
    if entry is not None:
        obj["context_window"] = entry.context_window
        obj["max_output_tokens"] = entry.max_output_tokens
        obj["modalities"] = {"input": list(entry.input_modalities), "output": list(entry.output_modalities)}
        obj["capabilities"] = {
            "tools": entry.tool_call,
            "reasoning": entry.reasoning,
            "vision": entry.vision,
            "structured_output": entry.structured_output,
        }
    price = route.price
    if price is None:
        obj["pricing"] = None
        return obj
    pricing: dict[str, Any] = {"currency": "USD", "unit": "per 1M tokens"}
    pricing.update({name: _number(value) for name, value in price.table.base.as_dict().items()})
    if price.table.tiers:
        pricing["tiers"] = [
            {"above_prompt_tokens": tier.size, **{n: _number(v) for n, v in tier.rates.as_dict().items()}}
            for tier in price.table.tiers
        ]
    discount = price.discount
    if discount is not None and discount.factor_at(dt.datetime.now(dt.UTC)) is not None:
        pricing["discount"] = {"percent": _number(discount.percent), "until": discount.until.isoformat()}
    pricing["source"] = price.source
    obj["pricing"] = pricing
    return obj


class V1:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/v1/messages/count_tokens":
            if method == "POST":
                await self.count_tokens(scope, receive, send)
            else:
                await self._simple(scope, receive, send, "messages.count_tokens", self._not_allowed)
        elif (spec := ENDPOINTS.get(path)) is not None:
            if method == "POST":
                await self.endpoint(scope, receive, send, spec)
            else:
                await self._simple(scope, receive, send, spec.name, self._not_allowed)
        elif path.startswith("/v1/responses/"):
            await self._simple(scope, receive, send, "responses.retrieve", self._stored_response)
        elif path == "/v1/models":
            await self._simple(scope, receive, send, "models.list", self._list_models)
        elif path.startswith("/v1/models/"):
            await self._simple(scope, receive, send, "models.retrieve", self._get_model)
        else:
            await self._simple(scope, receive, send, "unknown", self._unknown)

    # -- chat completions, embeddings, images, responses -------------------------------------------------------
    async def endpoint(self, scope: Scope, receive: Any, send: Any, spec: EndpointSpec) -> None:
        """The one path of every POST endpoint: admit -> validate -> resolve -> capability -> call or stream ->
        send, and one record, finished by the metering step in ``finally``."""
        rt = self.rt
        record = RequestRecord(request_id(scope), spec.name, time.perf_counter(), client_ip=_client_ip(scope))
        REQUEST_ID.set(record.request_id)
        meter: Meter | None = None
        call: ChatCall | EndpointCall | None = None
        prompt: Any = None
        try:
            if rt.tracing is not None:
                record.trace = rt.tracing.begin(scope, spec.name)
            data, rules, size = await self._admit(scope, receive, record)
            checked = spec.check(data)
            model, stream, _ = checked
            record.requested_model = model
            record.stream = stream
            prompt = spec.prompt(data)
            routing = rt.routing  # one configuration for the whole request
            route = routing.resolver.resolve(model)
            record.provider, record.model = route.provider, route.model
            group = route.group
            if group is None:
                if routing.disabled_models and (route.provider, route.model) in routing.disabled_models:
                    raise _disabled(model)
                provider = routing.providers[route.provider]
                if spec.capability is not None and not isinstance(provider, spec.capability):
                    raise UnsupportedEndpoint(
                        f"Provider '{route.provider}' (serving model '{model}') does not support {spec.path}.",
                        param="model",
                    )
            price = record.price = route.price
            limit = route.entry.max_output_tokens if route.entry is not None else None
            if rules is not None:
                governance = rt.governance
                governance.check(rules, data, model, route.provider, route.model, spec.output_fields)
                record.limit_headers = await governance.admit(
                    record, rules, data, prompt, spec.output_fields, price, limit
                )
            conversation = await self._conversation(data, record) if spec is RESPONSES else None
            if group is not None:  # a model group: its attempts finish their own records
                routed = RoutedRequest(
                    self, scope, receive, send, spec, record, data, rules, checked, prompt, route, routing, size
                )
                routed.conversation = conversation
                record = None  # type: ignore[assignment]
                await routed.run()
                return
            record.served_by = route.served_by
            call = spec.make_call(
                data,
                route.model,
                record.request_id,
                checked,
                price.cost if price is not None else None,
                limit,
                client_headers(scope, spec.forwarded_headers) if spec.forwarded_headers else None,
                conversation,
                route.entry.reasoning if route.entry is not None else None,
            )
            meter = Meter()
            if record.trace is not None:
                record.trace.call(record)
            if not stream:
                body = await unless_disconnected(receive, spec.call(provider, call, meter))
                await self._answer(send, record, meter, body, call.cost)
            else:
                assert spec.open_stream is not None
                chunks = await unless_disconnected(receive, spec.open_stream(provider, call, meter))
                await self._relay(send, receive, record, meter, chunks, done=spec.ends_with_done)
        except Exception as exc:
            await self._failed(send, exc, record, meter)
        except asyncio.CancelledError:
            if record is not None:
                await _stopped(send, record)
            raise
        finally:
            if record is not None:  # None: a routed request, which finished its records itself
                rt.metering.finish(record, meter, prompt, call.priced if call is not None else None)

    async def _conversation(self, data: dict[str, Any], record: RequestRecord) -> Conversation:
        """What a /v1/responses call keeps, and the conversation so far when ``previous_response_id`` names a
        response the gateway made (one a Responses API upstream made is that upstream's to find)."""
        store = self.rt.responses
        key_id = record.client_key_id
        previous = data.get("previous_response_id")
        history = None
        if previous is not None:
            if not isinstance(previous, str) or not previous or len(previous) > 64:
                raise InvalidRequest(
                    "'previous_response_id' must be the id of an earlier response.", param="previous_response_id"
                )
            # One of the gateway's may be a moment from the database when another instance made it; an upstream's
            # id is looked up once (it is not there) and passed on.
            recent = previous.startswith(GATEWAY_RESPONSE_PREFIX)
            stored = await store.load(previous, key_id, wait_for_recent=recent)
            if stored is not None:
                history = stored.messages
        keep = None
        if data.get("store") is not False and key_id is not None:
            keep = functools.partial(store.keep, key_id)
        return Conversation(history, keep)

    async def _stored_response(self, scope: Scope, record: RequestRecord) -> tuple[int, Any]:
        """GET / DELETE /v1/responses/{id}: a response the gateway made and kept, for the key that made it."""
        response_id = scope["path"][len("/v1/responses/") :]
        method = scope["method"]
        if method not in ("GET", "DELETE"):
            raise MethodNotAllowed(f"Method {method} is not allowed on {scope['path']}; use GET or DELETE.")
        if "/" in response_id or not 0 < len(response_id) <= 64:
            raise NotFound(f"Unknown endpoint: {method} {scope['path']}.")
        store = self.rt.responses
        if method == "DELETE":
            if await store.delete(response_id, record.client_key_id):
                return 200, {"id": response_id, "object": "response.deleted", "deleted": True}
        else:
            stored = await store.load(response_id, record.client_key_id)
            if stored is not None:
                return 200, stored.response
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id", code="not_found")

    async def count_tokens(self, scope: Scope, receive: Any, send: Any) -> None:
        """POST /v1/messages/count_tokens (Claude Code calls it to decide when to compact): the input tokens of a
        Messages request as its model's backend counts them, else the local count (gateway/endpoints.py). Never a
        404: a model the gateway does not serve gets the local estimate; a model group is counted on its first
        target."""
        rt = self.rt
        record = RequestRecord(
            request_id(scope), "messages.count_tokens", time.perf_counter(), client_ip=_client_ip(scope)
        )
        REQUEST_ID.set(record.request_id)
        try:
            data, rules, _ = await self._admit(scope, receive, record)
            model = check_count_tokens(data)
            record.requested_model = model
            routing = rt.routing
            try:
                route: Route | None = routing.resolver.resolve(model)
            except ModelNotFound:  # counted all the same: an agent that gets no count cannot tell when to compact
                route = None
            provider = None
            upstream_model = model
            if route is not None:
                record.provider, record.model = route.provider, route.model
                if route.group is None and (route.provider, route.model) in routing.disabled_models:
                    raise _disabled(model)
                if rules is not None:
                    rt.governance.check(rules, data, model, route.provider, route.model, ())
                provider, upstream_model = routing.providers[route.provider], route.model
            headers = client_headers(scope, MESSAGES.forwarded_headers)
            count, how = await count_message_tokens(provider, data, upstream_model, headers, rt.governance.counter)
            record.status = 200
            out = base_headers(record.request_id)
            out.append((b"x-gophergate-token-count", how.encode()))
            out.append((OVERHEAD, _overhead(record, None, time.perf_counter())))
            await send_bytes(send, 200, orjson.dumps({"input_tokens": count}), out)
        except Exception as exc:
            await self._failed(send, exc, record, None)
        finally:
            rt.metering.finish(record, None, None)

    async def _admit(
        self, scope: Scope, receive: Any, record: RequestRecord
    ) -> tuple[dict[str, Any], Rules | None, int]:
        """Admission of a POST: the log has room, the client key is valid (and not expired), the body is a JSON
        object. Also returns the rules that govern the key (None: none do) and the body's size."""
        rt = self.rt
        if rt.metering.saturated:
            raise GatewayError(
                "The gateway's request log is backed up; retry shortly.",
                status=503,
                code="log_backlog",
                headers={"retry-after": "1"},
            )
        principal = await authenticate(scope, rt.keys)
        record.client_key_id = principal.key_id
        rules = rt.governance.rules(principal)
        settings = rt.settings
        body = await read_body(receive, scope, settings.max_body_bytes, settings.body_timeout_seconds)
        return parse_json_object(body), rules, len(body)

    async def _answer(self, send: Any, record: RequestRecord, meter: Meter, body: bytes, cost: Decimal | None) -> None:
        """A complete (non-streamed) answer, with the cost header when the cost is known."""
        headers = base_headers(record.request_id)
        if record.limit_headers:
            headers.extend(record.limit_headers)
        if cost is not None:
            headers.append((COST, format(cost, "f").encode()))
        _route_headers(headers, record)
        headers.append((OVERHEAD, _overhead(record, meter, time.perf_counter())))
        record.status = 200  # from here on the headers count as sent
        if record.trace is not None:
            record.trace.answered(body)
        try:
            await send_bytes(send, 200, body, headers)
        except Exception as exc:  # how servers report a write to a closed connection varies
            raise ClientDisconnected() from exc
        meter.first_chunk = time.perf_counter()

    async def _relay(
        self,
        send: Any,
        receive: Any,
        record: RequestRecord,
        meter: Meter,
        chunks: Any,
        *,
        done: bool,
        prefix: bytes = b"",
    ) -> None:
        headers = base_headers(record.request_id, b"text/event-stream")
        headers.extend(SSE_HEADERS)
        if record.limit_headers:
            headers.extend(record.limit_headers)
        _route_headers(headers, record)
        headers.append((OVERHEAD, _overhead(record, meter, time.perf_counter())))
        record.status = 200  # from here on the headers count as sent
        if record.trace is not None:
            chunks = record.trace.watch(chunks, prefix)
        await relay_stream(send, receive, headers, chunks, meter, done=done, prefix=prefix)
        if meter.stream_error is not None:
            record.error_type = "upstream_stream_error"
            record.error_message = meter.stream_error
            record.error_class = meter.stream_error_class
            record.status = 502

    async def _failed(self, send: Any, exc: Exception, record: RequestRecord, meter: Meter | None) -> None:
        """What a failed request records, and the error answer when no response had started."""
        if isinstance(exc, ClientDisconnected):
            record.status = 499
            record.error_type = "client_disconnected"
            record.error_message = "The client closed the connection before the response was complete."
            return
        started = record.status == 200
        if isinstance(exc, GatewayError):
            error = exc
        else:
            log.exception("unexpected error in request %s", record.request_id, exc_info=exc)
            error = GatewayError("The gateway hit an internal error; it has been logged.", code="internal_error")
        _fail(record, error)
        if not started:
            await self._send_error(send, error, record, meter)

    async def _send_error(self, send: Any, error: GatewayError, record: RequestRecord, meter: Meter | None) -> None:
        extra = [(OVERHEAD, _overhead(record, meter, time.perf_counter()))]
        if record.limit_headers:
            extra.extend(record.limit_headers)
        if record.served_by is not None or record.model_group is not None:
            _route_headers(extra, record)
        anthropic = record.endpoint in ANTHROPIC_ENDPOINTS
        if anthropic and error.error_class == "overloaded" and error.status == 503:
            error.status = 529  # what Anthropic answers, and what its clients back off on
        try:
            await send_error(send, error, record.request_id, extra, anthropic=anthropic)
        except Exception:  # the client is gone; the record says what happened
            pass

    # -- small endpoints --------------------------------------------------------------------------------------
    async def _simple(self, scope: Scope, receive: Any, send: Any, endpoint: str, handler: Any) -> None:
        """Authenticated, bodiless endpoints: one JSON answer, one record."""
        record = RequestRecord(request_id(scope), endpoint, time.perf_counter(), client_ip=_client_ip(scope))
        REQUEST_ID.set(record.request_id)
        try:
            principal = await authenticate(scope, self.rt.keys)
            record.client_key_id = principal.key_id
            self.rt.governance.rules(principal)  # an expired key is refused here too
            status, payload = await handler(scope, record)
            record.status = status
            headers = base_headers(record.request_id)
            headers.append((OVERHEAD, _overhead(record, None, time.perf_counter())))
            await send_bytes(send, status, orjson.dumps(payload), headers)
        except GatewayError as exc:
            _fail(record, exc)
            await self._send_error(send, exc, record, None)
        except Exception:
            log.exception("unexpected error in request %s", record.request_id)
            error = GatewayError("The gateway hit an internal error; it has been logged.", code="internal_error")
            _fail(record, error)
            await self._send_error(send, error, record, None)
        finally:
            self.rt.metering.finish(record, None, None)

    async def _not_allowed(self, scope: Scope, record: RequestRecord) -> tuple[int, Any]:
        raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}; use POST.")

    async def _unknown(self, scope: Scope, record: RequestRecord) -> tuple[int, Any]:
        raise NotFound(f"Unknown endpoint: {scope['method']} {scope['path']}.")

    def _model_entries(self) -> list[dict[str, Any]]:
        rt = self.rt
        routing = rt.routing
        entries: dict[str, dict[str, Any]] = {}
        created = int(rt.started_at)
        for provider, ids in sorted(routing.models.items()):
            for model_id in ids:
                try:
                    route: Route | None = routing.resolver.resolve(model_id)
                except ModelNotFound:
                    route = None
                if route is not None and route.provider == provider:
                    public = model_id
                else:
                    public = f"{provider}/{model_id}"
                    route = routing.resolver.resolve(public)
                if public not in entries and (route.provider, route.model) not in routing.disabled_models:
                    entries[public] = _model_object(public, created, route)
        for alias in rt.settings.aliases:
            try:
                route = routing.resolver.resolve(alias)
            except ModelNotFound:
                continue
            if (route.provider, route.model) not in routing.disabled_models:
                entries.setdefault(alias, _model_object(alias, created, route))
        for name in routing.resolver.groups:  # model groups: the gateway's own names
            entries[name] = {"id": name, "object": "model", "created": created, "owned_by": "gophergate"}
        return sorted(entries.values(), key=lambda e: str(e["id"]))

    async def _list_models(self, scope: Scope, record: RequestRecord) -> tuple[int, Any]:
        if scope["method"] != "GET":
            raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}; use GET.")
        return 200, {"object": "list", "data": self._model_entries()}

    async def _get_model(self, scope: Scope, record: RequestRecord) -> tuple[int, Any]:
        if scope["method"] != "GET":
            raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}; use GET.")
        model_id = scope["path"][len("/v1/models/") :]  # the server has percent-decoded the path once already
        check_model_length(model_id)
        record.requested_model = model_id
        for entry in self._model_entries():
            if entry["id"] == model_id:
                record.provider = entry["owned_by"]
                return 200, entry
        routing = self.rt.routing
        route = routing.resolver.resolve(model_id)  # raises model_not_found for what no provider serves
        if (route.provider, route.model) in routing.disabled_models:
            raise _disabled(model_id)
        listed = routing.models.get(route.provider)
        if listed is not None and route.model not in listed:
            raise ModelNotFound(
                f"The model '{model_id}' does not exist or is not served by this gateway.", param="model"
            )
        record.provider = route.provider
        return 200, _model_object(model_id, int(self.rt.started_at), route)


# The Anthropic Messages API's endpoints (request_log.endpoint): their errors are in Anthropic's shape.
ANTHROPIC_ENDPOINTS = frozenset(("messages", "messages.count_tokens"))


async def _stopped(send: Any, record: RequestRecord) -> None:
    """The gateway cancelled the request: it is stopping, and the request outlived the shutdown grace period.
    A client still waiting for its answer gets a 503 (a stream's client has had an error event from the relay:
    its answer had started, so this one is refused by the server and dropped)."""
    record.status = 503
    record.error_type = "server_shutdown"
    record.error_message = "The gateway stopped before the response was complete."
    error = GatewayError(record.error_message, status=503, type="server_error", code="server_shutdown")
    anthropic = record.endpoint in ANTHROPIC_ENDPOINTS
    with contextlib.suppress(Exception):
        await asyncio.wait_for(send_error(send, error, record.request_id, anthropic=anthropic), 1.0)
