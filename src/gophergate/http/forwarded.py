"""The real client behind a reverse proxy: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` from trusted peers.

A proxy in front of the gateway (nginx, a load balancer) connects from its own address and, when it terminates
TLS, speaks plain HTTP to the gateway. It passes on what it saw in two headers: ``X-Forwarded-For``, to which each
proxy appends the address of its own peer, and ``X-Forwarded-Proto``, the scheme the client used. Anyone can send
those headers, so they are believed only on a connection from a trusted proxy (``GOPHERGATE_TRUSTED_PROXIES``);
from any other peer they are ignored.

The client is the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy: every entry to its
right was written by a proxy we trust, every entry to its left by the client or by proxies we do not know, and
can be anything. Entries may carry a port (``1.2.3.4:5678``, ``[::1]:5678``) and IPv6 brackets; empty entries
are skipped; an entry that is not an address ends the walk, since what lies beyond it cannot be traced. The
client is then the last address the walk reached, or the peer itself when there was none: malformed headers
never fail a request.

``TrustedProxies.rewrite`` returns the scope that the rest of the app sees: a copy with ``client`` set to the
real client (port 0: the proxy does not pass the client's port) and ``scheme`` to ``https``/``wss`` when the
client spoke TLS to the proxy. Every place that reads the client address (the request log, the login throttle,
dashboard sessions) or the scheme (the ``Secure`` cookie flag) then gets the real one. The app calls it first
thing for every http and websocket scope, so it works the same on any ASGI server.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from gophergate.core.asgi import Scope

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

# Entries of one X-Forwarded-For examined from the right: more trusted hops than this is no real deployment,
# and the bound keeps a huge header from costing more than a short one.
MAX_HOPS = 16
# The longest text form of an address worth parsing: IPv6 with an IPv4 tail, brackets, a port and a zone id.
_MAX_ENTRY = 96
_SCHEMES = {
    "http": {b"https": "https", b"wss": "https", b"http": "http", b"ws": "http"},
    "websocket": {b"https": "wss", b"wss": "wss", b"http": "ws", b"ws": "ws"},
}


def parse_address(text: str) -> Address | None:
    """An address from a peer host or an ``X-Forwarded-For`` entry, or None when it is not one. A port and IPv6
    brackets are dropped; an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) is IPv4."""
    text = text.strip()
    if not text or len(text) > _MAX_ENTRY:
        return None
    if text[0] == "[":
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port (bare IPv6 has at least two colons)
        text, port = text.split(":")
        if not port.isdigit():
            return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The peers whose forwarded headers are believed, and the rewrite of a scope that came through one.

    Addresses are classified once and remembered (bounded), so a request from an untrusted peer costs a dict
    lookup, and one through a proxy a scan of its headers and a lookup per hop."""

    CACHE_MAX = 4096

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks: tuple[Network, ...] = tuple(networks)
        self._peers: dict[str, bool] = {}  # peer host -> trusted
        self._entries: dict[bytes, tuple[str, bool] | None] = {}  # X-Forwarded-For entry -> (address, trusted)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def _peer_trusted(self, host: str) -> bool:
        trusted = self._peers.get(host)
        if trusted is None:
            address = parse_address(host)
            trusted = address is not None and self.trusts(address)
            if len(self._peers) >= self.CACHE_MAX:
                self._peers.clear()
            self._peers[host] = trusted
        return trusted

    def _entry(self, text: bytes) -> tuple[str, bool] | None:
        try:
            return self._entries[text]
        except KeyError:
            pass
        address = parse_address(text.decode("latin-1"))
        info = None if address is None else (str(address), self.trusts(address))
        if len(self._entries) >= self.CACHE_MAX:
            self._entries.clear()
        self._entries[text] = info
        return info

    def client(self, forwarded_for: bytes, peer: str) -> str:
        """The client address named by an ``X-Forwarded-For`` value that a trusted ``peer`` sent."""
        client = peer
        for item in reversed(forwarded_for.rsplit(b",", MAX_HOPS)):
            text = item.strip()
            if not text:
                continue
            info = self._entry(text)
            if info is None:
                break
            client = info[0]
            if not info[1]:
                break
        return client

    def rewrite(self, scope: Scope) -> Scope:
        """The scope the app should see: ``scope`` itself unless a trusted peer forwarded another client or
        scheme; then a shallow copy (the server's own dict is left as it was)."""
        peer = scope.get("client")
        if not peer or not self._peer_trusted(peer[0]):
            return scope
        forwarded_for: bytes | None = None
        proto: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":  # several lines of it make one list, in order
                forwarded_for = bytes(value) if forwarded_for is None else forwarded_for + b"," + value
            elif name == b"x-forwarded-proto":
                proto = bytes(value)
        if forwarded_for is None and proto is None:
            return scope
        changed: Scope = {}
        if forwarded_for is not None:
            client = self.client(forwarded_for, peer[0])
            if client != peer[0]:
                changed["client"] = (client, 0)
        if proto is not None:
            # Proxies that append rather than replace leave a list: the right-most is the nearest proxy's.
            scheme = _SCHEMES.get(scope["type"], {}).get(proto.rsplit(b",", 1)[-1].strip().lower())
            if scheme is not None and scheme != scope.get("scheme"):
                changed["scheme"] = scheme
        return {**scope, **changed} if changed else scope
