"""Light validation of the non-chat endpoints: each failure is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gophergate.core.errors import InvalidRequest
from gophergate.db.tables import request_log
from gophergate.gateway.validate import (
    MAX_JSON_DEPTH,
    MAX_MODEL_CHARS,
    check_chat,
    check_embeddings,
    check_images,
    check_responses,
    parse_json_object,
)


def _param(check: Any, body: dict[str, Any]) -> str | None:
    with pytest.raises(InvalidRequest) as caught:
        check(body)
    assert caught.value.status == 400
    return caught.value.param


@pytest.mark.parametrize(
    "value",
    ["text", ["a", "b"], [1, 2, 3], [[1, 2], [3]], [0]],
)
def test_embeddings_accept_every_openai_input_shape(value: Any) -> None:
    assert check_embeddings({"model": "m", "input": value, "encoding_format": "base64", "dimensions": 3}) == "m"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": ["m"], "input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [[]]}, "input"),
        ({"model": "m", "input": [1, "a"]}, "input"),
        ({"model": "m", "input": [-1]}, "input"),
        ({"model": "m", "input": [True]}, "input"),
        ({"model": "m", "input": {"text": "x"}}, "input"),
        ({"model": "m", "input": ["a", ""]}, "input[1]"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": 1.5}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
    ],
)
def test_embeddings_reject_naming_the_param(body: dict[str, Any], param: str) -> None:
    assert _param(check_embeddings, body) == param


def test_images_accept_a_full_request() -> None:
    body = {"model": "m", "prompt": "p", "n": 10, "response_format": "b64_json", "size": "auto", "quality": "high"}
    assert check_images(body) == "m"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "p"}, "model"),
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": ""}, "prompt"),
        ({"model": "m", "prompt": 3}, "prompt"),
        ({"model": "m", "prompt": "p", "n": 0}, "n"),
        ({"model": "m", "prompt": "p", "n": 11}, "n"),
        ({"model": "m", "prompt": "p", "n": "2"}, "n"),
        ({"model": "m", "prompt": "p", "response_format": "png"}, "response_format"),
        ({"model": "m", "prompt": "p", "size": [1024, 1024]}, "size"),
        ({"model": "m", "prompt": "p", "stream": True}, "stream"),
    ],
)
def test_images_reject_naming_the_param(body: dict[str, Any], param: str) -> None:
    assert _param(check_images, body) == param


def test_responses_return_model_and_stream() -> None:
    assert check_responses({"model": "m", "input": "x"}) == ("m", False)
    assert check_responses({"model": "m", "input": [], "stream": True, "stream_options": {}}) == ("m", True)
    assert check_responses({"model": "m", "previous_response_id": "resp_1"}) == ("m", False)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": 1}, "input"),
        ({"model": "m", "input": {"role": "user"}}, "input"),
        ({"model": "m", "stream": 1}, "stream"),
        ({"model": "m", "stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"model": "m", "stream": True, "stream_options": []}, "stream_options"),
        ({"model": "m", "max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_responses_reject_naming_the_param(body: dict[str, Any], param: str) -> None:
    assert _param(check_responses, body) == param


def test_a_body_that_is_not_utf8_is_named_as_such_and_bad_json_keeps_its_position() -> None:
    from gophergate.gateway.validate import parse_json_object

    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(b'{"model": "m", "messages": "\xff\xfe"}')
    assert caught.value.status == 400 and caught.value.message == "Request body is not valid UTF-8 (byte 28)."
    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(b'{"model": ')
    assert (
        caught.value.message.startswith("Request body is not valid JSON:") and "(position 10)" in caught.value.message
    )


# -- model name length and JSON depth (issue 14: defects 1 and 9) ----------------------------------------------


@pytest.mark.parametrize("check", [check_chat, check_embeddings, check_images, check_responses])
def test_overlong_model_name_is_400_naming_model(check: Any) -> None:
    body = {
        "model": "m" * (MAX_MODEL_CHARS + 1),
        "messages": [{"role": "user", "content": "x"}],
        "input": "x",
        "prompt": "x",
    }
    assert _param(check, body) == "model"
    body["model"] = "m" * MAX_MODEL_CHARS
    check(body)  # the longest name the request log can hold is accepted


def test_model_name_limit_matches_the_request_log_columns() -> None:
    assert request_log.c.requested_model.type.length == MAX_MODEL_CHARS  # type: ignore[attr-defined]
    assert request_log.c.model.type.length == MAX_MODEL_CHARS  # type: ignore[attr-defined]


def _nested(depth: int) -> bytes:
    """A chat body whose ``metadata`` holds lists nested so that the whole body is ``depth`` levels deep."""
    inner = depth - 1
    return b'{"model": "m", "metadata": ' + b"[" * inner + b"]" * inner + b', "messages": []}'


def test_request_nested_deeper_than_limit_is_400_naming_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(_nested(MAX_JSON_DEPTH + 1))
    assert caught.value.status == 400 and caught.value.param == "metadata"
    # Every depth the serialiser cannot write is refused at parse time (orjson writes at most 254 levels).
    for depth in (255, 600, 1_023):
        with pytest.raises(InvalidRequest):
            parse_json_object(_nested(depth))


def test_request_nested_at_the_limit_parses_and_serialises() -> None:
    data = parse_json_object(_nested(MAX_JSON_DEPTH))
    assert orjson.loads(orjson.dumps(data)) == data
    wrapped = {"a": {"b": [{"c": data}]}}  # what a translation adds around a client's value still serialises
    assert orjson.dumps(wrapped)


def test_depth_check_sees_objects_and_ignores_brackets_in_strings() -> None:
    deep_objects = b'{"model": "m", "tools": ' + b'{"a": ' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH + b"}"
    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(deep_objects)
    assert caught.value.param == "tools"
    brackets = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "[{" * 5_000}]})
    assert parse_json_object(brackets)["model"] == "m"
