"""Which forward proxy, if any, applies to an upstream URL: the standard environment variables, read the way
curl and Python's ``urllib`` read them.

- ``https_proxy`` / ``HTTPS_PROXY`` for ``https://`` upstreams, ``http_proxy`` / ``HTTP_PROXY`` for ``http://``
  ones, ``all_proxy`` / ``ALL_PROXY`` for either when the scheme's own variable is unset (the lowercase name wins
  when both are set); a value without a scheme (``proxy:3128``) means ``http://``;
- ``no_proxy`` / ``NO_PROXY``: comma- or space-separated entries, ``*`` for every host; an entry matches the host
  itself and its subdomains (``example.com`` and ``.example.com`` both match ``api.example.com``), an address or a
  CIDR block (``10.0.0.0/8``) matches addresses, and ``host:port`` only that port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")


def _variable(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or "").strip() or (environ.get(name.upper()) or "").strip()


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL (credentials included, if the variable has them) for ``url``, or None to connect directly."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    proxy = _variable(environ, f"{scheme}_proxy") or _variable(environ, "all_proxy")
    if not proxy:
        return None
    if _bypassed(parts.hostname, parts.port or (443 if scheme == "https" else 80), _variable(environ, "no_proxy")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def any_proxy_configured(environ: Mapping[str, str]) -> bool:
    return any(_variable(environ, name) for name in PROXY_VARIABLES)


def without_credentials(proxy: str) -> str:
    """A proxy URL fit for a log line: user and password removed."""
    parts = urlsplit(proxy)
    if parts.username is None and parts.password is None:
        return proxy
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    address = _address(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.startswith("["):  # [v6]:port or [v6]
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                entry, entry_port = name, int(number)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip("*").lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
