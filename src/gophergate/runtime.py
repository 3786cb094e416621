"""Runtime: every long-lived resource of one server process, built in the lifespan and passed explicitly."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophergate.db.engine import create_engine
from gophergate.gateway.reasoning_store import ReasoningStore
from gophergate.gateway.resolve import Resolver
from gophergate.pricing.catalog import Catalog
from gophergate.pricing.fallback import GenaiPrices
from gophergate.pricing.overrides import PriceOverride, from_config, load_overrides, merge
from gophergate.pricing.pricebook import PriceBook
from gophergate.pricing.registry import Registry
from gophergate.providers.base import Provider
from gophergate.providers.config import provider_configs, provider_names
from gophergate.providers.http_client import UpstreamClient, create_client
from gophergate.providers.registry import build_providers
from gophergate.recorder import retention
from gophergate.recorder.writer import Recorder, replay_spilled
from gophergate.security.client_keys import KeyCache
from gophergate.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    client: UpstreamClient
    providers: dict[str, Provider]
    resolver: Resolver
    keys: KeyCache
    recorder: Recorder
    reasoning: ReasoningStore
    registry: Registry
    config_overrides: list[PriceOverride] = field(default_factory=list)
    table_overrides: list[PriceOverride] = field(default_factory=list)
    fallback: GenaiPrices | None = None
    started_at: float = field(default_factory=time.time)
    models: dict[str, list[str]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.resolved_database_url)
        keys = KeyCache(engine)
        await keys.refresh()
        await replay_spilled(engine, settings.data_dir)
        client = create_client(
            settings.upstream_client,
            max_connections=settings.upstream_max_connections,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_timeout=settings.upstream_total_timeout,
        )
        store = ReasoningStore()
        configs = provider_configs(settings)
        providers = build_providers(configs, client, store)
        declared = {model: cfg.name for cfg in configs for model in cfg.models}
        resolver = Resolver(frozenset(providers), settings.aliases, declared)
        registry = Registry(settings.registry_url, settings.data_dir, refresh_hours=settings.registry_refresh_hours)
        recorder = Recorder(
            engine,
            max_queue=settings.log_queue_size,
            batch_size=settings.log_batch_size,
            flush_interval=settings.log_flush_interval_ms / 1000.0,
            spill_dir=settings.data_dir,
        )
        rt = cls(settings, engine, client, providers, resolver, keys, recorder, store, registry)
        rt.config_overrides = from_config(settings.prices, provider_names(settings))
        rt.table_overrides = await load_overrides(engine)
        await asyncio.to_thread(registry.load_saved)
        rt.rebuild_prices()
        registry.on_change = rt._catalog_changed
        if registry.catalog is None:
            log.warning(
                "no saved registry copy yet: pricing from the offline genai-prices data until %s is reached",
                settings.registry_url,
            )
        recorder.start()
        rt._spawn(keys.run_refresh(settings.key_refresh_seconds), "key-refresh")
        rt._spawn(rt._refresh_models_forever(), "models-refresh")
        rt._spawn(registry.run_forever(), "registry-refresh")
        rt._spawn(rt._refresh_overrides_forever(), "price-overrides")
        rt._spawn(retention.run_forever(engine, settings.log_retention_days), "log-retention")
        log.info("providers configured: %s", ", ".join(sorted(providers)) or "none")
        if not providers:
            log.warning(
                "no provider is configured: set e.g. OPENAI_API_KEY (or ANTHROPIC_API_KEY, GEMINI_API_KEY, "
                "DEEPSEEK_API_KEY, XAI_API_KEY, MOONSHOT_API_KEY, OLLAMA_BASE_URL) in the environment or .env, or "
                "add [providers.NAME] to the TOML file, then restart"
            )
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
            if entry.registry_provider and name in self.providers
        }
        book = PriceBook(
            catalog,
            merge(self.config_overrides, self.table_overrides),
            fallback=self.fallback if catalog is None else None,
            registry_providers=registry_providers,
        )
        self.resolver.set_book(book)

    def _catalog_changed(self, catalog: Catalog) -> None:
        self.rebuild_prices()

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

    def _spawn(self, coro: object, name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=f"gophergate-{name}"))  # type: ignore[arg-type]

    async def refresh_models(self) -> None:
        async def one(name: str, provider: Provider) -> None:
            try:
                self.models[name] = await provider.list_models()
            except Exception as exc:  # an unreachable upstream must not stop the others
                log.warning("listing models of provider %s failed: %s", name, exc)

        await asyncio.gather(*(one(n, p) for n, p in self.providers.items()))

    async def _refresh_models_forever(self) -> None:
        while True:
            await self.refresh_models()
            await asyncio.sleep(self.settings.models_refresh_seconds)

    async def database_ok(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Drain every queued row before the engine goes away.
        await self.recorder.close(self.settings.shutdown_drain_seconds)
        for provider in self.providers.values():
            await provider.aclose()
        await self.client.close()
        await self.engine.dispose()
