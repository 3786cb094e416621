"""The bench's front-door scenario: the gateway's configuration, the doors' requests, the answer checks, run order,
the CPU after a run, figures, report, JSON and options (no load is run)."""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import orjson
import pytest
from bench.__main__ import parse_args
from bench.client import Endpoint, Response
from bench.fake_upstream import STREAM_CONTENT_CHUNKS, build_completion, build_stream_events
from bench.front_door import (
    CHAT,
    DOORS,
    MESSAGES,
    PASSTHROUGH,
    RESPONSES,
    RESPONSES_UNSTORED,
    DoorRuns,
    FrontDoorMode,
    FrontDoorRun,
    Settled,
    check_message,
    check_response_object,
    front_door_config,
    front_door_toml,
    rotation,
    served_by_problems,
    settle,
    sse_events,
)
from bench.report import evaluate_targets, render
from bench.results import NON_STREAM, STREAM, BenchResults, Measured
from bench.wrk import WrkResult

from gophergate.providers.config import provider_configs
from gophergate.providers.openai_compat.dialects import get_dialect
from gophergate.settings import load_settings

MODEL = "gpt-4o-mini"
DOOR = {door.name: door for door in DOORS}


def _sse(events: list[tuple[str, dict[str, object]]]) -> bytes:
    return b"".join(f"event: {name}\ndata: ".encode() + orjson.dumps(doc) + b"\n\n" for name, doc in events)


def _answer(body: bytes, stream: bool = False, status: int = 200) -> Response:
    kind = "text/event-stream; charset=utf-8" if stream else "application/json"
    return Response(status, {"content-type": kind}, body, None, 0)


def _message() -> dict[str, object]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 12},
    }


def _message_stream(deltas: int = STREAM_CONTENT_CHUNKS, stop: bool = True) -> bytes:
    events: list[tuple[str, dict[str, object]]] = [("message_start", {"type": "message_start", "message": {}})]
    events.append(("content_block_start", {"type": "content_block_start", "index": 0}))
    for i in range(deltas):
        delta = {"type": "text_delta", "text": f"tok{i} "}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}))
    if stop:
        events.append(("message_stop", {"type": "message_stop"}))
    return _sse(events)


def _response(status: str = "completed", text: str = "Hello!") -> dict[str, object]:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "output": [{"type": "message", "role": "assistant", "content": content}],
        "usage": {"input_tokens": 9, "output_tokens": 12, "total_tokens": 21},
    }


def _response_stream(deltas: int = STREAM_CONTENT_CHUNKS, completed: bool = True) -> bytes:
    names = ["response.created", "response.in_progress", "response.output_item.added"]
    names += ["response.output_text.delta"] * deltas + ["response.output_item.done"]
    names += ["response.completed"] if completed else []
    events: list[tuple[str, dict[str, object]]] = []
    for number, name in enumerate(names):
        doc: dict[str, object] = {"type": name, "sequence_number": number}
        if name in ("response.created", "response.completed"):
            doc["response"] = _response("in_progress", "") if name == "response.created" else _response()
        events.append((name, doc))
    return _sse(events)


def _run(rps: float, p50: float, cpu: float | None = 100.0) -> Measured:
    result = WrkResult(64, 4.0, int(rps * 4), rps, p50, p50, p50 * 2, p50 * 2, p50, p50 * 3, 0, 0, 0)
    return Measured(result=result, server_cpu_percent=cpu)


def _mode(mode: str, rps: dict[str, list[float]], after_cpu_s: float = 0.0) -> FrontDoorMode:
    found = FrontDoorMode(mode, order=rotation(2))
    for name, values in rps.items():
        runs = found.doors[name]
        runs.runs = [_run(r, 8.0 if name == CHAT else 10.0) for r in values]
        cpu_s = after_cpu_s if name == RESPONSES else 0.0
        runs.after = [Settled(cpu_s, 0.5 + cpu_s, True) for _ in values]
    return found


def _front_door() -> FrontDoorRun:
    run = FrontDoorRun(config=front_door_config(64, 4.0, 2, MODEL), gateway="gw-front-door")
    rps = {CHAT: [8000, 7600], MESSAGES: [6000, 6400], RESPONSES: [3000, 3000], RESPONSES_UNSTORED: [5000, 5000]}
    run.modes = [_mode(NON_STREAM, rps, after_cpu_s=8.0), _mode(STREAM, rps)]
    run.rss_before_mb, run.rss_peak_mb, run.rss_after_mb = 100.0, 320.0, 290.0
    return run


def test_the_configuration_is_a_second_entry_whose_dialect_has_no_responses_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = front_door_toml(9001)
    provider = tomllib.loads(text)["providers"]["compat-b"]
    assert provider["base_url"] == "http://127.0.0.1:9001/v1" and provider["registry_provider"] == "openai"
    assert "models" not in provider  # a declared bare name would take the plain model away from `openai`
    assert not get_dialect(provider["dialect"]).responses_api  # so /v1/responses is translated, not passed on
    # The gateway accepts it.
    config = tmp_path / "front-door.toml"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOPHERGATE_CONFIG", str(config))
    monkeypatch.setenv("GOPHERGATE_ENCRYPTION_KEY", secrets.token_hex(32))
    found = {c.name: c for c in provider_configs(load_settings(_env_file=None))}
    assert found["compat-b"].dialect == "ollama" and found["compat-b"].base_url == "http://127.0.0.1:9001/v1"


def test_each_door_sends_its_protocols_request_and_its_clients_auth() -> None:
    base = Endpoint.from_url("http://127.0.0.1:8080", "sk-gg-x")
    assert orjson.loads(DOOR[CHAT].body(MODEL, False)) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
    }
    assert orjson.loads(DOOR[MESSAGES].body(MODEL, True)) == {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
    }
    assert orjson.loads(DOOR[RESPONSES].body(MODEL, False)) == {
        "model": "compat-b/gpt-4o-mini",
        "input": "hello",
        "stream": False,
    }
    assert orjson.loads(DOOR[RESPONSES_UNSTORED].body(MODEL, True))["store"] is False
    messages = DOOR[MESSAGES].endpoint(base, "sk-gg-x")
    assert messages.path == "/v1/messages" and messages.headers["x-api-key"] == "sk-gg-x"
    assert "Authorization" not in messages.headers and messages.headers["anthropic-version"] == "2023-06-01"
    responses = DOOR[RESPONSES].endpoint(base, "sk-gg-x")
    assert responses.url == "http://127.0.0.1:8080/v1/responses"
    assert responses.headers["Authorization"] == "Bearer sk-gg-x"
    assert [DOOR[n].served_by(MODEL) for n in (CHAT, MESSAGES, RESPONSES)] == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o-mini",
        "compat-b/gpt-4o-mini",
    ]


def test_a_translated_door_answered_by_another_entry_is_a_problem() -> None:
    assert served_by_problems(DOOR[RESPONSES], MODEL, {"x-gophergate-served-by": "compat-b/gpt-4o-mini"}) == []
    assert served_by_problems(DOOR[RESPONSES], MODEL, {"x-gophergate-served-by": "openai/gpt-4o-mini"}) == [
        "x-gophergate-served-by is 'openai/gpt-4o-mini', not 'compat-b/gpt-4o-mini'"
    ]
    assert served_by_problems(DOOR[MESSAGES], MODEL, {}) == ["x-gophergate-served-by is None, not 'openai/gpt-4o-mini'"]


def test_sse_events_pair_names_with_data() -> None:
    assert sse_events(b"event: a\r\ndata: {}\r\n\r\ndata: [DONE]\n\n: comment\n\n") == [("a", b"{}"), (None, b"[DONE]")]


def test_a_message_must_be_a_message_with_text_and_usage() -> None:
    assert check_message(_answer(orjson.dumps(_message())), False, 20) == []
    chat = build_completion(MODEL, 0)  # the chat answer passed on untranslated
    assert check_message(_answer(chat), False, 20) == [f"not a Message: {chat[:200]!r}"]
    assert check_message(_answer(b'{"type":"error"}', status=401), False, 20) == ['HTTP 401: {"type":"error"}']
    empty = {**_message(), "content": [], "stop_reason": "max_tokens", "usage": {}}
    assert check_message(_answer(orjson.dumps(empty)), False, 20) == [
        "a Message without text: " + repr(orjson.dumps(empty)[:200]),
        "stop_reason is 'max_tokens', not 'end_turn'",
        "a Message without usage",
    ]


def test_a_message_stream_runs_from_message_start_to_message_stop() -> None:
    assert check_message(_answer(_message_stream(), True), True, STREAM_CONTENT_CHUNKS) == []
    assert check_message(_answer(_message_stream(19, stop=False), True), True, STREAM_CONTENT_CHUNKS) == [
        "stream does not end with message_stop: ['message_delta']",
        "stream had 19 text deltas, expected 20",
    ]
    chat = b"".join(build_stream_events(MODEL, 0, False))
    assert check_message(_answer(chat, True), True, STREAM_CONTENT_CHUNKS)[:2] == [
        "stream event None is not a JSON object: b'[DONE]'",
        "stream does not begin with message_start: [None]",
    ]


def test_a_response_must_be_completed_with_output_text() -> None:
    assert check_response_object(_answer(orjson.dumps(_response())), False, 20) == []
    assert check_response_object(_answer(orjson.dumps(_response("incomplete", ""))), False, 20) == [
        "status is 'incomplete', not 'completed'",
        "a response without output text: " + repr(orjson.dumps(_response("incomplete", ""))[:200]),
    ]
    chat = build_completion(MODEL, 0)
    assert check_response_object(_answer(chat), False, 20) == [f"not a Responses object: {chat[:200]!r}"]


def test_a_response_stream_runs_from_created_to_completed_in_sequence() -> None:
    assert check_response_object(_answer(_response_stream(), True), True, STREAM_CONTENT_CHUNKS) == []
    assert check_response_object(_answer(_response_stream(3, completed=False), True), True, 20) == [
        "stream does not end with response.completed: ['response.output_item.done']",
        "stream had 3 output_text deltas, expected 20",
    ]
    plain = _answer(_response_stream(), False)  # served as JSON, not as an event stream
    assert check_response_object(plain, True, 20)[0] == "stream content-type is 'application/json'"
    shuffled = _response_stream().replace(b'"sequence_number":5', b'"sequence_number":50')
    assert check_response_object(_answer(shuffled, True), True, 20) == ["sequence_number does not count up from 0"]


def test_runs_rotate_through_the_doors_and_back() -> None:
    assert rotation(2, ("a", "b", "c")) == ["a", "b", "c", "c", "b", "a"]
    assert front_door_config(64, 4.0, 1, MODEL)["order"] == [CHAT, MESSAGES, RESPONSES, RESPONSES_UNSTORED]


def test_settle_waits_for_an_idle_gateway_and_counts_its_cpu() -> None:
    readings = iter([10.0, 10.5, 11.0, 11.02])  # busy for two windows of 0.5 s, then idle
    slept: list[float] = []
    assert settle(lambda: next(readings), sleep=slept.append) == Settled(1.02, 1.5, True)
    assert slept == [0.5, 0.5, 0.5]
    busy = iter(float(n) for n in range(100))
    assert settle(lambda: next(busy), max_s=2.0, sleep=lambda _s: None) == Settled(4.0, 2.0, False)
    assert settle(lambda: None, sleep=lambda _s: None) is None


def test_cpu_per_request_counts_the_work_after_the_run() -> None:
    runs = DoorRuns(runs=[_run(4000, 10.0, cpu=100.0)], after=[Settled(8.0, 8.5, True)])
    assert runs.cpu_us == pytest.approx(250.0)  # one core over 4,000 req/s
    assert runs.cpu_us_with_after == pytest.approx(250.0 + 8.0 / 16_000 * 1e6)
    runs.runs.append(_run(2000, 10.0, cpu=None))
    runs.after.append(None)
    assert runs.cpu_us == pytest.approx(250.0) and runs.after_cpu_s == 8.0
    assert DoorRuns().cpu_us is None and DoorRuns().cpu_us_with_after is None


def test_every_door_is_a_share_of_chat() -> None:
    found = _mode(NON_STREAM, {CHAT: [8000, 7600], MESSAGES: [6000, 6400], RESPONSES: [3000, 3000]})
    assert found.share_pct(MESSAGES) == pytest.approx(6200 / 7800 * 100)
    assert found.share_pct(RESPONSES_UNSTORED) is None
    assert found.added_p50_ms(RESPONSES) == pytest.approx(2.0)
    assert [name for name, _rps in found.rounds_rps()] == rotation(2)
    assert found.rounds_rps()[:3] == [(CHAT, 8000), (MESSAGES, 6000), (RESPONSES, 3000)]


def test_report_and_json_show_every_door_its_share_and_the_cpu_after() -> None:
    results = BenchResults(
        config={
            "date": "2026-12-07 01:00:00 UTC",
            "machine": "Test CPU",
            "cpus": "gateway on CPU 0",
            "gateway": "gw",
            "direct": "direct",
            "wrk_threads": 1,
            "duration_s": 2.0,
            "ttfc_requests": 0,
            "connections": 64,
        }
    )
    results.front_door = _front_door()
    text = render(results, evaluate_targets(results, 64))
    assert "front door: the same answer through each client protocol, on a gateway started with compat-b" in text
    assert "  responses-translated: POST /v1/responses compat-b/gpt-4o-mini, served by compat-b/gpt-4o-mini" in text
    assert f"  {PASSTHROUGH}: not run: the bench's fake upstream serves no /v1/responses" in text
    row = next(line for line in text.splitlines() if line.startswith(f"{NON_STREAM} {RESPONSES} "))
    # 100% of a core at 3,000 req/s is 333 us; 8 CPU s after 12,000 requests adds 667 us.
    assert "3,000" in row and "38%" in row and "+2.00 ms" in row and "333 / 1000" in row and "3,000 3,000" in row
    chat = next(line for line in text.splitlines() if line.startswith(f"{NON_STREAM} {CHAT} "))
    assert "7,800" in chat and "128 / 128" in chat and "8,000 7,600" in chat
    assert "after the non-stream runs the gateway was still busy: responses-translated 16.0 CPU s over 17.0 s" in text
    assert "front-door gateway RSS: 100 MB before the runs, peak 320 MB, 290 MB after them" in text
    document = orjson.loads(orjson.dumps(results.to_dict([])))
    front_door = document["front_door"]
    doors = front_door["modes"][0]["doors"]
    assert doors[MESSAGES]["pct_of_chat"] == pytest.approx(6200 / 7800 * 100)
    assert doors[RESPONSES]["cpu_us_per_request_with_after"] == pytest.approx(1e6 / 3000 + 8.0 / 12_000 * 1e6)
    assert doors[RESPONSES]["after"][0] == {"cpu_s": 8.0, "wait_s": 8.5, "idle": True}
    assert front_door["config"]["doors"][RESPONSES_UNSTORED]["model"] == "compat-b/gpt-4o-mini"
    assert front_door["config"]["skipped_doors"][PASSTHROUGH].startswith("not run")

    results.front_door = FrontDoorRun(config=front_door_config(64, 4.0, 2, MODEL), skipped="not run against --target")
    assert "  skipped: not run against --target" in render(results, [])


def test_front_door_options_default_on_and_quick_shortens_the_runs() -> None:
    opts = parse_args([])
    assert opts.front_door and opts.front_door_duration_s == 4.0 and opts.front_door_rounds == 2
    assert parse_args(["--quick"]).front_door_duration_s == 2.0
    assert parse_args(["--quick", "--front-door-duration", "3"]).front_door_duration_s == 3.0
    assert parse_args(["--front-door-rounds", "3"]).front_door_rounds == 3
    assert not parse_args(["--no-front-door"]).front_door
    with pytest.raises(SystemExit):
        parse_args(["--front-door-rounds", "0"])
