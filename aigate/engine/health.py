"""Which platforms and API keys are in rotation, shared by every instance (SPEC §14).

A *target* is a platform (``p:<id>``) or one of its keys (``k:<id>:<fingerprint>``, the
first 12 hex digits of the key's SHA-256: keys themselves never leave the process).

* **cooldown**: a pause that ends on its own. A key answering 429 cools alone; any
  target whose upstream sent ``Retry-After`` cools for exactly that long (a 429 without
  it: ``health.cooldown_s``).
* **down**: a platform failing ``health.failures`` times in a row (5xx, timeouts, broken
  connections), or a key answering 401/403 (*disabled*). A down target is probed every
  ``health.probe_interval_s`` with a minimal real call and comes back after
  ``health.recoveries`` good probes in a row.

Routing puts a target that is out behind every usable one: a last resort, so a call is
never refused while something might still answer.

With Redis the state lives in two hashes (``aigate:health:cool`` target -> until ms,
``aigate:health:down`` target -> JSON) and each change is published on
``aigate:health``; every instance mirrors both in memory (refreshed on each message and
every second), so the request path reads only memory and talks to Redis only when an
upstream fails. Without Redis the same state lives in the process. Failures in a row
are counted per instance; going down and coming back up are single shared transitions
(``HSETNX`` / ``HDEL``: one instance wins, logs it, counts it and sends the webhook).
Probes of one target run on one instance at a time (a Redis lock per probe interval).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import orjson

from aigate import metrics
from aigate.clock import now_ms
from aigate.providers.base import ChatRequest, Platform, UpstreamError
from aigate.providers.registry import CHAT_TYPES, chat_provider

log = logging.getLogger("aigate.health")

COOL = "aigate:health:cool"
DOWN = "aigate:health:down"
CHANNEL = "aigate:health"
PROBE_LOCK = "aigate:health:probe:"
TICK_S = 1.0
PROBE_TIMEOUT_S = 15.0
PROBE_TEXT = "aigate health probe: answer with one word"

# Keep the later of two cooldowns (another instance may have set a longer one).
_COOL_MAX = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
return 0
"""
# Update a down record only while it is still down (a probe racing a recovery).
_SET_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
return 0
"""


@lru_cache(maxsize=4096)
def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def platform_target(platform_id: str) -> str:
    return f"p:{platform_id}"


@lru_cache(maxsize=4096)
def key_target(platform_id: str, key: str) -> str:
    return f"k:{platform_id}:{fingerprint(key)}"


def _platform_of(target: str) -> str:
    return target.split(":", 2)[1]


@dataclass(slots=True)
class Down:
    reason: str
    since_ms: int
    disabled: bool = False  # a key the upstream refused (401/403)
    good: int = 0  # good probes in a row
    probe_ms: int = 0  # when the next probe is due
    last_probe: str = ""  # the last probe's outcome, for operators


class Board:
    """This instance's view of the shared health state, and the transitions it makes."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.redis = services.redis
        self.cool: dict[str, int] = {}
        self.down: dict[str, Down] = {}
        self.fails: dict[str, int] = {}  # failures in a row, per platform, this instance
        self._turn: dict[str, int] = {}  # key rotation, per platform
        self._keyed: dict[tuple[str, str], tuple[Platform, Platform]] = {}  # platform copies per key
        self._tasks: list[asyncio.Task] = []
        self._owner = secrets.token_hex(8)
        self._scripts: dict[str, Any] = {}
        self._refreshing = asyncio.Lock()

    @property
    def cfg(self):
        return self.services.config.health

    # --- reads (the request path: memory only)

    def is_out(self, target: str) -> bool:
        if target in self.down:
            return True
        until = self.cool.get(target)
        return until is not None and until > now_ms()

    def platform_out(self, platform: Platform) -> bool:
        """Out when the platform is, or when every one of its keys is."""
        if not self.cool and not self.down:
            return False
        if self.is_out(platform_target(platform.id)):
            return True
        keys = platform.api_keys
        return bool(keys) and all(self.is_out(key_target(platform.id, k)) for k in keys)

    def pick_key(self, platform: Platform) -> Platform:
        """The platform carrying the key for this attempt: the next healthy key in turn
        (the next in turn when every key is out)."""
        keys = platform.api_keys
        if len(keys) < 2:
            return platform
        turn = self._turn.get(platform.id, 0)
        self._turn[platform.id] = turn + 1
        chosen = keys[turn % len(keys)]
        for i in range(len(keys)):
            key = keys[(turn + i) % len(keys)]
            if not self.is_out(key_target(platform.id, key)):
                chosen = key
                break
        if chosen == platform.api_key:
            return platform
        cached = self._keyed.get((platform.id, chosen))
        if cached is None or cached[0] is not platform:  # a new snapshot replaced the platform
            cached = self._keyed[(platform.id, chosen)] = (platform, replace(platform, api_key=chosen))
        return cached[1]

    # --- what the router reports

    def succeeded(self, platform: Platform) -> None:
        if self.fails:
            self.fails.pop(platform.id, None)

    async def failed(self, platform: Platform, exc: UpstreamError) -> None:
        """``platform`` carries the key the failed attempt used."""
        key = key_target(platform.id, platform.api_key) if platform.api_key else None
        if exc.status in (401, 403) and key is not None:
            await self.take_down(key, f"the upstream refused the key (HTTP {exc.status})", disabled=True)
            return
        if exc.status == 429:
            await self.cool_down(
                key or platform_target(platform.id),
                exc.retry_after if exc.retry_after is not None else self.cfg.cooldown_s,
            )
            return
        if not exc.retryable:
            return
        target = platform_target(platform.id)
        if exc.retry_after is not None:
            await self.cool_down(target, exc.retry_after)
        n = self.fails.get(platform.id, 0) + 1
        self.fails[platform.id] = n
        if n >= self.cfg.failures:
            self.fails.pop(platform.id, None)
            await self.take_down(target, f"{n} failures in a row; last: {exc.message[:200]}")

    # --- shared transitions

    async def cool_down(self, target: str, seconds: float) -> None:
        until = now_ms() + int(seconds * 1000)
        if until <= self.cool.get(target, 0):
            return
        self.cool[target] = until
        metrics.HEALTH_COOLDOWNS.labels(_platform_of(target), target[0] == "k" and "key" or "platform").inc()
        log.info("upstream cooling down", extra={"target": target, "seconds": seconds})
        if self.redis is not None:
            await self._redis(lambda r: self._script(_COOL_MAX)(keys=[COOL], args=[target, until]))
            await self._publish()

    async def take_down(self, target: str, reason: str, *, disabled: bool = False) -> None:
        if target in self.down:
            return
        now = now_ms()
        state = Down(
            reason=reason, since_ms=now, disabled=disabled, probe_ms=now + int(self.cfg.probe_interval_s * 1000)
        )
        won = True
        if self.redis is not None:
            won = bool(await self._redis(lambda r: r.hsetnx(DOWN, target, orjson.dumps(asdict(state)))))
        self.down[target] = state
        if won:
            await self._changed(target, "down", reason)

    async def bring_up(self, target: str, reason: str) -> None:
        won = self.down.pop(target, None) is not None
        self.cool.pop(target, None)
        if self.redis is not None:
            won = bool(await self._redis(lambda r: r.hdel(DOWN, target)))
        if won:
            await self._changed(target, "up", reason)

    async def _changed(self, target: str, state: str, reason: str) -> None:
        platform_id = _platform_of(target)
        scope = "key" if target[0] == "k" else "platform"
        metrics.HEALTH_CHANGES.labels(platform_id, scope, state).inc()
        if scope == "platform":
            metrics.PLATFORM_UP.labels(platform_id).set(1 if state == "up" else 0)
        level = logging.WARNING if state == "down" else logging.INFO
        log.log(
            level,
            "%s %s is %s: %s",
            scope,
            target,
            state,
            reason,
            extra={"platform": platform_id, "scope": scope, "state": state},
        )
        if self.redis is not None:
            await self._publish()
        if scope == "platform":
            from aigate.engine import webhooks  # health -> webhooks -> (store); no cycle at import

            await webhooks.emit_platform(
                self.services, f"platform.{state}", {"platform": platform_id, "reason": reason, "time_ms": now_ms()}
            )

    # --- Redis plumbing

    def _script(self, source: str):
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.redis.register_script(source)
        return found

    async def _redis(self, op) -> Any:
        """A Redis write on the failure path; a Redis outage leaves this instance's view."""
        try:
            return await op(self.redis)
        except Exception:
            log.warning("health state: Redis unavailable; keeping this instance's view", exc_info=True)
            return None

    async def _publish(self) -> None:
        await self._redis(lambda r: r.publish(CHANNEL, self._owner))

    async def refresh(self) -> None:
        """Mirror the shared state (Redis) into memory. Serialised: a slow read must not
        overwrite the result of a later one."""
        async with self._refreshing:
            cool, down = await asyncio.gather(self.redis.hgetall(COOL), self.redis.hgetall(DOWN))
            now = now_ms()
            fresh = {k.decode(): int(v) for k, v in cool.items()}
            expired = [k for k, v in fresh.items() if v <= now]
            if expired:
                await self.redis.hdel(COOL, *expired)
            # cooldowns only ever lengthen: keep a local one Redis has not seen yet
            merged = {k: max(v, fresh.get(k, 0)) for k, v in self.cool.items() if v > now}
            merged.update({k: v for k, v in fresh.items() if v > now and v > merged.get(k, 0)})
            self.cool = merged
            self.down = {k.decode(): Down(**orjson.loads(v)) for k, v in down.items()}

    # --- probes

    def _resolve(self, target: str) -> tuple[Platform | None, str]:
        """The platform and key a target names, in today's configuration."""
        platform = self.services.snapshot.platforms.get(_platform_of(target))
        if platform is None or not platform.enabled:
            return None, ""
        if target[0] == "p":
            usable = [k for k in platform.api_keys if not self.is_out(key_target(platform.id, k))]
            return platform, (usable or [platform.api_key])[0]
        for key in platform.api_keys:
            if key_target(platform.id, key) == target:
                return platform, key
        return None, ""  # the key was removed or replaced

    async def probe_due(self) -> None:
        now = now_ms()
        due = [(t, s) for t, s in list(self.down.items()) if s.probe_ms <= now]
        if due:
            await asyncio.gather(*(self._probe(t, s) for t, s in due))

    async def _take_probe(self, target: str) -> bool:
        if self.redis is None:
            return True
        ms = max(int(self.cfg.probe_interval_s * 1000) - 100, 100)
        return bool(await self._redis(lambda r: r.set(PROBE_LOCK + target, self._owner, nx=True, px=ms)))

    async def _probe(self, target: str, state: Down) -> None:
        platform, key = self._resolve(target)
        if platform is None:  # nothing left to probe: forget it
            await self.bring_up(target, "removed from the configuration")
            return
        if not await self._take_probe(target):
            return
        ok, detail = await probe(self.services.http, platform, key)
        metrics.HEALTH_PROBES.labels(platform.id, "ok" if ok else "failed").inc()
        state = replace(
            state,
            good=state.good + 1 if ok else 0,
            last_probe=detail or "ok",
            probe_ms=now_ms() + int(self.cfg.probe_interval_s * 1000),
        )
        if state.good >= self.cfg.recoveries:
            await self.bring_up(target, f"{state.good} good probes in a row")
            return
        self.down[target] = state
        if self.redis is not None:
            await self._redis(
                lambda r: self._script(_SET_IF_PRESENT)(keys=[DOWN], args=[target, orjson.dumps(asdict(state))])
            )

    # --- background

    async def _subscribe(self):
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        return pubsub

    async def _listen(self, pubsub) -> None:
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("health pub/sub failed; retrying", exc_info=True)
                pubsub = None
                await asyncio.sleep(1)

    async def _tick(self) -> None:
        while True:
            try:
                if self.redis is not None:
                    await self.refresh()
                await self.probe_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("health tick failed", exc_info=True)
            await asyncio.sleep(TICK_S)

    async def start(self) -> None:
        if self.redis is not None:
            pubsub = None
            try:  # subscribed before the instance serves: no change published after start is missed
                pubsub = await self._subscribe()
                await self.refresh()
            except Exception:
                log.warning("health state: Redis unavailable at start", exc_info=True)
            self._tasks.append(asyncio.create_task(self._listen(pubsub), name="health-listen"))
        self._tasks.append(asyncio.create_task(self._tick(), name="health-probes"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- for the Admin API

    def view(self) -> list[dict[str, Any]]:
        """Every platform with its state and its keys' (keys as fingerprints)."""
        now = now_ms()

        def one(target: str) -> dict[str, Any]:
            down = self.down.get(target)
            if down is not None:
                return {
                    "state": "disabled" if down.disabled else "down",
                    "reason": down.reason,
                    "since_ms": down.since_ms,
                    "good_probes": down.good,
                    "last_probe": down.last_probe,
                    "next_probe_ms": down.probe_ms,
                }
            until = self.cool.get(target, 0)
            if until > now:
                return {"state": "cooldown", "until_ms": until}
            return {"state": "up"}

        out = []
        for p in self.services.snapshot.platforms.values():
            item = {
                "id": p.id,
                "number": p.number,
                "enabled": p.enabled,
                **one(platform_target(p.id)),
                "failures_in_a_row": self.fails.get(p.id, 0),
            }
            item["keys"] = [{"fingerprint": fingerprint(k), **one(key_target(p.id, k))} for k in p.api_keys]
            out.append(item)
        return out


async def probe(session, platform: Platform, key: str) -> tuple[bool, str]:
    """A minimal real call (one short chat, ``max_tokens: 1``) on ``options.probe_model``
    or the platform's first model. Job platforms have no minimal call: their probe counts
    as good, so they return to rotation after ``recoveries`` probe intervals."""
    if platform.type not in CHAT_TYPES:
        return True, "no minimal call for this platform type; returned on a timer"
    if key != platform.api_key:
        platform = replace(platform, api_key=key)
    model = platform.options.get("probe_model") or platform.models[0]
    req = ChatRequest(
        model=platform.upstream_model(model),
        messages=[{"role": "user", "content": PROBE_TEXT}],
        params={"max_tokens": 1},
    )
    try:
        async with asyncio.timeout(min(PROBE_TIMEOUT_S, platform.timeouts.total_s)):
            await chat_provider(platform.type).chat(session, platform, req)
    except UpstreamError as exc:
        return False, f"HTTP {exc.status}: {exc.message[:200]}" if exc.status else exc.message[:200]
    except TimeoutError:
        return False, "timed out"
    return True, ""


def board_of(services: Any) -> Board:
    if services.cooldowns is None:
        services.cooldowns = Board(services)
    return services.cooldowns


async def start(services: Any) -> None:
    """Background starter: mirror the shared state and run the probes."""
    board = board_of(services)
    await board.start()
    services.stoppers.append(board.stop)
