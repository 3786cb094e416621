"""The client that fetches media a request names by URL (images and PDFs inlined for Gemini).

A client-supplied URL is fetched from inside the gateway's network, so by default only public addresses are
reachable (no SSRF into loopback, private, link-local or cloud-metadata addresses): every hostname is resolved
through a resolver that drops non-public addresses, literal IP hosts are checked the same way, and redirects are
followed by hand (at most 3), each hop checked again. ``GOPHERGATE_MEDIA_FETCH_ALLOW_PRIVATE=true`` lifts the
restriction (media servers on the internal network, tests on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gophergate.core.errors import GatewayError
from gophergate.providers.aiohttp_client import AiohttpResponse, mapped_errors

MAX_REDIRECTS = 3


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class BlockedURL(GatewayError):
    """A URL the media client refuses to fetch (the fetch code turns it into a 400 naming the message part)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400, code="invalid_image_url")


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, keeping only public addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address (GOPHERGATE_MEDIA_FETCH_ALLOW_PRIVATE allows it)")
        return public

    async def close(self) -> None:
        await self._inner.close()


class MediaClient:
    """``Transport``-shaped (GET only) so the fetch code does not care which client it has. Its own aiohttp session
    (the resolver above, redirects by hand, aiohttp's decompression), with errors mapped to the transport seam's
    by the aiohttp backend's ``mapped_errors``."""

    def __init__(self, *, allow_private: bool = False, timeout: float = 30.0) -> None:
        self.allow_private = allow_private
        connector = aiohttp.TCPConnector(
            limit=64, resolver=None if allow_private else PublicOnlyResolver(), ttl_dns_cache=60
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "gophergate-media"},
        )

    async def _check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BlockedURL("only http(s) URLs can be fetched")
        if self.allow_private:
            return
        host = parts.hostname
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            # A name: say clearly when it points inside; the resolver also drops non-public addresses at
            # connect time (a name that changes its answer in between gets no private address either).
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
            except OSError:
                return  # the connection attempt reports it
            if infos and not any(is_public(str(info[4][0])) for info in infos):
                raise BlockedURL(
                    f"{host} resolves to no public address (GOPHERGATE_MEDIA_FETCH_ALLOW_PRIVATE allows it)"
                ) from None
            return
        if not is_public(host):
            raise BlockedURL(f"{host} is not a public address (GOPHERGATE_MEDIA_FETCH_ALLOW_PRIVATE allows it)")

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> AiohttpResponse:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            await self._check(current)
            with mapped_errors():
                resp = await self._session.request(method, current, headers=headers, data=body, allow_redirects=False)
            location = resp.headers.get("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                resp.close()
                current = urljoin(current, location)
                continue
            answer = AiohttpResponse(resp)
            if stream:
                return answer
            try:
                await answer.read()
            finally:
                resp.release()
            return answer
        raise BlockedURL(f"more than {MAX_REDIRECTS} redirects")

    async def close(self) -> None:
        await self._session.close()
