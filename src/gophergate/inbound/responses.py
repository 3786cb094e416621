"""The OpenAI Responses API served by chat-only providers: a Responses request becomes a Chat Completions body,
and the chat completion (a body or an SSE stream) becomes a Responses object or event stream; no I/O.

Request rules (providers.md §2.9 in, §2.2 out):

- ``instructions`` -> a first system message; ``history`` (the stored turns named by ``previous_response_id``)
  follows it, then ``input``; ``developer`` -> ``system`` (most providers do not know the role, §2.2);
- ``function_call`` items -> assistant ``tool_calls`` (merged with the assistant message just before them),
  ``function_call_output`` -> tool messages, ``reasoning`` summaries -> ``reasoning_content`` of the next
  assistant message (DeepSeek and Moonshot want it back in tool loops, §5.5); ``encrypted_content`` is
  OpenAI's and no other provider can read it, so it is dropped;
- images and files travel inline only: a ``file_id`` or ``file_url`` names OpenAI storage that no chat provider
  can read, so it is a 400 naming the field, as is every built-in tool (web search, file search, ...);
- ``text.format`` -> ``response_format``, ``max_output_tokens`` -> ``max_tokens``, ``reasoning.effort`` ->
  ``reasoning_effort``; ``tool_choice`` and ``parallel_tool_calls`` go only with tools (OpenAI's chat endpoint
  rejects them alone); ``store`` and ``previous_response_id`` are the caller's; ``background``,
  ``conversation`` and ``prompt`` need OpenAI's own storage and are 400s.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gophergate.core.errors import invalid_value, unsupported_value
from gophergate.core.redact import redact
from gophergate.wire.sse import EventTooLarge, SSEDecoder, SSEEvent

UNFINISHED = "The upstream stream ended before the response was complete."
MALFORMED = "The upstream sent a malformed stream event."

# Chat finish reasons that leave a response incomplete, with the Responses API's reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_OPENAI_ONLY = {
    "background": "Background responses are not available for this model's provider.",
    "conversation": "Conversations are not available for this model's provider; use 'previous_response_id'.",
    "prompt": "Stored prompts are not available for this model's provider; send 'instructions' and 'input'.",
}


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


# -- requests -------------------------------------------------------------------------------------------------


def responses_to_chat(data: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Responses request -> OpenAI chat request body. ``history``: chat messages of the conversation so far (from a
    stored earlier response named by previous_response_id), placed before the new input (after the system
    message)."""
    for name, message in _OPENAI_ONLY.items():
        value = data.get(name)
        if value is not None and value is not False:
            raise unsupported_value(name, message)
    messages: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_value("instructions", "'instructions' must be a string.")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(history or ())
    messages.extend(_input_messages(data.get("input")))

    chat: dict[str, Any] = {"model": data.get("model"), "messages": messages}
    if "stream" in data:
        chat["stream"] = data["stream"]
        if data["stream"] is True:
            chat["stream_options"] = {"include_usage": True}
    if data.get("tools") is not None:
        tools = _tools(data["tools"])
        if tools:
            chat["tools"] = tools
            if data.get("tool_choice") is not None:
                chat["tool_choice"] = _tool_choice(data["tool_choice"])
            if data.get("parallel_tool_calls") is not None:
                chat["parallel_tool_calls"] = data["parallel_tool_calls"]
    response_format = _response_format(data.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if data.get("max_output_tokens") is not None:
        chat["max_tokens"] = data["max_output_tokens"]
    reasoning = data.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid_value("reasoning", "'reasoning' must be an object.")
    if reasoning and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    for name in ("temperature", "top_p", "user"):
        if data.get(name) is not None:
            chat[name] = data[name]
    return chat


def conversation_messages(chat: dict[str, Any], request: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of ``responses_to_chat(request, history)`` that a stored response carries on: all but the
    instructions, which OpenAI does not carry over to the next response."""
    messages: list[dict[str, Any]] = chat["messages"]
    return messages[1:] if request.get("instructions") else list(messages)


def _input_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid_value("input", "'input' must be a string or a list of input items.")
    messages: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None  # the assistant message the next function_call joins
    reasoning: list[str] = []  # summaries waiting for the next assistant message
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_value(where, f"'{where}' must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            message = _message(item, where)
            assistant = message if message["role"] == "assistant" else None
            if assistant is not None:
                _take_reasoning(assistant, reasoning)
            messages.append(message)
        elif kind == "function_call":
            if assistant is None:
                assistant = {"role": "assistant", "content": None}
                _take_reasoning(assistant, reasoning)
                messages.append(assistant)
            assistant.setdefault("tool_calls", []).append(_function_call(item, where))
        elif kind == "function_call_output":
            messages.append(_tool_result(item, where))
            assistant = None
        elif kind == "reasoning":
            text = _summary_text(item.get("summary"))
            if text:
                reasoning.append(text)
            assistant = None
        elif kind is None:
            raise invalid_value(f"{where}.type", f"'{where}' needs a 'type' (or a 'role' for a message).")
        else:
            raise unsupported_value(
                f"{where}.type", f"Input items of type '{kind}' are not available for this model's provider."
            )
    return messages


def _take_reasoning(message: dict[str, Any], reasoning: list[str]) -> None:
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
        reasoning.clear()


def _summary_text(summary: Any) -> str:
    texts = [p["text"] for p in summary or () if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n\n".join(t for t in texts if t)


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    chat_role = _ROLES.get(role) if isinstance(role, str) else None
    if chat_role is None:
        raise invalid_value(f"{where}.role", f"'{where}.role' must be user, assistant, system or developer.")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    if not isinstance(content, list):
        raise invalid_value(f"{where}.content", f"'{where}.content' must be a string or a list of content parts.")
    wheres = [f"{where}.content[{j}]" for j in range(len(content))]
    if chat_role == "user":
        return {"role": "user", "content": [_user_part(p, w) for p, w in zip(content, wheres, strict=True)]}
    texts = [_part_text(p, w) for p, w in zip(content, wheres, strict=True)]
    # Assistant parts are pieces of one answer; system parts are separate instructions.
    return {"role": chat_role, "content": ("" if chat_role == "assistant" else "\n").join(texts)}


def _part_text(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise invalid_value(where, f"'{where}' must be an object.")
    kind = part.get("type")
    key = "text" if kind in _TEXT_PARTS else "refusal" if kind == "refusal" else None
    if key is None:
        raise unsupported_value(f"{where}.type", f"'{where}' must be a text part here, not '{kind}'.")
    text = part.get(key)
    if not isinstance(text, str):
        raise invalid_value(f"{where}.{key}", f"'{where}.{key}' must be a string.")
    return text


def _user_part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid_value(where, f"'{where}' must be an object.")
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": _part_text(part, where)}
    if kind == "input_image":
        _no_storage(part, where, ("file_id",), "image_url")
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise invalid_value(f"{where}.image_url", f"'{where}.image_url' must be a URL or a data URI.")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        _no_storage(part, where, ("file_id", "file_url"), "file_data")
        file_data = part.get("file_data")
        if not isinstance(file_data, str) or not file_data:
            raise invalid_value(f"{where}.file_data", f"'{where}.file_data' must be the file as a base64 data URI.")
        file: dict[str, Any] = {"file_data": file_data}
        if isinstance(part.get("filename"), str):
            file = {"filename": part["filename"], **file}
        return {"type": "file", "file": file}
    raise unsupported_value(
        f"{where}.type", f"Content parts of type '{kind}' are not available for this model's provider."
    )


def _no_storage(part: dict[str, Any], where: str, fields: tuple[str, ...], inline: str) -> None:
    for name in fields:
        if part.get(name) is not None:
            raise unsupported_value(
                f"{where}.{name}",
                f"'{name}' is not supported for this model's provider (it cannot fetch OpenAI files); send the "
                f"content inline in '{inline}'.",
            )


def _required_string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise invalid_value(f"{where}.{name}", f"'{where}.{name}' must be a non-empty string.")
    return value


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        raise invalid_value(f"{where}.arguments", f"'{where}.arguments' must be a JSON string.")
    call_id = _required_string(item, "call_id", where)
    name = _required_string(item, "name", where)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_result(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _required_string(item, "call_id", where)
    output = item.get("output")
    if isinstance(output, list):
        text = "".join(_part_text(p, f"{where}.output[{j}]") for j, p in enumerate(output))
    elif isinstance(output, str):
        text = output
    else:
        raise invalid_value(f"{where}.output", f"'{where}.output' must be a string or a list of text parts.")
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Function tools, and the function tools of a ``namespace`` tool (a named group of functions, as Codex sends its
    sub-agent tools) as plain ones: a chat backend has no namespaces. ``namespaces`` puts the group back on the
    calls that come out."""
    if not isinstance(tools, list):
        raise invalid_value("tools", "'tools' must be a list.")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_value(where, f"'{where}' must be an object.")
        if tool.get("type") == "namespace":
            _required_string(tool, "name", where)
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise invalid_value(f"{where}.tools", f"'{where}.tools' must be a list of function tools.")
            out.extend(_function_tool(t, f"{where}.tools[{j}]") for j, t in enumerate(inner))
        else:
            out.append(_function_tool(tool, where))
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise invalid_value("tools", f"Two tools are named '{duplicate}': a chat backend needs one name per function.")
    return out


def _function_tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise invalid_value(where, f"'{where}' must be an object.")
    kind = tool.get("type")
    if kind != "function":
        raise unsupported_value(
            f"{where}.type", f"The '{kind}' tool is not available for this model's provider; use function tools."
        )
    function: dict[str, Any] = {"name": _required_string(tool, "name", where)}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def namespaces(request: dict[str, Any]) -> dict[str, str]:
    """Function name -> the ``namespace`` tool it was declared in, for the request's namespaced functions."""
    found: dict[str, str] = {}
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            for inner in tool["tools"]:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    found[inner["name"]] = str(tool.get("name"))
    return found


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _required_string(choice, "name", "tool_choice")}}
    raise unsupported_value(
        "tool_choice",
        "'tool_choice' must be auto, none, required or a function ({type: function, name}) for this model's provider.",
    )


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid_value("text", "'text' must be an object.")
    spec = text.get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema" or not isinstance(spec, dict):
        raise invalid_value("text.format.type", "'text.format.type' must be text, json_object or json_schema.")
    if not isinstance(spec.get("schema"), dict):
        raise invalid_value("text.format.schema", "'text.format.schema' must be a JSON Schema object.")
    schema: dict[str, Any] = {"name": _required_string(spec, "name", "text.format")}
    for name in ("description", "schema", "strict"):
        if spec.get(name) is not None:
            schema[name] = spec[name]
    return {"type": "json_schema", "json_schema": schema}


# -- responses ------------------------------------------------------------------------------------------------


def _response(
    request: dict[str, Any],
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    *,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Responses object. The request fields OpenAI repeats are echoed, with OpenAI's values when the client
    left them out (the SDK's ``Response`` requires tools, tool_choice and parallel_tool_calls)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "usage": usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(usage: Any) -> dict[str, Any]:
    """Chat usage in Responses spelling (the same semantics: input includes cached, output includes reasoning)."""
    chat = usage if isinstance(usage, dict) else {}
    prompt_details = chat.get("prompt_tokens_details")
    completion_details = chat.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    prompt, completion = _count(chat.get("prompt_tokens")), _count(chat.get("completion_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": _count(cached)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(reasoning)},
        "total_tokens": _count(chat.get("total_tokens")) or prompt + completion,
    }


def _reasoning_item(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": _id("rs"), "summary": [{"type": "summary_text", "text": text}]}


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": []}


def _call_item(
    call_id: Any, name: Any, arguments: str, status: str, spaces: dict[str, str] | None = None
) -> dict[str, Any]:
    item = {
        "type": "function_call",
        "id": _id("fc"),
        "call_id": call_id if isinstance(call_id, str) and call_id else _id("call"),
        "name": name if isinstance(name, str) else "",
        "arguments": arguments,
        "status": status,
    }
    if spaces and item["name"] in spaces:
        item["namespace"] = spaces[item["name"]]  # a function of a namespace tool: the client routes by it
    return item


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some upstreams answer with text parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def chat_to_response(
    completion: dict[str, Any], request: dict[str, Any], response_id: str, created_at: int
) -> dict[str, Any]:
    """An OpenAI chat.completion body -> a Responses ``response`` object: completed, or incomplete when the
    answer was cut (``length`` -> max_output_tokens, ``content_filter``)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    finish = choice.get("finish_reason")
    incomplete = _INCOMPLETE.get(finish) if isinstance(finish, str) else None

    output: list[dict[str, Any]] = []
    reasoning = _text(message.get("reasoning_content")) or _text(message.get("reasoning"))
    if reasoning:
        output.append(_reasoning_item(reasoning))
    parts = [_part(kind, text) for kind, text in _message_texts(message) if text]
    if parts:
        status = "incomplete" if incomplete else "completed"
        output.append({"type": "message", "id": _id("msg"), "status": status, "role": "assistant", "content": parts})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            arguments = arguments if isinstance(arguments, str) else ""
            output.append(_call_item(call.get("id"), function.get("name"), arguments, "completed", namespaces(request)))
    status = "incomplete" if incomplete else "completed"
    usage = _usage(completion.get("usage"))
    return _response(request, response_id, created_at, status, output, usage, incomplete=incomplete)


def _message_texts(message: dict[str, Any]) -> list[tuple[str, str]]:
    refusal = message.get("refusal")
    return [("output_text", _text(message.get("content"))), ("refusal", refusal if isinstance(refusal, str) else "")]


def output_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages a finished response adds to the conversation (the assistant message with its tool_calls and
    reasoning_content), for storing alongside the request's own chat messages."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "reasoning":
            summary = _summary_text(item.get("summary"))
            if summary:
                reasoning.append(summary)
        elif kind == "message":
            for part in item.get("content") or ():
                text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
                if isinstance(text, str):
                    texts.append(text)
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            calls.append({"id": item.get("call_id"), "type": "function", "function": function})
    if not (texts or reasoning or calls):
        return []
    # Tool calls without text are sent with null content (§2.5); some providers reject a null content otherwise.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    return [message]


# -- streams --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """The output item being streamed."""

    kind: str  # reasoning | message | function_call
    item: dict[str, Any]
    index: int  # its output_index
    text: list[str] = field(default_factory=list)  # the reasoning, the open content part, or the arguments
    part: str = ""  # a message's open content part: output_text, refusal, or "" when none is open
    call: int = -1  # a function call's chat tool-call index


class ResponsesStream:
    """OpenAI chat SSE bytes in -> Responses API SSE events out.

    Each chat delta extends the open output item or, when it is of another kind (or another tool call), closes
    it and opens the next. The terminal event goes out as soon as the finish and the usage are both known (the
    usage chunk follows the finish when ``include_usage`` was asked for), else at ``end()``.
    """

    __slots__ = (
        "_calls",
        "_created_at",
        "_decoder",
        "_done",
        "_error",
        "_finish",
        "_items",
        "_namespaces",
        "_open",
        "_request",
        "_response",
        "_response_id",
        "_seq",
        "_started",
        "_usage",
    )

    def __init__(self, request: dict[str, Any], response_id: str, created_at: int) -> None:
        self._request = request
        self._namespaces = namespaces(request)
        self._response_id = response_id
        self._created_at = created_at
        self._decoder = SSEDecoder()
        self._seq = 0
        self._started = False
        self._done = False  # a terminal event was emitted: the rest of the input is ignored
        self._items: list[dict[str, Any]] = []
        self._open: _Open | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its function_call item
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._response: dict[str, Any] | None = None
        self._error: str | None = None

    @property
    def response(self) -> dict[str, Any] | None:
        """The final response object once ``response.completed`` or ``response.incomplete`` was emitted."""
        return self._response

    @property
    def error(self) -> str | None:
        """Why the stream failed, once ``response.failed`` was emitted."""
        return self._error

    def feed(self, data: bytes) -> bytes:
        return self._run(lambda: self._decoder.feed(data))

    def end(self) -> bytes:
        """The upstream finished: a last event without its blank line still counts, then the terminal event."""
        out = self._run(self._decoder.flush)
        if self._done:
            return out
        tail: list[bytes] = []
        self._start(tail)
        if self._finish is not None:
            self._complete(tail)
        else:
            self._fail(UNFINISHED, tail)
        return out + b"".join(tail)

    def fail(self, message: str) -> bytes:
        """The transport failed mid-stream: the client's ``response.failed`` (b"" once the stream has ended)."""
        if self._done:
            return b""
        out: list[bytes] = []
        self._start(out)
        self._fail(message, out)
        return b"".join(out)

    def _run(self, decode: Callable[[], list[SSEEvent]]) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        try:
            events = decode()
        except EventTooLarge as exc:
            self._start(out)
            self._fail(f"The upstream sent a stream event larger than {exc.limit} bytes.", out)
            return b"".join(out)
        for event in events:
            self._event(event.data, out)
            if self._done:
                break
        return b"".join(out)

    def _emit(self, out: list[bytes], kind: str, fields: dict[str, Any]) -> None:
        payload = orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n")

    def _snapshot(self, status: str, usage: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
        output = [item for item in self._items if self._open is None or item is not self._open.item]
        return _response(self._request, self._response_id, self._created_at, status, output, usage, **extra)

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        response = _response(self._request, self._response_id, self._created_at, "in_progress", [], None)
        self._emit(out, "response.created", {"response": response})
        self._emit(out, "response.in_progress", {"response": response})

    def _event(self, data: bytes, out: list[bytes]) -> None:
        self._start(out)
        if data == b"[DONE]":
            if self._finish is not None:
                self._complete(out)  # no usage chunk came: nothing more is worth waiting for
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail(MALFORMED, out)
            return
        if not isinstance(chunk, dict):
            return
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            self._fail(str(message or "The upstream reported an error."), out)
            return
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
            if self._finish is not None:
                self._complete(out)

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # DeepSeek, Moonshot and xAI spell it reasoning_content; Ollama and OpenRouter spell it reasoning.
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                self._reasoning(reasoning, out)
            for key, part in (("content", "output_text"), ("refusal", "refusal")):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    self._message_text(part, text, out)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish

    def _add(self, kind: str, item: dict[str, Any], out: list[bytes]) -> _Open:
        self._close(out)
        state = _Open(kind, item, len(self._items))
        self._items.append(item)
        self._open = state
        self._emit(out, "response.output_item.added", {"output_index": state.index, "item": item})
        return state

    def _reasoning(self, text: str, out: list[bytes]) -> None:
        state = self._open
        if state is None or state.kind != "reasoning":
            state = self._add("reasoning", {"type": "reasoning", "id": _id("rs"), "summary": []}, out)
            part = {"type": "summary_text", "text": ""}
            self._emit(
                out, "response.reasoning_summary_part.added", {**_where(state), "summary_index": 0, "part": part}
            )
        state.text.append(text)
        self._emit(out, "response.reasoning_summary_text.delta", {**_where(state), "summary_index": 0, "delta": text})

    def _message_text(self, part: str, text: str, out: list[bytes]) -> None:
        state = self._open
        if state is None or state.kind != "message":
            item = {"type": "message", "id": _id("msg"), "status": "in_progress", "role": "assistant", "content": []}
            state = self._add("message", item, out)
        if state.part != part:
            self._close_part(state, out)
            state.part = part
            added = {**_where(state), "content_index": len(state.item["content"]), "part": _part(part, "")}
            self._emit(out, "response.content_part.added", added)
        state.text.append(text)
        delta = {**_where(state), "content_index": len(state.item["content"]), "delta": text}
        if part == "output_text":
            self._emit(out, "response.output_text.delta", {**delta, "logprobs": []})
        else:
            self._emit(out, "response.refusal.delta", delta)

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        state = self._open
        index = call.get("index")
        if not isinstance(index, int):
            # Without an index, a delta with an id starts a call and one without continues the open call.
            continuing = state is not None and state.kind == "function_call" and not call.get("id")
            index = state.call if continuing and state is not None else len(self._calls)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        if state is None or state.kind != "function_call" or state.call != index:
            if index in self._calls:
                # A call resumed after another began: its done event went out, but the final response is whole.
                self._calls[index]["arguments"] += arguments
                return
            item = _call_item(call.get("id"), function.get("name"), "", "in_progress", self._namespaces)
            state = self._add("function_call", item, out)
            state.call = index
            self._calls[index] = item
        if arguments:
            state.text.append(arguments)
            self._emit(out, "response.function_call_arguments.delta", {**_where(state), "delta": arguments})

    def _close_part(self, state: _Open, out: list[bytes]) -> None:
        if not state.part:
            return
        text = "".join(state.text)
        state.text.clear()
        where = {**_where(state), "content_index": len(state.item["content"])}
        if state.part == "output_text":
            self._emit(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
        else:
            self._emit(out, "response.refusal.done", {**where, "refusal": text})
        part = _part(state.part, text)
        self._emit(out, "response.content_part.done", {**where, "part": part})
        state.item["content"].append(part)
        state.part = ""

    def _close(self, out: list[bytes]) -> None:
        state = self._open
        if state is None:
            return
        item = state.item
        if state.kind == "reasoning":
            part = {"type": "summary_text", "text": "".join(state.text)}
            done = {**_where(state), "summary_index": 0}
            self._emit(out, "response.reasoning_summary_text.done", {**done, "text": part["text"]})
            self._emit(out, "response.reasoning_summary_part.done", {**done, "part": part})
            item["summary"] = [part]
        elif state.kind == "message":
            self._close_part(state, out)
            item["status"] = "incomplete" if self._finish in _INCOMPLETE else "completed"
        else:
            item["arguments"] = "".join(state.text)
            item["status"] = "completed"
            done = {**_where(state), "name": item["name"], "arguments": item["arguments"]}
            self._emit(out, "response.function_call_arguments.done", done)
        self._open = None
        self._emit(out, "response.output_item.done", {"output_index": state.index, "item": item})

    def _complete(self, out: list[bytes]) -> None:
        self._close(out)
        reason = _INCOMPLETE.get(self._finish or "")
        response = self._snapshot("incomplete" if reason else "completed", _usage(self._usage), incomplete=reason)
        self._emit(out, f"response.{response['status']}", {"response": response})
        self._response = response
        self._done = True

    def _fail(self, message: str, out: list[bytes]) -> None:
        """``response.failed`` with the items finished so far; the open one is left out, being unfinished."""
        message = redact(message)  # upstream text on its way to the client: it may quote a key
        usage = None if self._usage is None else _usage(self._usage)
        response = self._snapshot("failed", usage, error={"code": "server_error", "message": message})
        self._emit(out, "response.failed", {"response": response})
        self._open = None
        self._error = message
        self._done = True


def _where(state: _Open) -> dict[str, Any]:
    return {"item_id": state.item["id"], "output_index": state.index}
