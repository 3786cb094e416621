"""Routing: model groups compiled from the settings, the order a request tries its targets in, and what the gateway
remembers about each target (requests in flight, time to first token, cooldowns).

A group (``[model_groups.NAME]``) is compiled once into a ``Group``. For one request, ``Router.plan`` picks the
targets: the first rule that matches the request (else the group's own targets), ordered by the group's strategy,
the targets whose context window cannot hold the request dropped, cooling-down targets moved out, the affinity pin
moved first, then the fallbacks. The pipeline (``http/routed.py``) tries them in that order.

Plain model names never come here unless ``[routing]`` sets retries or fallbacks for them.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gophergate.core.usage import Usage
from gophergate.settings import ModelGroupConfig, RoutingConfig, RuleConfig

if TYPE_CHECKING:
    from gophergate.gateway.resolve import Route
    from gophergate.gateway.shared_routing import SharedRouting

log = logging.getLogger(__name__)

TargetKey = tuple[str, str]  # (provider, upstream model id)

EXPLORE_SHARE = 0.05  # the latency strategy's share of requests sent to a random other target (keeps figures fresh)
LATENCY_DECAY = 0.2  # weight of the newest time to first token in a target's moving average
FAILURE_WINDOW_S = 60.0  # failures counted towards a cooldown within this long
MAX_COOLDOWN_S = 600.0
PROBE_TTL_S = 60.0  # a probe without an outcome for this long lets another request probe


@dataclass(frozen=True, slots=True)
class Target:
    model: str  # as configured: resolved like a client's model name (never to a group)
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Rule:
    targets: tuple[Target, ...]
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    has_images: bool | None = None
    has_tools: bool | None = None
    reasoning_effort: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None

    @property
    def needs_tokens(self) -> bool:
        return self.min_prompt_tokens is not None or self.max_prompt_tokens is not None

    def matches(self, facts: Facts) -> bool:
        if self.min_prompt_tokens is not None and facts.prompt_tokens() < self.min_prompt_tokens:
            return False
        if self.max_prompt_tokens is not None and facts.prompt_tokens() > self.max_prompt_tokens:
            return False
        if self.has_images is not None and facts.has_images() != self.has_images:
            return False
        if self.has_tools is not None and facts.has_tools != self.has_tools:
            return False
        if self.reasoning_effort is not None and facts.reasoning_effort not in self.reasoning_effort:
            return False
        return self.pattern is None or self.pattern.search(facts.last_user_text()) is not None


@dataclass(frozen=True, slots=True)
class Group:
    """A compiled model group. ``name`` None: the implicit group of a plain model name under ``[routing]``'s
    retries or fallbacks (no ``model_group`` on its rows, no header)."""

    name: str | None
    strategy: str
    targets: tuple[Target, ...]
    fallbacks: tuple[str, ...]
    retries: int
    retry_on: frozenset[str]
    first_token_timeout_s: float | None
    affinity: str
    affinity_ttl_s: float
    rules: tuple[Rule, ...] = ()
    header: bytes = b""  # the x-gophergate-model-group value
    # The prompt must be counted exactly: a rule on its tokens, or the cost strategy (else a bound may do).
    count_tokens: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        exact = self.strategy == "cost" or any(rule.needs_tokens for rule in self.rules)
        object.__setattr__(self, "count_tokens", exact)

    @property
    def targets_and_fallbacks(self) -> tuple[str, ...]:
        return (*(t.model for t in self.targets), *self.fallbacks)


def _targets(configs: Any) -> tuple[Target, ...]:
    return tuple(Target(t.model, t.weight) for t in configs)


def _rule(config: RuleConfig) -> Rule:
    when = config.when
    return Rule(
        _targets(config.targets),
        when.min_prompt_tokens,
        when.max_prompt_tokens,
        when.has_images,
        when.has_tools,
        frozenset(when.reasoning_effort) if when.reasoning_effort is not None else None,
        re.compile(when.pattern) if when.pattern is not None else None,
    )


def compile_group(name: str | None, config: ModelGroupConfig, defaults: RoutingConfig) -> Group:
    return Group(
        name=name,
        strategy=config.strategy,
        targets=_targets(config.targets),
        fallbacks=config.fallbacks if config.fallbacks is not None else defaults.fallbacks,
        retries=config.retries if config.retries is not None else defaults.retries,
        retry_on=frozenset(config.retry_on if config.retry_on is not None else defaults.retry_on),
        first_token_timeout_s=config.first_token_timeout_s or defaults.first_token_timeout_s,
        affinity=config.affinity,
        affinity_ttl_s=config.affinity_ttl_s or defaults.affinity_ttl_s,
        rules=tuple(_rule(rule) for rule in config.rules),
        header=(name or "").encode(),
    )


def compile_groups(configs: Mapping[str, ModelGroupConfig], defaults: RoutingConfig) -> dict[str, Group]:
    return {name: compile_group(name, config, defaults) for name, config in configs.items()}


def plain_group(model: str, defaults: RoutingConfig) -> Group:
    """A plain model name under ``[routing]``'s retries or fallbacks: one target, then the fallbacks."""
    return Group(
        name=None,
        strategy="priority",
        targets=(Target(model),),
        fallbacks=tuple(f for f in defaults.fallbacks if f != model),
        retries=defaults.retries,
        retry_on=frozenset(defaults.retry_on),
        first_token_timeout_s=defaults.first_token_timeout_s,
        affinity="none",
        affinity_ttl_s=defaults.affinity_ttl_s,
    )


class Facts:
    """What rules and the context-window check ask of a request, each worked out once and only when asked."""

    __slots__ = ("_images", "_last_user", "_tokens", "data", "has_tools", "messages", "reasoning_effort")

    def __init__(self, data: dict[str, Any], messages: Any, prompt_tokens: int) -> None:
        self.data = data
        self.messages = messages if isinstance(messages, list) else []
        tools = data.get("tools")
        self.has_tools = isinstance(tools, list) and len(tools) > 0
        effort = data.get("reasoning_effort")
        if effort is None:
            reasoning = data.get("reasoning")
            effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        self.reasoning_effort = effort if isinstance(effort, str) else None
        self._tokens = prompt_tokens
        self._images: bool | None = None
        self._last_user: str | None = None

    def prompt_tokens(self) -> int:
        return self._tokens

    def has_images(self) -> bool:
        if self._images is None:
            self._images = any(_has_image(m.get("content")) for m in self.messages if isinstance(m, dict))
        return self._images

    def last_user_text(self) -> str:
        if self._last_user is None:
            self._last_user = ""
            for message in reversed(self.messages):
                if isinstance(message, dict) and message.get("role") == "user":
                    self._last_user = _text(message.get("content"))
                    break
        return self._last_user


def _has_image(content: Any) -> bool:
    if not isinstance(content, list):
        return False
    for part in content:
        if isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
            return True
    return False


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(slots=True)
class TargetState:
    """What this process knows of one target. Times are the router's clock (monotonic seconds)."""

    in_flight: int = 0
    ttft: float | None = None  # moving average of seconds to first token (or to the whole answer)
    failures: list[float] = field(default_factory=list)  # times of recent failures (within FAILURE_WINDOW_S)
    cooled_until: float = 0.0  # skipped until then
    cooldown_s: float = 0.0  # the length of the last cooldown (a failed probe doubles it)
    probing: float = 0.0  # when the probe after a cooldown went out (0: none is out)


CooldownEvent = Callable[[str, TargetKey, float], None]  # ("target_cooled_down" | "target_recovered", key, until)


class Router:
    """The process's routing state and the plan of each routed request. ``clock`` is injectable for tests."""

    def __init__(
        self,
        defaults: RoutingConfig,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_event: CooldownEvent | None = None,
    ) -> None:
        self.defaults = defaults
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_event = on_event
        self.states: dict[TargetKey, TargetState] = {}
        self.affinity: dict[str, tuple[TargetKey, float]] = {}  # pin key -> (target, expires)
        self.shared: SharedRouting | None = None  # with Redis: cooldowns, probes and pins across the cluster

    def state(self, key: TargetKey) -> TargetState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = TargetState()
        return state

    # -- the plan ---------------------------------------------------------------------------------------------
    def order(self, strategy: str, routes: list[tuple[Route, float]], facts: Facts | None, output: int) -> list[Route]:
        """The group's targets (route, weight) in the order the strategy tries them."""
        if len(routes) <= 1:
            return [route for route, _ in routes]
        rng = self.rng
        if strategy == "priority":
            return [route for route, _ in routes]
        if strategy == "weighted":
            if len(routes) == 2:  # the common case, with one draw
                (first, w1), (second, w2) = routes
                return [first, second] if rng.random() * (w1 + w2) < w1 else [second, first]
            # A weighted permutation: each target's key is u^(1/w) (Efraimidis-Spirakis); the largest goes first,
            # so the first target is drawn with probability weight / total, and the rest follow the same way.
            keyed = [(rng.random() ** (1.0 / weight), i) for i, (_, weight) in enumerate(routes)]
            keyed.sort(reverse=True)
            return [routes[i][0] for _, i in keyed]
        if strategy == "least-busy":
            shuffled = [route for route, _ in routes]
            rng.shuffle(shuffled)  # ties go to a random one
            return sorted(shuffled, key=lambda r: self.state((r.provider, r.model)).in_flight)
        if strategy == "latency":
            shuffled = [route for route, _ in routes]
            rng.shuffle(shuffled)
            if rng.random() < EXPLORE_SHARE:
                return shuffled  # a random target first: every target's figure stays current
            return sorted(shuffled, key=self._latency_key)
        if strategy == "cost" and facts is not None:
            return sorted((route for route, _ in routes), key=lambda r: _request_cost(r, facts, output))
        return [route for route, _ in routes]

    def _latency_key(self, route: Route) -> float:
        ttft = self.state((route.provider, route.model)).ttft
        return 0.0 if ttft is None else ttft  # never measured: tried first, to get a figure

    def available(self, key: TargetKey) -> bool:
        """Not cooling down, and not waiting on a probe's answer (past a cooldown one request probes the target)."""
        state = self.states.get(key)
        if state is None or state.cooled_until == 0.0:
            return True
        now = self.clock()
        return now >= state.cooled_until and not (state.probing and now - state.probing < PROBE_TTL_S)

    def claim(self, key: TargetKey) -> bool:
        """An attempt goes to ``key`` now. True when it is the probe after a cooldown (its outcome reopens or
        re-cools the target; ``ended`` frees the probe when there was no outcome, e.g. the client left)."""
        state = self.state(key)
        state.in_flight += 1
        if state.cooled_until != 0.0:
            now = self.clock()
            if now >= state.cooled_until and not (state.probing and now - state.probing < PROBE_TTL_S):
                state.probing = now
                return True
        return False

    def cooling_ends(self, key: TargetKey) -> float:
        state = self.states.get(key)
        return 0.0 if state is None else state.cooled_until

    # -- outcomes ---------------------------------------------------------------------------------------------
    def ended(self, key: TargetKey, probe: bool) -> None:
        state = self.state(key)
        state.in_flight = max(state.in_flight - 1, 0)
        if probe and state.probing:  # the probe ended without an outcome: the next request probes
            state.probing = 0.0

    def succeeded(self, key: TargetKey, ttft: float | None) -> None:
        state = self.state(key)
        if ttft is not None:
            state.ttft = ttft if state.ttft is None else state.ttft + LATENCY_DECAY * (ttft - state.ttft)
        if state.cooled_until:  # a success ends a cooldown (the probe's, or one that slipped through)
            self._reopen(key, state)
            if self.shared is not None:
                self.shared.report_open(key)

    def _reopen(self, key: TargetKey, state: TargetState) -> None:
        state.failures.clear()
        state.cooled_until = 0.0
        state.cooldown_s = 0.0
        state.probing = 0.0
        if self.on_event is not None:
            self.on_event("target_recovered", key, 0.0)

    def failed(self, key: TargetKey, error_class: str | None, retry_after: float | None, counts: bool) -> None:
        """An attempt at ``key`` failed. ``counts``: its class is one the group retries on (only those cool a
        target down)."""
        if not counts:
            return
        state = self.state(key)
        now = self.clock()
        defaults = self.defaults
        if self.shared is not None:  # counted over the cluster; a cooldown that starts there is published back
            self.shared.report_failure(key, retry_after, bool(state.probing))
        if state.probing:  # the probe failed: cool again, twice as long
            state.probing = 0.0
            length = min(max(state.cooldown_s * 2.0, defaults.cooldown_s), MAX_COOLDOWN_S)
            self._cool(key, state, now, max(length, retry_after or 0.0))
            return
        cutoff = now - FAILURE_WINDOW_S
        failures = state.failures
        failures.append(now)
        if failures[0] < cutoff:
            failures[:] = [t for t in failures if t >= cutoff]
        if len(failures) >= defaults.cooldown_after:
            failures.clear()
            self._cool(key, state, now, max(defaults.cooldown_s, min(retry_after or 0.0, MAX_COOLDOWN_S)))

    def _cool(self, key: TargetKey, state: TargetState, now: float, length: float) -> None:
        until = now + length
        if until > state.cooled_until:  # re-cooling extends a cooldown, never shortens it
            state.cooled_until = until
            state.cooldown_s = length
            if self.on_event is not None:
                self.on_event("target_cooled_down", key, state.cooled_until)

    def apply_cooldown(self, key: TargetKey, remaining: float) -> None:
        """A cooldown published by the cluster (``remaining`` seconds from now)."""
        if remaining <= 0:
            return
        state = self.state(key)
        state.probing = 0.0
        self._cool(key, state, self.clock(), remaining)

    def apply_open(self, key: TargetKey) -> None:
        """A target the cluster reopened (a probe succeeded somewhere)."""
        state = self.states.get(key)
        if state is not None and state.cooled_until:
            self._reopen(key, state)

    # -- affinity ---------------------------------------------------------------------------------------------
    def pinned(self, pin: str) -> TargetKey | None:
        entry = self.affinity.get(pin)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.affinity[pin]
            return None
        return entry[0]

    def pin(self, pin: str, key: TargetKey, ttl: float) -> None:
        if len(self.affinity) > 100_000:
            now = self.clock()
            self.affinity = {k: v for k, v in self.affinity.items() if v[1] > now}
        self.affinity[pin] = (key, self.clock() + ttl)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each known target's state, for the dashboard and /readyz."""
        now = self.clock()
        out = []
        for (provider, model), state in sorted(self.states.items()):
            cooling = state.cooled_until > now
            out.append(
                {
                    "provider": provider,
                    "model": model,
                    "state": "cooling_down" if cooling else "half_open" if state.cooled_until else "open",
                    "cooldown_remaining_s": round(state.cooled_until - now, 3) if cooling else 0.0,
                    "in_flight": state.in_flight,
                    "ttft_ms": None if state.ttft is None else round(state.ttft * 1000.0, 1),
                    "recent_failures": len(state.failures),
                }
            )
        return out


def _request_cost(route: Route, facts: Facts, output: int) -> Decimal:
    """This request's cost at the target's price (its prompt and the output it asks for); unknown prices last."""
    if route.price is None:
        return Decimal("Infinity")
    return route.price.total(Usage(prompt=facts.prompt_tokens(), completion=output))
