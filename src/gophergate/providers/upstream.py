"""The one place upstream transport errors and error bodies are mapped to gateway errors.

Transport failures become 502 (refused, reset, broken body) or 504 (timeout); upstream 4xx bodies in any
provider's shape are normalised to the OpenAI error shape with the upstream's status kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from gophergate.core.calls import Meter
from gophergate.core.context import UPSTREAM_HEADERS
from gophergate.core.errors import ErrorClass, GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gophergate.core.redact import REDACTOR
from gophergate.providers.transport import (
    ConnectError,
    ConnectTimeout,
    ResponseTooLarge,
    Transport,
    TransportError,
    TransportTimeout,
    UpstreamResponse,
)
from gophergate.wire.sse import EventTooLarge


@contextmanager
def transport_errors(provider: str) -> Iterator[None]:
    """Map the transport seam's failures (``providers/transport.py``) talking to ``provider`` to gateway errors."""
    try:
        yield
    except GatewayError:
        raise
    except ResponseTooLarge as exc:
        raise UpstreamUnavailable(
            f"Upstream provider '{provider}' sent an answer larger than the gateway's limit of {exc.limit} bytes "
            "(GOPHERGATE_MAX_UPSTREAM_RESPONSE_BYTES).",
            code="upstream_response_too_large",
        ) from exc
    except EventTooLarge as exc:
        raise UpstreamUnavailable(
            f"Upstream provider '{provider}' sent a stream event larger than the gateway's limit of {exc.limit} "
            "bytes (GOPHERGATE_MAX_SSE_EVENT_BYTES).",
            code="upstream_response_too_large",
        ) from exc
    except ConnectTimeout as exc:
        raise UpstreamTimeout(
            f"Connecting to upstream provider '{provider}' timed out.", error_class="timeout"
        ) from exc
    except TransportTimeout as exc:
        raise UpstreamTimeout(f"Upstream provider '{provider}' timed out.", error_class="timeout") from exc
    except ConnectError as exc:
        raise UpstreamUnavailable(
            f"Could not connect to upstream provider '{provider}'.", error_class="connection"
        ) from exc
    except TransportError as exc:
        raise UpstreamUnavailable(
            f"Connection to upstream provider '{provider}' failed: {type(exc).__name__}.", error_class="connection"
        ) from exc


def scrub(message: str) -> str:
    """Secrets must never travel back to clients inside an upstream's error: every configured one by value,
    and well-known key shapes (``core/redact.py``)."""
    return REDACTOR(message)


# How providers word a prompt that does not fit the model's context window (400): OpenAI's code, xAI's "maximum
# prompt length", Anthropic's "prompt is too long", Gemini's "exceeds the maximum number of tokens".
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "maximum prompt length",
    "prompt is too long",
    "exceeds the maximum number of tokens",
)


def error_class(status: int, code: str | None = None, message: str = "") -> ErrorClass | None:
    """The class of an upstream's error answer: 429 ``rate_limited``; 503 and 529 ``overloaded``; other 5xx
    ``server_error``; a 400, 413 or 422 saying the prompt is too long for the model ``context_window_exceeded``;
    anything else (the client's request, the gateway's provider key) None."""
    if status == 429:
        return "rate_limited"
    if status in (503, 529):
        return "overloaded"
    if status >= 500:
        return "server_error"
    if status in (400, 413, 422):
        text = f"{code or ''} {message}".lower()
        if any(marker in text for marker in _CONTEXT_MARKERS):
            return "context_window_exceeded"
    return None


def upstream_error(
    provider: str, status: int, body: bytes, header: Callable[[str], str | None] | None = None
) -> GatewayError:
    """Normalise an upstream error response (OpenAI, xAI flat, Moonshot, Ollama shapes) to a gateway error."""
    message, err_type, code, param = _parse_error_body(body)
    # Every field taken from the upstream reaches the client and the log row: all of them are redacted.
    message = scrub(message or f"HTTP {status}")
    err_type, code, param = REDACTOR.optional(err_type), REDACTOR.optional(code), REDACTOR.optional(param)
    extra_headers = retry_headers(header)
    text = f"Upstream provider '{provider}' returned {status}: {message}"
    kind, answered = error_class(status, code, message), status
    if status >= 500:
        return UpstreamUnavailable(
            text, code=code or "upstream_error", headers=extra_headers, error_class=kind, upstream_status=status
        )
    if status == 400 and "incorrect api key" in message.lower():
        # xAI answers a bad key with 400 (providers.md §6.3); it is an authentication failure.
        status, err_type = 401, "authentication_error"
    if status in (401, 403):
        # The gateway's own provider credentials were refused: the status is kept, the message says whose
        # key it was so that clients do not go looking at their gateway key.
        text = f"Upstream provider '{provider}' rejected the gateway's provider credentials: {message}"
        return UpstreamError(
            text,
            status=status,
            type=err_type or "authentication_error",
            code="upstream_auth_failed",
            headers=extra_headers,
            upstream_status=answered,
        )
    return UpstreamError(
        text,
        status=status,
        type=err_type or "invalid_request_error",
        code=code,
        param=param,
        headers=extra_headers,
        error_class=kind,
        upstream_status=status,
    )


def retry_headers(header: Callable[[str], str | None] | None) -> dict[str, str]:
    """The upstream's retry hints passed on to the client; one that quotes a secret is no hint and is dropped."""
    headers: dict[str, str] = {}
    if header is not None:
        for name in ("retry-after", "retry-after-ms"):
            value = header(name)
            if value and scrub(value) == value:
                headers[name] = value
    return headers


def _parse_error_body(body: bytes) -> tuple[str, str | None, str | None, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip(), None, None, None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            return (
                str(err.get("message") or ""),
                _opt_str(err.get("type")) or _opt_str(err.get("status")),
                None if code is None else str(code),
                _opt_str(err.get("param")),
            )
        if isinstance(err, str):  # xAI {"code","error"}, Ollama native {"error"}
            code = data.get("code")
            return err, None, None if code is None else str(code), None
        if isinstance(data.get("message"), str):
            return data["message"], None, None, None
    return str(data)[:500], None, None, None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


ErrorMapper = Callable[[int, bytes, Callable[[str], str | None]], GatewayError]


async def open_upstream_stream(
    client: Transport,
    provider: str,
    url: str,
    headers: dict[str, str],
    payload: bytes,
    meter: Meter,
    error: ErrorMapper | None = None,
) -> UpstreamResponse:
    """POST a streaming request and check the answer: an error status is read, closed and raised (through
    ``error``, the provider's own error mapping, else ``upstream_error``) before anything reaches the client."""
    extra = UPSTREAM_HEADERS.get()
    if extra is not None:  # the attempt's trace context (tracing on)
        headers = {**headers, **extra}
    meter.start_upstream()
    with transport_errors(provider):
        resp = await client.request("POST", url, headers, payload, stream=True)
        meter.upstream_answered()
        if resp.status >= 400:
            try:
                raw = await resp.read()
            finally:
                await resp.aclose(reuse=False)
            if error is not None:
                raise error(resp.status, raw, resp.header)
            raise upstream_error(provider, resp.status, raw, resp.header)
    return resp


async def request_json(
    client: Transport,
    provider: str,
    method: str,
    url: str,
    headers: dict[str, str],
    payload: bytes | None,
    meter: Meter | None = None,
    error: ErrorMapper | None = None,
    what: str = "response",
) -> tuple[dict[str, Any], bytes]:
    """A buffered request whose answer must be a JSON object: the parsed object and its bytes. Error statuses
    go through ``error`` (else ``upstream_error``); a body that is not a JSON object is a 502."""
    extra = UPSTREAM_HEADERS.get()
    if extra is not None:  # the attempt's trace context (tracing on)
        headers = {**headers, **extra}
    if meter is not None:
        meter.start_upstream()
    with transport_errors(provider):
        resp = await client.request(method, url, headers, payload, stream=False)
        raw = await resp.read()
    if meter is not None:
        meter.upstream_finished()
    if resp.status >= 400:
        if error is not None:
            raise error(resp.status, raw, resp.header)
        raise upstream_error(provider, resp.status, raw, resp.header)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamUnavailable(f"Upstream provider '{provider}' returned a malformed {what}.") from None
    if not isinstance(data, dict):
        raise UpstreamUnavailable(f"Upstream provider '{provider}' returned an unexpected {what}.")
    return data, raw
