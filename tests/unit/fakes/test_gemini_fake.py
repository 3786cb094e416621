"""The strict fake Gemini server rejects what the real API rejects (providers.md §3), so translators can fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.gemini import SKIP_SIGNATURE, FakeGemini


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


def _post(fake: FakeGemini, body: Any, model: str = "gemini-2.5-flash", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}/v1beta/models/{model}:generateContent",
        json=body,
        headers={"x-goog-api-key": fake.api_key, **headers},
    )


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


CALL = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
TOOLS = [{"functionDeclarations": [{"name": "f"}]}]


def _result(response: Any) -> dict[str, Any]:
    return {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": response}}]}


def test_a_valid_request_is_answered(fake: FakeGemini) -> None:
    response = _post(fake, {"contents": [_user("hi")]})
    assert response.status_code == 200
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "echo: hi"}]


def test_a_bad_key_is_400_api_key_invalid(fake: FakeGemini) -> None:
    response = _post(fake, {"contents": [_user("hi")]}, **{"x-goog-api-key": "wrong"})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"contents": [_user("x")], "model": "m"}, 'Unknown name "model"'),
        ({"contents": [_user("x")], "generationConfig": {"max_tokens": 3}}, 'Unknown name "max_tokens"'),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [_user("x"), CALL, _result("plain string")], "tools": TOOLS}, "function_response.response"),
        ({"contents": [_user("x"), _result({"a": 1})], "tools": TOOLS}, "immediately after a function call turn"),
        ({"contents": [_user("x"), CALL, _user("y"), _result({})], "tools": TOOLS}, "immediately after"),
        ({"contents": [_user("")]}, "empty text"),
    ],
)
def test_what_the_real_api_rejects_is_a_400(fake: FakeGemini, body: dict[str, Any], needle: str) -> None:
    response = _post(fake, body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]


def test_gemini3_replayed_call_without_its_signature_is_a_400(fake: FakeGemini) -> None:
    body = {"contents": [_user("x"), CALL, _result({"r": 1})], "tools": TOOLS}
    response = _post(fake, body, model="gemini-3-flash")
    assert response.status_code == 400 and "thought_signature" in response.json()["error"]["message"]
    assert _post(fake, body, model="gemini-2.5-flash").status_code == 200  # only Gemini 3 enforces it
    signed = {"role": "model", "parts": [{**CALL["parts"][0], "thoughtSignature": SKIP_SIGNATURE}]}
    body["contents"][1] = signed
    assert _post(fake, body, model="gemini-3-flash").status_code == 200


def test_without_alt_sse_the_stream_is_a_json_array(fake: FakeGemini) -> None:
    url = f"{fake.base_url}/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    response = httpx.post(url, json={"contents": [_user("hi")]}, headers={"x-goog-api-key": fake.api_key})
    assert response.text.startswith("[")
    sse = httpx.post(url + "?alt=sse", json={"contents": [_user("hi")]}, headers={"x-goog-api-key": fake.api_key})
    assert sse.text.startswith("data: ") and "\r\n\r\n" in sse.text
