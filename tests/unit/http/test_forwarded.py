"""The client and scheme behind trusted proxies: chains, CIDRs, IPv6, and malformed headers that never fail."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophergate.http.forwarded import MAX_HOPS, TrustedProxies, parse_address

LOCAL = TrustedProxies([ip_network("127.0.0.1"), ip_network("::1")])
# A proxy tier on a private network in front of the loopback proxy, and an IPv6 one.
TIERED = TrustedProxies([ip_network("127.0.0.1"), ip_network("10.0.0.0/8"), ip_network("2001:db8:ff::/48")])


def scope(
    peer: str | None = "127.0.0.1",
    forwarded_for: str | list[str] | None = None,
    proto: str | None = None,
    kind: str = "http",
) -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = [(b"host", b"gateway.example"), (b"user-agent", b"test")]
    for value in [forwarded_for] if isinstance(forwarded_for, str) else forwarded_for or []:
        headers.append((b"x-forwarded-for", value.encode("latin-1")))
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto.encode()))
    return {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "path": "/v1/models",
        "headers": headers,
        "client": None if peer is None else (peer, 40000),
    }


def client_of(proxies: TrustedProxies, forwarded_for: str | list[str], peer: str = "127.0.0.1") -> str:
    result = proxies.rewrite(scope(peer, forwarded_for))
    client: tuple[str, int] = result["client"]
    return client[0]


def test_a_trusted_peer_forwards_the_client_and_the_servers_scope_is_left_as_it_was() -> None:
    original = scope(forwarded_for="203.0.113.7", proto="https")
    before = dict(original)
    rewritten = LOCAL.rewrite(original)
    assert rewritten["client"] == ("203.0.113.7", 0)
    assert rewritten["scheme"] == "https"
    assert rewritten["headers"] is original["headers"] and rewritten["path"] == "/v1/models"
    assert original == before  # a copy: the server's own dict is not changed


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    forged = scope(peer="203.0.113.50", forwarded_for="198.51.100.1", proto="https")
    assert LOCAL.rewrite(forged) is forged
    forged_local = scope(peer="127.0.0.5", forwarded_for="198.51.100.1", proto="https")  # loopback, not trusted
    assert LOCAL.rewrite(forged_local) is forged_local


def test_without_forwarded_headers_or_without_a_peer_the_scope_is_unchanged() -> None:
    plain = scope()
    assert LOCAL.rewrite(plain) is plain
    unix_socket = scope(peer=None, forwarded_for="203.0.113.7", proto="https")
    assert LOCAL.rewrite(unix_socket) is unix_socket


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # the right-most address that is not a trusted proxy: left of it the client may have written anything
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7, 10.1.2.3, 10.200.0.1", "203.0.113.7"),
        ("203.0.113.7,10.1.2.3", "203.0.113.7"),
        # every hop trusted: the left-most of them (the client runs on a proxy's host)
        ("10.1.2.3, 127.0.0.1", "10.1.2.3"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address_of_the_chain(forwarded_for: str, client: str) -> None:
    assert client_of(TIERED, forwarded_for) == client


def test_only_the_configured_networks_are_trusted_hops() -> None:
    # 10.1.2.3 is a proxy in TIERED, but an ordinary client address in LOCAL
    assert client_of(LOCAL, "203.0.113.7, 10.1.2.3") == "10.1.2.3"
    assert client_of(TIERED, "203.0.113.7, 10.1.2.3") == "203.0.113.7"
    assert client_of(TIERED, "203.0.113.7, 11.1.2.3") == "11.1.2.3"


def test_several_header_lines_make_one_chain_in_order() -> None:
    assert client_of(TIERED, ["198.51.100.1, 203.0.113.7", "10.1.2.3"]) == "203.0.113.7"
    assert client_of(TIERED, ["203.0.113.7", "198.51.100.1"]) == "198.51.100.1"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("2001:DB8:0:0:0:0:0:7", "2001:db8::7"),  # the canonical text form is recorded
        ("2001:db8::7, 2001:db8:ff::1, [2001:db8:ff::2]:8080", "2001:db8::7"),  # a trusted IPv6 CIDR
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("203.0.113.7:5555", "203.0.113.7"),  # IPv4 with a port
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_ipv6_brackets_ports_and_mapped_addresses(forwarded_for: str, client: str) -> None:
    assert client_of(TIERED, forwarded_for) == client


def test_an_ipv6_or_mapped_peer_is_matched_against_the_networks() -> None:
    assert client_of(LOCAL, "203.0.113.7", peer="::1") == "203.0.113.7"
    assert client_of(LOCAL, "203.0.113.7", peer="::ffff:127.0.0.1") == "203.0.113.7"  # a dual-stack socket
    assert client_of(TIERED, "203.0.113.7", peer="2001:db8:ff::9") == "203.0.113.7"
    untrusted = scope(peer="2001:db8:fe::9", forwarded_for="203.0.113.7")
    assert TIERED.rewrite(untrusted) is untrusted


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        # nothing usable: the peer itself
        ("", "127.0.0.1"),
        (" , ,, ", "127.0.0.1"),
        ("garbage", "127.0.0.1"),
        ("unknown", "127.0.0.1"),
        ("203.0.113.7:http", "127.0.0.1"),
        ("203.0.113.7:80:90", "127.0.0.1"),
        ("[2001:db8::7", "127.0.0.1"),
        ("[2001:db8::7]x", "127.0.0.1"),
        ("[not-an-address]:80", "127.0.0.1"),
        ("203.0.113", "127.0.0.1"),
        ("999.0.113.7", "127.0.0.1"),
        ("1" * 500, "127.0.0.1"),
        ("\xff\xfe\x00", "127.0.0.1"),
        # empty items are skipped
        ("203.0.113.7,,", "203.0.113.7"),
        (",203.0.113.7 ,", "203.0.113.7"),
        # garbage left of the client is the client's own text: never reached
        ("unknown, 203.0.113.7", "203.0.113.7"),
        # garbage ends the walk: the forged address beyond it is not believed, the nearest traced hop is
        ("198.51.100.1, garbage, 10.1.2.3", "10.1.2.3"),
        ("198.51.100.1, garbage", "127.0.0.1"),
    ],
)
def test_malformed_forwarded_for_never_fails_and_falls_back_to_what_can_be_traced(
    forwarded_for: str, client: str
) -> None:
    assert client_of(TIERED, forwarded_for) == client


def test_a_header_longer_than_the_hop_limit_costs_no_more_than_the_limit() -> None:
    forged = ", ".join(f"198.51.{i // 250}.{i % 250}" for i in range(5000))
    assert client_of(TIERED, forged + ", 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    # more trusted hops than MAX_HOPS: the walk stops at the limit, on a trusted hop, not on a forged address
    hops = ", ".join(f"10.0.0.{i}" for i in range(1, MAX_HOPS + 5))
    assert client_of(TIERED, "198.51.100.1, " + hops).startswith("10.0.0.")


@given(st.binary(max_size=200))
def test_any_forwarded_for_bytes_give_a_client_and_never_raise(value: bytes) -> None:
    headers = [(b"x-forwarded-for", value), (b"x-forwarded-proto", value)]
    result = TIERED.rewrite({"type": "http", "scheme": "http", "headers": headers, "client": ("127.0.0.1", 1)})
    assert isinstance(result["client"][0], str) and result["scheme"] in ("http", "https")


@pytest.mark.parametrize(
    ("kind", "proto", "scheme"),
    [
        ("http", "https", "https"),
        ("http", "HTTPS", "https"),
        ("http", " https ", "https"),
        ("http", "http", "http"),
        ("http", "http, https", "https"),  # appended by each proxy: the nearest one's
        ("http", "https, http", "http"),
        ("websocket", "https", "wss"),
        ("websocket", "wss", "wss"),
        ("websocket", "http", "ws"),
        ("http", "ftp", "http"),  # not a web scheme: ignored
        ("http", "", "http"),
        ("websocket", "gopher", "ws"),
    ],
)
def test_forwarded_proto_sets_the_scheme_of_http_and_websocket_scopes(kind: str, proto: str, scheme: str) -> None:
    assert LOCAL.rewrite(scope(proto=proto, kind=kind))["scheme"] == scheme


def test_forwarded_proto_alone_keeps_the_peer_as_the_client() -> None:
    rewritten = LOCAL.rewrite(scope(proto="https"))
    assert rewritten["scheme"] == "https" and rewritten["client"] == ("127.0.0.1", 40000)


def test_lifespan_and_other_scopes_pass_through() -> None:
    lifespan = {"type": "lifespan"}
    assert LOCAL.rewrite(lifespan) is lifespan


def test_the_address_caches_stay_bounded() -> None:
    proxies = TrustedProxies([ip_network("127.0.0.1")])
    for i in range(proxies.CACHE_MAX * 2 + 10):
        peer = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        proxies.rewrite(scope(peer=peer, forwarded_for="203.0.113.7"))
        proxies.client(f"198.51.{i // 256 % 256}.{i % 256}".encode(), "127.0.0.1")
    assert len(proxies._peers) <= proxies.CACHE_MAX and len(proxies._entries) <= proxies.CACHE_MAX


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" 127.0.0.1 ", "127.0.0.1"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("localhost", None),
        ("", None),
        ("[::1]:", None),
        ("[::1]:x", None),
    ],
)
def test_parse_address(text: str, address: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == address
