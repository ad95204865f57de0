"""What the call lifecycle reports when a call ends: per-model and per-strategy metrics,
the request span's GenAI attributes, and ``asset.low`` webhooks (SPEC §14).

``aigate.engine.calls`` calls ``call_ended`` once per call (after its records are
queued) and ``charge_settled`` once per served App API call; both are cheap when
nothing is configured (no telemetry, no ``low_quantity``).
"""

from __future__ import annotations

import logging
from typing import Any

from aigate import metrics, telemetry
from aigate.engine.records import CallRecord

log = logging.getLogger("aigate.observe")


def call_ended(services: Any, record: CallRecord) -> None:
    """After the call's records were queued (``record.used_amount`` is priced)."""
    amount = record.used_amount
    u = record.usage
    metrics.observe_call(
        model=record.model,
        strategy=record.strategy,
        code=record.code,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        used_amount=amount,
        ttfb_ms=record.trace.ttfb_ms,
    )
    if telemetry.enabled():
        telemetry.annotate_request(
            **{
                "gen_ai.request.model": record.model or None,
                "gen_ai.usage.input_tokens": u.input_tokens,
                "gen_ai.usage.output_tokens": u.output_tokens,
                "aigate.strategy": record.strategy or None,
                "aigate.module": record.module,
                "aigate.request_id": record.log_request_id,
                "aigate.code": record.code,
                "aigate.retries": record.trace.retry_times,
                "aigate.used_amount": float(amount),
            }
        )


async def charge_settled(services: Any, reservation: Any, charge: int) -> None:
    """After a served call kept its charge (millionths, as balances are kept): ``asset.low``
    when this charge took the balance to the asset's ``low_quantity`` or below (once per
    crossing)."""
    cost = reservation.cost
    if cost is None or not charge:
        return
    after = reservation.balances.get(cost.asset)
    if after is None:
        return
    from aigate.engine import webhooks

    try:
        await webhooks.balance_changed(
            services, reservation.app_id, reservation.user_id, cost.asset, after + charge, after
        )
    except Exception:  # a webhook must never fail the call it reports on
        log.warning("could not queue asset.low for %s/%s", reservation.app_id, reservation.user_id, exc_info=True)
