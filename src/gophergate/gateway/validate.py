"""Light validation of /v1 requests: only what routing, translation and metering read.

Everything else is forwarded unchanged, so an upstream stays the judge of its own fields. Each failure is a
400 that names the field (``param``), like OpenAI's own errors.
"""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.core.errors import InvalidRequest

# orjson parses 1,024 levels of nesting but serialises only 254, and a request body is serialised again on its way
# upstream: a body nested deeper than that failed there, as a 500 with a traceback. One limit for both, with room
# for the few levels a translation adds (a tool's schema inside Gemini's functionDeclarations, ...).
MAX_JSON_DEPTH = 200
_COUNT_BELOW = 16 * 1024


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest in ``value`` more than ``limit`` levels (``value`` itself is level 1). Level by
    level, never recursive: bounded by the input's size, and by the limit."""
    level = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
    return False


def check_depth(data: dict[str, Any], body: bytes) -> None:
    """Raise ``InvalidRequest`` naming the top-level field nested deeper than ``MAX_JSON_DEPTH``."""
    # A count's cost follows the bytes, a walk's the containers: counting brackets is the cheaper check for small
    # bodies, walking for large ones. Brackets inside strings only raise the count (then the walk decides).
    if len(body) <= _COUNT_BELOW and body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    for name, value in data.items():
        if (type(value) is dict or type(value) is list) and _too_deep(value, MAX_JSON_DEPTH - 1):
            raise _bad(name, f"'{name}' is nested more than {MAX_JSON_DEPTH} levels deep.")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode()
        except UnicodeDecodeError as bad:  # orjson's own words for this ("str is not valid UTF-8: surrogates ...")
            raise InvalidRequest(f"Request body is not valid UTF-8 (byte {bad.start}).") from None
        raise InvalidRequest(f"Request body is not valid JSON: {exc.msg} (position {exc.pos}).") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    check_depth(data, body)
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
    model = _model(data)
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


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model", "'model' must be a non-empty string.")
    check_model_length(model)
    return model


# request_log.requested_model and .model are VARCHAR(300) (db/tables.py): a longer name could not be logged
# (PostgreSQL refuses the row), and no upstream serves a model with such a name.
MAX_MODEL_CHARS = 300


def check_model_length(model: str) -> None:
    if len(model) > MAX_MODEL_CHARS:
        raise _bad("model", f"'model' must be at most {MAX_MODEL_CHARS} characters (got {len(model)}).")


def _stream(data: dict[str, Any]) -> bool:
    stream = data.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise _bad("stream", "'stream' must be a boolean.")
    return stream


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(t) and t >= 0 for t in value)


_ENCODINGS = ("float", "base64")


def check_embeddings(data: dict[str, Any]) -> str:
    """Return the model or raise ``InvalidRequest`` naming the field (providers.md §2.8)."""
    model = _model(data)
    value = data.get("input")
    if value is None:
        raise _missing("input")
    if isinstance(value, str):
        if not value:
            raise _bad("input", "'input' must not be an empty string.")
    elif not isinstance(value, list) or not value:
        raise _bad("input", "'input' must be a string, an array of strings, or an array of token arrays.")
    elif all(isinstance(v, str) for v in value):
        for i, text in enumerate(value):
            if not text:
                raise _bad(f"input[{i}]", f"'input[{i}]' must not be an empty string.")
    elif not (all(_is_int(v) and v >= 0 for v in value) or all(_is_tokens(v) for v in value)):
        raise _bad("input", "'input' must be a string, an array of strings, or an array of token arrays.")
    encoding = data.get("encoding_format")
    if encoding is not None and encoding not in _ENCODINGS:
        raise _bad("encoding_format", "'encoding_format' must be one of float, base64.")
    dimensions = data.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise _bad("dimensions", "'dimensions' must be a positive integer.")
    return model


_IMAGE_FORMATS = ("url", "b64_json")
MAX_IMAGES = 10


def check_images(data: dict[str, Any]) -> str:
    """Return the model or raise ``InvalidRequest`` naming the field.

    ``model`` is required: OpenAI's own default (dall-e-2) was retired on 2026-05-12 (providers.md, header),
    and a gateway serving several image providers cannot guess which one is meant.
    """
    model = _model(data)
    prompt = data.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("prompt", "'prompt' must be a non-empty string.")
    n = data.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= MAX_IMAGES):
        raise _bad("n", f"'n' must be an integer from 1 to {MAX_IMAGES}.")
    response_format = data.get("response_format")
    if response_format is not None and response_format not in _IMAGE_FORMATS:
        raise _bad("response_format", "'response_format' must be one of url, b64_json.")
    size = data.get("size")
    if size is not None and not isinstance(size, str):
        raise _bad("size", "'size' must be a string such as '1024x1024' or 'auto'.")
    if _stream(data):
        # Image streams (partial_image events) are not relayed yet; say so rather than fail on the SSE body.
        raise _bad("stream", "Streaming image generation is not supported by this gateway; omit 'stream'.")
    return model


def check_responses(data: dict[str, Any]) -> tuple[str, bool]:
    """Return (model, stream) or raise ``InvalidRequest`` naming the field (providers.md §2.9).

    ``input`` may be absent (a ``previous_response_id``, ``conversation`` or ``prompt`` supplies it); the
    items themselves are the upstream's to judge.
    """
    model = _model(data)
    value = data.get("input")
    if value is not None and not isinstance(value, str | list):
        raise _bad("input", "'input' must be a string or an array of input items.")
    stream = _stream(data)
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options", "'stream_options' must be an object.")
        if not stream:
            raise _bad("stream_options", "'stream_options' is only allowed when 'stream' is true.")
    limit = data.get("max_output_tokens")
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise _bad("max_output_tokens", "'max_output_tokens' must be a positive integer.")
    return model, stream
