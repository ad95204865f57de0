"""Pricing rules with worked numbers: exact decimals, nothing billed twice."""

from __future__ import annotations

from decimal import Decimal

import orjson

from aigate.config.schema import Price
from aigate.engine.pricing import PRICE_FIELDS, price_snapshot, unit_price, used_amount
from aigate.providers.base import Usage

MINI = Price(input_price=Decimal("0.15"), output_price=Decimal("0.6"))


def test_input_and_output_tokens():
    # 1,234 * 0.15 / 1M + 567 * 0.6 / 1M = 0.0001851 + 0.0003402 = 0.0005253
    assert used_amount(Usage(input_tokens=1234, output_tokens=567), MINI) == Decimal("0.0005253")
    assert used_amount(Usage(input_tokens=1234, output_tokens=567), MINI) == Decimal("0.000525300000")


def test_result_has_twelve_decimal_places():
    amount = used_amount(Usage(input_tokens=1, output_tokens=0), Price(input_price=Decimal(1), input_price_unit=3))
    assert amount == Decimal("0.333333333333")
    assert amount.as_tuple().exponent == -12


def test_cached_tokens_are_not_billed_twice():
    price = Price(
        input_price=Decimal(2),
        cached_price=Decimal("0.5"),
        cache_creation_price=Decimal("2.5"),
        image_input_price=Decimal(4),
    )
    usage = Usage(input_tokens=1000, cached_tokens=600, cache_creation_tokens=100, image_input_tokens=50)
    # plain input 250 * 2 + 600 * 0.5 + 100 * 2.5 + 50 * 4 = 500 + 300 + 250 + 200 = 1250 per 1e6
    assert used_amount(usage, price) == Decimal("0.00125")


def test_plain_input_never_negative():
    price = Price(input_price=Decimal(1), cached_price=Decimal(1))
    # the upstream reported more cached than input tokens: only the cached ones are billed
    assert used_amount(Usage(input_tokens=10, cached_tokens=30), price) == Decimal("0.00003")


def test_thinking_price_replaces_output_price_when_reasoning():
    price = Price(output_price=Decimal(1), thinking_mode_output_price=Decimal(3))
    assert used_amount(Usage(output_tokens=1000), price) == Decimal("0.001")
    # reasoning: all 1000 output tokens at 3 per 1M (reasoning is part of the output count)
    assert used_amount(Usage(output_tokens=1000, reasoning_tokens=400), price) == Decimal("0.003")
    # no thinking price configured: reasoning output stays at output_price
    plain = Price(output_price=Decimal(1))
    assert used_amount(Usage(output_tokens=1000, reasoning_tokens=400), plain) == Decimal("0.001")


def test_thinking_price_unit():
    price = Price(thinking_mode_output_price=Decimal(2), thinking_mode_output_price_unit=1000)
    assert used_amount(Usage(output_tokens=500, reasoning_tokens=1), price) == Decimal(1)


def test_web_search():
    price = Price(web_search_price=Decimal("0.01"))
    assert used_amount(Usage(web_search_count=3), price) == Decimal("0.03")
    per_thousand = Price(web_search_price=Decimal(10), web_search_price_unit=1000)
    assert used_amount(Usage(web_search_count=3), per_thousand) == Decimal("0.03")


def test_per_request_price_overrides_tokens():
    price = Price(input_price=Decimal(100), output_price=Decimal(100), per_request_price=Decimal("0.04"))
    usage = Usage(input_tokens=10_000, output_tokens=10_000)
    assert used_amount(usage, price) == Decimal("0.04")
    assert used_amount(usage, price, succeeded=False) == 0


def test_failed_call_with_tokens_still_costs_its_tokens():
    assert used_amount(Usage(input_tokens=1000), MINI, succeeded=False) == Decimal("0.00015")


def test_zero_usage_costs_nothing():
    assert used_amount(Usage(), MINI) == 0


def test_no_float_drift_over_many_small_amounts():
    one = used_amount(
        Usage(input_tokens=1, output_tokens=1), Price(input_price=Decimal("0.1"), output_price=Decimal("0.2"))
    )
    assert one == Decimal("0.0000003")
    total = sum((one for _ in range(10_000)), Decimal(0))
    assert total == Decimal("0.003")
    assert sum(0.1 / 1e6 + 0.2 / 1e6 for _ in range(10_000)) != 0.003  # what floats would do


def test_price_snapshot_has_every_seed_field_as_numbers():
    snap = price_snapshot(MINI)
    assert sorted(snap) == sorted(PRICE_FIELDS) and len(snap) == 15
    assert snap["input_price"] == 0.15 and snap["output_price"] == 0.6
    assert snap["input_price_unit"] == 1_000_000 and snap["web_search_price_unit"] == 1
    assert snap["per_request_price"] == 0
    assert orjson.loads(orjson.dumps(snap)) == snap  # plain JSON numbers


def test_unit_price_token_model():
    assert unit_price(MINI) == {
        "input_per_price": 0.15,
        "output_per_price": 0.6,
        "input_token": 1_000_000,
        "output_token": 1_000_000,
    }


def test_unit_price_per_request_model():
    price = Price(per_request_price=Decimal("0.04"))
    assert unit_price(price) == {"input_per_price": 0, "output_per_price": 0.04, "input_token": 0, "output_token": 1}
    assert unit_price(Price(per_request_price=Decimal(2)))["output_per_price"] == 2
