"""What one upstream call costs, from its usage and the model's price (seed 001 fields).

Rules (all arithmetic in ``Decimal``; the result is quantized to 12 decimal places,
half-up, the scale of the ``used_amount`` column):

* input tokens are split so nothing is billed twice: ``cached_tokens`` at
  ``cached_price``, ``cache_creation_tokens`` at ``cache_creation_price``,
  ``image_input_tokens`` at ``image_input_price``, and only the rest
  (``input_tokens`` minus those three, never below zero) at ``input_price``;
* output tokens at ``output_price``; when the call reasoned (``reasoning_tokens > 0``)
  and the model has a ``thinking_mode_output_price``, *all* output tokens are billed at
  that price instead (reasoning tokens are part of the output count, not added to it);
* ``web_search_count`` at ``web_search_price`` per ``web_search_price_unit`` searches;
* every ``*_price`` is per ``*_price_unit`` tokens;
* ``per_request_price > 0`` replaces token pricing: a successful call costs exactly that
  price, a failed call costs nothing (the caller got no result to pay for);
* under token pricing a failed call still costs the tokens the upstream reported (it
  billed them), so ``succeeded`` only matters for per-request pricing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

from aigate.config.schema import Price
from aigate.providers.base import Usage
from aigate.store.price_fields import PRICE_FIELDS

QUANTUM = Decimal("0.000000000001")  # 12 decimal places, as Numeric(24, 12)
ZERO = Decimal(0)


def _cost(count: int, price: Decimal, unit: int) -> Decimal:
    if count <= 0 or price <= 0:
        return ZERO
    return Decimal(count) * price / Decimal(unit)


def used_amount(usage: Usage, price: Price, *, succeeded: bool = True) -> Decimal:
    """The exact cost of one call (see the module docstring for the rules)."""
    if price.per_request_price > 0:
        amount = price.per_request_price if succeeded else ZERO
        return amount.quantize(QUANTUM, rounding=ROUND_HALF_UP)
    # a wide context keeps every intermediate exact before the single final rounding
    with localcontext() as ctx:
        ctx.prec = 60
        plain_input = max(
            0,
            usage.input_tokens - usage.cached_tokens - usage.cache_creation_tokens - usage.image_input_tokens,
        )
        total = (
            _cost(plain_input, price.input_price, price.input_price_unit)
            + _cost(usage.cached_tokens, price.cached_price, price.cached_price_unit)
            + _cost(
                usage.cache_creation_tokens,
                price.cache_creation_price,
                price.cache_creation_price_unit,
            )
            + _cost(usage.image_input_tokens, price.image_input_price, price.image_input_price_unit)
            + _cost(usage.web_search_count, price.web_search_price, price.web_search_price_unit)
        )
        if usage.reasoning_tokens > 0 and price.thinking_mode_output_price > 0:
            total += _cost(
                usage.output_tokens,
                price.thinking_mode_output_price,
                price.thinking_mode_output_price_unit,
            )
        else:
            total += _cost(usage.output_tokens, price.output_price, price.output_price_unit)
        return total.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def _number(value: Decimal | int) -> float | int:
    if isinstance(value, int):
        return value
    return int(value) if value == value.to_integral_value() else float(value)


_SNAPSHOTS: dict[int, tuple[Price, dict]] = {}  # id(price) -> (price, its snapshot); holds the price


def price_snapshot(price: Price) -> dict:
    """Every price field of seed 001 as JSON numbers: the log row's ``price`` column.
    Worked out once per configured price (every logged call needs one)."""
    found = _SNAPSHOTS.get(id(price))
    if found is None or found[0] is not price:
        if len(_SNAPSHOTS) > 1024:  # prices of configurations long replaced
            _SNAPSHOTS.clear()
        found = _SNAPSHOTS[id(price)] = (price, {name: _number(getattr(price, name)) for name in PRICE_FIELDS})
    return dict(found[1])


def unit_price(price: Price) -> dict:
    """The AI request record's ``unit_price`` (seed 000)."""
    if price.per_request_price > 0:
        return {
            "input_per_price": 0,
            "output_per_price": _number(price.per_request_price),
            "input_token": 0,
            "output_token": 1,
        }
    return {
        "input_per_price": _number(price.input_price),
        "output_per_price": _number(price.output_price),
        "input_token": price.input_price_unit,
        "output_token": price.output_price_unit,
    }
