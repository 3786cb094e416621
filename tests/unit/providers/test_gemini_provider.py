"""The Gemini provider's HTTP side against the strict fake: models, embeddings, images, errors, URL fetching."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from aiohttp import web

from gophergate.core.calls import ChatCall, EndpointCall, Meter
from gophergate.core.errors import GatewayError, InvalidRequest
from gophergate.providers.aiohttp_client import AiohttpClient
from gophergate.providers.gemini.errors import gemini_error
from gophergate.providers.gemini.fetch import fetch_all
from gophergate.providers.gemini.provider import GeminiProvider
from gophergate.providers.gemini.signatures import SignatureStore
from gophergate.providers.gemini.translate import RemoteFile
from tests.fakes.gemini import PNG_1X1, FakeGemini


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    c = AiohttpClient(max_connections=10, connect_timeout=5, read_timeout=10, total_timeout=20)
    yield c
    await c.close()


def _provider(fake: FakeGemini, client: AiohttpClient, key: str | None = None) -> GeminiProvider:
    return GeminiProvider(
        name="gemini",
        base_url=fake.base_url + "/v1beta",
        api_key=key or fake.api_key,
        client=client,
        store=SignatureStore(),
        static_models=("my-tuned",),
    )


async def test_models_are_listed_across_pages_without_the_models_prefix(
    fake: FakeGemini, client: AiohttpClient
) -> None:
    models = await _provider(fake, client).list_models()
    assert models == sorted([*fake.models, "my-tuned"])
    pages = [r for r in fake.requests if r.path == "/v1beta/models"]
    assert len(pages) >= 3  # the fake pages three at a time


async def test_listing_models_with_a_bad_key_raises_instead_of_returning_nothing(
    fake: FakeGemini, client: AiohttpClient
) -> None:
    with pytest.raises(GatewayError) as info:
        await _provider(fake, client, key="AIza-wrong-key-000000000000000000").list_models()
    assert info.value.status == 502 and info.value.code == "upstream_auth_failed"
    assert "AIza-wrong" not in info.value.message


async def test_embeddings_floats_and_base64(fake: FakeGemini, client: AiohttpClient) -> None:
    provider = _provider(fake, client)
    meter = Meter()
    call = EndpointCall(
        {"model": "gemini-embedding-001", "input": ["a", "bb"], "dimensions": 4}, "gemini-embedding-001", "r"
    )
    body = orjson.loads(await provider.embeddings(call, meter))
    assert body["object"] == "list" and body["model"] == "gemini-embedding-001"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 4 for d in body["data"])
    sent = fake.last_request
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "bb"}]},
        "outputDimensionality": 4,
    }
    assert meter.usage is None and "usage" not in body  # the fake reports none: left to the gateway's estimate

    call.body["encoding_format"] = "base64"
    encoded = orjson.loads(await provider.embeddings(call, Meter()))["data"][0]["embedding"]
    raw = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(body["data"][0]["embedding"])


async def test_embedding_usage_is_read_when_gemini_reports_it(fake: FakeGemini, client: AiohttpClient) -> None:
    fake.embedding_usage = True
    try:
        meter = Meter()
        call = EndpointCall({"input": "one two three"}, "gemini-embedding-001", "r")
        body = orjson.loads(await _provider(fake, client).embeddings(call, meter))
    finally:
        fake.embedding_usage = False
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert meter.usage is not None and meter.usage.prompt == 3


async def test_token_array_embedding_input_is_a_400() -> None:
    provider = GeminiProvider(name="gemini", base_url="http://127.0.0.1:9/v1beta", api_key="k", client=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        await provider.embeddings(EndpointCall({"input": [[1, 2]]}, "gemini-embedding-001", "r"), Meter())
    assert info.value.param == "input"


async def test_images_are_n_generate_content_calls_returning_b64_json(fake: FakeGemini, client: AiohttpClient) -> None:
    fake.clear()
    meter = Meter()
    call = EndpointCall({"prompt": "a red square", "n": 2, "size": "1536x1024"}, "gemini-3.1-flash-image", "r")
    body = orjson.loads(await _provider(fake, client).generate_images(call, meter))
    assert [base64.b64decode(d["b64_json"]) for d in body["data"]] == [PNG_1X1, PNG_1X1]
    sent = fake.generate_requests
    assert len(sent) == 2
    assert sent[0].body["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "3:2"},
    }
    assert meter.usage is not None and body["usage"]["total_tokens"] == meter.usage.total > 0


async def test_image_url_response_format_is_refused() -> None:
    provider = GeminiProvider(name="gemini", base_url="http://127.0.0.1:9/v1beta", api_key="k", client=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        await provider.generate_images(EndpointCall({"prompt": "x", "response_format": "url"}, "m", "r"), Meter())
    assert info.value.param == "response_format"


async def test_chat_sends_the_key_header_and_the_models_path(fake: FakeGemini, client: AiohttpClient) -> None:
    body = {"model": "models/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    out = orjson.loads(
        await _provider(fake, client).chat(ChatCall(body, "models/gemini-2.5-flash", False, False, "r"), Meter())
    )
    assert out["choices"][0]["message"]["content"] == "echo: hi"
    sent = fake.last_request
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == fake.api_key


# -- errors ---------------------------------------------------------------------------------------------------


def test_api_key_invalid_is_a_502_about_the_gateway_credentials_without_the_key() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key. AIzaSyA1234567890abcdefghijklmnop",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            }
        }
    )
    err = gemini_error("gemini", 400, body)
    assert err.status == 502 and err.code == "upstream_auth_failed"
    assert "GEMINI_API_KEY" in err.message and "AIza" not in err.message


def test_rate_limit_keeps_429_and_takes_retry_after_from_retry_info() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "6.2s"}],
            }
        }
    )
    err = gemini_error("gemini", 429, body)
    assert err.status == 429 and err.headers == {"retry-after": "7"} and err.code == "rate_limit_exceeded"
    from_header = gemini_error("gemini", 429, body, lambda name: "3" if name == "retry-after" else None)
    assert from_header.headers["retry-after"] == "3"


def test_other_errors_keep_status_and_message() -> None:
    body = orjson.dumps({"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}})
    err = gemini_error("gemini", 404, body)
    assert err.status == 404 and "models/x is not found" in err.message and err.code == "not_found"
    assert gemini_error("gemini", 503, b"<html>busy</html>").status == 502


# -- fetching remote images -----------------------------------------------------------------------------------


@pytest.fixture
async def files() -> AsyncIterator[str]:
    async def png(request: web.Request) -> web.Response:
        return web.Response(body=PNG_1X1, content_type="image/png")

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 4096, content_type="image/png")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.add_routes(
        [web.get("/a.png", png), web.get("/page", html), web.get("/big.png", big), web.get("/gone", missing)]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_remote_images_are_fetched_once_and_inlined(files: str, client: AiohttpClient) -> None:
    url = files + "/a.png"
    fetched = await fetch_all(client, [RemoteFile(url, "p0"), RemoteFile(url, "p1")])
    assert fetched[url].mime_type == "image/png" and base64.b64decode(fetched[url].data) == PNG_1X1


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/page", "not an image"), ("/big.png", "larger than"), ("/gone", "HTTP 404")],
)
async def test_a_failed_fetch_is_a_400_naming_the_part(
    files: str, client: AiohttpClient, path: str, reason: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetch_all(client, [RemoteFile(files + path, "messages[0].content[1].image_url.url")], max_bytes=1024)
    assert info.value.status == 400 and info.value.param == "messages[0].content[1].image_url.url"
    assert reason in info.value.message


async def test_an_unreachable_image_host_is_a_400(client: AiohttpClient) -> None:
    with pytest.raises(InvalidRequest) as info:
        await fetch_all(client, [RemoteFile("http://127.0.0.1:9/x.png", "p")])
    assert info.value.param == "p"


async def test_more_than_100_embedding_inputs_are_sent_in_batches(fake: FakeGemini, client: AiohttpClient) -> None:
    fake.clear()
    texts = [f"t{i}" for i in range(150)]
    call = EndpointCall({"input": texts}, "gemini-embedding-001", "r")
    body = orjson.loads(await _provider(fake, client).embeddings(call, Meter()))
    assert [d["index"] for d in body["data"]] == list(range(150))
    assert [len(r.body["requests"]) for r in fake.requests] == [100, 50]
