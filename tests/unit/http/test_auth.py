"""Which client key a /v1 request presents."""

from __future__ import annotations

import pytest

from gophergate.core.errors import InvalidRequest
from gophergate.http.auth import presented_key


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"headers": list(headers)}


def test_conflicting_authorization_and_x_api_key_is_400() -> None:
    scope = _scope((b"authorization", b"Bearer gg-one"), (b"x-api-key", b"gg-two"))
    with pytest.raises(InvalidRequest) as caught:
        presented_key(scope)
    assert caught.value.status == 400
    assert "'Authorization'" in caught.value.message and "'x-api-key'" in caught.value.message
    # In either order: the answer never depends on which header came first.
    with pytest.raises(InvalidRequest):
        presented_key(_scope((b"x-api-key", b"gg-two"), (b"authorization", b"Bearer gg-one")))


def test_agreeing_authorization_and_x_api_key_is_that_key() -> None:
    assert presented_key(_scope((b"authorization", b"Bearer gg-one"), (b"x-api-key", b" gg-one"))) == "gg-one"
    assert presented_key(_scope((b"x-api-key", b"gg-one"))) == "gg-one"
    assert presented_key(_scope((b"authorization", b"Basic abc"), (b"x-api-key", b"gg-one"))) == "gg-one"
    assert presented_key(_scope((b"accept", b"*/*"))) is None
