"""OpenAI image generation -> Gemini image models through ``generateContent`` (providers.md §3.7).

Imagen's ``:predict`` is gone from the Developer API; image-capable Gemini models answer ``generateContent``
with ``responseModalities: ["TEXT", "IMAGE"]`` and return images as ``inlineData`` parts. Pure functions.
"""

from __future__ import annotations

from typing import Any

import orjson

from gophergate.core.errors import InvalidRequest
from gophergate.core.usage import Usage, from_gemini

_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
MAX_IMAGES = 10


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def aspect_ratio(size: str) -> str | None:
    """OpenAI ``size`` ("1536x1024") -> the nearest Gemini ``aspectRatio``; None for "auto"."""
    if size == "auto":
        return None
    width, sep, height = size.partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise _bad("size", "'size' must be 'auto' or WIDTHxHEIGHT, e.g. '1024x1024'.")
    target = int(width) / int(height)

    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return abs(int(w) / int(h) - target)

    return min(_RATIOS, key=distance)


def image_request(body: dict[str, Any]) -> tuple[bytes, int]:
    """The ``generateContent`` body for one image, and how many calls make the ``n`` images asked for."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _bad("prompt", "'prompt' must be a non-empty string.")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise _bad("n", f"'n' must be an integer from 1 to {MAX_IMAGES}.")
    if body.get("response_format") not in (None, "b64_json"):
        raise _bad("response_format", "Gemini image models return image data only: use response_format 'b64_json'.")
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    size = body.get("size")
    if size is not None:
        if not isinstance(size, str):
            raise _bad("size", "'size' must be a string.")
        ratio = aspect_ratio(size)
        if ratio is not None:
            config["imageConfig"] = {"aspectRatio": ratio}
    payload = {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "generationConfig": config}
    return orjson.dumps(payload), n


def images_from(data: dict[str, Any]) -> tuple[list[str], Usage | None]:
    """The base64 images of one ``generateContent`` answer, and its usage."""
    images: list[str] = []
    for candidate in data.get("candidates") or ():
        content = candidate.get("content") if isinstance(candidate, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            inline = part.get("inlineData") if isinstance(part, dict) else None
            if isinstance(inline, dict) and isinstance(inline.get("data"), str) and part.get("thought") is not True:
                if str(inline.get("mimeType", "image/")).startswith("image/"):
                    images.append(inline["data"])
    metadata = data.get("usageMetadata")
    return images, from_gemini(metadata) if isinstance(metadata, dict) else None
