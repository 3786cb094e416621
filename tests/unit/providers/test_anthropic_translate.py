"""Golden tests of the Chat Completions <-> Anthropic Messages translation (pure; no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gophergate.core.errors import InvalidRequest
from gophergate.providers.anthropic.thinking_store import ThinkingStore
from gophergate.providers.anthropic.translate import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    finish_reason,
    from_anthropic_message,
    thinking_style,
    to_anthropic,
)

SONNET = "claude-sonnet-4-5-20250929"
OPUS = "claude-opus-4-7"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _call(call_id: str, name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def translate(body: dict[str, Any], model: str = SONNET, **kwargs: Any) -> dict[str, Any]:
    return to_anthropic(body, model, stream=kwargs.pop("stream", False), **kwargs)


def test_plain_request_golden() -> None:
    out = translate(
        {
            "model": "alias",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                {"role": "user", "content": "Hi"},
            ],
            "stop": "END",
            "user": "u-1",
            "temperature": 0.3,
            "frequency_penalty": 0.5,
            "seed": 7,
            "logprobs": True,
            "store": True,
        },
        stream=True,
    )
    assert out == {
        "model": SONNET,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "Be brief.\n\nUse metric.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }


@pytest.mark.parametrize(
    ("body", "registry_limit", "expected"),
    [
        ({"max_tokens": 100}, 64000, 100),
        ({"max_completion_tokens": 200, "max_tokens": 100}, None, 200),
        ({}, 64000, 64000),
        ({}, None, DEFAULT_MAX_TOKENS),
    ],
    ids=["client-max-tokens", "max-completion-tokens-wins", "registry-limit", "default"],
)
def test_max_tokens_is_always_sent(body: dict[str, Any], registry_limit: int | None, expected: int) -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], **body}, max_output_tokens=registry_limit)
    assert out["max_tokens"] == expected


def test_consecutive_same_role_messages_are_merged() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"},
            ]
        }
    )
    assert [(t["role"], [b["text"] for b in t["content"]]) for t in out["messages"]] == [
        ("user", ["a", "b"]),
        ("assistant", ["c", "d"]),
        ("user", ["e"]),
    ]


def test_tool_conversation_golden() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [_call("toolu_A"), _call("toolu_B", arguments="")],
                },
                {"role": "tool", "tool_call_id": "toolu_A", "content": "sunny"},
                {"role": "tool", "tool_call_id": "toolu_B", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "thanks"},
            ],
            "tools": [WEATHER],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_B", "content": [{"type": "text", "text": "rain"}]},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_results_go_first_even_when_a_user_message_came_before_them() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [_call("t1")]},
                {"role": "user", "content": "hurry"},
                {"role": "tool", "tool_call_id": "t1", "content": "done"},
            ]
        }
    )
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER], "tool_choice": choice})
    assert out["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"})
    assert "tool_choice" not in out and "tools" not in out


def test_invalid_tool_call_arguments_are_a_400_naming_the_field() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [_call("t", arguments="{")]}]
    }
    with pytest.raises(InvalidRequest) as info:
        translate(body)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments" and info.value.status == 400


def test_images_and_pdf_parts() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                        {
                            "type": "file",
                            "file": {"file_data": "data:application/pdf;base64,JVBERg==", "filename": "a.pdf"},
                        },
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="},
            "title": "a.pdf",
        },
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": "ftp://x"}}, "messages[0].content[0].image_url.url"),
        (
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}},
            "messages[0].content[0].image_url.url",
        ),
        ({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}, "messages[0].content[0]"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[0].file.file_id"),
    ],
)
def test_unsupported_parts_are_400s_naming_the_part(part: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate({"messages": [{"role": "user", "content": [part]}]})
    assert info.value.param == param


def test_n_above_one_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as info:
        translate({"messages": [{"role": "user", "content": "x"}], "n": 3})
    assert info.value.param == "n"


def test_reasoning_effort_on_a_budget_model_sets_budget_and_room_for_the_answer() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "medium", "top_p": 0.5})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] == 8192 + DEFAULT_MAX_TOKENS
    assert "top_p" not in out and "output_config" not in out


def test_max_effort_without_a_known_output_limit_stays_within_32000_tokens() -> None:
    # Found by the property test: budget 65,536 + room for the answer exceeded Sonnet 4.5's 64,000 limit.
    out = translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"})
    assert out["max_tokens"] == 32_000 and out["thinking"]["budget_tokens"] == 31_999
    known = translate(
        {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}, max_output_tokens=64_000
    )
    assert known["max_tokens"] == 64_000 and known["thinking"]["budget_tokens"] == 63_999


def test_reasoning_budget_is_clamped_below_the_clients_max_tokens() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high", "max_tokens": 3000})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2999} and out["max_tokens"] == 3000


def test_reasoning_is_off_when_max_tokens_leaves_no_room_for_the_minimum_budget() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low", "max_tokens": 500})
    assert "thinking" not in out


def test_reasoning_effort_on_an_adaptive_model_uses_output_config_effort() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "minimal"}, model=OPUS)
    assert out["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert out["output_config"] == {"effort": "low"}


def test_reasoning_effort_none_and_models_without_thinking_send_no_thinking() -> None:
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert "thinking" not in translate({**base, "reasoning_effort": "none"})
    assert "thinking" not in translate({**base, "reasoning_effort": "high"}, model="claude-3-5-haiku-20241022")


def test_forced_tool_choice_turns_thinking_off() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER], "tool_choice": "required"}
    assert "thinking" not in translate({**body, "reasoning_effort": "high"})


def test_invalid_reasoning_effort_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        translate({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"})
    assert info.value.param == "reasoning_effort"


def test_thinking_blocks_are_reinserted_before_tool_use_from_the_store() -> None:
    store = ThinkingStore()
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig1"}, {"type": "redacted_thinking", "data": "x"}]
    store.put(["toolu_1", "toolu_2"], blocks)
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "ok", "tool_calls": [_call("toolu_1"), _call("toolu_2")]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "a"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "b"},
            ],
            "reasoning_effort": "low",
        },
        lookup=store.get,
    )
    assert [b["type"] for b in out["messages"][1]["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert out["messages"][1]["content"][0]["signature"] == "sig1"
    assert out["thinking"]["type"] == "enabled"


def test_thinking_store_entries_expire() -> None:
    store = ThinkingStore(ttl_seconds=-1)
    store.put(["t"], [{"type": "thinking", "thinking": "x", "signature": "s"}])
    assert store.get("t") is None


def test_sampling_fields_are_dropped_from_api_version_2026_10_21() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0.2, "top_p": 0.9, "top_k": 5}
    assert {"temperature", "top_k"} <= set(translate(body))
    out = translate(body, api_version="2026-10-21")
    assert not {"temperature", "top_p", "top_k"} & set(out)


def test_temperature_above_anthropics_range_is_clamped() -> None:
    assert translate({"messages": [{"role": "user", "content": "x"}], "temperature": 1.7})["temperature"] == 1.0


def test_response_format_json_schema_and_json_object() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    base = {"messages": [{"role": "user", "content": "x"}]}
    out = translate(
        {**base, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}
    )
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    out = translate({**base, "response_format": {"type": "json_object"}})
    assert out["system"] == JSON_OBJECT_INSTRUCTION and "output_config" not in out


def test_client_body_is_not_modified() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "tool_calls": [_call("t")]},
            {"role": "tool", "tool_call_id": "t", "content": "c"},
        ]
    }
    snapshot = orjson.dumps(body)
    translate(body)
    assert orjson.dumps(body) == snapshot


def test_thinking_style_by_model() -> None:
    assert thinking_style("claude-3-5-sonnet-20241022") == "none"
    assert thinking_style("claude-3-7-sonnet-20250219") == "budget"
    assert thinking_style("claude-sonnet-4-20250514") == "budget"
    assert thinking_style("claude-opus-4-1-20250805") == "budget"
    assert thinking_style("claude-opus-4-7") == "adaptive"
    assert thinking_style("claude-sonnet-5") == "adaptive"


# -- responses ------------------------------------------------------------------------------------------------


def test_response_golden_with_thinking_text_and_parallel_tool_use() -> None:
    data = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": SONNET,
        "content": [
            {"type": "thinking", "thinking": "Let me check.", "signature": "sigX"},
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 70,
            "output_tokens": 150,
            "output_tokens_details": {"thinking_tokens": 90},
        },
    }
    result = from_anthropic_message(data, model=SONNET, created=1700000000)
    assert result.body == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": SONNET,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "reasoning_content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 150,
            "total_tokens": 250,
            "prompt_tokens_details": {"cached_tokens": 70, "cache_write_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 90},
        },
    }
    assert result.tool_call_ids == ["toolu_01A", "toolu_01B"]
    assert result.thinking_blocks == [data["content"][0]]  # type: ignore[index]


def test_response_with_only_tool_use_has_null_content() -> None:
    data = {
        "id": "m",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
    }
    message = from_anthropic_message(data, model="m").body["choices"][0]["message"]
    assert message["content"] is None and "usage" not in from_anthropic_message(data, model="m").body


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason, False) == expected
