"""The model registry: a models.dev catalogue snapshot turned into lookup tables, with exact decimal prices.

Lookup (``Catalog.lookup``) resolves a gateway provider + model id to one registry entry, deterministically:

1. the models.dev provider the gateway provider maps to (``PROVIDER_IDS``; Ollama's ``ollama-cloud`` is only a
   last resort), then the canonical model makers (``CANONICAL``) in a fixed order, then every other provider
   (resellers) in id order, ``ollama-cloud`` last;
2. within each provider, the requested id first, then its versioned bases, longest first: a ``models/``
   prefix, an Ollama ``:tag``, a date suffix (``-2024-08-06``, ``-20241022``, ``@20241022``), ``-latest``,
   ``-preview-MM-DD``, ``-preview``, ``-001``.

So a reseller's copy of a model never overrides the canonical entry's limits or prices. Results are cached per
(provider, model), bounded, so a request never scans the catalogue.
"""

from __future__ import annotations

import hashlib
import marshal
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

# gateway provider -> models.dev provider id
PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "gemini": "google",
    "anthropic": "anthropic",
    "deepseek": "deepseek",
    "xai": "xai",
    "moonshot": "moonshotai",
}
LAST_RESORT: dict[str, str] = {"ollama": "ollama-cloud"}

# First-party model makers, searched before any reseller, in this order.
CANONICAL: tuple[str, ...] = (
    "openai",
    "anthropic",
    "google",
    "deepseek",
    "xai",
    "moonshotai",
    "mistral",
    "alibaba",
    "cohere",
    "minimax",
    "zai",
    "zhipuai",
    "perplexity",
    "xiaomi",
    "stepfun",
    "inception",
    "upstage",
    "llama",
)

_SUFFIXES: tuple[re.Pattern[str], ...] = (
    re.compile(r"[-@]\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"[-@]\d{8}$"),  # claude-3-5-sonnet-20241022, claude-...@20241022
    re.compile(r"-latest$"),
    re.compile(r"-preview-\d{2}-\d{2}$"),  # gemini-2.5-flash-preview-05-20
    re.compile(r"-preview$"),
    re.compile(r"-\d{3}$"),  # gemini-1.5-pro-002
)

_ZERO = Decimal(0)
_CACHE_LIMIT = 8192
MARSHAL_VERSION = 4


def to_decimal(value: Any) -> Decimal | None:
    """A price from JSON as an exact decimal (floats through their shortest repr: ``0.1`` -> ``Decimal('0.1')``)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            out = Decimal(value.strip())
        except ArithmeticError:
            return None
        return out if out.is_finite() else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens for each token class; ``None`` where the source gives no price for the class."""

    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    def with_overrides(self, other: Rates) -> Rates:
        """``other``'s prices where it has them, this one's elsewhere."""
        return Rates(
            input=other.input if other.input is not None else self.input,
            output=other.output if other.output is not None else self.output,
            cache_read=other.cache_read if other.cache_read is not None else self.cache_read,
            cache_write=other.cache_write if other.cache_write is not None else self.cache_write,
            reasoning=other.reasoning if other.reasoning is not None else self.reasoning,
        )

    def as_dict(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for name in ("input", "output", "cache_read", "cache_write", "reasoning"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices that apply to the whole request once its prompt is over ``size`` tokens."""

    size: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class PriceTable:
    base: Rates
    tiers: tuple[Tier, ...] = ()  # ascending by size

    def rates_for(self, prompt_tokens: int) -> Rates:
        chosen = self.base
        for tier in self.tiers:
            if prompt_tokens > tier.size:
                chosen = self.base.with_overrides(tier.rates)
        return chosen

    @property
    def complete(self) -> bool:
        """Priced at all: an input and an output price are known."""
        return self.base.input is not None and self.base.output is not None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    provider_id: str  # models.dev provider id
    id: str
    name: str
    family: str | None
    context_window: int | None
    max_output_tokens: int | None
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    tool_call: bool
    reasoning: bool
    structured_output: bool | None
    open_weights: bool | None
    prices: PriceTable | None  # None: the registry has no price for this model

    @property
    def vision(self) -> bool:
        return "image" in self.input_modalities


def _rates(cost: Mapping[str, Any]) -> Rates:
    return Rates(
        input=to_decimal(cost.get("input")),
        output=to_decimal(cost.get("output")),
        cache_read=to_decimal(cost.get("cache_read", cost.get("cached_input", cost.get("cache_input")))),
        cache_write=to_decimal(cost.get("cache_write", cost.get("cached_write"))),
        reasoning=to_decimal(cost.get("reasoning")),
    )


def parse_prices(cost: Any) -> PriceTable | None:
    if not isinstance(cost, Mapping):
        return None
    base = _rates(cost)
    tiers: list[Tier] = []
    raw_tiers = cost.get("tiers")
    if isinstance(raw_tiers, list):
        for item in raw_tiers:
            if not isinstance(item, Mapping):
                continue
            spec = item.get("tier")
            size = spec.get("size") if isinstance(spec, Mapping) else None
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                tiers.append(Tier(size, _rates(item)))
    elif isinstance(cost.get("context_over_200k"), Mapping):
        tiers.append(Tier(200_000, _rates(cost["context_over_200k"])))
    table = PriceTable(base, tuple(sorted(tiers, key=lambda t: t.size)))
    return table if table.complete else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class CatalogError(ValueError):
    """A document that is not a usable models.dev catalogue."""


# A model as kept in memory until it is looked up: the few fields the gateway reads, as primitives (the cost
# as its JSON text) packed into one bytes object (marshal), so that the 5,000-model catalogue costs a worker
# ~2 MB and crosses a process boundary as it is.
CompactModel = tuple[Any, ...]
CompactCatalog = dict[str, dict[str, bytes]]


def compact_model(raw: Mapping[str, Any]) -> bytes:
    return marshal.dumps(_compact_fields(raw), MARSHAL_VERSION)


def _compact_fields(raw: Mapping[str, Any]) -> CompactModel:
    limit = raw.get("limit") if isinstance(raw.get("limit"), Mapping) else {}
    modalities = raw.get("modalities") if isinstance(raw.get("modalities"), Mapping) else {}
    assert isinstance(limit, Mapping) and isinstance(modalities, Mapping)
    cost = raw.get("cost")
    return (
        str(raw.get("name") or ""),
        raw.get("family") if isinstance(raw.get("family"), str) else None,
        _int_or_none(limit.get("context")),
        _int_or_none(limit.get("output")),
        _strs(modalities.get("input")),
        _strs(modalities.get("output")),
        raw.get("tool_call") is True,
        raw.get("reasoning") is True,
        raw.get("structured_output") if isinstance(raw.get("structured_output"), bool) else None,
        raw.get("open_weights") if isinstance(raw.get("open_weights"), bool) else None,
        orjson.dumps(cost) if isinstance(cost, Mapping) else None,
    )


def compact_document(doc: Any) -> CompactCatalog:
    if not isinstance(doc, Mapping):
        raise CatalogError("the registry document is not a JSON object")
    out: CompactCatalog = {}
    for provider_id, provider in doc.items():
        if not isinstance(provider, Mapping) or not isinstance(provider.get("models"), Mapping):
            continue
        models = {
            model_id: compact_model(raw)
            for model_id, raw in provider["models"].items()
            if isinstance(raw, Mapping) and isinstance(model_id, str) and model_id
        }
        if models:
            out[str(provider_id)] = models
    if not out:
        raise CatalogError("the registry document lists no models")
    return out


def entry_from_compact(provider_id: str, model_id: str, packed: bytes) -> ModelEntry:
    name, family, context, output, inputs, outputs, tools, reasoning, structured, open_weights, cost = marshal.loads(
        packed
    )
    return ModelEntry(
        provider_id=provider_id,
        id=model_id,
        name=name or model_id,
        family=family,
        context_window=context,
        max_output_tokens=output,
        input_modalities=tuple(inputs),
        output_modalities=tuple(outputs),
        tool_call=tools,
        reasoning=reasoning,
        structured_output=structured,
        open_weights=open_weights,
        prices=parse_prices(orjson.loads(cost)) if cost is not None else None,
    )


def model_bases(model: str) -> list[str]:
    """The ids to try for ``model``, longest first: itself, then each versioned base."""
    out = [model]
    current = model
    if current.startswith("models/"):
        current = current[len("models/") :]
        out.append(current)
    if ":" in current:
        current = current.split(":", 1)[0]
        out.append(current)
    changed = True
    while changed and current:
        changed = False
        for pattern in _SUFFIXES:
            stripped = pattern.sub("", current)
            if stripped != current and stripped:
                current = stripped
                out.append(current)
                changed = True
                break
    return list(dict.fromkeys(out))


class Catalog:
    """One loaded registry snapshot. Immutable once built; a refresh builds a new one. Entries are kept compact
    and turned into ``ModelEntry`` objects (with exact prices) when first looked up."""

    def __init__(self, models: CompactCatalog, snapshot: str, source: str) -> None:
        self.models = models
        self.snapshot = snapshot  # recorded on every row it priced
        self.source = source
        canonical = [p for p in CANONICAL if p in models]
        resellers = sorted(p for p in models if p not in CANONICAL and p not in LAST_RESORT.values())
        last = [p for p in LAST_RESORT.values() if p in models]
        self._order = canonical + resellers + last
        self.model_count = sum(len(m) for m in models.values())
        self._entries: dict[tuple[str, str], ModelEntry] = {}
        self._cache: dict[tuple[str | None, str], ModelEntry | None] = {}
        self._providers_cache: dict[str, tuple[str, ...]] = {}

    @staticmethod
    def snapshot_id(body: bytes | None, label: str = "models.dev") -> str:
        digest = hashlib.sha256(body).hexdigest()[:12] if body is not None else "unknown"
        return f"{label}:{digest}"

    @classmethod
    def from_document(cls, doc: Any, *, source: str, body: bytes | None = None, label: str = "models.dev") -> Catalog:
        return cls(compact_document(doc), cls.snapshot_id(body, label), source)

    @property
    def provider_ids(self) -> list[str]:
        return list(self.models)

    def entry(self, provider_id: str, model_id: str) -> ModelEntry | None:
        key = (provider_id, model_id)
        found = self._entries.get(key)
        if found is None:
            item = self.models.get(provider_id, {}).get(model_id)
            if item is None:
                return None
            found = self._entries[key] = entry_from_compact(provider_id, model_id, item)
        return found

    def search_order(self, provider: str | None) -> list[str]:
        first = PROVIDER_IDS.get(provider or "")
        if first is None or first not in self.models:
            return self._order
        return [first, *(p for p in self._order if p != first)]

    def lookup(self, provider: str | None, model: str, registry_provider: str | None = None) -> ModelEntry | None:
        key = (registry_provider or provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._lookup(provider, model, registry_provider)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _lookup(self, provider: str | None, model: str, registry_provider: str | None) -> ModelEntry | None:
        bases = model_bases(model)
        order = self.search_order(provider)
        if registry_provider and registry_provider in self.models:
            order = [registry_provider, *(p for p in order if p != registry_provider)]
        for provider_id in order:
            models = self.models[provider_id]
            for base in bases:
                if base in models:
                    return self.entry(provider_id, base)
        return None

    def providers_for(self, model: str) -> tuple[str, ...]:
        """The models.dev providers that list ``model`` (or a versioned base of it), canonical first."""
        cached = self._providers_cache.get(model)
        if cached is not None:
            return cached
        bases = model_bases(model)
        found = tuple(p for p in self._order if any(b in self.models[p] for b in bases))
        if len(self._providers_cache) >= _CACHE_LIMIT:
            self._providers_cache.clear()
        self._providers_cache[model] = found
        return found

    def iter_entries(self) -> Iterable[ModelEntry]:
        for provider_id, models in self.models.items():
            for model_id in models:
                entry = self.entry(provider_id, model_id)
                if entry is not None:
                    yield entry
