"""Revoked user tokens (SPEC §10): after ``POST /bp/server/user/{user_id}/tokens/revoke``
that user's tokens issued at or before the revocation (or without ``iat``) are refused.

The database (``token_revocations``: one row per app and user, the latest revocation
time) is the source of truth; every instance serves checks from an in-memory copy, so
a check is a dictionary look-up, never a query. The copy is loaded at start, updated at
once by the instance that revokes, pushed to the others through Redis pub/sub, and
polled every ``POLL_INTERVAL_S`` (rows revoked recently) as the safety net and the only
channel without Redis. Revocations are rare and tiny, so all of them fit in memory.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from aigate.clock import now_ms
from aigate.store import tables as t
from aigate.store.script import run_background
from aigate.store.upsert import upsert

log = logging.getLogger("aigate.auth")

CHANNEL = "aigate:revocations"
POLL_INTERVAL_S = 1.0
CLOCK_SLACK_MS = 60_000  # instances' clocks may disagree: re-read a minute back


SINCE_SQL = "SELECT app_id, user_id, revoked_ms FROM token_revocations WHERE revoked_ms >= :since"


def _read_since(db, since_ms: int) -> list[tuple]:
    return db.rows(SINCE_SQL, {"since": since_ms})


class Revocations:
    def __init__(self, engine: AsyncEngine, redis=None) -> None:
        self.engine = engine
        self.redis = redis
        self._revoked: dict[tuple[str, str], int] = {}
        self._watermark = 0
        self._tasks: list[asyncio.Task] = []

    def revoked_ms(self, app_id: str, user_id: str) -> int | None:
        return self._revoked.get((app_id, user_id))

    def refuses(self, app_id: str, user_id: str, issued_at: float | None) -> bool:
        """A token is refused when its user was revoked at or after it was issued."""
        if not self._revoked:
            return False
        revoked = self._revoked.get((app_id, user_id))
        return revoked is not None and (issued_at is None or issued_at * 1000 <= revoked)

    async def revoke(self, app_id: str, user_id: str) -> int:
        revoked = now_ms()
        async with self.engine.begin() as conn:
            await upsert(
                conn,
                t.token_revocations,
                [dict(app_id=app_id, user_id=user_id, revoked_ms=revoked)],
                ["app_id", "user_id"],
            )
        self._note(app_id, user_id, revoked)
        if self.redis is not None:
            try:
                await self.redis.publish(CHANNEL, f"{revoked}\n{app_id}\n{user_id}")
            except Exception:  # the poll carries it within a second
                log.warning("revocation publish failed", exc_info=True)
        return revoked

    def _note(self, app_id: str, user_id: str, revoked: int) -> None:
        key = (app_id, user_id)
        if revoked > self._revoked.get(key, 0):
            self._revoked[key] = revoked
        self._watermark = max(self._watermark, revoked)

    async def load(self, since_ms: int = 0) -> None:
        # one hop of the store's lane (polled every second on every instance)
        for app_id, user_id, revoked in await run_background(self.engine, _read_since, since_ms):
            self._note(app_id, user_id, revoked)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                await self.load(self._watermark - CLOCK_SLACK_MS)
            except Exception:
                log.warning("revocation poll failed", exc_info=True)

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        revoked, app_id, user_id = message["data"].decode().split("\n", 2)
                        self._note(app_id, user_id, int(revoked))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("revocation pub/sub failed; retrying", exc_info=True)
                await asyncio.sleep(1)

    async def start(self) -> None:
        await self.load()
        self._tasks.append(asyncio.create_task(self._poll(), name="revocations-poll"))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="revocations-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
