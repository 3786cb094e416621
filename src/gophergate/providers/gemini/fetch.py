"""Fetching http(s) images and PDFs named in a request, to inline them for Gemini (providers.md §3.2, §11.21).

Through the gateway's pooled ``Transport``, with a size cap, a time limit and a content-type check; any
failure is a 400 naming the message part, so the client knows which URL to fix.
"""

from __future__ import annotations

import asyncio
import base64

from gophergate.core.errors import GatewayError, InvalidRequest
from gophergate.providers.gemini.translate import InlineData, RemoteFile
from gophergate.providers.transport import Transport
from gophergate.providers.upstream import transport_errors

MAX_FETCH_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 30.0
_ACCEPT = "image/*, application/pdf"


async def fetch_all(
    client: Transport,
    files: list[RemoteFile],
    *,
    max_bytes: int = MAX_FETCH_BYTES,
    time_limit: float = FETCH_TIMEOUT_SECONDS,
) -> dict[str, InlineData]:
    """Each distinct URL fetched once, concurrently; the first failure (in request order) is raised."""
    first: dict[str, RemoteFile] = {}
    for file in files:
        first.setdefault(file.url, file)
    results = await asyncio.gather(
        *(fetch_one(client, f, max_bytes=max_bytes, time_limit=time_limit) for f in first.values()),
        return_exceptions=True,
    )
    fetched: dict[str, InlineData] = {}
    for file, result in zip(first.values(), results, strict=True):
        if isinstance(result, BaseException):
            raise result
        fetched[file.url] = result
    return fetched


async def fetch_one(client: Transport, file: RemoteFile, *, max_bytes: int, time_limit: float) -> InlineData:
    def failed(reason: str) -> InvalidRequest:
        return InvalidRequest(
            f"Could not fetch '{file.param}' ({file.url}) to inline it for Gemini: {reason}.",
            param=file.param,
            code="invalid_image_url",
        )

    try:
        async with asyncio.timeout(time_limit):
            with transport_errors("image host"):
                resp = await client.request("GET", file.url, {"Accept": _ACCEPT}, None, stream=True)
                try:
                    if resp.status != 200:
                        raise failed(f"the server answered HTTP {resp.status}")
                    mime = (resp.header("content-type") or "").split(";", 1)[0].strip().lower()
                    if not (mime.startswith("image/") or mime == "application/pdf"):
                        raise failed(f"content type {mime or 'missing'!r} is not an image or a PDF")
                    length = resp.header("content-length")
                    if length is not None and length.isdigit() and int(length) > max_bytes:
                        raise failed(f"it is larger than {max_bytes} bytes")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.chunks():
                        size += len(chunk)
                        if size > max_bytes:
                            raise failed(f"it is larger than {max_bytes} bytes")
                        chunks.append(chunk)
                finally:
                    await resp.aclose(reuse=False)
    except TimeoutError:
        raise failed(f"no complete answer within {time_limit:g} s") from None
    except InvalidRequest:
        raise
    except GatewayError as exc:
        raise failed(exc.message.replace("upstream provider 'image host'", "the image host")) from None
    if not size:
        raise failed("the body is empty")
    return InlineData(mime, base64.b64encode(b"".join(chunks)).decode("ascii"))
