"""The fake models.dev every registry test fetches from (``tests/fakes/registry.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.registry import FakeRegistry


@pytest.fixture
def source() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake
