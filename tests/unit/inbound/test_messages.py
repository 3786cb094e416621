"""Golden tests of the inbound Anthropic Messages <-> OpenAI chat translators (pure; no network)."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from gophergate.core.errors import InvalidRequest
from gophergate.core.usage import Usage
from gophergate.inbound.messages import (
    MessagesStream,
    chat_to_message,
    check_messages,
    error_event,
    messages_to_chat,
    ping_event,
    usage_block,
)

MODEL = "claude-sonnet-4-5"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 1024, "messages": messages or [user("Hi")]}
    body.update(fields)
    return body


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = messages_to_chat(body)["messages"]
    return messages


def rejected(body: dict[str, Any], translate: Any = messages_to_chat) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate(body)
    return caught.value


# -- check_messages -------------------------------------------------------------------------------------------


def test_check_messages_returns_the_model_and_whether_to_stream() -> None:
    assert check_messages(request()) == (MODEL, False)
    assert check_messages(request(stream=True)) == (MODEL, True)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"model": 5}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": {"role": "user"}}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [user("Hi"), {"role": "system", "content": [{"type": "image"}]}]}, "messages[1].content[0]"),
        ({"messages": [user("a"), {"content": "b"}]}, "messages[1].role"),
        ({"messages": [user(5)]}, "messages[0].content"),
        ({"messages": [user(None)]}, "messages[0].content"),
        ({"messages": [user(["text"])]}, "messages[0].content[0]"),
        ({"messages": [user([{"type": "text", "text": "a"}, {"text": "b"}])]}, "messages[0].content[1]"),
        ({"stream": "yes"}, "stream"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "text", "text": "a"}, {"type": "image"}]}, "system[1]"),
    ],
)
def test_check_messages_names_the_bad_field(change: dict[str, Any], param: str) -> None:
    body = request()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    assert rejected(body, check_messages).param == param


def test_messages_to_chat_checks_the_request_too() -> None:
    assert rejected(request(max_tokens=-1)).param == "max_tokens"


# -- requests -------------------------------------------------------------------------------------------------


def test_core_fields_map_and_extras_are_dropped() -> None:
    body = request(
        stop_sequences=["END"],
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        container="c",
        mcp_servers=[{"type": "url", "url": "https://mcp"}],
        service_tier="auto",
        context_management={"edits": []},
    )
    assert messages_to_chat(body) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stop": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "user": "u-1",
    }


def test_streaming_asks_for_usage_in_the_stream() -> None:
    out = messages_to_chat(request(stream=True))
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert "stream_options" not in messages_to_chat(request(stream=False))


def test_translation_does_not_modify_the_request() -> None:
    body = request(
        [user([{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}])],
        system=[{"type": "text", "text": "s"}],
        tools=[{"name": "f", "input_schema": WEATHER_SCHEMA}],
    )
    before = copy.deepcopy(body)
    messages_to_chat(body)
    assert body == before


def test_system_string_becomes_the_first_message() -> None:
    assert chat_messages(request(system="Be brief."))[0] == {"role": "system", "content": "Be brief."}


def test_system_blocks_are_joined_and_cache_control_is_dropped() -> None:
    system = [
        {"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Two."},
    ]
    assert chat_messages(request(system=system))[0] == {"role": "system", "content": "One.\n\nTwo."}


def test_a_mid_conversation_system_turn_stays_in_place_as_a_system_message() -> None:
    # Claude Code (2.1.154 and later) sends its environment and reminders this way.
    turn = {"role": "system", "content": [{"type": "text", "text": "cwd: /w", "cache_control": {"type": "ephemeral"}}]}
    assert chat_messages(request([user("Hi"), turn], system="Be brief.")) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "cwd: /w"},
    ]


def test_a_user_turn_of_one_text_block_is_a_plain_string() -> None:
    body = request([user([{"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}])])
    assert chat_messages(body) == [{"role": "user", "content": "Hello"}]


def test_images_base64_and_url_become_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    assert chat_messages(request([user(content)])) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


def test_an_image_from_the_files_api_is_rejected_naming_its_source_type() -> None:
    image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    body = request([user("a"), assistant("b"), user([image])])
    error = rejected(body)
    assert error.param == "messages[2].content[0].source.type"


def test_pdf_document_becomes_a_file_part_named_by_its_title() -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}
    content = [{"type": "document", "source": pdf, "title": "report.pdf"}, {"type": "document", "source": pdf}]
    parts = chat_messages(request([user(content)]))[0]["content"]
    assert parts == [
        {"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
    ]


def test_plain_text_document_becomes_a_text_part() -> None:
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The text."}}
    content = [document, {"type": "text", "text": "Summarise."}]
    assert chat_messages(request([user(content)]))[0]["content"] == [
        {"type": "text", "text": "The text."},
        {"type": "text", "text": "Summarise."},
    ]


def test_document_by_url_is_rejected_naming_its_source_type() -> None:
    document = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    error = rejected(request([user([{"type": "text", "text": "x"}, document])]))
    assert error.param == "messages[0].content[1].source.type"
    assert "Anthropic" in error.message


def test_tool_use_becomes_tool_calls_beside_the_turns_text() -> None:
    turn = assistant(
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]
    )
    assert chat_messages(request([user("Weather?"), turn]))[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def test_an_assistant_turn_of_only_tool_use_has_no_content() -> None:
    turn = assistant([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}])
    assert chat_messages(request([user("x"), turn]))[1]["content"] is None


def test_tool_result_becomes_tool_message_before_the_rest_of_the_user_turn() -> None:
    turn = user(
        [
            {"type": "text", "text": "Here you go."},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}],
                "cache_control": {"type": "ephemeral"},
            },
        ]
    )
    assert chat_messages(request([user("x"), assistant("y"), turn]))[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "line 1\nline 2"},
        {"role": "user", "content": "Here you go."},
    ]


def test_images_of_a_tool_result_follow_the_tool_messages_in_a_user_message() -> None:
    screenshot = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "PNG"}}
    turn = user(
        [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "shot"}, screenshot],
            },
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"},
        ]
    )
    assert chat_messages(request([user("x"), assistant("y"), turn]))[2:] == [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "shot"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "ok"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,PNG"}}]},
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [("not found", "Error: not found"), ("Error: not found", "Error: not found"), (None, "Error")],
)
def test_an_error_tool_result_is_prefixed_once(content: str | None, expected: str) -> None:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True}
    if content is not None:
        result["content"] = content
    assert chat_messages(request([user([result])]))[0]["content"] == expected


def test_a_tool_result_without_its_id_is_rejected_naming_the_field() -> None:
    error = rejected(request([user([{"type": "tool_result", "content": "x"}])]))
    assert error.param == "messages[0].content[0].tool_use_id"


def test_assistant_thinking_becomes_reasoning_content_and_redacted_thinking_is_dropped() -> None:
    turn = assistant(
        [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Answer."},
        ]
    )
    assert chat_messages(request([user("q"), turn]))[1] == {
        "role": "assistant",
        "content": "Answer.",
        "reasoning_content": "Let me think.",
    }


def test_thinking_in_a_user_turn_is_rejected() -> None:
    error = rejected(request([user([{"type": "thinking", "thinking": "x", "signature": "s"}])]))
    assert error.param == "messages[0].content[0].type"


@pytest.mark.parametrize(
    ("turns", "param"),
    [
        ([user([{"type": "search_result", "source": "s"}])], "messages[0].content[0].type"),
        ([user("q"), assistant([{"type": "server_tool_use", "id": "s"}])], "messages[1].content[0].type"),
        ([user("q"), assistant([{"type": "image", "source": {}}])], "messages[1].content[0].type"),
    ],
)
def test_unknown_block_types_are_rejected_naming_the_type(turns: list[dict[str, Any]], param: str) -> None:
    assert rejected(request(turns)).param == param


def test_custom_tools_become_functions() -> None:
    tools = [
        {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA, "cache_control": {}},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}},
    ]
    assert messages_to_chat(request(tools=tools))["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
        },
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]


@pytest.mark.parametrize("kind", ["web_search_20250305", "bash_20250124", "text_editor_20250124", "computer_20250124"])
def test_server_tools_are_rejected_as_anthropic_only(kind: str) -> None:
    tools = [{"name": "f", "input_schema": WEATHER_SCHEMA}, {"type": kind, "name": "server"}]
    error = rejected(request(tools=tools))
    assert error.param == "tools[1].type"
    assert "only available when the model is served by Anthropic" in error.message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_variants(choice: dict[str, Any], expected: Any) -> None:
    out = messages_to_chat(request(tools=[{"name": "get_weather", "input_schema": WEATHER_SCHEMA}], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use_turns_parallel_tool_calls_off_only_with_tools() -> None:
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    with_tools = messages_to_chat(request(tools=[{"name": "f", "input_schema": {}}], tool_choice=choice))
    assert with_tools["parallel_tool_calls"] is False
    without = messages_to_chat(request(tool_choice=choice))
    assert "parallel_tool_calls" not in without
    assert "tool_choice" not in without


def test_a_named_tool_choice_without_a_name_is_rejected() -> None:
    error = rejected(request(tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "tool"}))
    assert error.param == "tool_choice.name"


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 2048}, None, "low"),
        ({"type": "enabled", "budget_tokens": 2049}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 8192}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 8193}, None, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "high"}, "high"),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "disabled"}, None, None),
        (None, None, None),
    ],
)
def test_thinking_becomes_reasoning_effort(
    thinking: dict[str, Any] | None, output_config: dict[str, Any] | None, effort: str | None
) -> None:
    body = request()
    if thinking is not None:
        body["thinking"] = thinking
    if output_config is not None:
        body["output_config"] = output_config
    assert messages_to_chat(body).get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "huge"}}, "output_config.effort"),
    ],
)
def test_bad_thinking_settings_are_rejected_naming_the_field(change: dict[str, Any], param: str) -> None:
    assert rejected(request(**change)).param == param


def test_structured_output_format_becomes_a_json_schema_response_format() -> None:
    out = messages_to_chat(request(output_config={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}))
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": WEATHER_SCHEMA},
    }


# -- chat_to_message ------------------------------------------------------------------------------------------


def completion(
    message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gemini-2.5-pro",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_text_answer_becomes_a_message_with_the_clients_model_name() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert chat_to_message(completion({"content": "Hello!"}, usage=usage), MODEL, "msg_1") == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 5,
        },
    }


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_thinking_block_before_the_text(field: str) -> None:
    content = chat_to_message(completion({field: "Hmm.", "content": "42"}), MODEL, "msg_1")["content"]
    assert content == [{"type": "thinking", "thinking": "Hmm."}, {"type": "text", "text": "42"}]


def test_a_refusal_becomes_text() -> None:
    message = completion({"content": None, "refusal": "I can't help."}, finish="content_filter")
    out = chat_to_message(message, MODEL, "msg_1")
    assert out["content"] == [{"type": "text", "text": "I can't help."}]
    assert out["stop_reason"] == "refusal"


def test_tool_calls_become_tool_use_blocks_and_bad_arguments_are_kept() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "c", "arguments": "{not json"}},
        {"id": "call_4", "type": "function", "function": {"name": "d", "arguments": "[1, 2]"}},
    ]
    out = chat_to_message(completion({"content": None, "tool_calls": calls}, finish="tool_calls"), MODEL, "msg_1")
    assert out["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "a", "input": {"x": 1}},
        {"type": "tool_use", "id": "call_2", "name": "b", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "c", "input": {"arguments": "{not json"}},
        {"type": "tool_use", "id": "call_4", "name": "d", "input": {"arguments": "[1, 2]"}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_a_tool_call_without_an_id_gets_one() -> None:
    calls = [{"type": "function", "function": {"name": "a", "arguments": "{}"}}]
    block = chat_to_message(completion({"tool_calls": calls}), MODEL, "msg_1")["content"][0]
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", block["id"])


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop_reason(finish: str | None, stop_reason: str) -> None:
    assert chat_to_message(completion({"content": "x"}, finish=finish), MODEL, "m")["stop_reason"] == stop_reason


def test_tool_calls_ended_by_stop_still_say_tool_use() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]
    assert chat_to_message(completion({"tool_calls": calls}, finish="stop"), MODEL, "m")["stop_reason"] == "tool_use"


def test_usage_splits_cache_reads_and_writes_out_of_the_input() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 200},
    }
    assert chat_to_message(completion({"content": "x"}, usage=usage), MODEL, "m")["usage"] == {
        "input_tokens": 300,
        "cache_read_input_tokens": 600,
        "cache_creation_input_tokens": 100,
        "output_tokens": 300,
    }


def test_missing_usage_is_all_zeros() -> None:
    assert chat_to_message({"choices": []}, MODEL, "m")["usage"] == usage_block(Usage())
    assert set(usage_block(Usage()).values()) == {0}


def test_usage_block_never_reports_negative_input() -> None:
    assert usage_block(Usage(prompt=10, completion=1, cache_read=8, cache_write=5))["input_tokens"] == 0


# -- streams --------------------------------------------------------------------------------------------------


def parse_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) pairs; every event must be well framed and its payload's type must match its name."""
    events: list[tuple[str, dict[str, Any]]] = []
    assert data == b"" or data.endswith(b"\n\n")
    for block in data.split(b"\n\n")[:-1]:
        name_line, data_line = block.split(b"\n")
        assert name_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        name, payload = name_line[7:].decode(), orjson.loads(data_line[6:])
        assert payload["type"] == name
        events.append((name, payload))
    return events


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        piece.update(id=call_id, type="function")
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


USAGE = {"prompt_tokens": 50, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 20}}
TEXT_STREAM = (
    chunk({"role": "assistant", "content": ""})
    + chunk({"content": "Hel"})
    + chunk({"content": "lo"})
    + chunk({}, finish="stop")
    + chunk(usage=USAGE)
    + b"data: [DONE]\n\n"
)


def run(data: bytes, *, step: int | None = None) -> tuple[MessagesStream, list[tuple[str, dict[str, Any]]]]:
    stream = MessagesStream(MODEL, "msg_1")
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    out = b"".join(stream.feed(piece) for piece in pieces) + stream.end()
    return stream, parse_sse(out)


def test_a_text_stream_becomes_the_messages_event_sequence() -> None:
    stream, events = run(TEXT_STREAM)
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "output_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 30,
                    "cache_read_input_tokens": 20,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 7,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert stream.started
    assert stream.error is None


def test_a_stream_split_byte_by_byte_gives_the_same_events_as_whole() -> None:
    assert run(TEXT_STREAM, step=1)[1] == run(TEXT_STREAM)[1]


def test_reasoning_text_and_two_tool_calls_become_blocks_0_to_3() -> None:
    data = (
        chunk({"role": "assistant"})
        + chunk({"reasoning_content": "Think"})
        + chunk({"reasoning_content": "ing."})
        + chunk({"content": "Calling."})
        + chunk(call(0, "", "call_a", "get_weather"))
        + chunk(call(0, '{"city":'))
        + chunk(call(0, '"Paris"}'))
        + chunk(call(1, '{"tz":"UTC"}', "call_b", "get_time"))
        + chunk({}, finish="tool_calls")
    )
    _, events = run(data)
    assert names(events) == [
        "message_start",
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_delta", "content_block_stop"],
        *["content_block_start", "content_block_delta", "content_block_stop"],
        "message_delta",
        "message_stop",
    ]
    starts = [(p["index"], p["content_block"]) for n, p in events if n == "content_block_start"]
    assert starts == [
        (0, {"type": "thinking", "thinking": ""}),
        (1, {"type": "text", "text": ""}),
        (2, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
        (3, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
    ]
    deltas = [(p["index"], p["delta"]) for n, p in events if n == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "Think"}),
        (0, {"type": "thinking_delta", "thinking": "ing."}),
        (1, {"type": "text_delta", "text": "Calling."}),
        (2, {"type": "input_json_delta", "partial_json": '{"city":'}),
        (2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        (3, {"type": "input_json_delta", "partial_json": '{"tz":"UTC"}'}),
    ]
    assert [p["index"] for n, p in events if n == "content_block_stop"] == [0, 1, 2, 3]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_reasoning_under_its_other_name_streams_as_thinking() -> None:
    _, events = run(chunk({"reasoning": "Hmm"}) + chunk({}, finish="stop"))
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": ""}
    assert events[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Hmm"}


def test_a_tool_call_without_id_or_name_gets_a_generated_id_and_an_empty_name() -> None:
    _, events = run(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}) + chunk({}, finish="tool_calls")
    )
    block = events[1][1]["content_block"]
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", block["id"])
    assert block["name"] == ""


def test_role_only_deltas_and_empty_strings_produce_no_blocks() -> None:
    _, events = run(chunk({"role": "assistant", "content": ""}) + chunk({"reasoning_content": ""}) + chunk({}, "stop"))
    assert names(events) == ["message_start", "message_delta", "message_stop"]


def test_the_usage_chunk_after_the_finish_reason_lands_in_message_delta_and_ends_the_message() -> None:
    stream = MessagesStream(MODEL, "msg_1")
    before = parse_sse(stream.feed(chunk({"content": "Hi"}) + chunk({}, finish="length")))
    assert "message_delta" not in names(before)  # usage may still come
    after = parse_sse(stream.feed(chunk(usage=USAGE)))
    assert names(after) == ["content_block_stop", "message_delta", "message_stop"]
    assert after[1][1]["delta"]["stop_reason"] == "max_tokens"
    assert after[1][1]["usage"]["output_tokens"] == 7
    assert stream.feed(b"data: [DONE]\n\n") == b""
    assert stream.end() == b""


def test_message_delta_and_message_stop_are_sent_once_only() -> None:
    for tail in (b"", b"data: [DONE]\n\n", chunk(usage=USAGE) + b"data: [DONE]\n\n"):
        stream = MessagesStream(MODEL, "msg_1")
        out = stream.feed(chunk({"content": "x"}) + chunk({}, finish="stop") + tail) + stream.end() + stream.end()
        assert names(parse_sse(out)).count("message_delta") == 1
        assert names(parse_sse(out)).count("message_stop") == 1


def test_without_a_usage_chunk_the_message_ends_with_zero_usage() -> None:
    _, events = run(chunk({"content": "x"}) + chunk({}, finish="stop"))
    assert events[-2][1]["usage"] == usage_block(Usage())


def test_usage_on_the_first_chunk_goes_into_message_start() -> None:
    _, events = run(chunk({"role": "assistant"}, usage={"prompt_tokens": 12, "completion_tokens": 0}))
    assert events[0][1]["message"]["usage"]["input_tokens"] == 12


def test_an_error_event_mid_stream_becomes_an_error_and_ends_the_stream() -> None:
    stream = MessagesStream(MODEL, "msg_1")
    out = stream.feed(chunk({"content": "partial"}) + b'data: {"error":{"message":"Upstream went away."}}\n\n')
    out += stream.feed(chunk({"content": "ignored"}) + chunk({}, finish="stop"))
    out += stream.end()
    events = parse_sse(out)
    assert names(events) == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "api_error", "message": "Upstream went away."}}
    assert stream.error == "Upstream went away."


def test_a_stream_that_ends_without_a_finish_reason_sends_nothing_more() -> None:
    stream = MessagesStream(MODEL, "msg_1")
    assert names(parse_sse(stream.feed(chunk({"content": "x"})))) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    assert stream.end() == b""


def test_an_empty_stream_sends_nothing() -> None:
    stream = MessagesStream(MODEL, "msg_1")
    assert stream.feed(b"") == b""
    assert stream.end() == b""
    assert not stream.started


def test_a_last_event_without_its_blank_line_still_counts_at_the_end() -> None:
    stream = MessagesStream(MODEL, "msg_1")
    out = stream.feed(chunk({"content": "x"}) + chunk({}, finish="stop")[:-2])
    assert "message_delta" not in names(parse_sse(out))
    assert names(parse_sse(stream.end()))[-2:] == ["message_delta", "message_stop"]


def test_error_and_ping_events_are_framed_as_anthropic_sends_them() -> None:
    assert error_event("overloaded_error", "Overloaded") == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert ping_event() == b'event: ping\ndata: {"type": "ping"}\n\n'
