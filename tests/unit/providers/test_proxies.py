"""Which proxy applies to an upstream URL (providers/proxies.py): the standard variables, NO_PROXY honoured."""

from __future__ import annotations

import pytest

from gophergate.providers.proxies import any_proxy_configured, proxy_for, without_credentials

PROXY = "http://proxy.internal:3128"


def test_the_upstreams_scheme_picks_its_variable_and_all_proxy_is_the_fallback() -> None:
    environ = {"HTTPS_PROXY": "http://tls-proxy:3128", "HTTP_PROXY": "http://plain-proxy:3128"}
    assert proxy_for("https://api.openai.com/v1/chat", environ) == "http://tls-proxy:3128"
    assert proxy_for("http://ollama.lan:11434/api", environ) == "http://plain-proxy:3128"
    only_https = {"HTTPS_PROXY": "http://tls-proxy:3128"}
    assert proxy_for("http://ollama.lan:11434/api", only_https) is None
    fallback = {"ALL_PROXY": "http://any-proxy:3128", "https_proxy": "http://tls-proxy:3128"}
    assert proxy_for("http://ollama.lan/api", fallback) == "http://any-proxy:3128"
    assert proxy_for("https://api.openai.com/", fallback) == "http://tls-proxy:3128"


def test_lowercase_wins_blank_is_unset_and_a_bare_host_means_http() -> None:
    assert (
        proxy_for("https://a.example/", {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}) == "http://low:1"
    )
    assert proxy_for("https://a.example/", {"https_proxy": " ", "HTTPS_PROXY": "http://up:2"}) == "http://up:2"
    assert proxy_for("https://a.example/", {"HTTPS_PROXY": "  "}) is None
    assert proxy_for("https://a.example/", {"HTTPS_PROXY": "proxy:3128"}) == "http://proxy:3128"
    assert not any_proxy_configured({"HTTPS_PROXY": " ", "NO_PROXY": "*"})
    assert any_proxy_configured({"all_proxy": PROXY})


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("*", "https://api.openai.com/", True),
        ("openai.com", "https://api.openai.com/", True),
        ("openai.com", "https://openai.com/", True),
        (".openai.com", "https://api.openai.com/", True),
        ("*.openai.com", "https://api.openai.com/", True),
        ("openai.com", "https://notopenai.com/", False),
        ("api.openai.com", "https://openai.com/", False),
        ("API.OpenAI.com", "https://api.openai.com/", True),
        ("localhost, 127.0.0.1", "http://127.0.0.1:8080/", True),
        ("localhost 127.0.0.1", "http://127.0.0.1:8080/", True),
        ("10.0.0.0/8", "http://10.1.2.3:11434/", True),
        ("10.0.0.0/8", "http://192.168.1.2:11434/", False),
        ("::1", "http://[::1]:11434/", True),
        ("[::1]:11434", "http://[::1]:11434/", True),
        ("ollama.lan:11434", "http://ollama.lan:11434/", True),
        ("ollama.lan:11434", "http://ollama.lan:8080/", False),
        ("example.com:443", "https://example.com/", True),
        ("", "https://api.openai.com/", False),
    ],
)
def test_no_proxy_entries(no_proxy: str, url: str, bypassed: bool) -> None:
    environ = {"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY, "NO_PROXY": no_proxy}
    assert (proxy_for(url, environ) is None) is bypassed
    assert (proxy_for(url, {"https_proxy": PROXY, "http_proxy": PROXY, "no_proxy": no_proxy}) is None) is bypassed


def test_credentials_never_reach_a_log_line() -> None:
    assert without_credentials("http://user:s3cret@proxy:3128") == "http://proxy:3128"
    assert without_credentials("http://user@[::1]:3128/") == "http://[::1]:3128/"
    assert without_credentials(PROXY) == PROXY
