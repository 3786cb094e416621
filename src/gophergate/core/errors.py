"""Errors are data: one tree, rendered once as an OpenAI-style body (or, for the Anthropic Messages API's
endpoints, once in Anthropic's shape: ``anthropic_body``).

GatewayError                      status, type, code, param; error_class and upstream_status for routing
├── InvalidRequest                400 invalid_request_error
│   ├── BodyTooLarge              413
│   ├── BodyTimeout               408 (the whole body did not arrive within its deadline)
│   └── UnsupportedEndpoint       400 code=unsupported_endpoint (the model's provider lacks the endpoint)
├── AuthenticationFailed          401 authentication_error
├── NotFound                      404 (unknown route)
│   └── ModelNotFound             404 code=model_not_found
├── MethodNotAllowed              405
├── UpstreamError                 upstream 4xx passed through with its status and message
├── UpstreamUnavailable           502 upstream 5xx, refused connection, broken stream
└── UpstreamTimeout               504
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from gophergate.core.redact import REDACTOR, redact

ErrorClass = Literal["rate_limited", "overloaded", "server_error", "timeout", "connection", "context_window_exceeded"]
"""What kind of upstream failure an error is, for routing to act on (retry, fall back, cool down). An error without
one (a client error, a refused provider key, a gateway decision) is never retried."""


class GatewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None
    error_class: ErrorClass | None = None
    upstream_status: int | None = None  # the status the upstream answered, when it answered one

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        error_class: ErrorClass | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if error_class is not None:
            self.error_class = error_class
        if upstream_status is not None:
            self.upstream_status = upstream_status
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The rendered body (/v1 and /api alike). The last net for secrets: an error's fields may quote an
        upstream, and only errors pay for the scan."""
        return {
            "error": {
                "message": redact(self.message),
                "type": redact(self.type),
                "param": REDACTOR.optional(self.param),
                "code": REDACTOR.optional(self.code),
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def anthropic_body(self) -> bytes:
        """The Anthropic Messages API's error shape, its ``type`` chosen by the status as Anthropic does."""
        return anthropic_error_body(self.status, self.message)


# Anthropic's error types by status (its API reference, "Errors"); any other 4xx is an invalid request, any
# other 5xx an api_error.
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    known = ANTHROPIC_ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def anthropic_error_body(status: int, message: str) -> bytes:
    error = {"type": anthropic_error_type(status), "message": redact(message)}
    return orjson.dumps({"type": "error", "error": error})


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


def invalid_value(param: str, message: str) -> InvalidRequest:
    """A field with a value the API does not accept (400 ``invalid_value``, naming the field)."""
    return InvalidRequest(message, param=param, code="invalid_value")


def unsupported_value(param: str, message: str) -> InvalidRequest:
    """A field with a value the API accepts but this gateway cannot carry to the provider (400)."""
    return InvalidRequest(message, param=param, code="unsupported_value")


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class BodyTimeout(InvalidRequest):
    status = 408
    code = "request_timeout"


class UnsupportedEndpoint(InvalidRequest):
    code = "unsupported_endpoint"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamError(GatewayError):
    """An upstream 4xx, relayed with the upstream's status and message."""

    type = "upstream_error"


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class ClientDisconnected(Exception):
    """The client went away before the response was complete (recorded as status 499)."""
