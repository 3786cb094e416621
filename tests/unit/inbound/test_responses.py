"""The Responses API over chat-only providers: request, body and stream translation (pure; no network)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from gophergate.core.errors import InvalidRequest
from gophergate.inbound.responses import (
    UNFINISHED,
    ResponsesStream,
    chat_to_response,
    conversation_messages,
    output_messages,
    responses_to_chat,
)
from gophergate.wire.sse import SSEDecoder

PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = "data:application/pdf;base64,JVBERi0xLjQ="


def rejected(data: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        responses_to_chat(data)
    return info.value


# -- requests -------------------------------------------------------------------------------------------------


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    chat = responses_to_chat({"model": "deepseek-chat", "instructions": "Be brief.", "input": "Hi"})
    assert chat == {
        "model": "deepseek-chat",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }


def test_a_streamed_request_asks_for_usage() -> None:
    chat = responses_to_chat({"model": "m", "input": "Hi", "stream": True})
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}
    assert "stream_options" not in responses_to_chat({"model": "m", "input": "Hi", "stream": False})


def test_message_items_carry_text_images_and_files() -> None:
    chat = responses_to_chat(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "Rule one."}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Compare"},
                        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                        {"type": "input_image", "image_url": PNG},
                        {"type": "input_file", "filename": "a.pdf", "file_data": PDF},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "One "}, {"type": "output_text", "text": "two"}],
                },
                {"role": "system", "content": "Rule two."},
            ],
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Rule one."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}},
            ],
        },
        {"role": "assistant", "content": "One two"},
        {"role": "system", "content": "Rule two."},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file-1"}, "input[0].content[1].file_id"),
        ({"type": "input_file", "file_id": "file-1"}, "input[0].content[1].file_id"),
        ({"type": "input_file", "file_url": "https://x.test/a.pdf"}, "input[0].content[1].file_url"),
        ({"type": "input_audio", "input_audio": {}}, "input[0].content[1].type"),
    ],
)
def test_file_ids_and_urls_are_400s_naming_the_field(part: dict[str, Any], param: str) -> None:
    content = [{"type": "input_text", "text": "see"}, part]
    error = rejected({"model": "m", "input": [{"role": "user", "content": content}]})
    assert error.status == 400
    assert error.param == param


def test_function_calls_and_outputs_make_one_tool_round() -> None:
    chat = responses_to_chat(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"city":"Rome"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "21C"}],
                },
            ],
        }
    )
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "21C"},
    ]


def test_a_reasoning_item_becomes_reasoning_content_of_the_next_assistant_message() -> None:
    summary = [{"type": "summary_text", "text": "Think."}, {"type": "summary_text", "text": "Then act."}]
    chat = responses_to_chat(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Go"},
                {"type": "reasoning", "id": "rs_1", "summary": summary, "encrypted_content": "opaque"},
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Nothing follows."}]},
            ],
        }
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Think.\n\nThen act.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert len(chat["messages"]) == 3  # the trailing reasoning had no assistant message to go with


@pytest.mark.parametrize("kind", ["item_reference", "web_search_call", "computer_call_output"])
def test_items_chat_cannot_express_are_400s_naming_their_type(kind: str) -> None:
    error = rejected({"model": "m", "input": [{"role": "user", "content": "Hi"}, {"type": kind, "id": "x"}]})
    assert error.param == "input[1].type"
    assert kind in error.message


@pytest.mark.parametrize(
    "kind",
    [
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "mcp",
        "local_shell",
        "custom",
    ],
)
def test_built_in_tools_are_rejected_naming_the_tool_type(kind: str) -> None:
    tools = [{"type": "function", "name": "f", "parameters": {}}, {"type": kind}]
    error = rejected({"model": "m", "input": "Hi", "tools": tools})
    assert error.param == "tools[1].type"
    assert f"'{kind}'" in error.message
    assert "not available for this model's provider" in error.message


def test_function_tools_are_nested_under_function() -> None:
    tool = {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}
    chat = responses_to_chat({"model": "m", "input": "Hi", "tools": [tool], "parallel_tool_calls": False})
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        }
    ]
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_variants(choice: Any, expected: Any) -> None:
    tools = [{"type": "function", "name": "f"}]
    assert (
        responses_to_chat({"model": "m", "input": "Hi", "tools": tools, "tool_choice": choice})["tool_choice"]
        == expected
    )


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "web_search_preview"},
        {"type": "allowed_tools", "mode": "auto", "tools": []},
        "sometimes",
        {"type": "function"},
    ],
)
def test_other_tool_choices_are_400s_naming_tool_choice(choice: Any) -> None:
    error = rejected({"model": "m", "input": "Hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": choice})
    assert error.param is not None and error.param.startswith("tool_choice")


def test_tool_settings_without_tools_are_not_sent() -> None:
    chat = responses_to_chat(
        {"model": "m", "input": "Hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & chat.keys()


def test_text_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    chat = responses_to_chat({"model": "m", "input": "Hi", "text": {"format": fmt}})
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    chat = responses_to_chat({"model": "m", "input": "Hi", "text": {"format": {"type": "json_object"}}})
    assert chat["response_format"] == {"type": "json_object"}
    chat = responses_to_chat({"model": "m", "input": "Hi", "text": {"format": {"type": "text"}, "verbosity": "low"}})
    assert "response_format" not in chat
    assert rejected({"model": "m", "input": "Hi", "text": {"format": {"type": "json_schema", "name": "x"}}}).param == (
        "text.format.schema"
    )


def test_max_output_tokens_reasoning_effort_and_sampling() -> None:
    chat = responses_to_chat(
        {
            "model": "m",
            "input": "Hi",
            "max_output_tokens": 300,
            "reasoning": {"effort": "high", "summary": "auto"},
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "u-1",
            "metadata": {"k": "v"},
            "store": True,
            "previous_response_id": "resp_0",
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "background": False,
        }
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 300,
        "reasoning_effort": "high",
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
    }


@pytest.mark.parametrize("field", ["background", "conversation", "prompt"])
def test_requests_needing_openai_storage_are_400s(field: str) -> None:
    value: Any = True if field == "background" else {"id": "x"}
    assert rejected({"model": "m", "input": "Hi", field: value}).param == field


def test_history_goes_between_the_instructions_and_the_new_input() -> None:
    history = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Answer"}]
    request = {"model": "m", "instructions": "Sys", "input": "Now"}
    chat = responses_to_chat(request, history)
    assert chat["messages"] == [
        {"role": "system", "content": "Sys"},
        *history,
        {"role": "user", "content": "Now"},
    ]
    assert conversation_messages(chat, request) == [*history, {"role": "user", "content": "Now"}]


# -- responses ------------------------------------------------------------------------------------------------


REQUEST: dict[str, Any] = {"model": "my-alias", "input": "Hi"}


def completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_text_answer_is_a_completed_message() -> None:
    response = chat_to_response(completion({"content": "Hello"}), REQUEST, "resp_1", 1700)
    assert response["id"] == "resp_1"
    assert response["object"] == "response"
    assert response["created_at"] == 1700
    assert response["status"] == "completed"
    assert response["error"] is None
    assert response["incomplete_details"] is None
    assert response["model"] == "my-alias"
    [item] = response["output"]
    assert re.fullmatch(r"msg_[0-9a-f]{48}", item.pop("id"))
    assert item == {
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
    }
    assert "output_text" not in response


def test_reasoning_text_and_tool_calls_become_items_in_order() -> None:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    message = {"content": "Let me check.", "reasoning_content": "Hmm.", "tool_calls": calls}
    output = chat_to_response(completion(message, "tool_calls"), REQUEST, "resp_1", 1)["output"]
    assert [item["type"] for item in output] == ["reasoning", "message", "function_call", "function_call"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert output[0]["id"].startswith("rs_")
    assert [(i["call_id"], i["name"], i["arguments"], i["status"]) for i in output[2:]] == [
        ("call_a", "f", '{"x":1}', "completed"),
        ("call_b", "g", "{}", "completed"),
    ]
    assert all(i["id"].startswith("fc_") for i in output[2:])
    # Ollama spells the reasoning field "reasoning".
    output = chat_to_response(completion({"content": "x", "reasoning": "R"}), REQUEST, "r", 1)["output"]
    assert output[0]["summary"][0]["text"] == "R"


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_answer_is_incomplete(finish: str, reason: str) -> None:
    response = chat_to_response(completion({"content": "Hal"}, finish), REQUEST, "resp_1", 1)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    assert response["output"][0]["status"] == "incomplete"


def test_a_refusal_is_a_refusal_part() -> None:
    response = chat_to_response(completion({"content": None, "refusal": "No."}), REQUEST, "resp_1", 1)
    assert response["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_usage_carries_cached_and_reasoning_tokens() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    response = chat_to_response(completion({"content": "x"}, usage=usage), REQUEST, "resp_1", 1)
    assert response["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 140,
    }
    assert chat_to_response(completion({"content": "x"}), REQUEST, "resp_1", 1)["usage"] == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def test_the_response_echoes_the_request_settings() -> None:
    tools = [{"type": "function", "name": "f", "parameters": {}}]
    request = {
        "model": "my-alias",
        "input": "Hi",
        "instructions": "Sys",
        "max_output_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.8,
        "tool_choice": "required",
        "tools": tools,
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "low"},
        "user": "u",
        "metadata": {"k": "v"},
        "store": False,
        "previous_response_id": "resp_0",
    }
    response = chat_to_response(completion({"content": "{}"}), request, "resp_1", 1)
    for name in set(request) - {"input"}:
        assert response[name] == request[name], name
    defaults = chat_to_response(completion({"content": "x"}), REQUEST, "resp_1", 1)
    assert (defaults["tools"], defaults["tool_choice"], defaults["parallel_tool_calls"]) == ([], "auto", True)
    assert (defaults["instructions"], defaults["metadata"], defaults["store"]) == (None, {}, True)


def test_output_messages_rebuild_the_assistant_turn() -> None:
    calls = [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    message = {"content": "Checking.", "reasoning_content": "Hmm.", "tool_calls": calls}
    response = chat_to_response(completion(message, "tool_calls"), REQUEST, "resp_1", 1)
    assert output_messages(response) == [
        {"role": "assistant", "content": "Checking.", "tool_calls": calls, "reasoning_content": "Hmm."}
    ]
    only_calls = chat_to_response(completion({"content": None, "tool_calls": calls}, "tool_calls"), REQUEST, "r", 1)
    assert output_messages(only_calls) == [{"role": "assistant", "content": None, "tool_calls": calls}]
    assert output_messages(chat_to_response(completion({"content": ""}), REQUEST, "r", 1)) == []


# -- streams --------------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "up", "choices": choices, **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def call_delta(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 20,
    "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 5},
}
DONE = b"data: [DONE]\n\n"

FULL = b"".join(
    [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}),
        chunk({"content": "Calling "}),
        chunk({"content": "tools."}),
        chunk(call_delta(0, "", "call_a", "f")),
        chunk(call_delta(0, '{"x":')),
        chunk(call_delta(0, "1}")),
        chunk(call_delta(1, "{}", "call_b", "g")),
        chunk({}, "tool_calls"),
        chunk(None, usage=USAGE),
        DONE,
    ]
)


def parse(raw: bytes) -> list[dict[str, Any]]:
    """The events of a Responses stream; each event name must repeat its payload's type."""
    decoder = SSEDecoder()
    events = []
    for event in decoder.feed(raw) + decoder.flush():
        payload = orjson.loads(event.data)
        assert event.event == payload["type"].encode()
        events.append(payload)
    return events


def run(*parts: bytes, request: dict[str, Any] | None = None) -> tuple[ResponsesStream, list[dict[str, Any]]]:
    stream = ResponsesStream(request or REQUEST, "resp_1", 1700)
    raw = b"".join(stream.feed(part) for part in parts) + stream.end()
    return stream, parse(raw)


def normalized(raw: bytes) -> bytes:
    """Item ids are random: number them by first appearance."""
    seen: dict[bytes, bytes] = {}
    return re.sub(rb"(rs|msg|fc)_[0-9a-f]{48}", lambda m: seen.setdefault(m[0], b"id%d" % len(seen)), raw)


def test_a_byte_by_byte_split_gives_the_same_events_as_the_whole() -> None:
    whole = ResponsesStream(REQUEST, "resp_1", 1700)
    expected = whole.feed(FULL) + whole.end()
    split = ResponsesStream(REQUEST, "resp_1", 1700)
    got = b"".join(split.feed(FULL[i : i + 1]) for i in range(len(FULL))) + split.end()
    assert normalized(got) == normalized(expected)
    assert got.count(b"\n\n") == len(parse(got)) > 20


def test_reasoning_text_and_two_tool_calls_give_the_event_sequence() -> None:
    stream, events = run(FULL)
    assert [(e["type"], e.get("output_index")) for e in events] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.reasoning_summary_part.added", 0),
        ("response.reasoning_summary_text.delta", 0),
        ("response.reasoning_summary_text.delta", 0),
        ("response.reasoning_summary_text.done", 0),
        ("response.reasoning_summary_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.content_part.added", 1),
        ("response.output_text.delta", 1),
        ("response.output_text.delta", 1),
        ("response.output_text.done", 1),
        ("response.content_part.done", 1),
        ("response.output_item.done", 1),
        ("response.output_item.added", 2),
        ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.done", 2),
        ("response.output_item.done", 2),
        ("response.output_item.added", 3),
        ("response.function_call_arguments.delta", 3),
        ("response.function_call_arguments.done", 3),
        ("response.output_item.done", 3),
        ("response.completed", None),
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))

    created = events[0]["response"]
    assert (created["status"], created["output"], created["usage"], created["model"]) == (
        "in_progress",
        [],
        None,
        "my-alias",
    )
    by_type = {e["type"]: e for e in events}
    assert by_type["response.reasoning_summary_text.done"]["text"] == "Let me think."
    assert by_type["response.output_text.done"]["text"] == "Calling tools."
    assert by_type["response.content_part.done"]["part"] == {
        "type": "output_text",
        "text": "Calling tools.",
        "annotations": [],
    }
    added = events[16]["item"]
    assert (added["call_id"], added["name"], added["arguments"], added["status"]) == ("call_a", "f", "", "in_progress")
    assert events[19]["arguments"] == '{"x":1}'
    assert events[17]["item_id"] == added["id"]

    final = events[-1]["response"]
    assert final == stream.response
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["output"][1]["status"] == "completed"
    assert final["output"][1]["content"] == [{"type": "output_text", "text": "Calling tools.", "annotations": []}]
    assert [(i["call_id"], i["arguments"], i["status"]) for i in final["output"][2:]] == [
        ("call_a", '{"x":1}', "completed"),
        ("call_b", "{}", "completed"),
    ]
    assert output_messages(final)[0]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":1}'}


def test_the_streamed_response_matches_the_non_streamed_one() -> None:
    stream, _ = run(FULL)
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    message = {"content": "Calling tools.", "reasoning_content": "Let me think.", "tool_calls": calls}
    body = chat_to_response(completion(message, "tool_calls", USAGE), REQUEST, "resp_1", 1700)
    assert normalized(orjson.dumps(stream.response)) == normalized(orjson.dumps(body))


def test_usage_after_the_finish_lands_in_response_completed_at_once() -> None:
    stream = ResponsesStream(REQUEST, "resp_1", 1700)
    parse(stream.feed(chunk({"content": "Hi"}) + chunk({}, "stop")))
    assert stream.response is None  # the usage chunk may still come
    events = parse(stream.feed(chunk(None, usage=USAGE)))
    assert [e["type"] for e in events] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1]["response"]["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 30,
    }
    assert stream.response == events[-1]["response"]
    assert stream.feed(DONE) == b""
    assert stream.end() == b""


def test_a_finish_without_usage_completes_at_done_or_at_the_end() -> None:
    _, events = run(chunk({"content": "Hi"}), chunk({}, "stop"))
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["total_tokens"] == 0
    stream = ResponsesStream(REQUEST, "resp_1", 1700)
    events = parse(stream.feed(chunk({"content": "Hi"}) + chunk({}, "stop") + DONE))
    assert events[-1]["type"] == "response.completed"
    assert stream.end() == b""


def test_a_length_finish_gives_response_incomplete() -> None:
    _, events = run(chunk({"content": "Hal"}), chunk({}, "length"), chunk(None, usage=USAGE))
    assert events[-1]["type"] == "response.incomplete"
    response = events[-1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_a_streamed_refusal_is_a_refusal_part() -> None:
    _, events = run(chunk({"refusal": "No"}), chunk({"refusal": "."}), chunk({}, "stop"))
    types = [e["type"] for e in events]
    assert types[3:9] == [
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_an_error_event_gives_response_failed_and_ends_the_stream() -> None:
    stream = ResponsesStream(REQUEST, "resp_1", 1700)
    raw = stream.feed(
        chunk({"content": "Hi"}) + b'data: {"error": {"message": "overloaded"}}\n\n' + chunk({"content": "x"})
    )
    events = parse(raw)
    assert [e["type"] for e in events][-1] == "response.failed"
    assert "error" not in {e["type"] for e in events}
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "overloaded"}
    assert stream.error == "overloaded"
    assert stream.response is None
    assert stream.feed(chunk({}, "stop")) == b""
    assert stream.end() == b""


def test_a_stream_that_ends_without_a_finish_fails() -> None:
    stream, events = run(chunk({"content": "Hi"}))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == UNFINISHED
    assert stream.error == UNFINISHED
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_an_empty_stream_still_starts_before_it_fails() -> None:
    _, events = run()
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]


def test_a_malformed_event_fails_the_stream() -> None:
    stream, events = run(b"data: {not json\n\n")
    assert events[-1]["type"] == "response.failed"
    assert stream.error is not None and "malformed" in stream.error


NAMESPACE_TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
    {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Sub-agents",
        "tools": [
            {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
            {"type": "function", "name": "wait_agent", "parameters": {"type": "object"}},
        ],
    },
]


def test_namespace_tools_reach_a_chat_backend_as_plain_functions() -> None:
    chat = responses_to_chat({"model": "m", "input": "Hi", "tools": NAMESPACE_TOOLS})
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec_command", "spawn_agent", "wait_agent"]


def test_a_call_of_a_namespaced_function_names_its_namespace() -> None:
    request = {"model": "m", "input": "Hi", "tools": NAMESPACE_TOOLS}
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "spawn_agent", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}},
    ]
    response = chat_to_response(completion({"role": "assistant", "tool_calls": calls}, "tool_calls"), request, "r", 1)
    items = [i for i in response["output"] if i["type"] == "function_call"]
    assert items[0]["namespace"] == "multi_agent_v1" and "namespace" not in items[1]
    _, events = run(chunk(call_delta(0, "{}", "call_1", "spawn_agent"), "tool_calls"), request=request)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["namespace"] == "multi_agent_v1"


def test_a_namespaced_function_call_item_in_the_input_is_accepted() -> None:
    items = [
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "spawn_agent",
            "namespace": "multi_agent_v1",
            "arguments": "{}",
        },
        {"type": "function_call_output", "call_id": "c1", "output": "spawned"},
    ]
    chat = responses_to_chat({"model": "m", "input": items, "tools": NAMESPACE_TOOLS})
    assert chat["messages"][0]["tool_calls"][0]["function"]["name"] == "spawn_agent"


def test_two_tools_of_one_name_are_a_400() -> None:
    tools = [*NAMESPACE_TOOLS, {"type": "function", "name": "wait_agent", "parameters": {}}]
    assert rejected({"model": "m", "input": "Hi", "tools": tools}).param == "tools"
