"""Runtime: every long-lived resource of one server process, built in the lifespan and passed explicitly.

What /v1 routes by (providers, resolver and prices, model switches, listed models) is one immutable ``Routing``
snapshot; a configuration change builds a new one and swaps it in with one assignment, so a request reads
``rt.routing`` once and sees one configuration throughout. The background tasks (refreshes, retention, the live
hub) run under one ``TaskSupervisor``, which restarts none of them (each loops and logs on its own) but owns
their cancellation at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, SimpleCookie
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.cluster.bus import ClusterBus
from gophergate.cluster.memory import SharedMemories
from gophergate.core.errors import ModelNotFound
from gophergate.core.redact import MIN_SECRET_LENGTH, REDACTOR
from gophergate.db.engine import create_engine
from gophergate.gateway.governance import Governance, ledger_spend
from gophergate.gateway.health import ProviderHealth
from gophergate.gateway.metering import Metering
from gophergate.gateway.model_settings import ModelKey, load_disabled
from gophergate.gateway.resolve import Resolver
from gophergate.gateway.router import Group, Router, compile_groups, plain_group
from gophergate.gateway.stored_responses import ResponseStore
from gophergate.hub import Authenticate, Hub, Sampler
from gophergate.hub.cluster import ClusterLive
from gophergate.limits import LimitsStore, MemoryLimits
from gophergate.pricing.catalog import Catalog
from gophergate.pricing.cluster import RegistryCluster
from gophergate.pricing.fallback import GenaiPrices
from gophergate.pricing.overrides import PriceOverride, from_config, load_overrides, merge
from gophergate.pricing.pricebook import PriceBook
from gophergate.pricing.registry import Registry
from gophergate.providers.base import Provider
from gophergate.providers.config import ProviderConfig, config_secrets, provider_names, settings_secrets
from gophergate.providers.media import MediaClient
from gophergate.providers.reasoning_store import ReasoningStore
from gophergate.providers.registry import build_providers
from gophergate.providers.stored import ProviderEntry, fingerprint, load_stored, merge_providers, served_configs
from gophergate.providers.transport import Transport, client_kind, create_transport
from gophergate.recorder import retention
from gophergate.recorder.writer import DeadLetters, Recorder, fallback_spill_dir, replay_spilled
from gophergate.security.client_keys import KeyCache
from gophergate.security.secretbox import SecretBox
from gophergate.security.sessions import SessionManager
from gophergate.security.throttle import LoginThrottle, SharedLoginThrottle
from gophergate.security.users import ensure_first_admin
from gophergate.settings import Settings
from gophergate.telemetry.metrics import Metrics
from gophergate.telemetry.metrics_dir import multiprocess_dir
from gophergate.telemetry.tracing import Tracing

log = logging.getLogger(__name__)

SESSION_COOKIE = "gg_session"
# What a change pushed to the other processes of the cluster can be (``Runtime.apply_change``).
CHANGES = frozenset(("keys", "providers", "models", "prices", "sessions"))


def _cookie(scope: dict[str, Any], name: str) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            morsel = jar.get(name)
            if morsel is not None and morsel.value:
                return morsel.value
    return None


def new_resolver(
    settings: Settings, providers: frozenset[str], declared: dict[str, str], book: PriceBook | None = None
) -> Resolver:
    """The resolver of a routing snapshot: the configured model groups, and [routing]'s defaults for plain names."""
    defaults = settings.routing
    groups: dict[str, Group] = compile_groups(settings.model_groups, defaults)
    plain = None
    if defaults.retries or defaults.fallbacks:

        def plain(model: str) -> Group:
            return plain_group(model, defaults)

    return Resolver(providers, settings.aliases, declared, book, groups, plain)


def unserved_targets(resolver: Resolver) -> list[str]:
    """A line for each model group target or fallback that no configured provider serves (a typo, a provider not
    configured yet): such a target is skipped at request time, so it is said once at start."""
    problems = []
    for name, group in sorted(resolver.groups.items()):
        named = (*(t.model for rule in group.rules for t in rule.targets), *group.targets_and_fallbacks)
        for model in dict.fromkeys(named):
            try:
                resolver.resolve_target(model)
            except ModelNotFound as exc:
                problems.append(f"model group '{name}': '{model}' is skipped: {exc.message}")
    return problems


def entry_secrets(entries: dict[str, ProviderEntry]) -> list[str]:
    """Every provider's secrets, served or not (a disabled provider's key is still a secret)."""
    return [value for entry in entries.values() if entry.config is not None for value in config_secrets(entry.config)]


def learn_secrets(values: list[str]) -> None:
    """Teach the process-wide redactor; a secret too short to redact safely is reported once."""
    known_short = REDACTOR.too_short
    REDACTOR.add(values)
    if REDACTOR.too_short - known_short:
        log.warning(
            "%d configured secret(s) are shorter than %d characters: they cannot be redacted from upstream errors "
            "by value (a short value would also redact ordinary words); use longer keys",
            len(REDACTOR.too_short - known_short),
            MIN_SECRET_LENGTH,
        )


@dataclass(frozen=True, slots=True)
class Routing:
    """What /v1 routes a request by. Never changed in place: ``Runtime`` replaces the whole snapshot."""

    providers: Mapping[str, Provider]
    resolver: Resolver  # model -> provider, and the price book
    disabled_models: frozenset[ModelKey] = frozenset()  # switched off from the dashboard: 404 model_not_found
    models: Mapping[str, list[str]] = field(default_factory=dict)  # each provider's listed model ids


class TaskSupervisor:
    """The process's background tasks: started by name, cancelled and awaited together at shutdown."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.create_task(coro, name=f"gophergate-{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    client: Transport
    routing: Routing
    keys: KeyCache
    recorder: Recorder
    reasoning: ReasoningStore
    registry: Registry
    media: MediaClient
    box: SecretBox  # provider keys stored by the dashboard
    sessions: SessionManager  # dashboard sessions
    throttle: LoginThrottle | SharedLoginThrottle  # shared by the cluster with GOPHERGATE_REDIS_URL
    health: ProviderHealth = field(default_factory=ProviderHealth)
    # Routing state: requests in flight, time to first token, cooldowns and affinity pins per target.
    router: Router = field(init=False)
    # Finishes each request's record (tokens, estimate, cost) and hands it to the recorder.
    metering: Metering = field(init=False)
    # Budgets, rate limits and access rules per key and team (gateway/governance.py).
    governance: Governance = field(init=False)
    # The Prometheus metrics at /metrics (each record counted by metering, folded in once a second).
    metrics: Metrics = field(init=False)
    # The responses /v1/responses made by translation, for previous_response_id and GET/DELETE.
    responses: ResponseStore = field(init=False)
    # Every provider the dashboard lists (served or not) and the config each served one was built from.
    provider_entries: dict[str, ProviderEntry] = field(default_factory=dict)
    provider_configs: dict[str, ProviderConfig] = field(default_factory=dict)
    config_overrides: list[PriceOverride] = field(default_factory=list)
    table_overrides: list[PriceOverride] = field(default_factory=list)
    fallback: GenaiPrices | None = None
    started_at: float = field(default_factory=time.time)
    tasks: TaskSupervisor = field(default_factory=TaskSupervisor)
    hub: Hub | None = None
    # Verifies the session cookie of a /ws handshake (None: /ws refuses everyone).
    ws_authenticate: Authenticate | None = None
    # Providers whose last model listing succeeded (True) or failed (False); drives provider_up/down events.
    provider_up: dict[str, bool] = field(default_factory=dict)
    # Listeners of dashboard events (e.g. the live hub): called with (kind, detail); must not block.
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)
    # OpenTelemetry traces of /v1 requests (None: off, the OTEL_* variables ask for none).
    tracing: Tracing | None = None
    # With GOPHERGATE_REDIS_URL: the conversation memories (reasoning, thinking, signatures, stored responses) kept in
    # Redis too, so a tool conversation's next turn finds them on any instance (cluster/memory.py).
    memories: SharedMemories | None = None
    # This instance's name (GOPHERGATE_INSTANCE_NAME, else "<hostname>:<port>") and, with GOPHERGATE_REDIS_URL, the
    # cluster bus that carries the live hub and pushed changes to every process of every instance.
    instance: str = ""
    bus: ClusterBus | None = None
    _changing: set[str] = field(default_factory=set)
    _change_again: set[str] = field(default_factory=set)
    _providers_seen: tuple[tuple[str, str], ...] = ()
    _retired: list[Provider] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        learn_secrets(settings_secrets(settings))
        engine = create_engine(settings.resolved_database_url)
        keys = KeyCache(engine)
        await keys.refresh()
        dead_letters = DeadLetters(settings.data_dir, fallback_spill_dir(engine))
        try:  # a spill file never stops a start (replay_spilled dead-letters what it cannot insert)
            await replay_spilled(engine, settings.data_dir, dead_letters=dead_letters)
        except Exception:
            log.exception("replaying request log spill files failed; starting without them")
        kind, removed = client_kind(settings.upstream_client)
        if removed is not None:
            log.warning(removed)
        client = create_transport(
            kind,
            max_connections=settings.upstream_max_connections,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_timeout=settings.upstream_total_timeout,
            max_response_bytes=settings.max_upstream_response_bytes,
            stream_read_timeout=settings.routing.stream_idle_timeout_s,
        )
        store = ReasoningStore()
        memories = None
        if settings.redis_url is not None:
            from gophergate.limits.redis import connect

            memories = SharedMemories(
                connect(settings.redis_url.get_secret_value(), max_connections=64),
                settings.redis_key_prefix + "memories:",
            )
            memories.attach(store, "reasoning")
        media = MediaClient(allow_private=settings.media_fetch_allow_private)
        box = SecretBox(settings.encryption_key_bytes)
        stored = await load_stored(engine)
        entries = merge_providers(settings, stored, box)
        learn_secrets(entry_secrets(entries))
        configs = served_configs(entries)
        providers = build_providers(configs, client, store, media, settings.max_sse_event_bytes, memories)
        declared = {model: cfg.name for cfg in configs for model in cfg.models}
        resolver = new_resolver(settings, frozenset(providers), declared)
        registry = Registry(
            settings.registry_url,
            settings.data_dir,
            refresh_hours=settings.registry_refresh_hours,
            cluster=registry_cluster(settings),
        )
        recorder = Recorder(
            engine,
            max_queue=settings.log_queue_size,
            batch_size=settings.log_batch_size,
            flush_interval=settings.log_flush_interval_ms / 1000.0,
            spill_dir=settings.data_dir,
            stall_seconds=settings.log_stall_seconds,
            dead_letters=dead_letters,
        )
        sessions = SessionManager(
            engine,
            settings.encryption_key_bytes,
            idle_seconds=settings.session_idle_minutes * 60.0,
            max_seconds=settings.session_max_hours * 3600.0,
        )
        throttle = LoginThrottle(settings.login_max_failures)
        routing = Routing(providers, resolver, await load_disabled(engine))
        rt = cls(
            settings, engine, client, routing, keys, recorder, store, registry, media, box, sessions, throttle,
        )  # fmt: skip
        rt.metering = metering = Metering(recorder, rt.health)
        rt.tracing = Tracing.from_environ(os.environ, settings.otel_capture_content)
        rt.router = Router(settings.routing, on_event=rt._routing_event)
        if settings.redis_url is not None:
            from gophergate.gateway.shared_routing import SharedRouting
            from gophergate.limits.redis import connect

            redis = connect(settings.redis_url.get_secret_value(), max_connections=256)
            rt.router.shared = SharedRouting(redis, settings.redis_key_prefix + "routing:", rt.router)
            login = connect(settings.redis_url.get_secret_value(), max_connections=16)
            rt.throttle = SharedLoginThrottle(login, settings.redis_key_prefix + "login:", throttle)
        rt.governance = metering.governance = build_governance(settings, engine, keys)
        rt.metrics = metering.metrics = Metrics(multiprocess_dir())
        rt.metrics.attach(rt, recorder, metering, rt.governance, registry)
        rt.memories = memories
        rt.responses = ResponseStore(engine, settings.responses_ttl_days, memories)
        rt.instance = settings.instance_name or f"{socket.gethostname()}:{settings.port}"
        live = None
        if settings.redis_url is not None:
            from gophergate.limits.redis import connect

            bus_client = connect(settings.redis_url.get_secret_value(), max_connections=8)
            rt.bus = ClusterBus(bus_client, settings.redis_key_prefix, rt.instance)
            rt.metrics.attach_bus(rt.bus)
            rt.bus.on("change", rt._on_change)
            rt.bus.on_reconnect.append(rt._resync)
            live = ClusterLive(rt.bus, rt.instance, rt.health)
        rt.hub = hub = Hub(Sampler(lambda: metering.depth), key_names=keys.names, instance=rt.instance, cluster=live)
        recorder.on_committed = hub.publish_committed
        rt.listeners.append(hub.event)  # type: ignore[arg-type]
        rt.ws_authenticate = rt._ws_user
        rt.provider_entries = entries
        rt.provider_configs = {cfg.name: cfg for cfg in configs}
        rt._providers_seen = fingerprint(stored)
        admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
        await ensure_first_admin(engine, admin_password)
        rt.config_overrides = from_config(settings.prices, provider_names(settings))
        rt.table_overrides = await load_overrides(engine)
        await asyncio.to_thread(registry.load_saved)
        await registry.load_cluster_copy()  # with Redis: the cluster's copy when newer (bounded by short timeouts)
        if registry.catalog is None and registry.is_local:
            await registry.refresh()  # a local file: read it now rather than price from the offline data first
        rt.rebuild_prices()
        registry.on_change = rt._catalog_changed
        if registry.catalog is None:
            if rt.fallback is not None:
                await asyncio.to_thread(rt.fallback.warm)
            log.warning(
                "no saved registry copy yet: pricing from the offline genai-prices data until %s is reached",
                settings.registry_url,
            )
        recorder.start()
        metering.start()
        if rt.router.shared is not None:
            rt.router.shared.start()
        if rt.memories is not None:
            rt.memories.start()
        if rt.bus is not None:
            rt.bus.start()
        rt._spawn(hub.run(), "live-hub")
        rt._spawn(keys.run_refresh(settings.key_refresh_seconds), "key-refresh")
        rt._spawn(rt._refresh_models_forever(), "models-refresh")
        rt._spawn(registry.run_forever(), "registry-refresh")
        rt._spawn(rt._refresh_overrides_forever(), "price-overrides")
        rt._spawn(rt._refresh_admin_config_forever(), "admin-config")
        rt._spawn(retention.run_forever(engine, settings.log_retention_days), "log-retention")
        rt._spawn(rt.metrics.run(), "metrics")
        log.info("providers configured: %s", ", ".join(sorted(providers)) or "none")
        if not providers:
            log.warning(
                "no provider is configured: set e.g. OPENAI_API_KEY (or ANTHROPIC_API_KEY, GEMINI_API_KEY, "
                "DEEPSEEK_API_KEY, XAI_API_KEY, MOONSHOT_API_KEY, OLLAMA_BASE_URL) in the environment or .env, or "
                "add [providers.NAME] to the TOML file, then restart; or add one from the dashboard (no restart)"
            )
        for problem in unserved_targets(rt.routing.resolver):
            log.warning(problem)
        if not keys.active_count:
            log.warning("no client key exists yet: create one with `gophergate keys create --name NAME`")
        return rt

    def rebuild_prices(self) -> None:
        """A new price book from the current registry copy (or the offline source) and overrides."""
        catalog = self.registry.catalog
        if catalog is None and self.fallback is None:
            self.fallback = GenaiPrices()
        registry_providers = {
            name: entry.registry_provider
            for name, entry in self.settings.providers.items()
            if entry.registry_provider and name in self.routing.providers
        }
        book = PriceBook(
            catalog,
            merge(self.config_overrides, self.table_overrides),
            fallback=self.fallback if catalog is None else None,
            registry_providers=registry_providers,
        )
        routing = self.routing
        self.routing = replace(routing, resolver=routing.resolver.with_book(book))

    def _catalog_changed(self, catalog: Catalog) -> None:
        self.rebuild_prices()
        self.emit("registry_refreshed", {"models": catalog.model_count, "snapshot": catalog.snapshot})

    async def _refresh_overrides_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.price_refresh_seconds)
            try:
                table = await load_overrides(self.engine)
            except Exception as exc:
                log.warning("reading price overrides failed: %s", exc)
                continue
            if table != self.table_overrides:
                self.table_overrides = table
                self.rebuild_prices()
                log.info("price overrides changed: %d in the database", len(table))
                self.emit("config_changed", {"what": "price_overrides", "count": len(table)})

    # -- providers and models changed from the dashboard ----------------------------------------------------------
    def apply_providers(self, entries: dict[str, ProviderEntry]) -> None:
        """Serve a new provider set at once: unchanged providers keep their objects (and the reasoning stores in
        them); changed ones are rebuilt; the resolver and prices are rebuilt for the new set. In-flight requests
        finish on the provider object they started with."""
        learn_secrets(entry_secrets(entries))  # before any request can reach a new provider
        configs = served_configs(entries)
        providers: dict[str, Provider] = {}
        fresh: list[ProviderConfig] = []
        routing = self.routing
        for cfg in configs:
            current = routing.providers.get(cfg.name)
            if current is not None and self.provider_configs.get(cfg.name) == cfg:
                providers[cfg.name] = current
            else:
                fresh.append(cfg)
        providers.update(
            build_providers(
                fresh, self.client, self.reasoning, self.media, self.settings.max_sse_event_bytes, self.memories
            )
        )
        self._retired.extend(p for name, p in routing.providers.items() if providers.get(name) is not p)
        declared = {model: cfg.name for cfg in configs for model in cfg.models}
        self.provider_entries = entries
        self.provider_configs = {cfg.name: cfg for cfg in configs}
        rebuilt = {cfg.name for cfg in fresh}
        resolver = new_resolver(self.settings, frozenset(providers), declared, routing.resolver.book)
        models = {name: ids for name, ids in routing.models.items() if name in providers and name not in rebuilt}
        self.routing = replace(routing, providers=providers, resolver=resolver, models=models)
        self.rebuild_prices()
        if fresh:
            self._spawn(self.refresh_models(sorted(rebuilt)), "models-refresh-changed")

    # -- changes made here, pushed to the cluster -----------------------------------------------------------------
    async def apply_change(self, what: str, *, announce: bool = True, **detail: Any) -> None:
        """Apply a change just committed to the database in this process at once and, with the cluster bus, tell
        every other process (which applies it within milliseconds; their polling stays the net for a lost message).
        ``what``: keys (keys and teams), providers, models (switches), prices (overrides), sessions (``user_id``
        or ``session_id`` whose cached sessions are dropped)."""
        if what not in CHANGES:
            raise ValueError(f"unknown change: {what}")
        if what == "keys":
            await self.keys.refresh()
        elif what == "providers":
            await self.reload_providers()
        elif what == "models":
            await self.reload_model_settings()
        elif what == "prices":
            self.table_overrides = await load_overrides(self.engine)
            self.rebuild_prices()
        else:
            self._forget_sessions(detail)
        if announce and self.bus is not None:
            self.bus.publish("change", orjson.dumps({"what": what, **detail}))

    def _forget_sessions(self, detail: dict[str, Any]) -> None:
        user_id = detail.get("user_id")
        if isinstance(user_id, int):
            self.sessions.forget_user(user_id)
        session_id = detail.get("session_id")
        if isinstance(session_id, str):
            self.sessions.forget(session_id)

    def _on_change(self, sender: str, payload: bytes) -> None:
        """A change another process made (the cluster bus's ``change`` topic): applied here, once at a time per
        kind (a burst of changes while one is applied costs one more application, not one each)."""
        try:
            body = orjson.loads(payload)
            what = body.pop("what")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("cluster: ignoring a malformed change from %s", sender)
            return
        if what not in CHANGES:
            return
        if what == "sessions":  # no I/O: the next check of those sessions reads the database
            self._forget_sessions(body)
            return
        if what in self._changing:
            self._change_again.add(what)
            return
        self._changing.add(what)
        self._spawn(self._apply_pushed(what), f"apply-{what}")

    async def _apply_pushed(self, what: str) -> None:
        try:
            while True:
                self._change_again.discard(what)
                try:
                    await self.apply_change(what, announce=False)
                except Exception as exc:
                    log.warning("applying a %s change pushed by another instance failed (%s); polling will", what, exc)
                if what not in self._change_again:
                    return
        finally:
            self._changing.discard(what)

    def _resync(self) -> None:
        """The cluster bus reconnected: changes pushed meanwhile were lost, so everything is read again."""
        for what in ("keys", "providers", "models", "prices"):
            if what not in self._changing:
                self._changing.add(what)
                self._spawn(self._apply_pushed(what), f"resync-{what}")

    async def _ws_user(self, scope: dict[str, Any]) -> Any:
        """The dashboard user a /ws handshake's session cookie belongs to, or None."""
        token = _cookie(scope, SESSION_COOKIE)
        session = await self.sessions.verify(token) if token else None
        return session.user if session is not None else None

    def _routing_event(self, kind: str, target: tuple[str, str], until: float) -> None:
        """A target cooled down or recovered (called on a request's path: never raises)."""
        detail: dict[str, Any] = {"provider": target[0], "model": target[1]}
        if kind == "target_cooled_down":
            detail["cooldown_s"] = round(max(until - time.monotonic(), 0.0), 3)
            log.warning("routing: %s/%s cools down for %.1f s", target[0], target[1], detail["cooldown_s"])
        else:
            log.info("routing: %s/%s recovered", target[0], target[1])
        self.emit(kind, detail)

    def emit(self, kind: str, detail: dict[str, Any]) -> None:
        """Tell the listeners about a dashboard event ("config_changed", "user_logged_in", ...)."""
        for listener in self.listeners:
            try:
                listener(kind, detail)
            except Exception:
                log.exception("event listener failed on %s", kind)

    async def reload_providers(self) -> None:
        """Re-read the stored providers and apply them (after a change here, or one seen by the poll)."""
        stored = await load_stored(self.engine)
        self._providers_seen = fingerprint(stored)
        self.apply_providers(merge_providers(self.settings, stored, self.box))

    async def reload_model_settings(self) -> None:
        self.routing = replace(self.routing, disabled_models=await load_disabled(self.engine))

    async def _refresh_admin_config_forever(self) -> None:
        """Pick up providers and model switches changed by another process (another worker, another host)."""
        while True:
            await asyncio.sleep(self.settings.price_refresh_seconds)
            try:
                stored = await load_stored(self.engine)
                if fingerprint(stored) != self._providers_seen:
                    self._providers_seen = fingerprint(stored)
                    self.apply_providers(merge_providers(self.settings, stored, self.box))
                    providers = sorted(self.routing.providers)
                    self.emit("config_changed", {"what": "providers", "providers": providers})
                    log.info("providers changed: %s", ", ".join(providers) or "none")
                disabled = await load_disabled(self.engine)
                if disabled != self.routing.disabled_models:
                    self.routing = replace(self.routing, disabled_models=disabled)
                    self.emit("config_changed", {"what": "models"})
            except Exception as exc:
                log.warning("reading the dashboard's provider and model settings failed: %s", exc)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.spawn(coro, name)

    async def refresh_models(self, names: list[str] | None = None) -> None:
        async def one(name: str, provider: Provider) -> None:
            try:
                ids = await provider.list_models()
                if self.routing.providers.get(name) is provider:  # still served by this object
                    self.routing = replace(self.routing, models={**self.routing.models, name: ids})
            except Exception as exc:  # an unreachable upstream must not stop the others
                log.warning("listing models of provider %s failed: %s", name, exc)
                self._provider_state(name, up=False, error=type(exc).__name__)
            else:
                self._provider_state(name, up=True)

        providers = self.routing.providers
        await asyncio.gather(*(one(n, p) for n, p in providers.items() if names is None or n in names))

    def _provider_state(self, name: str, *, up: bool, error: str | None = None) -> None:
        """Down: a listing failed after one succeeded; up: a listing succeeded after one failed."""
        was = self.provider_up.get(name)
        self.provider_up[name] = up
        if was is None or was == up:
            return
        if up:
            self.emit("provider_up", {"provider": name})
        else:
            # The exception's class only: its text may quote upstream responses.
            self.emit("provider_down", {"provider": name, "error": error})

    async def _refresh_models_forever(self) -> None:
        while True:
            await self.refresh_models()
            await asyncio.sleep(self.settings.models_refresh_seconds)

    def serves(self, provider: str, model: str | None = None) -> bool:
        """``provider`` is configured and, given a model, the configuration names that model for it: the provider
        lists it, its configuration declares it, or the registry has it under that exact id. What a metric may
        carry as a label (anything a client can make up is not)."""
        routing = self.routing
        if provider not in routing.providers:
            return False
        if model is None:
            return True
        listed = routing.models.get(provider)
        if listed is not None and model in listed:
            return True
        config = self.provider_configs.get(provider)
        if config is not None and model in config.models:
            return True
        entry = routing.resolver.book.lookup(provider, model).entry
        return entry is not None and entry.id == model

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        await self.tasks.close()
        await self.registry.close()
        # Finish the estimates in hand, then drain every queued row, before the engine goes away.
        deadline = time.monotonic() + self.settings.shutdown_drain_seconds
        await self.metering.close(self.settings.shutdown_drain_seconds)
        await self.governance.close()
        await self.responses.close()
        if self.memories is not None:
            await self.memories.close()  # what is queued is written (1 s at most)
        await self.throttle.close()
        if self.router.shared is not None:
            await self.router.shared.close()
        await self.recorder.close(max(deadline - time.monotonic(), 0.0))
        if self.bus is not None:
            await self.bus.close()  # after the writer: the last committed rows reach the cluster's dashboards too
        self.metrics.flush()  # the last records' counts, for the instance's other workers to report
        for provider in (*self.routing.providers.values(), *self._retired):
            await provider.aclose()
        await self.client.close()
        await self.media.close()
        await self.engine.dispose()
        if self.tracing is not None:  # the spans still queued are exported (5 s at most)
            await self.tracing.close()


def registry_cluster(settings: Settings) -> RegistryCluster | None:
    """With ``GOPHERGATE_REDIS_URL``: one registry fetch per cluster (``pricing/cluster.py``)."""
    if settings.redis_url is None:
        return None
    from gophergate.limits.redis import connect

    client = connect(settings.redis_url.get_secret_value(), max_connections=4)
    return RegistryCluster(client, settings.redis_key_prefix)


def build_governance(settings: Settings, engine: AsyncEngine, keys: KeyCache) -> Governance:
    """The limits store: in this process, or in Redis (shared by every worker and instance) with a local
    fallback that ``GOPHERGATE_LIMITS_ON_REDIS_ERROR`` decides about. A reservation outlives the longest request."""
    ttl = settings.upstream_total_timeout + settings.shutdown_grace_seconds + 60.0

    async def loader(scope: Any, start: Any) -> Any:
        return await ledger_spend(engine, scope, start)

    local = MemoryLimits(timezone=settings.budget_timezone, reservation_ttl=ttl, spend_loader=loader)
    store: LimitsStore = local
    mode = "memory"
    if settings.redis_url is not None:
        from gophergate.limits.failover import FailoverLimits
        from gophergate.limits.redis import RedisLimits, connect

        primary = RedisLimits(
            connect(settings.redis_url.get_secret_value(), max_connections=settings.max_concurrent_requests + 64),
            timezone=settings.budget_timezone,
            reservation_ttl=ttl,
            spend_loader=loader,
            prefix=settings.redis_key_prefix + "limits:",
        )
        store = FailoverLimits(primary, local, mode=settings.limits_on_redis_error, reservation_ttl=ttl)
        mode = "redis"
    return Governance(store, keys, mode=mode, unknown_price=settings.budget_unknown_price)
