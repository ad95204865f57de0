"""Signing keys of identity providers and attestation services, fetched from their JWKS URLs.

* Fetches go through aiohttp (never blocking), without redirects, with a time cap
  (``FETCH_TIMEOUT_S``) and a size cap (``MAX_BYTES``); the URL itself was checked by the
  configuration (https, plain http only on loopback) and never comes from a token
  (``jku``/``x5u`` headers are ignored).
* A JWKS host that is, or resolves to, a loopback, private, link-local, multicast or
  reserved address is refused unless its issuer sets ``allow_private`` (``aigate.netguard``,
  the rule webhooks follow): names are resolved once per fetch and the connection goes to
  the checked address.
* Keys are cached for the response's ``Cache-Control: max-age`` (else 10 minutes).
* A token whose ``kid`` is not in the cached set triggers a new fetch, at most once per
  ``REFETCH_INTERVAL_S`` per URL, so a flood of made-up ``kid``s costs one fetch per 30 s.
* When a fetch fails, the keys last fetched keep serving for up to ``MAX_STALE_S`` after
  that fetch; with no keys ever fetched the caller gets 503 ``service_unavailable``.
* One fetch per URL at a time: concurrent requests wait for the fetch in flight.

Keys are parsed with PyJWT (``PyJWK``); the signature check itself is PyJWT's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import jwt
import orjson
from aiohttp.abc import AbstractResolver

from aigate.errors import AppError, unauthorized
from aigate.netguard import PrivateAddress, private_url_error, public_session

log = logging.getLogger("aigate.auth")

DEFAULT_MAX_AGE_S = 600
MIN_MAX_AGE_S = 30
REFETCH_INTERVAL_S = 30
MAX_STALE_S = 24 * 3600
FETCH_TIMEOUT_S = 5
MAX_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)

# The key type each algorithm family needs: a JWKS key of another type never verifies it.
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class FetchError(Exception):
    pass


def may_change(err: AppError) -> AppError:
    """Marks a refusal that the same token may pass later (its key is not fetched yet, or
    it is not valid yet), so it is never remembered as a bad token."""
    err.may_change = True  # type: ignore[attr-defined]
    return err


def max_age(cache_control: str | None) -> int:
    found = _MAX_AGE.search(cache_control or "")
    if not found:
        return DEFAULT_MAX_AGE_S
    return min(max(int(found.group(1)), MIN_MAX_AGE_S), MAX_STALE_S)


@dataclass
class _KeySet:
    keys: dict[str, dict] = field(default_factory=dict)  # kid -> JWK (asymmetric keys only)
    unnamed: list[dict] = field(default_factory=list)  # keys without a kid
    fetched_at: float | None = None  # clock() of the last good fetch
    fresh_until: float = 0.0
    last_attempt: float | None = None
    fetches: int = 0
    refused: str = ""  # why the last fetch was refused (a private address), if it was
    parsed: dict[tuple[str, str], jwt.PyJWK] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def find(self, kid: str | None) -> dict | None:
        if kid is not None:
            return self.keys.get(kid)
        if len(self.keys) + len(self.unnamed) == 1:  # a set of one key may omit kid
            return next(iter(self.keys.values()), None) or self.unnamed[0]
        return None


class JwksCache:
    """Every JWKS URL's keys, for one process. ``clock`` is monotonic seconds (tests move it)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.http = http  # issuers with allow_private
        self.clock = clock
        self._resolver = resolver  # names of public issuers are resolved through it (default: the system's)
        self._public: aiohttp.ClientSession | None = None
        self._sets: dict[str, _KeySet] = {}

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        if allow_private:
            return self.http
        if self._public is None:
            self._public = public_session(aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S), self._resolver)
        return self._public

    async def close(self) -> None:
        if self._public is not None:
            await self._public.close()

    def fetch_count(self, url: str) -> int:
        found = self._sets.get(url)
        return found.fetches if found else 0

    async def key(
        self, url: str, kid: str | None, alg: str, *, may_fetch: bool = True, allow_private: bool = False
    ) -> jwt.PyJWK:
        """The key that verifies a token signed with ``alg`` under ``kid``; raises 401
        ``unauthorized`` for an unknown key and 503 when no keys could ever be fetched."""
        keyset = self._sets.setdefault(url, _KeySet())
        now = self.clock()
        stale = keyset.fetched_at is None or now >= keyset.fresh_until
        if may_fetch and (stale or keyset.find(kid) is None) and self._may_attempt(keyset, now):
            async with keyset.lock:
                if self._may_attempt(keyset, self.clock()):  # else a concurrent request just fetched
                    await self._refresh(url, keyset, allow_private)
        if keyset.fetched_at is None or self.clock() - keyset.fetched_at > MAX_STALE_S:
            retry = max(1, int(REFETCH_INTERVAL_S - (self.clock() - (keyset.last_attempt or 0))))
            why = f" ({keyset.refused})" if keyset.refused else ""
            raise AppError(
                "service_unavailable",
                f"the identity provider's signing keys cannot be fetched{why}; try again later",
                headers={"Retry-After": str(min(retry, REFETCH_INTERVAL_S))},
            )
        data = keyset.find(kid)
        if data is None:
            raise may_change(unauthorized(f"unknown signing key (kid {kid!r})" if kid else "token has no kid"))
        return self._parsed(keyset, data, kid, alg)

    @staticmethod
    def _may_attempt(keyset: _KeySet, now: float) -> bool:
        return keyset.last_attempt is None or now - keyset.last_attempt >= REFETCH_INTERVAL_S

    @staticmethod
    def _parsed(keyset: _KeySet, data: dict, kid: str | None, alg: str) -> jwt.PyJWK:
        cache_key = (kid or "", alg)
        found = keyset.parsed.get(cache_key)
        if found is not None:
            return found
        if data.get("kty") != _KTY.get(alg[:2]) or data.get("alg", alg) != alg:
            raise unauthorized(f"signing key {kid!r} does not fit algorithm {alg}")
        try:
            found = jwt.PyJWK(data, algorithm=alg)
        except jwt.PyJWTError:
            raise unauthorized(f"signing key {kid!r} does not fit algorithm {alg}") from None
        keyset.parsed[cache_key] = found
        return found

    async def _refresh(self, url: str, keyset: _KeySet, allow_private: bool) -> None:
        keyset.last_attempt = self.clock()
        keyset.fetches += 1
        keyset.refused = ""
        try:
            document, ttl = await self._fetch(url, allow_private)
            keys, unnamed = _asymmetric_keys(document)
        except (TimeoutError, FetchError, aiohttp.ClientError, ValueError, PrivateAddress) as exc:
            private = exc if isinstance(exc, PrivateAddress) else getattr(exc, "os_error", None)
            if isinstance(private, PrivateAddress):
                keyset.refused = "its JWKS host is a loopback or private address, and allow_private is false"
                log.warning("JWKS fetch refused for %s: %s (set allow_private: true to allow it)", url, private)
            else:
                log.warning("JWKS fetch failed for %s: %s", url, exc or type(exc).__name__)
            return
        keyset.keys, keyset.unnamed, keyset.parsed = keys, unnamed, {}
        keyset.fetched_at = self.clock()
        keyset.fresh_until = keyset.fetched_at + ttl

    async def _fetch(self, url: str, allow_private: bool) -> tuple[dict, int]:
        if not allow_private:  # literal addresses never reach the resolver
            literal = private_url_error(url)
            if literal:
                raise PrivateAddress(literal)
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with self._session(allow_private).get(
            url, allow_redirects=False, timeout=timeout, headers={"Accept": "application/json"}
        ) as resp:
            if resp.status != 200:
                raise FetchError(f"HTTP {resp.status}")
            if (resp.content_length or 0) > MAX_BYTES:
                raise FetchError(f"larger than {MAX_BYTES} bytes")
            body = await resp.content.read(MAX_BYTES + 1)
            if len(body) > MAX_BYTES:
                raise FetchError(f"larger than {MAX_BYTES} bytes")
            ttl = max_age(resp.headers.get("Cache-Control"))
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FetchError("not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise FetchError("no 'keys' list")
        return document, ttl


def _asymmetric_keys(document: dict) -> tuple[dict[str, dict], list[dict]]:
    """Public keys only: a symmetric (``oct``) key in a JWKS is never used."""
    keys: dict[str, dict] = {}
    unnamed: list[dict] = []
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if item.get("use", "sig") != "sig":
            continue
        kid = item.get("kid")
        if isinstance(kid, str):
            keys[kid] = item
        else:
            unnamed.append(item)
    if not keys and not unnamed:
        raise FetchError("no usable signing keys")
    return keys, unnamed
