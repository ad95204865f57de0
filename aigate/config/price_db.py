"""Model prices from a maintained price database shipped as a package (``genai-prices``).

A model entry without a ``price`` takes its price from here, looked up by the type of the
first platform that serves it and that platform's upstream model name; an explicit price,
zeros included, always wins. The database is the snapshot inside the installed package:
nothing is fetched at run time (upgrading the package updates the prices).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import Any

from aigate.config.schema import Config, Price

# aigate platform type -> genai-prices provider id (None: let it infer from the model name)
PROVIDERS: dict[str, str | None] = {
    "openai": "openai",
    "azure_openai": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "openai_compatible": None,
    "http_job": None,
}

# genai-prices field (price per million tokens, or per thousand of a count) -> aigate Price fields
PER_MTOK = {
    "input_mtok": "input_price",
    "output_mtok": "output_price",
    "cache_read_mtok": "cached_price",
    "cache_write_mtok": "cache_creation_price",
}


@dataclass(frozen=True, slots=True)
class Found:
    price: Price
    source: str  # e.g. "genai-prices 0.2.5: openai/gpt-4o-mini"


def _flat(value) -> Decimal | None:
    """A price, or a tiered price's base (the tier of short prompts)."""
    if value is None:
        return None
    return value if isinstance(value, Decimal) else getattr(value, "base", None)


def lookup(platform_type: str, model: str, when: datetime | None = None) -> Found | None:
    """The database's price of ``model`` served by a ``platform_type`` platform, or None."""
    from genai_prices import data_snapshot  # about a second to import: only when a price is missing

    try:
        provider, info = data_snapshot.get_snapshot().find_provider_model(
            model, None, PROVIDERS.get(platform_type), None
        )
    except LookupError:
        return None
    prices = info.get_prices(when or datetime.now(UTC))
    fields: dict[str, Any] = {}  # Price's keyword arguments: Decimal prices, int units
    for theirs, ours in PER_MTOK.items():
        value = _flat(getattr(prices, theirs, None))
        if value is not None:
            fields[ours] = value
            fields[f"{ours}_unit"] = 1_000_000
    searches = _flat(getattr(prices, "web_searches_kcount", None))
    if searches is not None:
        fields["web_search_price"], fields["web_search_price_unit"] = searches, 1000
    requests = _flat(getattr(prices, "requests_kcount", None))
    if requests is not None:
        fields["per_request_price"] = requests / 1000
    return Found(Price(**fields), f"genai-prices {version('genai-prices')}: {provider.id}/{info.id}")


def from_platforms(model: str, platforms) -> Found | None:
    """The price of ``model`` as served by the first platform (highest priority) the
    database knows it for; ``platforms`` have ``type``, ``models``, ``priority`` and
    ``model_mapping`` (runtime platforms and their configuration alike)."""
    for platform in sorted((p for p in platforms if model in p.models), key=lambda p: -p.priority):
        found = lookup(platform.type, platform.model_mapping.get(model, model))
        if found is not None:
            return found
    return None


def listing(cfg: Config) -> list[tuple[str, Price | None, str]]:
    """Every model the configuration names, its price and where the price comes from."""
    entries = {m.name: m for m in cfg.models}
    out: list[tuple[str, Price | None, str]] = []
    for name in sorted(set(entries) | {m for p in cfg.platforms for m in p.models}):
        entry = entries.get(name)
        if entry is not None and entry.price is not None:
            out.append((name, entry.price, "config"))
        elif entry is None:
            out.append((name, None, "not listed in models: free"))
        else:
            found = from_platforms(name, cfg.platforms)
            out.append((name, found.price, found.source) if found else (name, None, "not in the price database: free"))
    return out
