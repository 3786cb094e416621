"""Gemini error bodies -> gateway errors (providers.md §3.6, §11.22).

Body: ``{"error": {"code", "message", "status", "details": [{"@type": ...ErrorInfo, "reason": ...}, ...]}}``.
A bad key arrives as 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``: that is the gateway's own
credentials being wrong, never the client's fault, so it becomes a 502 that says so (without the key). 429
``RESOURCE_EXHAUSTED`` keeps its status; ``retry-after`` comes from the header or ``RetryInfo.retryDelay``.
Everything else goes through the common policy in ``providers/upstream.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from gophergate.core.errors import GatewayError, UpstreamUnavailable
from gophergate.providers.upstream import upstream_error

_TYPES = {429: "rate_limit_error"}


def gemini_error(
    provider: str, status: int, body: bytes, header: Callable[[str], str | None] | None = None
) -> GatewayError:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):  # some proxies wrap the error in a list
        err = data[0].get("error")
    if not isinstance(err, dict):
        return upstream_error(provider, status, body, header)
    message = str(err.get("message") or "")
    details = [d for d in err.get("details") or () if isinstance(d, dict)]
    reasons = {str(d.get("reason")) for d in details if d.get("reason")}
    if "API_KEY_INVALID" in reasons or (status < 500 and "api key not valid" in message.lower()):
        return UpstreamUnavailable(
            f"Upstream provider '{provider}' rejected the gateway's Gemini API key (API_KEY_INVALID): the "
            "gateway's credentials for this provider are wrong or revoked; its operator must fix GEMINI_API_KEY.",
            code="upstream_auth_failed",
            upstream_status=status,
        )
    retry_after = None
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            retry_after = retry_delay_seconds(detail.get("retryDelay"))

    def headers(name: str) -> str | None:
        value = header(name) if header is not None else None
        if value is None and name == "retry-after":
            return retry_after
        return value

    rpc_status = err.get("status")
    code = "rate_limit_exceeded" if status == 429 else (rpc_status.lower() if isinstance(rpc_status, str) else None)
    normalised = {"error": {"message": message, "type": _TYPES.get(status), "code": code, "param": None}}
    return upstream_error(provider, status, orjson.dumps(normalised), headers)


def retry_delay_seconds(delay: Any) -> str | None:
    """``google.rpc.RetryInfo.retryDelay`` ("13s", "0.5s") as whole seconds for ``retry-after``."""
    if not isinstance(delay, str) or not delay.endswith("s"):
        return None
    try:
        seconds = float(delay[:-1])
    except ValueError:
        return None
    return str(max(1, math.ceil(seconds)))


def stream_error_message(provider: str, payload: Any) -> str:
    """The message of an error Gemini reported inside a 200 stream."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        status = err.get("status") or err.get("code")
        text = str(err.get("message") or "unknown error")
        return f"Upstream provider '{provider}' reported an error mid-stream ({status}): {text}"
    return f"Upstream provider '{provider}' reported an error mid-stream: {err}"
