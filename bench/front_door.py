"""The front-door scenario: the same answer asked for through each client protocol the gateway serves, on a gateway
started with a TOML file that adds a provider entry without a Responses API (bench/README.md, "Front door").

``chat`` (``/v1/chat/completions``, the rest of the bench's request) is the baseline. ``messages`` (the Anthropic
Messages API) reaches the same model on the built-in ``openai`` provider, translated Messages -> chat -> Messages.
``responses-translated`` (the Responses API) goes to ``compat-b``, a second entry on the same fake upstream with the
``ollama`` dialect: only the ``openai`` dialect has a Responses API, so the gateway translates Responses -> chat ->
Responses, and keeps the response for ``previous_response_id`` as the request does not say ``store: false``;
``responses-unstored`` is the same request with ``store: false``, so the difference between the two is the keeping.
The pass-through (``/v1/responses`` to the ``openai`` dialect) is not run: the fake upstream has no ``/v1/responses``.

A translated response is written to the database after its answer was sent, so a run's CPU misses part of its work:
after every run the bench waits until the gateway is idle and counts that CPU too (``Settled``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.client import Connection, Endpoint, ProtocolError, Response, check_response, request_body
from bench.limits import KeyRuns, _last_error, rss_mb
from bench.procs import BenchSetupError, CpuPlan, ManagedProcess, free_port, start_gateway
from bench.results import NON_STREAM, STREAM, Measured, ratio
from bench.rss import MB, RssSampler, tree_cpu_seconds

CHAT = "chat"
MESSAGES = "messages"
RESPONSES = "responses-translated"
RESPONSES_UNSTORED = "responses-unstored"
PASSTHROUGH = "responses-passthrough"
MODES = (NON_STREAM, STREAM)

TRANSLATED_PROVIDER = "compat-b"
TRANSLATED_DIALECT = "ollama"
"""An OpenAI-compatible dialect without a Responses API whose chat requests the fake upstream answers as it answers
the ``openai`` ones (the dialect renames ``reasoning`` in answers, which the fake's have none of)."""
PASSTHROUGH_SKIPPED = (
    "not run: the bench's fake upstream serves no /v1/responses (a pass-through to the openai dialect gets its 404)"
)
MAX_TOKENS = 256
PROMPT = "hello"
ANTHROPIC_VERSION = "2023-06-01"
SERVED_BY_HEADER = "x-gophergate-served-by"

IDLE_CPU_PERCENT = 10.0
"""The gateway counts as idle again after a run once it uses less than this over ``SETTLE_WINDOW_S`` (idle, it uses
0-2%)."""
SETTLE_WINDOW_S = 0.5
SETTLE_MAX_S = 60.0

FrontDoorMeasure = Callable[[Endpoint, bytes, float, int, str | None], Measured]
"""Runs wrk against the front-door gateway on the gateway's CPU: (endpoint, request body, seconds, its pid, where to
name it in the problems seen, or None for a warm-up whose problems do not matter)."""


# -- the doors ----------------------------------------------------------------------------------------------------


def messages_body(model: str, stream: bool) -> bytes:
    messages = [{"role": "user", "content": PROMPT}]
    return orjson.dumps({"model": model, "max_tokens": MAX_TOKENS, "messages": messages, "stream": stream})


def responses_body(model: str, stream: bool, store: bool | None = None) -> bytes:
    payload: dict[str, Any] = {"model": model, "input": PROMPT, "stream": stream}
    if store is not None:
        payload["store"] = store
    return orjson.dumps(payload)


def translated_model(model: str) -> str:
    return f"{TRANSLATED_PROVIDER}/{model}"


@dataclass(frozen=True)
class Door:
    """One way in: its path, how its request and its client's headers look, and who must serve it."""

    name: str
    path: str
    anthropic: bool
    """Sends the key as Anthropic's SDKs do (``x-api-key``, ``anthropic-version``) instead of a Bearer token."""

    def model(self, model: str) -> str:
        return translated_model(model) if self.name in (RESPONSES, RESPONSES_UNSTORED) else model

    def served_by(self, model: str) -> str:
        """The ``x-gophergate-served-by`` of its answers: the translated doors' provider entry, else ``openai``."""
        name = self.model(model)
        return name if "/" in name else f"openai/{name}"

    def body(self, model: str, stream: bool) -> bytes:
        if self.name == MESSAGES:
            return messages_body(model, stream)
        if self.name == RESPONSES:
            return responses_body(self.model(model), stream)
        if self.name == RESPONSES_UNSTORED:
            return responses_body(self.model(model), stream, store=False)
        return request_body(model, stream)

    def endpoint(self, base: Endpoint, key: str) -> Endpoint:
        headers = {"Content-Type": "application/json"}
        if self.anthropic:
            headers |= {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        else:
            headers["Authorization"] = f"Bearer {key}"
        return dataclasses.replace(base, path=self.path, headers=headers)

    def check(self, response: Response, stream: bool, chunks: int) -> list[str]:
        if self.name == MESSAGES:
            return check_message(response, stream, chunks)
        if self.name in (RESPONSES, RESPONSES_UNSTORED):
            return check_response_object(response, stream, chunks)
        return check_response(response, stream, chunks)


DOORS = (
    Door(CHAT, "/v1/chat/completions", False),
    Door(MESSAGES, "/v1/messages", True),
    Door(RESPONSES, "/v1/responses", False),
    Door(RESPONSES_UNSTORED, "/v1/responses", False),
)
DOOR_NAMES = tuple(door.name for door in DOORS)


def front_door_toml(upstream_port: int) -> str:
    """The front-door gateway's configuration: a second entry on the fake upstream whose dialect has no Responses
    API. It declares no ``models`` (the plain model stays on ``openai``) and prices as ``openai`` does."""
    return (
        f"[providers.{TRANSLATED_PROVIDER}]\n"
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        'api_key = "sk-bench-b"\n'
        f'dialect = "{TRANSLATED_DIALECT}"\n'
        'registry_provider = "openai"\n'
    )


# -- answer checks ------------------------------------------------------------------------------------------------


def sse_events(body: bytes) -> list[tuple[str | None, bytes]]:
    """The (``event:`` name, ``data:``) pairs of an event stream."""
    found: list[tuple[str | None, bytes]] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if name is not None or data:
            found.append((name, b"\n".join(data)))
    return found


def _status_problem(response: Response) -> list[str]:
    if response.status == 200:
        return []
    return [f"HTTP {response.status}: {response.body[:300].decode('utf-8', 'replace')}"]


def _json(data: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _stream_events(response: Response, problems: list[str]) -> list[tuple[str | None, dict[str, Any]]]:
    """The events of a stream answer with their JSON data; what is wrong goes to ``problems``."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        problems.append(f"stream content-type is {response.headers.get('content-type')!r}")
    events: list[tuple[str | None, dict[str, Any]]] = []
    for name, data in sse_events(response.body):
        doc = _json(data)
        if doc is None:
            problems.append(f"stream event {name!r} is not a JSON object: {data[:120]!r}")
        elif name is not None and doc.get("type") != name:
            problems.append(f"stream event {name!r} has the type {doc.get('type')!r}")
        else:
            events.append((name, doc))
    return events


def _delta_type(event: dict[str, Any]) -> Any:
    delta = event.get("delta")
    return delta.get("type") if isinstance(delta, dict) else None


def check_message(response: Response, stream: bool, chunks: int) -> list[str]:
    """Problems with one Anthropic Messages answer: a Message with the fake's text and usage, or a stream from
    ``message_start`` to ``message_stop`` with one text delta per upstream chunk."""
    if problems := _status_problem(response):
        return problems
    if not stream:
        doc = _json(response.body)
        if doc is None or doc.get("type") != "message" or doc.get("role") != "assistant":
            return [f"not a Message: {response.body[:200]!r}"]
        texts = [b.get("text") for b in doc.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
        if not texts or not texts[0]:
            problems.append(f"a Message without text: {response.body[:200]!r}")
        if doc.get("stop_reason") != "end_turn":
            problems.append(f"stop_reason is {doc.get('stop_reason')!r}, not 'end_turn'")
        usage = doc.get("usage")
        if not isinstance(usage, dict) or not usage.get("output_tokens"):
            problems.append("a Message without usage")
        return problems
    events = _stream_events(response, problems)
    names = [name for name, _doc in events]
    if not names or names[0] != "message_start":
        problems.append(f"stream does not begin with message_start: {names[:1]}")
    if not names or names[-1] != "message_stop":
        problems.append(f"stream does not end with message_stop: {names[-1:]}")
    deltas = sum(1 for name, doc in events if name == "content_block_delta" and _delta_type(doc) == "text_delta")
    if deltas != chunks:
        problems.append(f"stream had {deltas} text deltas, expected {chunks}")
    if "message_delta" not in names:
        problems.append("stream without message_delta (stop_reason, usage)")
    return problems


def _output_text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text") or ""
        for item in response.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def check_response_object(response: Response, stream: bool, chunks: int) -> list[str]:
    """Problems with one Responses answer: a completed response with the fake's text and usage, or a stream from
    ``response.created`` to ``response.completed`` with one text delta per upstream chunk."""
    if problems := _status_problem(response):
        return problems
    if not stream:
        doc = _json(response.body)
        if doc is None or doc.get("object") != "response":
            return [f"not a Responses object: {response.body[:200]!r}"]
        if doc.get("status") != "completed":
            problems.append(f"status is {doc.get('status')!r}, not 'completed'")
        if not _output_text(doc):
            problems.append(f"a response without output text: {response.body[:200]!r}")
        if not isinstance(doc.get("usage"), dict):
            problems.append("a response without usage")
        return problems
    events = _stream_events(response, problems)
    names = [name for name, _doc in events]
    if not names or names[0] != "response.created":
        problems.append(f"stream does not begin with response.created: {names[:1]}")
    if not names or names[-1] != "response.completed":
        problems.append(f"stream does not end with response.completed: {names[-1:]}")
    elif not _output_text(events[-1][1].get("response") or {}):
        problems.append("response.completed holds no output text")
    deltas = names.count("response.output_text.delta")
    if deltas != chunks:
        problems.append(f"stream had {deltas} output_text deltas, expected {chunks}")
    numbers = [doc.get("sequence_number") for _name, doc in events]
    if numbers != list(range(len(numbers))):
        problems.append("sequence_number does not count up from 0")
    return problems


def served_by_problems(door: Door, model: str, headers: dict[str, str]) -> list[str]:
    """An answer served by another provider entry than the door's (a translated door that passed through)."""
    served, expected = headers.get(SERVED_BY_HEADER), door.served_by(model)
    return [] if served == expected else [f"{SERVED_BY_HEADER} is {served!r}, not {expected!r}"]


# -- the order, the CPU after a run, the figures ------------------------------------------------------------------


def rotation(rounds: int, names: tuple[str, ...] = DOOR_NAMES) -> list[str]:
    """The order of one mode's runs: every door, then every door backwards, and so on (a, b, c, c, b, a). Each
    pair of rounds is symmetric in time, so a drift of the machine's speed that is linear over it cancels out."""
    order: list[str] = []
    for n in range(rounds):
        order += list(names) if n % 2 == 0 else list(reversed(names))
    return order


@dataclass(frozen=True)
class Settled:
    """What the gateway did after a run until it was idle again: work it deferred past the answers."""

    cpu_s: float
    wait_s: float
    idle: bool
    """False when it was still busy after ``SETTLE_MAX_S``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def settle(
    cpu_seconds: Callable[[], float | None],
    window_s: float = SETTLE_WINDOW_S,
    max_s: float = SETTLE_MAX_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Settled | None:
    """Wait until the gateway used less than ``IDLE_CPU_PERCENT`` over a window; None when its CPU is unknown."""
    first = cpu_seconds()
    if first is None:
        return None
    last, waited = first, 0.0
    while True:
        sleep(window_s)
        waited += window_s
        now = cpu_seconds()
        if now is None:
            return None
        idle = (now - last) / window_s * 100 < IDLE_CPU_PERCENT
        if idle or waited >= max_s:
            return Settled(round(now - first, 3), round(waited, 2), idle)
        last = now


@dataclass
class DoorRuns(KeyRuns):
    """One door's runs of one mode, each with what the gateway did after it (``after``, in run order)."""

    after: list[Settled | None] = field(default_factory=list)

    def _per_request(self, with_after: bool) -> float | None:
        values: list[float] = []
        for index, measured in enumerate(self.runs):
            result, cpu = measured.result, measured.server_cpu_percent
            if result is None or not result.requests or result.requests_per_s <= 0 or cpu is None:
                continue
            us = cpu / 100 / result.requests_per_s * 1e6
            if with_after:
                settled = self.after[index] if index < len(self.after) else None
                if settled is None:
                    continue
                us += settled.cpu_s / result.requests * 1e6
            values.append(us)
        return sum(values) / len(values) if values else None

    @property
    def cpu_us(self) -> float | None:
        """The gateway's CPU time per request during the runs, in µs (a mean over the runs that have it)."""
        return self._per_request(False)

    @property
    def cpu_us_with_after(self) -> float | None:
        """The same with the CPU it used after each run until it was idle again."""
        return self._per_request(True)

    @property
    def after_cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.after if s is not None)

    @property
    def after_wait_s(self) -> float:
        return sum(s.wait_s for s in self.after if s is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "cpu_us_per_request": self.cpu_us,
            "cpu_us_per_request_with_after": self.cpu_us_with_after,
            "after": [None if s is None else s.to_dict() for s in self.after],
        }


@dataclass
class FrontDoorMode:
    """Every door's runs of one mode."""

    mode: str
    doors: dict[str, DoorRuns] = field(default_factory=lambda: {name: DoorRuns() for name in DOOR_NAMES})
    order: list[str] = field(default_factory=list)
    """Which door each run used, in run order."""

    def share_pct(self, name: str) -> float | None:
        """A door's req/s as a percentage of ``chat``'s."""
        return ratio(self.doors[name].requests_per_s, self.doors[CHAT].requests_per_s)

    def added_p50_ms(self, name: str) -> float | None:
        """A door's p50 minus ``chat``'s."""
        door, chat = self.doors[name].p50_ms, self.doors[CHAT].p50_ms
        return None if door is None or chat is None else door - chat

    def rounds_rps(self) -> list[tuple[str, float | None]]:
        """Each run's req/s, in run order."""
        taken = {name: iter(runs.runs) for name, runs in self.doors.items()}
        out: list[tuple[str, float | None]] = []
        for name in self.order:
            measured = next(taken[name], None)
            out.append((name, None if measured is None or measured.result is None else measured.result.requests_per_s))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "order": self.order,
            "doors": {
                name: {
                    **runs.to_dict(),
                    "pct_of_chat": self.share_pct(name),
                    "added_p50_ms": self.added_p50_ms(name),
                }
                for name, runs in self.doors.items()
            },
        }


def front_door_config(connections: int, duration_s: float, rounds: int, model: str) -> dict[str, Any]:
    return {
        "doors": {
            door.name: {"path": door.path, "model": door.model(model), "served_by": door.served_by(model)}
            for door in DOORS
        },
        "skipped_doors": {PASSTHROUGH: PASSTHROUGH_SKIPPED},
        "translated_provider": {"name": TRANSLATED_PROVIDER, "dialect": TRANSLATED_DIALECT},
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "order": rotation(rounds),
        "idle_cpu_percent": IDLE_CPU_PERCENT,
    }


@dataclass
class FrontDoorRun:
    config: dict[str, Any] = field(default_factory=dict)
    gateway: str = ""
    skipped: str | None = None
    checks: dict[str, list[str]] = field(default_factory=dict)
    """Problems per answer checked before timing (``messages non-stream``, ...)."""
    modes: list[FrontDoorMode] = field(default_factory=list)
    rss_before_mb: float | None = None
    rss_peak_mb: float | None = None
    """The front-door gateway's peak RSS over the runs (and the waits after them)."""
    rss_after_mb: float | None = None
    problems: list[str] = field(default_factory=list)

    def mode(self, mode: str) -> FrontDoorMode | None:
        return next((m for m in self.modes if m.mode == mode), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "gateway": self.gateway,
            "skipped": self.skipped,
            "checks": self.checks,
            "modes": [m.to_dict() for m in self.modes],
            "rss_before_mb": self.rss_before_mb,
            "rss_peak_mb": self.rss_peak_mb,
            "rss_after_mb": self.rss_after_mb,
            "problems": self.problems,
        }


# -- the run ------------------------------------------------------------------------------------------------------


@dataclass
class FrontDoorGateway:
    """How to start the front-door gateway: the bench gateway's environment plus ``GOPHERGATE_CONFIG``."""

    env: dict[str, str]
    cwd: Path
    plan: CpuPlan
    log_path: Path
    upstream_port: int
    key: str
    """The bench's client key (the front-door gateway shares the bench gateway's data dir)."""


def check_answers(run: FrontDoorRun, base: Endpoint, key: str, model: str, chunks: int) -> bool:
    """One answer per door and mode: its shape and who served it (problems in ``run.checks``). False when an answer
    was not a 200."""
    answered = True
    with Connection(base.host, base.port) as conn:
        for door in DOORS:
            endpoint = door.endpoint(base, key)
            for stream in (False, True):
                where = f"{door.name} {STREAM if stream else NON_STREAM}"
                try:
                    conn.send(endpoint.raw_request(door.body(model, stream)))
                    response = conn.read_response()
                except (OSError, ProtocolError, ValueError) as exc:
                    conn.close()
                    run.checks[where] = [f"request failed: {exc!r}"]
                    answered = False
                    continue
                found = door.check(response, stream, chunks)
                if response.status == 200:
                    found += served_by_problems(door, model, response.headers)
                else:
                    answered = False
                run.checks[where] = found
    for where, found in run.checks.items():
        run.problems.extend(f"{where} answer check: {problem}" for problem in found)
    return answered


def run_front_door(
    measure: FrontDoorMeasure,
    start: FrontDoorGateway,
    model: str,
    duration_s: float,
    rounds: int,
    warmup_s: float,
    chunks: int,
    log: Callable[[str], None],
    run: FrontDoorRun,
) -> None:
    """Start the front-door gateway, check every door's answers, warm each door up, then the rotated runs of each
    mode, each followed by a wait until the gateway is idle; the gateway is stopped at the end."""
    config_path = start.cwd / "front-door.toml"
    config_path.write_text(front_door_toml(start.upstream_port))
    port = free_port()
    env = {**start.env, "GOPHERGATE_CONFIG": str(config_path)}
    log(f"front door: starting a gateway on 127.0.0.1:{port} with {TRANSLATED_PROVIDER} in GOPHERGATE_CONFIG")
    try:
        proc: ManagedProcess = start_gateway(port, env, start.plan, start.log_path, cwd=start.cwd)
    except BenchSetupError as exc:
        run.skipped = (
            f"the gateway did not start with the front-door configuration ({_last_error(str(exc))}; "
            f"log in {start.log_path})"
        )
        run.problems.append(run.skipped)
        return
    sampler = RssSampler(proc.pid, interval_s=1.0)
    try:
        url = f"http://127.0.0.1:{port}"
        run.gateway = f"{url} (gophergate serve --workers 1, pid {proc.pid}, log {start.log_path})"
        base = Endpoint.from_url(url, start.key)
        run.rss_before_mb = rss_mb(sampler)
        if not check_answers(run, base, start.key, model, chunks):
            run.skipped = "an answer checked before timing failed (see the problems seen)"
            return
        sampler.start()

        def after() -> Settled | None:
            settled = settle(lambda: tree_cpu_seconds(proc.pid))
            if settled is not None and not settled.idle:
                run.problems.append(f"the gateway was still busy {SETTLE_MAX_S:g} s after a run")
            return settled

        for mode in MODES:
            for door in DOORS:
                log(f"front door: warm-up, {door.name}, {mode}, {warmup_s:g} s")
                measure(door.endpoint(base, start.key), door.body(model, mode == STREAM), warmup_s, proc.pid, None)
                after()
        for mode in MODES:
            found = FrontDoorMode(mode, order=rotation(rounds))
            run.modes.append(found)
            for name in found.order:
                door = next(d for d in DOORS if d.name == name)
                log(f"front door: {mode}, {name} ({door.path}), {duration_s:g} s")
                runs = found.doors[name]
                body = door.body(model, mode == STREAM)
                runs.runs.append(
                    measure(door.endpoint(base, start.key), body, duration_s, proc.pid, f"front door {mode}, {name}")
                )
                runs.after.append(after())
        sampler.stop()
        peak = sampler.peak
        run.rss_peak_mb = None if peak is None else round(peak.total_bytes / MB, 1)
        run.rss_after_mb = rss_mb(sampler)
        if not proc.alive():
            run.problems.append(f"the gateway exited during the run:\n{proc.log_tail()}")
    finally:
        sampler.stop()
        proc.stop()
