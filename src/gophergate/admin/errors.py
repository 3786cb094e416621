"""Every /api error is an OpenAI-style body: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gophergate.admin.responses import ok
from gophergate.core.errors import GatewayError

log = logging.getLogger(__name__)

_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "not_authenticated"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
}


def _render(error: GatewayError) -> Response:
    return ok(error.to_dict(), error.status, error.headers or None)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _render(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind, code = _HTTP_CODES.get(exc.status_code, ("api_error", "error"))
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = f"Unknown endpoint: {request.method} {request.url.path}."
    return _render(GatewayError(message, status=exc.status_code, type=kind, code=code, headers=dict(exc.headers or {})))


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 becomes a 400 naming the first offending field."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    param = _field(first.get("loc", ()))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "is required"
    if first.get("type") == "json_invalid":
        return _render(GatewayError("The request body is not valid JSON.", status=400, type="invalid_request_error"))
    return _render(
        GatewayError(f"Invalid '{param}': {message}.", status=400, type="invalid_request_error", param=param)
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return _render(GatewayError("The gateway hit an internal error; it has been logged.", code="internal_error"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


def forbidden(message: str = "This action needs the admin role.") -> GatewayError:
    return GatewayError(message, status=403, type="permission_error", code="forbidden")


def not_found(message: str) -> GatewayError:
    return GatewayError(message, status=404, type="invalid_request_error", code="not_found")


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(message, status=400, type="invalid_request_error", param=param, code=code)


def conflict(message: str, code: str = "conflict") -> GatewayError:
    return GatewayError(message, status=409, type="invalid_request_error", code=code)
