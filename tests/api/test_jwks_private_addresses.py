"""JWKS fetches never reach the gateway's own network unless the issuer allows it: a JWKS
host that is, or resolves to, a loopback, private, link-local, multicast or reserved
address is refused with an error that says so, before any connection is made; the same
URL is fetched when the issuer sets ``allow_private``. The JWKS server is real (loopback);
names resolve through the system resolver or, for addresses this machine cannot resolve
to, a fixed table handed to aiohttp's resolver interface (a hosts file)."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from aigate.auth.jwks import JwksCache
from aigate.errors import AppError
from aigate.netguard import PublicResolver, is_private_host
from tests.gateway import base_config, start_gateway
from tests.idp import JwksServer, claims, rsa_key

KEY = rsa_key("rsa-1")


class HostsResolver(AbstractResolver):
    """Fixed answers per name, as /etc/hosts gives them."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        return [
            {
                "hostname": host,
                "host": addr,
                "port": port,
                "family": socket.AF_INET6 if ":" in addr else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for addr in self.names[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def jwks():
    server = await JwksServer(sets={"a": [KEY]}).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def port_of(server: JwksServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def refused(cache: JwksCache, url: str) -> str:
    with pytest.raises(AppError) as err:
        await cache.key(url, "rsa-1", "RS256")
    assert err.value.status == 503
    return err.value.message


@pytest.mark.parametrize(
    "address", ["10.20.30.40", "169.254.169.254", "::1", "127.0.0.1", "192.168.1.5", "fd00::1", "224.0.0.9"]
)
async def test_a_jwks_host_resolving_to_a_private_address_is_refused(jwks, http, address):
    cache = JwksCache(http, resolver=HostsResolver({"idp.test": [address]}))
    try:
        message = await refused(cache, f"http://idp.test:{port_of(jwks)}/a")
        assert "JWKS host is a loopback or private address" in message and "allow_private" in message
        assert jwks.fetches == {}  # refused before connecting (127.0.0.1 would have answered)
        assert cache.fetch_count(f"http://idp.test:{port_of(jwks)}/a") == 1
    finally:
        await cache.close()


async def test_a_literal_private_address_is_refused_and_allowed_when_the_issuer_allows_it(jwks, http):
    cache = JwksCache(http)
    try:
        assert "private address" in await refused(cache, jwks.jwks_url("a"))
        assert "private address" in await refused(JwksCache(http), f"http://localhost:{port_of(jwks)}/a")
        assert jwks.fetches == {}
        allowed = JwksCache(http)
        found = await allowed.key(jwks.jwks_url("a"), "rsa-1", "RS256", allow_private=True)
        assert found.key_id == "rsa-1" and jwks.fetches == {"a": 1}
    finally:
        await cache.close()


async def test_only_public_addresses_of_a_name_are_connected_to():
    resolver = PublicResolver(HostsResolver({"mixed.test": ["10.0.0.1", "93.184.216.34", "::1", "2606:4700::1111"]}))
    found = await resolver.resolve("mixed.test", 443)
    assert [r["host"] for r in found] == ["93.184.216.34", "2606:4700::1111"]
    assert {r["port"] for r in found} == {443}


def test_which_hosts_are_private():
    private = ["10.0.0.1", "172.16.0.1", "192.168.0.1", "127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "[::1]"]
    private += ["fe80::1", "fd12::1", "224.0.0.1", "ff02::1", "240.0.0.1", "100.64.0.1", "localhost", "a.localhost"]
    assert [h for h in private if not is_private_host(h)] == []
    assert [h for h in ["8.8.8.8", "2606:4700::1111", "idp.example.com"] if is_private_host(h)] == []


def _own_name_is_private() -> str | None:
    """This machine's host name, when the system resolver maps it to a non-public address."""
    name = socket.gethostname()
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(name, None)}
    except OSError:
        return None
    ok = addrs and all(not ipaddress.ip_address(a.split("%")[0]).is_global for a in addrs)
    return name if ok else None


async def test_a_token_whose_issuer_jwks_resolves_privately_gets_a_clear_503(tmp_path, simulator, jwks):
    """End to end, with the system resolver: an https JWKS URL on this machine's own name
    (which resolves to a loopback or private address) passes the configuration's literal
    check, and is refused when fetched."""
    name = _own_name_is_private()
    if name is None:
        pytest.skip("this machine's host name does not resolve to a private address")
    doc = base_config(f"sqlite:///{tmp_path}/a.db", simulator.url)
    doc["apps"][0]["user_tokens"] = [
        {"issuer": "https://idp.example.com", "audience": "aud", "jwks_url": f"https://{name}:{port_of(jwks)}/a"}
    ]
    gw = await start_gateway(doc)
    try:
        token = KEY.sign(claims("https://idp.example.com", "aud"))
        body = {"strategy": "free-normal", "parameters": {"example_string": "x"}, "content": "hi"}
        async with gw.session.post(
            gw.url + "/bp/ai/chat", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 503
            error = (await resp.json())["error"]
        assert error["error_type"] == "service_unavailable"
        assert "JWKS host is a loopback or private address" in error["message"]
        assert jwks.fetches == {}
    finally:
        await gw.close()
