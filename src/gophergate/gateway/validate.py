"""Light validation of a chat request: only what routing, translation and metering read.

Everything else is forwarded unchanged, so an upstream stays the judge of its own fields. Each failure is a
400 that names the field (``param``), like OpenAI's own errors.
"""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.errors import InvalidRequest


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc.msg} (position {exc.pos}).") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return data


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n")
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def check_chat(data: dict[str, Any]) -> tuple[str, bool, bool]:
    """Return (model, stream, include_usage) or raise ``InvalidRequest`` naming the field."""
    model = data.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model", "'model' must be a non-empty string.")
    messages = data.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty array of message objects.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}]", f"'messages[{i}]' must be an object.")
        role = message.get("role")
        if role is None:
            raise _missing(f"messages[{i}].role")
        if role not in _ROLES:
            raise _bad(f"messages[{i}].role", f"'messages[{i}].role' must be one of {', '.join(sorted(_ROLES))}.")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(f"messages[{i}].content", f"'messages[{i}].content' must be a string or an array of parts.")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _missing(f"messages[{i}].tool_call_id")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be a boolean.")
    include_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options", "'stream_options' must be an object.")
        if not stream:
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        flag = options.get("include_usage", False)
        if not isinstance(flag, bool):
            raise _bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean.")
        include_usage = flag
    for name in _INT_FIELDS:
        value = data.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise _bad(name, f"'{name}' must be a positive integer.")
    for name in _NUMBER_FIELDS:
        value = data.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise _bad(name, f"'{name}' must be a number.")
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools", "'tools' must be an array.")
    return model, stream, include_usage
