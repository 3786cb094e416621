"""Local token counting for when an upstream reports no usage (a stream cut short, an upstream without usage).

Uses ``bpe-openai`` (o200k_base), which ships its tables: nothing is downloaded at run time. The counting runs
in the estimator helper process (``estimator.py``); the text extraction helpers here are cheap and used by the
gateway itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))


# Per-message framing overhead as counted by OpenAI chat models (role and separators).
_PER_MESSAGE = 3
_PER_REQUEST = 3


def message_texts(messages: Any) -> list[str]:
    """The text of a request's messages (for the heuristic fallback)."""
    out: list[str] = []
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return out


def count_messages(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    total = _PER_REQUEST
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += count_text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += count_text(part["text"])
                elif isinstance(part, dict) and part.get("type") == "image_url":
                    total += 85  # a low-detail image tile, OpenAI's documented base cost
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                total += count_text(str(fn.get("name", ""))) + count_text(str(fn.get("arguments", "")))
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str):
            total += count_text(reasoning)
    return total
