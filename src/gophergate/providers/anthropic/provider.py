"""The Anthropic Messages API provider: thin HTTP around the pure translators in this package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import orjson

from gophergate.core.calls import ChatCall, Meter
from gophergate.core.errors import GatewayError, UpstreamUnavailable
from gophergate.providers.anthropic.errors import anthropic_error
from gophergate.providers.anthropic.passthrough import MessagesPassthrough
from gophergate.providers.anthropic.stream import StreamTranslator
from gophergate.providers.anthropic.thinking_store import ThinkingStore
from gophergate.providers.anthropic.translate import (
    DEFAULT_API_VERSION,
    from_anthropic_message,
    thinking_style,
    to_anthropic,
)
from gophergate.providers.recall import tool_call_ids
from gophergate.providers.stream import relay_upstream
from gophergate.providers.transport import Transport
from gophergate.providers.upstream import open_upstream_stream, request_json, scrub
from gophergate.wire.sse import DEFAULT_MAX_EVENT_BYTES

DEFAULT_BASE_URL = "https://api.anthropic.com"
_MODEL_PAGES = 20  # GET /v1/models is paged (§4.7); 20 pages of 1000 is far beyond any real list


class AnthropicProvider:
    def __init__(
        self,
        *,
        name: str = "anthropic",
        base_url: str = DEFAULT_BASE_URL,
        api_key: str,
        client: Transport,
        api_version: str = DEFAULT_API_VERSION,
        thinking_store: ThinkingStore | None = None,
        extra_headers: dict[str, str] | None = None,
        static_models: tuple[str, ...] = (),
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.name = name
        self.max_event_bytes = max_event_bytes
        # The SDK's base has no /v1 but its paths do (§4.1, §11.25); a base ending in /v1 is accepted too.
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.api_version = api_version
        self.static_models = static_models
        self._client = client
        self._key = api_key
        self._store = thinking_store if thinking_store is not None else ThinkingStore()
        self._messages_url = self.base_url + "/v1/messages"
        self._models_url = self.base_url + "/v1/models"
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "x-api-key": api_key,
            "anthropic-version": api_version,
        }
        headers.update(extra_headers or {})
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        # /v1/messages from a client: passed through as sent (the client's anthropic-version wins).
        self.messages_api = MessagesPassthrough(
            name=name,
            base_url=self.base_url,
            headers=headers,
            client=client,
            secret=api_key,
            max_event_bytes=max_event_bytes,
            counts_tokens=True,
        )

    def _redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "[redacted]")
        return scrub(text)

    async def _recall(self, call: ChatCall) -> None:
        """Shared memories: fetch the thinking blocks of the history's tool-call turns another instance relayed.
        Only when the request asks for thinking: without it the blocks change nothing about the answer (an
        assistant turn without them is accepted), so a tool loop without thinking never waits on Redis."""
        store = self._store
        if (
            store.shared is not None
            and call.body.get("reasoning_effort") not in (None, "none")
            and thinking_style(call.model) != "none"
        ):
            await store.recall(tool_call_ids(call.body))

    def _payload(self, call: ChatCall, stream: bool) -> bytes:
        request = to_anthropic(
            call.body,
            call.model,
            stream=stream,
            max_output_tokens=call.max_output_tokens,
            api_version=self.api_version,
            lookup=self._store.get,
        )
        return orjson.dumps(request)

    def _map_error(self, status: int, raw: bytes, header: Callable[[str], str | None]) -> GatewayError:
        return anthropic_error(self.name, status, raw, header, self._redact)

    async def chat(self, call: ChatCall, meter: Meter) -> bytes:
        await self._recall(call)
        payload = self._payload(call, False)
        data, raw = await request_json(
            self._client, self.name, "POST", self._messages_url, self._headers, payload, meter, self._map_error
        )
        if data.get("type") == "error":
            # An error body behind a 200 (seen behind some proxies): judged by its error type, as a server error.
            raise anthropic_error(self.name, 500, raw, lambda _: None, self._redact)
        if data.get("type") != "message":
            raise UpstreamUnavailable(f"Upstream provider '{self.name}' returned an unexpected response.")
        result = from_anthropic_message(data, model=call.model)
        self._store.put(result.tool_call_ids, result.thinking_blocks)
        meter.usage = result.usage
        meter.finish_reason = result.finish_reason
        if result.usage is None:
            meter.output_text.append(result.text)
        else:
            cost = call.cost_json(result.usage)
            if cost is not None:
                result.body["usage"]["cost"] = cost
        return orjson.dumps(result.body)

    async def open_chat_stream(self, call: ChatCall, meter: Meter) -> AsyncIterator[bytes]:
        await self._recall(call)
        payload = self._payload(call, True)
        resp = await open_upstream_stream(
            self._client,
            self.name,
            self._messages_url,
            self._stream_headers,
            payload,
            meter,
            self._map_error,
        )
        translator = StreamTranslator(
            self.name,
            call.model,
            call.include_usage,
            redact=self._redact,
            cost=call.cost_json,
            max_event_bytes=self.max_event_bytes,
            store=self._store,
        )
        return relay_upstream(self.name, resp, translator, meter)

    async def list_models(self) -> list[str]:
        ids: set[str] = set(self.static_models)
        after: str | None = None
        for _ in range(_MODEL_PAGES):
            url = self._models_url + "?limit=1000" + (f"&after_id={after}" if after else "")
            data, _ = await request_json(
                self._client, self.name, "GET", url, self._headers, None, error=self._map_error, what="model list"
            )
            items = data.get("data")
            ids.update(str(m["id"]) for m in items or () if isinstance(m, dict) and m.get("id"))
            after = data.get("last_id") if data.get("has_more") else None
            if not after:
                break
        return sorted(ids)

    async def aclose(self) -> None:
        return None
