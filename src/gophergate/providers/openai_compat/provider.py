"""One provider class for every OpenAI-compatible upstream; the differences live in ``Dialect`` data.

Every member of the family gets embeddings and image generation (an upstream without them answers with its
own 404, passed through as usual); ``OpenAIProvider`` adds the Responses API for dialects that have it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gophergate.core.calls import ChatCall, EndpointCall, Meter
from gophergate.core.errors import UpstreamUnavailable
from gophergate.core.usage import from_embeddings, from_images, from_responses
from gophergate.providers.anthropic.passthrough import MessagesPassthrough
from gophergate.providers.openai_compat import responses as resp_api
from gophergate.providers.openai_compat.dialects import (
    Dialect,
    StreamTranslator,
    from_upstream_response,
    to_upstream_request,
)
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.recall import tool_call_ids
from gophergate.providers.stream import relay_upstream
from gophergate.providers.transport import Transport
from gophergate.providers.upstream import open_upstream_stream, request_json
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES


class OpenAICompatProvider:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        dialect: Dialect,
        client: Transport,
        reasoning_store: ReasoningStore | None = None,
        extra_headers: dict[str, str] | None = None,
        static_models: tuple[str, ...] = (),
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.name = name
        self.max_event_bytes = max_event_bytes
        self.dialect = dialect
        self.base_url = base_url.rstrip("/")
        self.static_models = static_models
        self._client = client
        self._store = reasoning_store
        self._chat_url = self.base_url + "/chat/completions"
        self._models_url = self.base_url + "/models"
        self._embeddings_url = self.base_url + "/embeddings"
        self._images_url = self.base_url + "/images/generations"
        self._responses_url = self.base_url + "/responses"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(extra_headers or {})
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        # The upstream's Anthropic-compatible Messages API, when it has one (set by the registry).
        self.messages_api: MessagesPassthrough | None = None

    async def _recall(self, call: ChatCall) -> None:
        """Shared memories: fetch the reasoning of tool-call turns that lost it and another instance relayed."""
        store = self._store
        if store is not None and store.shared is not None and self.dialect.replays_reasoning(call.model):
            await store.recall(tool_call_ids(call.body, unless="reasoning_content"))

    async def chat(self, call: ChatCall, meter: Meter) -> bytes:
        await self._recall(call)
        payload = to_upstream_request(call.body, call.model, False, self.dialect, self._store)
        data, raw = await request_json(self._client, self.name, "POST", self._chat_url, self._headers, payload, meter)
        if not isinstance(data.get("choices"), list):
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an unexpected response.")
        info = from_upstream_response(data, self.dialect, self._store)
        meter.usage = info.usage
        meter.finish_reason = info.finish_reason
        if info.usage is None and info.text:
            meter.output_text.append(info.text)
        changed = info.changed
        if info.usage is not None and call.pricer is not None:
            cost = call.cost_json(info.usage)
            if cost is not None:
                data["usage"]["cost"] = cost
                changed = True
        return orjson.dumps(data) if changed else raw

    async def open_chat_stream(self, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
        await self._recall(call)
        payload = to_upstream_request(call.body, call.model, True, self.dialect, self._store)
        resp = await open_upstream_stream(self._client, self.name, self._chat_url, self._stream_headers, payload, meter)
        translator = StreamTranslator(
            self.dialect,
            call.include_usage,
            self._store,
            call.cost_json if call.pricer is not None else None,
            self.max_event_bytes,
            self.name,
        )
        return relay_upstream(self.name, resp, translator, meter)

    # -- embeddings and images ------------------------------------------------------------------------------------
    async def embeddings(self, call: EndpointCall, meter: Meter) -> bytes:
        data, raw = await self._post_json(self._embeddings_url, call, meter)
        usage_obj = data.get("usage")
        if isinstance(usage_obj, dict):
            meter.usage = from_embeddings(usage_obj)
            if meter.usage is not None and resp_api.add_cost(usage_obj, meter.usage, call):
                return orjson.dumps(data)
        return raw

    async def generate_images(self, call: EndpointCall, meter: Meter) -> bytes:
        # Only gpt-image models report usage; other image upstreams (xAI, Ollama) send none (§2.8, §6.4).
        data, raw = await self._post_json(self._images_url, call, meter)
        usage_obj = data.get("usage")
        if isinstance(usage_obj, dict):
            meter.usage = from_images(usage_obj)
            if meter.usage is not None and resp_api.add_cost(usage_obj, meter.usage, call):
                return orjson.dumps(data)
        return raw

    async def _post_json(self, url: str, call: EndpointCall, meter: Meter) -> tuple[dict[str, Any], bytes]:
        """POST the client's body with the upstream's model id; the parsed answer and its bytes."""
        payload = orjson.dumps({**call.body, "model": call.model})
        return await request_json(self._client, self.name, "POST", url, self._headers, payload, meter)

    async def list_models(self) -> list[str]:
        data, _ = await request_json(
            self._client, self.name, "GET", self._models_url, self._headers, None, what="model list"
        )
        items = data.get("data")
        ids = [str(m["id"]) for m in items or () if isinstance(m, dict) and m.get("id")]
        return sorted(set(ids) | set(self.static_models))

    async def aclose(self) -> None:
        return None


class OpenAIProvider(OpenAICompatProvider):
    """An upstream with OpenAI's Responses API (the ``openai`` dialect): bodies and events pass through."""

    async def responses(self, call: EndpointCall, meter: Meter) -> bytes:
        data, raw = await self._post_json(self._responses_url, call, meter)
        meter.finish_reason = resp_api.finish_reason(data)
        usage_obj = data.get("usage")
        if isinstance(usage_obj, dict):
            meter.usage = from_responses(usage_obj)
            if meter.usage is not None and resp_api.add_cost(usage_obj, meter.usage, call):
                return orjson.dumps(data)
        if meter.usage is None:
            meter.output_text.extend(resp_api.output_texts(data))
        return raw

    async def open_responses_stream(self, call: EndpointCall, meter: Meter) -> AsyncIterator[bytes]:
        payload = orjson.dumps({**call.body, "model": call.model})
        resp = await open_upstream_stream(
            self._client, self.name, self._responses_url, self._stream_headers, payload, meter
        )
        return relay_upstream(self.name, resp, resp_api.ResponsesStream(call, self.max_event_bytes, self.name), meter)
