"""The native Gemini provider: thin HTTP around the pure translators (``translate.py``, ``stream.py``).

``base_url`` includes the API version (``https://generativelanguage.googleapis.com/v1beta``); the key goes in
``x-goog-api-key`` (providers.md §3.1).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gophergate.core.calls import ChatCall, EndpointCall, Meter
from gophergate.core.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamUnavailable
from gophergate.core.usage import Usage, from_gemini
from gophergate.providers.gemini.errors import gemini_error
from gophergate.providers.gemini.fetch import FETCH_TIMEOUT_SECONDS, MAX_FETCH_BYTES, fetch_all
from gophergate.providers.gemini.images import image_request, images_from
from gophergate.providers.gemini.signatures import SignatureStore
from gophergate.providers.gemini.stream import GeminiStream
from gophergate.providers.gemini.translate import (
    from_gemini_response,
    model_path,
    new_completion_id,
    remote_files,
    to_gemini,
)
from gophergate.providers.recall import tool_call_ids
from gophergate.providers.stream import relay_upstream
from gophergate.providers.transport import Transport
from gophergate.providers.upstream import open_upstream_stream, request_json
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES

_MAX_MODEL_PAGES = 20
_EMBED_BATCH = 100


class GeminiProvider:
    takes_top_k = True  # generationConfig.topK: /v1/messages passes Anthropic's top_k on

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        client: Transport,
        media: Transport | None = None,
        store: SignatureStore | None = None,
        extra_headers: dict[str, str] | None = None,
        static_models: tuple[str, ...] = (),
        max_fetch_bytes: int = MAX_FETCH_BYTES,
        fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.name = name
        self.max_event_bytes = max_event_bytes
        self.base_url = base_url.rstrip("/")
        self.static_models = static_models
        self._client = client
        self._media = media or client  # media URLs: the SSRF-safe MediaClient in production
        self._store = store
        self._max_fetch = max_fetch_bytes
        self._fetch_timeout = fetch_timeout
        headers = {"Content-Type": "application/json", "Accept": "application/json", "x-goog-api-key": api_key}
        headers.update(extra_headers or {})
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}

    def _url(self, model: str, method: str) -> str:
        return f"{self.base_url}/{model_path(model)}:{method}"

    async def _payload(self, call: ChatCall) -> bytes:
        store = self._store
        if store is not None and store.shared is not None:  # the signatures another instance relayed
            await store.recall(tool_call_ids(call.body))
        files = remote_files(call.body)
        fetched = (
            await fetch_all(self._media, files, max_bytes=self._max_fetch, time_limit=self._fetch_timeout)
            if files
            else None
        )
        return orjson.dumps(to_gemini(call.body, call.model, self._store, fetched))

    async def _post(self, url: str, payload: bytes, meter: Meter | None) -> Any:
        data, _ = await request_json(
            self._client, self.name, "POST", url, self._headers, payload, meter, self._map_error
        )
        return data

    def _map_error(self, status: int, raw: bytes, header: Callable[[str], str | None]) -> GatewayError:
        return gemini_error(self.name, status, raw, header)

    # -- chat -----------------------------------------------------------------------------------------------------

    async def chat(self, call: ChatCall, meter: Meter) -> bytes:
        payload = await self._payload(call)
        data = await self._post(self._url(call.model, "generateContent"), payload, meter)
        completion = from_gemini_response(
            data, model=call.model, store=self._store, cost=call.cost_json, created=int(time.time())
        )
        if completion is None:
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned a response without candidates.")
        meter.usage = completion.usage
        meter.finish_reason = completion.finish_reason
        if completion.usage is None and completion.text:
            meter.output_text.append(completion.text)
        return orjson.dumps(completion.body)

    async def open_chat_stream(self, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
        payload = await self._payload(call)
        url = self._url(call.model, "streamGenerateContent") + "?alt=sse"
        resp = await open_upstream_stream(
            self._client,
            self.name,
            url,
            self._stream_headers,
            payload,
            meter,
            self._map_error,
        )
        translator = GeminiStream(
            provider=self.name,
            model=call.model,
            completion_id=new_completion_id(),
            created=int(time.time()),
            include_usage=call.include_usage,
            store=self._store,
            cost=call.cost_json,
            max_event_bytes=self.max_event_bytes,
        )
        return relay_upstream(self.name, resp, translator, meter)

    async def count_tokens(self, call: ChatCall) -> int:
        """models.countTokens on the request as generateContent would get it (its system instruction and tools
        count too)."""
        request = orjson.loads(await self._payload(call))
        request["model"] = model_path(call.model)
        data = await self._post(
            self._url(call.model, "countTokens"), orjson.dumps({"generateContentRequest": request}), None
        )
        total = data.get("totalTokens")
        if type(total) is not int or total < 0:
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an unexpected token count.")
        return total

    # -- models ---------------------------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        ids: set[str] = set(self.static_models)
        token: str | None = None
        for _ in range(_MAX_MODEL_PAGES):
            url = self.base_url + "/models?pageSize=1000" + (f"&pageToken={token}" if token else "")
            data, _ = await request_json(
                self._client, self.name, "GET", url, self._headers, None, error=self._map_error, what="model list"
            )
            models = data.get("models")
            for model in models if isinstance(models, list) else ():
                if isinstance(model, dict) and isinstance(model.get("name"), str):
                    ids.add(model["name"].removeprefix("models/"))
            token = data.get("nextPageToken")
            if not isinstance(token, str) or not token:
                break
        return sorted(ids)

    # -- embeddings -----------------------------------------------------------------------------------------------

    async def embeddings(self, call: EndpointCall, meter: Meter) -> bytes:
        texts = _embedding_inputs(call.body.get("input"))
        dimensions = call.body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
            raise InvalidRequest("'dimensions' must be an integer.", param="dimensions", code="invalid_value")
        encoding = call.body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InvalidRequest(
                "'encoding_format' must be 'float' or 'base64'.", param="encoding_format", code="invalid_value"
            )
        name = model_path(call.model)
        url = self._url(call.model, "batchEmbedContents")
        embeddings: list[Any] = []
        usage: Usage | None = None
        unreadable = False
        meter.start_upstream()
        # batchEmbedContents takes at most 100 requests; OpenAI allows 2048 inputs.
        for start in range(0, len(texts), _EMBED_BATCH):
            requests: list[dict[str, Any]] = []
            for text in texts[start : start + _EMBED_BATCH]:
                request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
                if dimensions is not None:
                    request["outputDimensionality"] = dimensions
                requests.append(request)
            data = await self._post(url, orjson.dumps({"requests": requests}), None)
            batch = data.get("embeddings")
            if not isinstance(batch, list) or len(batch) != len(requests):
                raise UpstreamUnavailable(
                    f"Upstream provider '{self.name}' returned an unexpected embeddings response."
                )
            embeddings.extend(batch)
            metadata = data.get("usageMetadata")
            if isinstance(metadata, dict):
                read = from_gemini(metadata)
                if read is None:
                    unreadable = True  # one batch's count is not a count: the total is unknown
                else:
                    usage = usage or Usage()
                    usage.prompt += read.prompt
        meter.upstream_finished()
        items: list[dict[str, Any]] = []
        for index, embedding in enumerate(embeddings):
            values = embedding.get("values") if isinstance(embedding, dict) else None
            if not isinstance(values, list):
                raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an embedding without values.")
            vector: Any = values
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
            items.append({"object": "embedding", "index": index, "embedding": vector})
        body: dict[str, Any] = {"object": "list", "data": items, "model": call.model}
        if usage is not None and not unreadable:
            meter.usage = usage
            body["usage"] = {"prompt_tokens": usage.prompt, "total_tokens": usage.total}
            cost = call.cost_json(usage)
            if cost is not None:
                body["usage"]["cost"] = cost
        return orjson.dumps(body)

    # -- images ---------------------------------------------------------------------------------------------------

    async def generate_images(self, call: EndpointCall, meter: Meter) -> bytes:
        payload, n = image_request(call.body)
        url = self._url(call.model, "generateContent")
        meter.start_upstream()
        # No sampleCount on generateContent: n images are n calls (providers.md §3.7), made concurrently.
        results = await asyncio.gather(*(self._post(url, payload, None) for _ in range(n)), return_exceptions=True)
        meter.upstream_finished()
        total = Usage()
        counted = False
        items: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            images, usage = images_from(result)
            if not images:
                raise _no_image(self.name, result)
            items.extend({"b64_json": data} for data in images)
            if usage is not None:
                counted = True
                total.prompt += usage.prompt
                total.completion += usage.completion
                total.reasoning += usage.reasoning
                total.cache_read += usage.cache_read
        body: dict[str, Any] = {"created": int(time.time()), "data": items}
        if counted:
            meter.usage = total
            body["usage"] = {
                "input_tokens": total.prompt,
                "output_tokens": total.completion,
                "total_tokens": total.total,
            }
            cost = call.cost_json(total)
            if cost is not None:
                body["usage"]["cost"] = cost
        return orjson.dumps(body)

    async def aclose(self) -> None:
        return None


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest(
        "'input' must be a string or a non-empty array of strings for Gemini embeddings (token arrays are not "
        "supported).",
        param="input",
        code="invalid_value",
    )


def _no_image(provider: str, data: dict[str, Any]) -> GatewayError:
    candidates = data.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict) else {}
    feedback = data.get("promptFeedback")
    reason = first.get("finishReason") or (feedback.get("blockReason") if isinstance(feedback, dict) else None)
    if reason is not None and ("SAFETY" in str(reason) or "PROHIBITED" in str(reason) or "BLOCK" in str(reason)):
        return UpstreamError(
            f"Upstream provider '{provider}' refused to generate the image ({reason}).",
            status=400,
            type="invalid_request_error",
            code="content_policy_violation",
        )
    return UpstreamUnavailable(f"Upstream provider '{provider}' returned no image (finishReason: {reason}).")
