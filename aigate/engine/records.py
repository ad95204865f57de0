"""What every call leaves behind: a usage log row (the operator's view) and, for App API
calls, an AI request record (the end user's view). Both leave through the batched writer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from aigate.clock import now_ms
from aigate.engine import modes
from aigate.engine.pricing import price_snapshot, unit_price, used_amount
from aigate.engine.routing import Trace
from aigate.providers.base import Usage
from aigate.services import Services

log = logging.getLogger("aigate.records")

ERROR_CONTENT_MAX = 2000


@dataclass(slots=True)
class CallRecord:
    request_id: int  # the AI request's snowflake
    log_request_id: str  # the upstream call's id: usage log request_id = AI request platform_id
    app_id: str
    user_id: str
    module: str
    strategy: str
    endpoint: str
    started_ms: int
    from_appserver: bool = False
    ip: str = ""
    model: str = ""
    token_id: int = 0
    token_name: str = ""
    trace: Trace = field(default_factory=Trace)
    usage: Usage = field(default_factory=Usage)
    code: int = 200
    error: str = ""
    status: str = "succeeded"
    # bytes or text as received, or the parsed body (serialised only if it is stored)
    request_body: bytes | str | dict[str, Any] = b""
    response_raw: bytes | str = b""
    custom_response: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    ai_record: bool = True  # relay calls have no end-user record
    used_amount: Decimal = Decimal(0)  # priced once, for the usage log row; metrics read it too

    @property
    def succeeded(self) -> bool:
        return self.code == 200


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def clip(value: bytes | str | dict[str, Any], limit: int) -> tuple[str, bool]:
    """Cut a body to ``limit`` bytes without splitting a UTF-8 character."""
    if isinstance(value, dict):
        value = orjson.dumps(value)
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) <= limit:
        return _text(raw), False
    return raw[:limit].decode("utf-8", "ignore"), True


class SeenUsers:
    """Users this process already recorded, so the users table gets one write per user."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first_time(self, key: tuple[str, str]) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


def _seen_users(services: Services) -> SeenUsers:
    if services.seen_users is None:
        services.seen_users = SeenUsers()
    return services.seen_users


def usage_log_row(services: Services, rec: CallRecord) -> dict[str, Any]:
    last = rec.trace.last
    price = services.snapshot.price(rec.model) if rec.model else None
    amount = rec.used_amount = used_amount(rec.usage, price, succeeded=rec.succeeded) if price else Decimal(0)
    u = rec.usage
    row: dict[str, Any] = dict(
        request_id=rec.log_request_id,
        created_ms=now_ms(),
        request_ms=rec.started_ms,
        retry_ms=rec.trace.retry_ms,
        retry_times=rec.trace.retry_times,
        code=rec.code,
        content=rec.error[:ERROR_CONTENT_MAX],
        endpoint=rec.endpoint,
        app_id=rec.app_id,
        channel=last.platform.number if last else 0,
        mode=modes.BY_MODULE.get(rec.module, modes.CHAT),
        model=rec.model,
        ip=rec.ip,
        user=rec.user_id,
        token_id=rec.token_id,
        token_name=rec.token_name,
        ttfb_ms=rec.trace.ttfb_ms,
        metadata={
            **rec.metadata,
            "strategy": rec.strategy,
            "ai_request_id": str(rec.request_id) if rec.ai_record else "",
            **({"platform": last.platform.id} if last else {}),
            **({"usage_estimated": True} if u.estimated else {}),
        },
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cached_tokens=u.cached_tokens,
        cache_creation_tokens=u.cache_creation_tokens,
        image_input_tokens=u.image_input_tokens,
        reasoning_tokens=u.reasoning_tokens,
        total_tokens=u.total_tokens,
        web_search_count=u.web_search_count,
        usage_estimated=u.estimated,
        price=price_snapshot(price) if price else {},
        used_amount=amount,
    )
    policy = services.config.logs
    if policy.store_bodies == "all" or (policy.store_bodies == "errors" and not rec.succeeded):
        row["request_body"], row["request_body_truncated"] = clip(rec.request_body, policy.body_max_bytes)
        row["response_body"], row["response_body_truncated"] = clip(rec.response_raw, policy.body_max_bytes)
    return row


def ai_request_row(services: Services, rec: CallRecord) -> dict[str, Any]:
    last = rec.trace.last
    price = services.snapshot.price(rec.model) if rec.model else None
    ts = now_ms()
    return dict(
        request_id=rec.request_id,
        app_id=rec.app_id,
        user_id=rec.user_id,
        from_appserver=rec.from_appserver,
        module=rec.module,
        strategy=rec.strategy,
        platform=last.platform.type if last else "",
        platform_id=rec.log_request_id,
        status=rec.status,
        response=_text(rec.response_raw) if rec.response_raw else "",
        error=rec.error,
        unit_price=unit_price(price) if price else None,
        custom_response=rec.custom_response,
        created_ms=rec.started_ms,
        updated_ms=ts,
        job=None,
        next_poll_ms=None,
        claimed_by=None,
        claim_until_ms=None,
        credits=rec.metadata.get("credits"),  # the call's charge, once settled or released
    )


async def write_records(services: Services, rec: CallRecord, *, durable: bool = False) -> dict[str, Any] | None:
    """Queue the call's rows; waits only when the writer's queue is full (back-pressure),
    or, when ``durable``, until the AI request record is committed (group commit), so a
    read right after the answer finds it. Returns the AI request row."""
    writer = services.writer
    await writer.put("usage_log", usage_log_row(services, rec))
    if not rec.ai_record:
        return None
    if _seen_users(services).first_time((rec.app_id, rec.user_id)):
        await writer.put("user", {"app_id": rec.app_id, "user_id": rec.user_id, "created_ms": rec.started_ms})
    row = ai_request_row(services, rec)
    if not durable:
        await writer.put("ai_request", row)
        return row
    try:
        await writer.put("ai_request", row, wait=True)
    except Exception:  # queued (the writer keeps it through an outage); only the wait failed
        log.warning("AI request %s queued, not yet committed", rec.request_id, exc_info=True)
    return row
