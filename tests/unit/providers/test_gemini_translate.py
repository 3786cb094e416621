"""Golden tests of the Chat Completions <-> Gemini translation (providers.md §3, §9, §11)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gophergate.core.errors import InvalidRequest
from gophergate.core.usage import Usage, from_gemini
from gophergate.providers.gemini.signatures import CallMemory, SignatureStore
from gophergate.providers.gemini.translate import (
    SKIP_SIGNATURE,
    InlineData,
    RemoteFile,
    finish_reason,
    from_gemini_response,
    remote_files,
    to_gemini,
)


def _req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "gemini-2.5-flash", "messages": messages, **extra}


def test_system_and_developer_messages_become_system_instruction() -> None:
    out = to_gemini(
        _req(
            [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "no emoji"}]},
                {"role": "user", "content": "hi"},
            ]
        ),
        "gemini-2.5-flash",
        None,
    )
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "no emoji"}]},
    }


def test_roles_map_to_user_and_model_and_consecutive_turns_merge() -> None:
    out = to_gemini(
        _req(
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
                {"role": "user", "content": "e"},
            ]
        ),
        "gemini-2.5-flash",
        None,
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]


def test_data_uri_image_and_pdf_file_become_inline_data() -> None:
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    out = to_gemini(_req([{"role": "user", "content": content}]), "gemini-2.5-flash", None)
    assert out["contents"][0]["parts"] == [
        {"text": "look"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


def test_remote_image_urls_are_listed_and_inlined_from_what_was_fetched() -> None:
    url = "https://example.com/cat.jpg"
    body = _req([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert remote_files(body) == [RemoteFile(url, "messages[0].content[0].image_url.url")]
    out = to_gemini(body, "gemini-2.5-flash", None, {url: InlineData("image/jpeg", "/9j/")})
    assert out["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}]
    with pytest.raises(InvalidRequest) as info:
        to_gemini(body, "gemini-2.5-flash", None)
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_a_data_uri_that_is_not_base64_is_a_400_naming_the_part() -> None:
    body = _req([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}])
    with pytest.raises(InvalidRequest) as info:
        to_gemini(body, "gemini-2.5-flash", None)
    assert info.value.param == "messages[0].content[0].image_url.url"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


def test_tools_become_function_declarations_with_json_schema() -> None:
    out = to_gemini(_req([{"role": "user", "content": "x"}], tools=TOOLS), "gemini-2.5-flash", None)
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parametersJsonSchema": TOOLS[0]["function"]["parameters"],
                },
                {"name": "get_time"},
            ]
        }
    ]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TOOLS[1]]}},
            {"mode": "VALIDATED", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
def test_tool_choice_maps_to_function_calling_config(choice: Any, config: dict[str, Any]) -> None:
    out = to_gemini(_req([{"role": "user", "content": "x"}], tools=TOOLS, tool_choice=choice), "gemini-2.5-flash", None)
    assert out["toolConfig"] == {"functionCallingConfig": config}


def _tool_history(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        *results,
    ]


def test_tool_results_follow_the_calling_turn_in_one_user_turn_with_wrapped_results() -> None:
    store = SignatureStore()
    store.put("call_a", CallMemory("sig-a", "fc_1"))
    store.put("call_b", CallMemory(None, "fc_2"))
    messages = _tool_history(
        [
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 3}'},
            {"role": "user", "content": "thanks"},
        ]
    )
    out = to_gemini(_req(messages), "gemini-3-flash", store)
    assert out["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "fc_1"},
                    "thoughtSignature": "sig-a",
                },
                {"functionCall": {"name": "get_time", "args": {}, "id": "fc_2"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}, "id": "fc_2"}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 3}, "id": "fc_1"}},
                {"text": "thanks"},
            ],
        },
    ]


def test_tool_results_sent_after_a_later_message_still_land_right_after_their_call() -> None:
    messages = _tool_history(
        [
            {"role": "assistant", "content": "checking"},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        ]
    )
    contents = to_gemini(_req(messages), "gemini-2.5-flash", None)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model"]
    assert [next(iter(p)) for p in contents[2]["parts"]] == ["functionResponse", "functionResponse"]


def test_gemini3_calls_without_a_stored_signature_get_the_documented_sentinel() -> None:
    messages = _tool_history([{"role": "tool", "tool_call_id": "call_a", "content": "x"}])
    parts = to_gemini(_req(messages), "gemini-3-pro-preview", SignatureStore())["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]  # only the first call of a step carries one
    parts = to_gemini(_req(messages), "gemini-2.5-flash", SignatureStore())["contents"][1]["parts"]
    assert "thoughtSignature" not in parts[0]


def test_invalid_tool_call_arguments_are_a_400_naming_the_field() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}],
        },
    ]
    with pytest.raises(InvalidRequest) as info:
        to_gemini(_req(messages), "gemini-2.5-flash", None)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_a_tool_result_for_an_unknown_call_is_a_400_naming_the_field() -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]
    with pytest.raises(InvalidRequest) as info:
        to_gemini(_req(messages), "gemini-2.5-flash", None)
    assert info.value.param == "messages[1].tool_call_id"


def test_generation_config_fields() -> None:
    body = _req(
        [{"role": "user", "content": "x"}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=10,
        max_completion_tokens=20,
        stop="END",
        n=2,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.3,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        user="ignored",
        stream_options={"include_usage": True},
        parallel_tool_calls=True,
    )
    out = to_gemini(body, "gemini-2.5-flash", None)
    assert set(out) == {"contents", "generationConfig"}  # nothing unknown reaches Gemini
    assert out["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "maxOutputTokens": 20,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-3-flash", "low", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3-pro-preview", "xhigh", {"thinkingLevel": "XHIGH", "includeThoughts": True}),
        ("gemini-3-flash", "none", {"thinkingLevel": "MINIMAL", "includeThoughts": False}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("gemini-2.5-flash", "max", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ],
)
def test_reasoning_effort_uses_levels_for_gemini3_and_budgets_for_25(
    model: str, effort: str, thinking: dict[str, Any]
) -> None:
    out = to_gemini(_req([{"role": "user", "content": "x"}], reasoning_effort=effort), model, None)
    assert out["generationConfig"]["thinkingConfig"] == thinking


# -- responses ------------------------------------------------------------------------------------------------


def test_response_with_thoughts_text_and_usage() -> None:
    data = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "hmm", "thought": True}, {"text": "Hello"}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 4,
            "totalTokenCount": 35,
        },
    }
    done = from_gemini_response(data, model="gemini-2.5-flash", store=None, created=5)
    assert done is not None
    body = done.body
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "gemini-2.5-flash" and body["created"] == 5
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello", "refusal": None, "reasoning_content": "hmm"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 25,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    assert done.usage == Usage(prompt=10, completion=25, reasoning=20, cache_read=4)


def test_function_calls_get_unique_ids_finish_tool_calls_and_remember_signatures() -> None:
    store = SignatureStore()
    data = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "SIG"},
                        {"functionCall": {"name": "g", "args": {}, "id": "fc_9"}},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    done = from_gemini_response(data, model="m", store=store)
    assert done is not None and done.finish_reason == "tool_calls"
    message = done.body["choices"][0]["message"]
    assert message["content"] is None
    calls = message["tool_calls"]
    assert [c["function"] for c in calls] == [{"name": "f", "arguments": '{"a":1}'}, {"name": "g", "arguments": "{}"}]
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert store.get(ids[0]) == CallMemory("SIG", None)
    assert store.get(ids[1]) == CallMemory(None, "fc_9")
    assert done.usage is None and "usage" not in done.body


def test_blocked_prompt_is_a_content_filter_answer_with_empty_content() -> None:
    data = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3}}
    done = from_gemini_response(data, model="m", store=None)
    assert done is not None and done.finish_reason == "content_filter"
    choice = done.body["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == ""
    assert "PROHIBITED_CONTENT" in choice["message"]["refusal"]


def test_a_response_with_neither_candidates_nor_a_block_is_unusable() -> None:
    assert from_gemini_response({"usageMetadata": {}}, model="m", store=None) is None


@pytest.mark.parametrize(
    ("reason", "calls", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("LANGUAGE", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_finish_reason_map(reason: str | None, calls: bool, expected: str) -> None:
    assert finish_reason(reason, calls) == expected


def test_usage_reader_adds_thoughts_to_completion_and_keeps_cache_inside_prompt() -> None:
    usage = from_gemini(
        {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 30,
            "toolUsePromptTokenCount": 5,
        }
    )
    assert usage == Usage(prompt=105, completion=40, reasoning=30, cache_read=60)


# -- property ---------------------------------------------------------------------------------------------------

_text = st.text(max_size=20)
_json_object = st.dictionaries(st.text(max_size=5), st.integers(-(2**53), 2**53) | st.text(max_size=5), max_size=3)


@st.composite
def _chat_requests(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    ids: list[str] = []
    for k in range(draw(st.integers(1, 6))):
        role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
        if role == "tool" and not ids:
            role = "user"
        if role in ("system", "developer"):
            messages.append({"role": role, "content": draw(_text)})
        elif role == "user":
            content: Any = draw(
                _text
                | st.lists(
                    st.sampled_from(
                        [
                            {"type": "text", "text": "hello"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                        ]
                    ),
                    max_size=3,
                )
            )
            messages.append({"role": "user", "content": content, "name": "u"})
        elif role == "assistant":
            calls = [
                {
                    "id": f"call_{k}_{j}",
                    "type": "function",
                    "function": {"name": "f", "arguments": orjson.dumps(draw(_json_object)).decode()},
                }
                for j in range(draw(st.integers(0, 2)))
            ]
            ids.extend(c["id"] for c in calls)
            message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | _text)}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
        else:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": draw(st.sampled_from(ids)),
                    "content": draw(_text | st.just('{"a": 1}') | st.just("[1, 2]")),
                }
            )
    messages.append({"role": "user", "content": "last"})
    body: dict[str, Any] = {"model": "gemini-3-flash", "messages": messages}
    optional = {
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "max_tokens": st.integers(1, 1000),
        "max_completion_tokens": st.integers(1, 1000),
        "stop": st.text(min_size=1, max_size=3) | st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=3),
        "n": st.integers(1, 4),
        "seed": st.integers(0, 2**31),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
            ]
        ),
        "tools": st.just(TOOLS),
        "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "function": {"name": "f"}}]),
        "stream_options": st.just({"include_usage": True}),
        "user": _text,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_chat_requests(), model=st.sampled_from(["gemini-3-flash", "gemini-2.5-pro", "models/gemini-2.5-flash"]))
def test_any_valid_chat_request_translates_without_an_exception(body: dict[str, Any], model: str) -> None:
    out = to_gemini(body, model, SignatureStore())
    orjson.dumps(out)
    assert set(out) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    for content in out["contents"]:
        assert content["role"] in ("user", "model") and content["parts"]
        for part in content["parts"]:
            if "functionResponse" in part:
                assert isinstance(part["functionResponse"]["response"], dict)
    roles = [c["role"] for c in out["contents"]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # consecutive same-role turns merged


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = to_gemini(_req([{"role": "user", "content": "x"}], tool_choice="required"), "gemini-2.5-flash", None)
    assert "toolConfig" not in out
