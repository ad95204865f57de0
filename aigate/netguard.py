"""Outbound requests to URLs an operator typed (webhook targets, JWKS URLs) must not reach
the gateway's own network unless the operator says so: a loopback, private, link-local,
multicast or reserved address is refused, unless the target is marked ``allow_private``.

Two checks, one rule (``is_public_address``):

* ``is_private_host``: a literal address (or ``localhost``) in the URL, checked when the
  configuration is validated and again before each request (aiohttp connects to literal
  addresses without resolving them);
* ``PublicResolver``: names are resolved once per connection and only public addresses
  are handed to the connector, so the connection goes to an address that was checked and
  a name cannot be re-pointed at a private one in between (no DNS-rebinding gap).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver


class PrivateAddress(OSError):
    """A target that resolves only to addresses this rule refuses."""


def is_public_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])  # an IPv6 scope id is not part of it
    return ip.is_global and not ip.is_multicast


def is_private_host(host: str) -> bool:
    """A literal loopback / private / link-local / reserved address, or ``localhost``.
    A name that is not an address is not private here: ``PublicResolver`` checks it."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public_address(host)
    except ValueError:
        return False


def is_private_url(url: str) -> bool:
    """``url``'s host is a literal loopback / private / reserved address, or ``localhost``."""
    return is_private_host(urlsplit(url).hostname or "")


def private_url_error(url: str) -> str | None:
    """Why ``url`` names a refused address literally, or None."""
    if is_private_url(url):
        return f"{urlsplit(url).hostname} is a loopback or private address"
    return None


class PublicResolver(AbstractResolver):
    """Resolves names to their public addresses only; refuses a name that has none."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(r["host"])]
        if not public:
            refused = ", ".join(sorted({r["host"] for r in found}))
            raise PrivateAddress(f"{host} resolves only to loopback or private addresses ({refused})")
        return public

    async def close(self) -> None:
        await self._inner.close()


def public_session(timeout: aiohttp.ClientTimeout, inner: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """A client session whose connections go to checked public addresses only."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=PublicResolver(inner)), timeout=timeout)
