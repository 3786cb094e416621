from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophergate.wire.sse import EventCutter, EventTooLarge, SSEDecoder


def _all(chunks: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    events += decoder.flush()
    return [(e.data, e.event) for e in events]


def test_lf_crlf_and_cr_framing_give_the_same_events() -> None:
    for sep in (b"\n", b"\r\n", b"\r"):
        stream = sep.join([b"event: message_start", b'data: {"a":1}', b"", b'data: {"b":2}', b"", b""])
        assert _all([stream]) == [(b'{"a":1}', b"message_start"), (b'{"b":2}', None)]


def test_comments_and_keepalives_are_dropped() -> None:
    assert _all([b": keep-alive\n\n: ping\ndata: x\n\n"]) == [(b"x", None)]


def test_multi_line_data_is_joined_with_newline() -> None:
    assert _all([b"data: line1\ndata: line2\n\n"]) == [(b"line1\nline2", None)]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert _all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == [(b"a", None), (b"b", None)]


def test_unicode_line_separators_inside_json_do_not_split() -> None:
    payload = '{"t":"a\u2028b\u0085c"}'.encode()
    assert _all([b"data: " + payload + b"\n\n"]) == [(payload, None)]


def test_last_event_without_blank_line_is_flushed() -> None:
    assert _all([b"data: tail"]) == [(b"tail", None)]


@given(
    st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=6),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.data(),
)
def test_any_chunking_gives_the_same_events(payloads: list[bytes], sep: bytes, data: st.DataObject) -> None:
    payloads = [p for p in payloads if not p.startswith(b":")]
    stream = b"".join(b"data: " + p + sep + sep for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    expected = [(p, None) for p in payloads]  # the decoder strips exactly the one space after "data:"
    assert _all(chunks) == expected


def test_event_names_and_ids_survive_the_fast_path() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"event: ping\ndata: {}\n\nid: 7\ndata: a\n\ndata: b\n\n")
    assert [(e.event, e.id, e.data) for e in events] == [(b"ping", None, b"{}"), (None, b"7", b"a"), (None, None, b"b")]


def test_event_split_between_blank_line_halves() -> None:
    assert _all([b"data: a\n", b"\ndata: b\n", b"\n"]) == [(b"a", None), (b"b", None)]


def test_flush_delivers_an_unterminated_event_spanning_several_lines() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'event: message_stop\ndata: {"type":"message_stop"}') == []
    (event,) = decoder.flush()
    assert (event.event, event.data) == (b"message_stop", b'{"type":"message_stop"}')


def _feed_time(decoder: SSEDecoder | EventCutter, chunks: int, size: int, piece: bytes) -> float:
    chunk = piece * (size // len(piece))
    started = time.perf_counter()
    for _ in range(chunks):
        decoder.feed(chunk)
    return time.perf_counter() - started


@pytest.mark.parametrize(
    "piece",
    [b"x", b"data: " + b"x" * 1017 + b"\r", b"data: " + b"x" * 1017 + b"\n"],
    ids=["one-line", "cr-lines", "lf-lines"],
)
def test_sse_decoder_is_linear_in_input(piece: bytes) -> None:
    """An event that never ends (no blank line) fed in many chunks costs O(total), not O(total^2): 64 MiB in
    16 KiB reads (issue 14, defect 8: repeated concatenation stalled the loop for 0.9 s)."""
    prefix = b"data: " if piece == b"x" else b""
    small = SSEDecoder(1 << 30)
    small.feed(prefix)
    t_small = _feed_time(small, 1024, 16 * 1024, piece)  # 16 MiB
    big = SSEDecoder(1 << 30)
    big.feed(prefix)
    t_big = _feed_time(big, 4096, 16 * 1024, piece)  # 64 MiB
    assert t_big < 1.0
    assert t_big < 10 * max(t_small, 1e-3)  # quadratic would be ~16 times


def test_event_cutter_is_linear_in_input() -> None:
    cutter = EventCutter(1 << 30)
    assert _feed_time(cutter, 4096, 16 * 1024, b"x") < 1.0  # 64 MiB without a blank line
    assert cutter.feed(b"\n\ndata: next") == b"x" * (4096 * 16 * 1024) + b"\n\n"
    assert cutter.take() == b"data: next"


def test_sse_event_over_cap_is_refused_before_its_end() -> None:
    decoder = SSEDecoder(1024)
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"x" * 100)
    assert info.value.limit == 1024
    for framing in (b"\n", b"\r\n"):  # complete, over-long events are refused too, whatever the framing
        with pytest.raises(EventTooLarge):
            SSEDecoder(1024).feed(b"data: " + b"y" * 2000 + framing + framing)
        with pytest.raises(EventTooLarge):
            SSEDecoder(1024).feed((b"data: " + b"y" * 600 + framing) * 2 + framing)
    cutter = EventCutter(1024)
    assert cutter.feed(b"data: a\n\n" + b"data: " + b"z" * 900) == b"data: a\n\n"
    with pytest.raises(EventTooLarge):
        cutter.feed(b"z" * 200)
    with pytest.raises(EventTooLarge):
        EventCutter(1024).feed(b"data: " + b"z" * 2000 + b"\n\n")


def test_events_under_the_cap_pass() -> None:
    decoder = SSEDecoder(1024)
    assert [e.data for e in decoder.feed(b"data: " + b"a" * 1000 + b"\n\n")] == [b"a" * 1000]
    assert [e.data for e in decoder.feed(b"data: " + b"b" * 1000 + b"\r\n\r\n")] == [b"b" * 1000]
