from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gophergate.wire.sse import SSEDecoder


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
