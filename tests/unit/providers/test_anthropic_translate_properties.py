"""Property tests: any valid Chat Completions request translates without an exception, and a well-formed
conversation translates into a request the strict fake Anthropic server accepts."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gophergate.providers.anthropic.translate import to_anthropic
from tests.fakes.anthropic import MODELS, FakeAnthropic

TEXT = st.text(min_size=0, max_size=20)
NON_EMPTY = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=12)
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=30)
TOOL_NAMES = st.sampled_from(["get_weather", "get_time", "lookup-db"])
EFFORTS = st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"])
IMAGE_URLS = st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://example.com/a.jpg"])
PART = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, TEXT),
    st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, IMAGE_URLS),
)
JSON_ARGS = st.dictionaries(
    st.sampled_from(["city", "n", "flag"]), st.one_of(st.integers(-(2**31), 2**31), TEXT, st.booleans())
)
TOOLS = [
    {
        "type": "function",
        "function": {"name": n, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    for n in ("get_weather", "get_time", "lookup-db")
]


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": orjson.dumps(args).decode()}}


ANY_MESSAGE = st.one_of(
    st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["system", "developer"]), TEXT),
    st.builds(lambda c: {"role": "user", "content": c}, st.one_of(TEXT, st.lists(PART, max_size=3))),
    st.builds(
        lambda c, calls: {"role": "assistant", "content": c, **({"tool_calls": calls} if calls else {})},
        st.one_of(st.none(), TEXT),
        st.lists(st.builds(_call, IDS, TOOL_NAMES, JSON_ARGS), max_size=3),
    ),
    st.builds(lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, IDS, TEXT),
)

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(1, 8192),
        "max_completion_tokens": st.integers(1, 8192),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=4)),
        "tools": st.just(TOOLS),
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "get_time"}}]
        ),
        "parallel_tool_calls": st.booleans(),
        "reasoning_effort": EFFORTS,
        "response_format": st.sampled_from(
            [
                {"type": "text"},
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            ]
        ),
        "user": TEXT,
        "n": st.just(1),
        "seed": st.integers(),
        "presence_penalty": st.floats(-2, 2),
    },
)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(ANY_MESSAGE, min_size=1, max_size=8), options=OPTIONS, model=st.sampled_from(list(MODELS)))
def test_any_valid_request_translates_without_an_exception(
    messages: list[dict[str, Any]], options: dict[str, Any], model: str
) -> None:
    out = to_anthropic({"model": model, "messages": messages, **options}, model, stream=False)
    assert isinstance(out["max_tokens"], int) and out["max_tokens"] >= 1
    roles = [t["role"] for t in out["messages"]]
    assert all(a != b for a, b in pairwise(roles)), "same-role turns must be merged"
    if "thinking" in out and out["thinking"]["type"] == "enabled":
        assert 1024 <= out["thinking"]["budget_tokens"] < out["max_tokens"]


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A conversation an OpenAI client could send: it starts with a user turn and every tool call is answered."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(TEXT)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(st.one_of(NON_EMPTY, st.lists(PART, min_size=1, max_size=2)))})
        if draw(st.booleans()):
            ids = draw(st.lists(IDS, min_size=1, max_size=3, unique=True))
            calls = [_call(i, draw(TOOL_NAMES), draw(JSON_ARGS)) for i in ids]
            messages.append({"role": "assistant", "content": draw(st.one_of(st.none(), TEXT)), "tool_calls": calls})
            messages += [{"role": "tool", "tool_call_id": i, "content": draw(TEXT)} for i in ids]
        if draw(st.booleans()):
            messages.append({"role": "assistant", "content": draw(NON_EMPTY)})
    return messages


def _has_text(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if isinstance(content, str):
        return bool(content)
    return any(p.get("type") != "text" or p.get("text") for p in content or ())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=conversations(), options=OPTIONS, model=st.sampled_from(list(MODELS)))
def test_well_formed_conversations_pass_the_strict_fake(
    messages: list[dict[str, Any]], options: dict[str, Any], model: str
) -> None:
    if not _has_text(next(m for m in messages if m["role"] == "user")):
        return  # a first user turn of only empty text parts has nothing to send
    out = to_anthropic({"model": model, "messages": messages, **options}, model, stream=False)
    FakeAnthropic().validate(out)
