"""Anthropic error responses -> gateway errors (providers.md §4.6, §11.22).

The body is ``{"type":"error","error":{"type":...,"message":...,"details"?},"request_id":...}``. Statuses:

- 529 ``overloaded_error`` -> 503 (the OpenAI SDKs know 503 as retryable), ``retry-after`` passed on;
- 429 ``rate_limit_error`` -> 429 with ``retry-after``; but the monthly spend cap
  (``details.error_code == "enforced_spend_limit_reached"``) is not retryable and becomes 402;
- 401 ``authentication_error``: the *gateway's* Anthropic key was refused, which the client cannot fix ->
  502 with a message saying so (the key itself is never echoed);
- 403 -> 403 (the gateway's key lacks a permission), 400/404/409/413 keep their status;
- 500 ``api_error`` and other 5xx -> 502, 504 ``timeout_error`` -> 504.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gophergate.core.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gophergate.providers.upstream import error_class, retry_headers, scrub


def parse_error(body: bytes) -> tuple[str, str | None, dict[str, Any]]:
    """(message, error.type, error.details) of an Anthropic error body; tolerant of other shapes."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip(), None, {}
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        details = err.get("details")
        etype = err.get("type")
        return (
            str(err.get("message") or ""),
            etype if isinstance(etype, str) else None,
            (details if isinstance(details, dict) else {}),
        )
    return str(data)[:500], None, {}


def anthropic_error(
    provider: str,
    status: int,
    body: bytes,
    header: Callable[[str], str | None] | None = None,
    redact: Callable[[str], str] = scrub,
) -> GatewayError:
    message, etype, details = parse_error(body)
    message = redact(message or f"HTTP {status}")
    etype = None if etype is None else redact(etype)  # upstream text: it becomes the error's type and code
    headers = retry_headers(header)
    text = f"Upstream provider '{provider}' returned {status}: {message}"
    if status == 529 or etype == "overloaded_error":
        return UpstreamUnavailable(
            text,
            status=503,
            code="upstream_overloaded",
            headers=headers,
            error_class="overloaded",
            upstream_status=status,
        )
    if status == 401:
        return UpstreamUnavailable(
            f"Upstream provider '{provider}' rejected the gateway's API key (401 {etype or 'authentication_error'}): "
            f"{message} Check the gateway's ANTHROPIC_API_KEY; the client's key is not involved.",
            code="upstream_auth_failed",
            upstream_status=status,
        )
    if status == 429 and details.get("error_code") == "enforced_spend_limit_reached":
        return UpstreamError(
            text, status=402, type="insufficient_quota", code="enforced_spend_limit_reached", upstream_status=status
        )
    if status == 429:
        return UpstreamError(
            text,
            status=429,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
            error_class="rate_limited",
            upstream_status=status,
        )
    if status == 504 or etype == "timeout_error":
        return UpstreamTimeout(text, headers=headers, error_class="server_error", upstream_status=status)
    if status >= 500:
        return UpstreamUnavailable(
            text, code="upstream_error", headers=headers, error_class=error_class(status), upstream_status=status
        )
    if status == 403:
        return UpstreamError(
            f"Upstream provider '{provider}' refused the gateway's API key: {message}",
            status=403,
            type="permission_error",
            code="upstream_auth_failed",
            upstream_status=status,
        )
    code = "model_not_found" if status == 404 and "model" in message.lower() else etype
    return UpstreamError(
        text,
        status=status,
        type=etype or "invalid_request_error",
        code=code,
        headers=headers,
        error_class=error_class(status, etype, message),
        upstream_status=status,
    )
