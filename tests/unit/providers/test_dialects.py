from __future__ import annotations

import orjson
import pytest

from gophergate.providers.openai_compat.dialects import (
    StreamTranslator,
    from_upstream_response,
    get_dialect,
    to_upstream_request,
)
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.wire.chat_text import texts_from_sse
from gophergate.wire.sse import EventTooLarge


def _req(dialect: str, body: dict, model: str, stream: bool = False, store: ReasoningStore | None = None) -> dict:
    return dict(orjson.loads(to_upstream_request(body, model, stream, get_dialect(dialect), store)))


def test_client_body_is_not_mutated_and_unknown_fields_survive() -> None:
    body = {"model": "x/gpt-5", "messages": [{"role": "developer", "content": "d"}], "max_tokens": 5, "zz": [1]}
    snapshot = orjson.dumps(body)
    out = _req("openai", body, "gpt-5", stream=True)
    assert orjson.dumps(body) == snapshot
    assert out["model"] == "gpt-5" and out["zz"] == [1]
    assert out["max_completion_tokens"] == 5 and "max_tokens" not in out
    assert out["stream_options"] == {"include_usage": True}
    assert out["messages"][0]["role"] == "developer"


def test_explicit_max_completion_tokens_wins_over_max_tokens() -> None:
    out = _req("openai", {"messages": [], "max_tokens": 5, "max_completion_tokens": 9}, "o3")
    assert out["max_completion_tokens"] == 9 and "max_tokens" not in out


def test_client_stream_options_are_kept_besides_include_usage() -> None:
    out = _req("openai", {"messages": [], "stream_options": {"include_obfuscation": False}}, "gpt-4o", stream=True)
    assert out["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_developer_becomes_system_outside_openai() -> None:
    for dialect in ("deepseek", "xai", "moonshot", "ollama"):
        out = _req(dialect, {"messages": [{"role": "developer", "content": "d"}]}, "m")
        assert out["messages"][0]["role"] == "system"


def test_moonshot_fixed_sampling_dropped_only_for_fixed_models() -> None:
    body = {"messages": [], "temperature": 0.2, "top_p": 0.5, "n": 2}
    assert not {"temperature", "top_p", "n"} & set(_req("moonshot", body, "kimi-k3"))
    assert _req("moonshot", body, "moonshot-v1-8k")["temperature"] == 0.2


def test_reasoning_restored_from_store_for_deepseek_tool_turns() -> None:
    store = ReasoningStore()
    store.put(["call_abc"], "I should call the tool")
    history = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "r"},
    ]
    out = _req("deepseek", {"messages": history}, "deepseek-flash", store=store)
    assert out["messages"][1]["reasoning_content"] == "I should call the tool"
    assert "reasoning_content" not in history[1]


def test_response_reasoning_remembered_for_tool_calls() -> None:
    store = ReasoningStore()
    data = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "reasoning_content": "because",
                    "tool_calls": [
                        {"id": "call_" + "x" * 60, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    from_upstream_response(data, get_dialect("deepseek"), store)
    assert store.get("call_" + "x" * 60) == "because"


def test_ollama_reasoning_renamed_in_response() -> None:
    data = {
        "choices": [{"message": {"role": "assistant", "content": "a", "reasoning": "r"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    info = from_upstream_response(data, get_dialect("ollama"), None)
    assert info.changed and data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "a",
        "reasoning_content": "r",
    }


def _feed(t: StreamTranslator, chunk: dict) -> bytes | None:
    return t.feed(orjson.dumps(chunk))


def test_usage_only_chunk_dropped_unless_client_asked() -> None:
    usage_chunk = {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    quiet = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    assert _feed(quiet, usage_chunk) is None and quiet.usage is not None and quiet.usage.completion == 4
    loud = StreamTranslator(get_dialect("openai"), include_usage=True, store=None)
    assert _feed(loud, usage_chunk) is not None


def test_unchanged_chunks_are_relayed_byte_for_byte() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    payload = b'{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],  "x":1}'
    assert t.feed(payload) == b"data: " + payload + b"\n\n"
    assert texts_from_sse(t.raw) == ["hi"]


def test_moonshot_choice_usage_is_lifted_to_top_level() -> None:
    t = StreamTranslator(get_dialect("moonshot"), include_usage=True, store=None)
    out = _feed(
        t,
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": "stop",
                    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "cached_tokens": 2},
                }
            ]
        },
    )
    assert out is not None
    chunk = orjson.loads(out[6:])
    assert chunk["usage"]["prompt_tokens"] == 5 and "usage" not in chunk["choices"][0]
    assert t.usage is not None and t.usage.cache_read == 2 and t.finish_reason == "stop"


def test_xai_stream_usage_is_normalised_for_the_client() -> None:
    t = StreamTranslator(get_dialect("xai"), include_usage=True, store=None)
    out = _feed(
        t,
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "total_tokens": 25,
                "completion_tokens_details": {"reasoning_tokens": 10},
            },
        },
    )
    chunk = orjson.loads(out[6:])  # type: ignore[index]
    assert chunk["usage"]["completion_tokens"] == 15 and chunk["usage"]["total_tokens"] == 25


def test_done_and_error_events() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    assert t.feed(b"[DONE]") is None and t.done
    e = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    assert e.feed(b'{"error":{"message":"boom"}}') is not None and e.error == "boom"


def test_tool_call_ids_are_never_truncated() -> None:
    long_id = "call_" + "A1b2" * 40
    t = StreamTranslator(get_dialect("deepseek"), include_usage=False, store=ReasoningStore())
    payload = orjson.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": long_id, "type": "function", "function": {"name": "f", "arguments": ""}}
                        ]
                    },
                }
            ]
        }
    )
    out = t.feed(payload)
    assert out is not None and long_id.encode() in out


def test_plain_content_chunks_are_not_parsed_but_finish_and_usage_are_seen() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=True, store=None)
    plain = b'{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":null}'
    assert t.feed(plain) == b"data: " + plain + b"\n\n"
    assert t.finish_reason is None and t.usage is None
    t.feed(b'{"choices":[{"index":0,"delta":{},"finish_reason": "length"}],"usage":null}')
    t.feed(b'{"choices":[],"usage": {"prompt_tokens":2,"completion_tokens":1}}')
    assert t.finish_reason == "length" and t.usage is not None and t.usage.completion == 1


def test_streamed_reasoning_is_stored_for_streamed_tool_calls() -> None:
    store = ReasoningStore()
    t = StreamTranslator(get_dialect("deepseek"), include_usage=False, store=store)
    t.feed(b'{"choices":[{"index":0,"delta":{"reasoning_content":"need "}}]}')
    t.feed(b'{"choices":[{"index":0,"delta":{"reasoning_content":"weather"}}]}')
    t.feed(
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function",'
        b'"function":{"name":"f","arguments":"{}"}}]}}]}'
    )
    t.finish()
    assert store.get("call_9") == "need weather"


def test_plain_reads_are_relayed_verbatim_and_special_events_parsed() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    plain = b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":null}\n\n'
    assert t.feed_bytes(plain[:20]) is None  # no complete event yet
    assert t.feed_bytes(plain[20:] + b": keep-alive\n\n") == plain + b": keep-alive\n\n"
    tail = (
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\ndata: [DONE]\n\n'
    )
    out = t.feed_bytes(tail)
    assert out is not None and b'"finish_reason":"stop"' in out and b"usage" not in out and b"[DONE]" not in out
    assert t.done and t.finish_reason == "stop" and t.usage is not None
    assert texts_from_sse(t.raw) == ["a"]


def test_marker_split_across_reads_is_still_seen() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    event = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    assert t.feed_bytes(event[:30]) is None
    assert t.feed_bytes(event[30:]) is None  # the usage-only chunk the client did not ask for
    assert t.usage is not None and t.usage.completion == 2


def test_malformed_sse_event_becomes_an_error_event_that_ends_the_stream() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    good = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    out = t.feed_bytes(good + b"data: {not json\n\n" + good + b"data: [DONE]\n\n") or b""
    events = [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[0]["choices"][0]["delta"]["content"] == "hi"
    assert events[-1]["error"]["code"] == "upstream_stream_error" and len(events) == 2
    assert t.error is not None and "malformed" in t.error and not t.done
    assert t.feed_bytes(good) is None and t.flush() is None  # nothing after the error


def test_stream_event_over_the_cap_is_refused() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None, max_event_bytes=4096)
    assert t.feed_bytes(b"data: " + b"x" * 4000) is None
    with pytest.raises(EventTooLarge):
        t.feed_bytes(b"x" * 200)
    crlf = StreamTranslator(get_dialect("openai"), include_usage=False, store=None, max_event_bytes=4096)
    with pytest.raises(EventTooLarge):
        crlf.feed_bytes(b"data: " + b"y" * 5000 + b"\r\n")


def test_crlf_framed_stream_is_relayed_event_by_event() -> None:
    t = StreamTranslator(get_dialect("openai"), include_usage=False, store=None)
    out = t.feed_bytes(b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\r\n\r\n')
    assert out == b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    assert t.feed_bytes(b"data: [DONE]\r\n\r\n") is None and t.done
