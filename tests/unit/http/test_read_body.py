"""``read_body``: the app's own guard of a request body (size, one deadline for all of it, a body that breaks
off), whatever the server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gophergate.core.errors import BodyTimeout, BodyTooLarge, InvalidRequest
from gophergate.http.io import read_body


def _receive(*messages: dict[str, Any], then_wait: bool = False) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_wait:
            await asyncio.Event().wait()
        raise AssertionError("read past the end of the body")

    return receive


def _scope(length: int | None = None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "headers": headers}


async def test_a_body_in_parts_is_joined() -> None:
    receive = _receive(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
    )
    assert await read_body(receive, _scope(), 10, 1.0) == b"abc"


async def test_an_empty_body_is_empty() -> None:
    assert await read_body(_receive({"type": "http.request"}), _scope(), 10, 1.0) == b""


async def test_a_body_over_the_limit_is_413_declared_or_counted() -> None:
    with pytest.raises(BodyTooLarge):
        await read_body(_receive(), _scope(11), 10, 1.0)
    parts = _receive(*({"type": "http.request", "body": b"xxxx", "more_body": True} for _ in range(3)))
    with pytest.raises(BodyTooLarge):
        await read_body(parts, _scope(), 10, 1.0)


async def test_a_disconnect_before_the_end_of_the_body_is_a_400_naming_the_body() -> None:
    receive = _receive({"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(InvalidRequest) as caught:
        await read_body(receive, _scope(), 10, 1.0)
    assert caught.value.code == "invalid_body" and caught.value.status == 400


@pytest.mark.parametrize("first_part", [False, True], ids=["nothing-at-all", "part-then-nothing"])
async def test_a_body_that_does_not_arrive_whole_in_time_is_408(first_part: bool) -> None:
    messages = [{"type": "http.request", "body": b"{", "more_body": True}] if first_part else []
    started = asyncio.get_running_loop().time()
    with pytest.raises(BodyTimeout):
        await read_body(_receive(*messages, then_wait=True), _scope(), 10, 0.2)
    assert 0.15 < asyncio.get_running_loop().time() - started < 1.0


async def test_reads_are_cut_each_at_its_own_deadline_and_a_finished_one_not_at_all() -> None:
    loop = asyncio.get_running_loop()

    async def timed(seconds: float, messages: list[dict[str, Any]], wait: bool) -> tuple[str, float]:
        started = loop.time()
        try:
            await read_body(_receive(*messages, then_wait=wait), _scope(), 10, seconds)
        except BodyTimeout:
            return "408", loop.time() - started
        return "whole", loop.time() - started

    whole = [{"type": "http.request", "body": b"{}", "more_body": False}]
    results = await asyncio.gather(timed(0.4, [], True), timed(0.15, [], True), timed(0.1, whole, False))
    assert [kind for kind, _ in results] == ["408", "408", "whole"]
    assert 0.35 < results[0][1] < 0.8 and 0.1 < results[1][1] < 0.4


async def test_a_read_cancelled_by_something_else_stays_cancelled() -> None:
    """The stop cancels a request whose body is still coming: that is not a 408."""
    task = asyncio.create_task(read_body(_receive(then_wait=True), _scope(), 10, 5.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
