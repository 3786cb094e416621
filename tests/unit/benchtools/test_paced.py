"""The paced load client's HTTP reader and its reduction of samples to figures (no load is run here)."""

from __future__ import annotations

import orjson
import pytest
from bench.fake_upstream import Answers, Paced, build_stream_events, paced_writes
from bench.paced import (
    ERROR_KINDS,
    RESULT_MARKER,
    ResponseReader,
    StreamError,
    build_request,
    parse_output,
    percentile,
    summarize,
)


def _paced_answer() -> bytes:
    answer = Answers().chat(
        orjson.dumps({"model": "gpt-4o-mini-paced", "stream": True, "stream_options": {"include_usage": True}}),
        keep_alive=True,
    )
    assert isinstance(answer, Paced)
    return answer.head + b"".join(answer.writes)


def test_fake_upstream_paces_only_models_named_paced_and_ends_the_stream_with_the_last_write() -> None:
    answers = Answers()
    fast = answers.chat(orjson.dumps({"model": "gpt-4o-mini", "stream": True}), keep_alive=True)
    assert isinstance(fast, bytes)
    events = build_stream_events("gpt-4o-mini-paced", 1, include_usage=True)
    writes = paced_writes(events)
    assert len(writes) == 20  # one write per content chunk, 50 ms apart
    assert writes[-1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert all(b"[DONE]" not in w for w in writes[:-1])


@pytest.mark.parametrize("step", [1, 7, 64, 100_000])
def test_response_reader_finds_the_end_of_a_chunked_stream_however_the_reads_split_it(step: int) -> None:
    raw = _paced_answer()
    reader = ResponseReader()
    for i in range(0, len(raw), step):
        assert not reader.done
        reader.feed(raw[i : i + step])
    assert reader.done and reader.status == 200 and reader.chunked and reader.saw_done_event


def test_response_reader_reads_a_content_length_answer_and_a_second_one_after_reset() -> None:
    reader = ResponseReader()
    body = b'{"error": {"message": "no"}}'
    raw = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    reader.feed(raw[:30])
    assert not reader.done
    reader.feed(raw[30:])
    assert reader.done and reader.status == 401 and not reader.chunked
    reader.reset()
    reader.feed(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
    assert reader.done and reader.status == 204


def test_response_reader_flags_a_stream_without_done_and_bytes_past_the_end() -> None:
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert reader.done and not reader.saw_done_event
    with pytest.raises(StreamError) as caught:
        ResponseReader().feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")
    assert caught.value.kind == "read"
    with pytest.raises(StreamError):
        ResponseReader().feed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")


def test_summarize_counts_only_streams_that_ended_inside_the_window() -> None:
    # (end time, whole-stream s, first chunk s): two before the window, four inside, one after.
    samples = [(0.5, 1.0, 0.05), (0.9, 1.0, 0.05)]
    samples += [(1.0 + i * 0.5, 1.0 + i * 0.1, 0.05 + i * 0.01) for i in range(4)]
    samples.append((3.0, 9.0, 0.05))
    result = summarize(2, samples, (1.0, 3.0), 1.0, True, {"timeout": 2}, "timeout: slow")
    assert result.completed == 4
    assert result.streams_per_s == pytest.approx(2.0)
    assert result.p50_ms == pytest.approx(1100.0)
    assert result.max_ms == pytest.approx(1300.0)
    assert result.errors == {kind: (2 if kind == "timeout" else 0) for kind in ERROR_KINDS}
    assert result.error_count == 2


def test_summarize_with_no_stream_in_the_window_gives_zeroes_not_an_error() -> None:
    result = summarize(1000, [], (5.0, 15.0), 5.0, False, {}, None)
    assert result.completed == 0 and result.streams_per_s == 0.0 and result.p99_ms == 0.0 and not result.settled


def test_result_line_round_trips_through_parse_output() -> None:
    result = summarize(3, [(1.5, 1.0, 0.1)], (1.0, 2.0), 1.0, True, {}, None)
    line = RESULT_MARKER + orjson.dumps(result.to_dict()).decode()
    assert parse_output(f"noise\n{line}\n") == result
    with pytest.raises(ValueError):
        parse_output("no result here")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([], 50) == 0.0


def test_build_request_streams_with_usage_and_sends_the_key_as_a_bearer_token() -> None:
    host, port, raw = build_request("http://127.0.0.1:8080/v1", "sk-test", "gpt-4o-mini-paced")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert (host, port) == ("127.0.0.1", 8080)
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer sk-test" in head and b"Content-Length: %d" % len(body) in head
    assert orjson.loads(body)["stream_options"] == {"include_usage": True}
