"""Identity-provider user tokens (SPEC §10) against a real JWKS server on loopback, with
RSA and EC keys generated here: the (issuer, audience) pair chooses the app, the user id
is the issuer's prefix plus the claim, and every way a token can be wrong is a 401 that
names the problem. Key caching, the 30-second refetch rule and JWKS outages run on a
clock the test moves."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.gateway import APP_ID, base_config, start_gateway
from tests.idp import JwksServer, MovableClock, claims, ec_key, hs256_with, rsa_key, unsigned_token

ISS_A = "https://idp-a.example.com"
ISS_B = "https://idp-b.example.com"
ISS_SB = "https://project.supabase.co/auth/v1"
ISS_OTHER = "https://idp-other.example.com"
SB_SECRET = "supabase-legacy-jwt-secret-0123456789abcdef"
OTHER_APP = "APPOTHER"

RSA1, RSA2, EC1, ATTACKER = rsa_key("rsa-1"), rsa_key("rsa-2"), ec_key("ec-1"), rsa_key("rsa-1")
OTHER = ec_key("other-1")


def idp_config(db_url: str, sim_url: str, jwks: JwksServer) -> dict:
    doc = base_config(db_url, sim_url)
    doc["apps"][0]["user_tokens"] = [
        {"issuer": ISS_A, "audience": "aud-a", "jwks_url": jwks.jwks_url("a"), "allow_private": True},
        {
            "issuer": ISS_B,
            "audience": "aud-b",
            "jwks_url": jwks.jwks_url("b"),
            "allow_private": True,
            "user_prefix": "b:",
            "algorithms": ["ES256"],
            "required_claims": {"email_verified": True},
        },
        {"issuer": ISS_SB, "audience": "authenticated", "secret": SB_SECRET, "user_prefix": "sb:"},
    ]
    doc["apps"].append(
        {
            "id": OTHER_APP,
            "user_token_secret": "other-app-token-secret-0123456789abcdef",
            "assets": [{"name": "ai_credit", "initial_quantity": 5}],
            "user_tokens": [
                {
                    "issuer": ISS_OTHER,
                    "audience": "aud-other",
                    "jwks_url": jwks.jwks_url("other"),
                    "allow_private": True,
                }
            ],
        }
    )
    return doc


@pytest.fixture
async def jwks():
    server = await JwksServer(sets={"a": [RSA1, EC1], "b": [EC1], "other": [OTHER], "evil": [ATTACKER]}).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def gw(tmp_path, simulator, jwks):
    gateway = await start_gateway(idp_config(f"sqlite:///{tmp_path}/aigate.db", simulator.url, jwks))
    try:
        yield gateway
    finally:
        await gateway.close()


async def assets(gw, token: str) -> tuple[int, dict]:
    async with gw.session.get(f"{gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


def credits(body: dict) -> int:
    return next(a["quantity"] for a in body["asset"] if a["name"] == "ai_credit")


async def grant(gw, user_id: str, quantity: int, app_key: str | None = None) -> None:
    url = f"{gw.url}/bp/server/user/{user_id}/ai/assets/grant"
    body = {"asset": "ai_credit", "quantity": quantity, "idempotency_key": f"g-{user_id}"}
    async with gw.session.post(url, json=body, headers=gw.server_headers()) as resp:
        assert resp.status == 200, await resp.text()


async def test_provider_tokens_choose_the_app_and_the_user(gw):
    await grant(gw, "alice", 7)  # issuer A has no prefix: its "alice" is this user
    await grant(gw, "b:alice", 100)  # issuer B's "alice"
    status, body = await assets(gw, RSA1.sign(claims(ISS_A, "aud-a")))
    assert status == 200 and credits(body) == 57
    status, body = await assets(gw, EC1.sign(claims(ISS_A, ["aud-a", "extra"])))  # ES256, aud as a list
    assert status == 200 and credits(body) == 57
    # the same subject at another issuer of the app is another user
    status, body = await assets(gw, EC1.sign(claims(ISS_B, "aud-b", email_verified=True)))
    assert status == 200 and credits(body) == 150
    # an HS256 issuer (legacy Supabase secret), prefixed too
    sb = hs256_with(SB_SECRET.encode(), claims(ISS_SB, "authenticated"))
    status, body = await assets(gw, sb)
    assert status == 200 and credits(body) == 50
    # the pair chooses the app: issuer "other" lands in APPOTHER (5 initial credits)
    status, body = await assets(gw, OTHER.sign(claims(ISS_OTHER, "aud-other")))
    assert status == 200 and credits(body) == 5
    # aigate's own HS256 tokens keep working beside them
    status, body = await assets(gw, gw.user_token("alice"))
    assert status == 200 and credits(body) == 57
    # a user id from a provider may be long and carry '|' and '@' (Auth0 style)
    status, _ = await assets(gw, RSA1.sign(claims(ISS_A, "aud-a", sub="auth0|" + "x" * 100 + "@y")))
    assert status == 200


def _now() -> int:
    return int(time.time())


REFUSALS = [
    (
        "wrong issuer",
        lambda j: RSA1.sign(claims("https://evil.example.com", "aud-a")),
        "no app accepts issuer 'https://evil.example.com'",
    ),
    (
        "wrong audience",
        lambda j: RSA1.sign(claims(ISS_A, "aud-wrong")),
        "no app accepts issuer 'https://idp-a.example.com' with audience 'aud-wrong'",
    ),
    ("expired", lambda j: RSA1.sign(claims(ISS_A, "aud-a", exp=_now() - 120)), "user token expired"),
    ("not yet valid", lambda j: RSA1.sign(claims(ISS_A, "aud-a", nbf=_now() + 600)), "not yet valid"),
    ("unknown kid", lambda j: RSA2.sign(claims(ISS_A, "aud-a")), "unknown signing key (kid 'rsa-2')"),
    ("alg none", lambda j: unsigned_token(claims(ISS_A, "aud-a")), "algorithm 'none' is not accepted"),
    (
        "HS256 keyed with the public key",
        lambda j: hs256_with(RSA1.public_pem, claims(ISS_A, "aud-a"), "rsa-1"),
        "algorithm 'HS256' is not accepted",
    ),
    # the attacker's key under a real kid, with a header naming the attacker's JWKS
    (
        "jku pointing elsewhere",
        lambda j: ATTACKER.sign(claims(ISS_A, "aud-a"), jku=j.jwks_url("evil")),
        "bad signature",
    ),
    (
        "x5u pointing elsewhere",
        lambda j: ATTACKER.sign(claims(ISS_A, "aud-a"), x5u=j.jwks_url("evil")),
        "bad signature",
    ),
    (
        "app X's issuer on app Y",
        lambda j: OTHER.sign(claims(ISS_OTHER, "aud-a")),
        "no app accepts issuer 'https://idp-other.example.com' with audience 'aud-a'",
    ),
    ("missing required claim", lambda j: EC1.sign(claims(ISS_B, "aud-b")), "missing required claim 'email_verified'"),
    (
        "required claim false",
        lambda j: EC1.sign(claims(ISS_B, "aud-b", email_verified=False)),
        "claim 'email_verified' must be True",
    ),
    (
        "algorithm not configured for the issuer",
        lambda j: RSA1.sign(claims(ISS_B, "aud-b", email_verified=True)),
        "algorithm 'RS256' is not accepted",
    ),
    (
        "missing sub",
        lambda j: RSA1.sign({k: v for k, v in claims(ISS_A, "aud-a").items() if k != "sub"}),
        "missing claim 'sub'",
    ),
    (
        "missing exp",
        lambda j: RSA1.sign({k: v for k, v in claims(ISS_A, "aud-a").items() if k != "exp"}),
        "missing claim 'exp'",
    ),
    (
        "HS256 issuer, wrong secret",
        lambda j: hs256_with(b"not-the-secret", claims(ISS_SB, "authenticated")),
        "bad signature",
    ),
]


async def test_each_bad_token_is_refused_naming_the_problem(gw, jwks):
    """Every case against one gateway (a gateway per case costs a second each); the
    failure lists each case that went wrong."""
    wrong = []
    for case, make, message in REFUSALS:
        status, body = await assets(gw, make(jwks))
        error = body.get("error") or {}
        if status != 401 or error.get("error_type") != "unauthorized" or message not in error.get("message", ""):
            wrong.append(f"{case}: {status} {body}")
    assert wrong == []
    assert jwks.fetches.get("evil", 0) == 0  # a URL in a token is never fetched
    # the good token still works after all of that (no cap reached, nothing cached wrongly)
    assert (await assets(gw, RSA1.sign(claims(ISS_A, "aud-a"))))[0] == 200


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_30s(gw, jwks):
    clock = MovableClock()
    gw.services.edge.jwks.clock = clock
    assert (await assets(gw, RSA1.sign(claims(ISS_A, "aud-a"))))[0] == 200
    assert jwks.fetches["a"] == 1

    async def flood(n: int) -> set[int]:
        tokens = [RSA1.sign(claims(ISS_A, "aud-a"), kid=f"made-up-{i}") for i in range(n)]
        return {status for status, _ in await asyncio.gather(*(assets(gw, t) for t in tokens))}

    assert await flood(40) == {401}
    assert jwks.fetches["a"] == 1  # within 30 s of the last fetch: no fetch at all
    clock.advance(31)
    assert await flood(40) == {401}
    assert jwks.fetches["a"] == 2  # one fetch for the whole flood
    # rotation: the provider publishes a new key; once 30 s have passed, its tokens work
    jwks.sets["a"] = [RSA1, RSA2]
    assert (await assets(gw, RSA2.sign(claims(ISS_A, "aud-a"))))[0] == 401  # not yet refetched
    clock.advance(31)
    assert (await assets(gw, RSA2.sign(claims(ISS_A, "aud-a"))))[0] == 200
    assert jwks.fetches["a"] == 3


async def test_a_jwks_outage_keeps_serving_cached_keys_for_24h(gw, jwks):
    clock = MovableClock()
    gw.services.edge.jwks.clock = clock
    token = RSA1.sign(claims(ISS_A, "aud-a"))
    assert (await assets(gw, token))[0] == 200
    jwks.down = True
    clock.advance(11 * 60)  # past the 10-minute default max-age: a refetch fails
    status, _ = await assets(gw, token)
    assert status == 200 and jwks.fetches["a"] == 2
    clock.advance(23 * 3600)
    assert (await assets(gw, token))[0] == 200
    clock.advance(3600)  # more than 24 h since the last good fetch
    status, body = await assets(gw, token)
    assert status == 503 and body["error"]["error_type"] == "service_unavailable"
    jwks.down = False
    clock.advance(31)
    assert (await assets(gw, token))[0] == 200  # back as soon as the provider is


async def test_no_keys_ever_fetched_is_503_with_retry_after(gw, jwks):
    jwks.down = True
    async with gw.session.get(
        f"{gw.url}/bp/ai/assets", headers={"Authorization": f"Bearer {RSA1.sign(claims(ISS_A, 'aud-a'))}"}
    ) as resp:
        body = await resp.json()
        assert resp.status == 503 and body["error"]["error_type"] == "service_unavailable"
        assert 1 <= int(resp.headers["Retry-After"]) <= 30


async def test_cache_control_max_age_is_honoured(gw, jwks):
    clock = MovableClock()
    gw.services.edge.jwks.clock = clock
    jwks.cache_control = "public, max-age=120"
    token = RSA1.sign(claims(ISS_A, "aud-a"))
    assert (await assets(gw, token))[0] == 200
    clock.advance(100)
    assert (await assets(gw, token))[0] == 200 and jwks.fetches["a"] == 1
    clock.advance(30)
    assert (await assets(gw, token))[0] == 200 and jwks.fetches["a"] == 2


async def test_jwks_redirects_are_not_followed(tmp_path, simulator, jwks):
    doc = idp_config(f"sqlite:///{tmp_path}/aigate.db", simulator.url, jwks)
    doc["apps"][0]["user_tokens"][0]["jwks_url"] = jwks.jwks_url("redirect")
    gw = await start_gateway(doc)
    try:
        status, body = await assets(gw, RSA1.sign(claims(ISS_A, "aud-a")))
        assert status == 503 and jwks.fetches.get("a", 0) == 0
    finally:
        await gw.close()


async def test_own_tokens_carry_iat_and_jti(gw):
    import jwt as pyjwt

    async with gw.session.post(f"{gw.url}/bp/server/user/alice/token", json={}, headers=gw.server_headers()) as resp:
        token = (await resp.json())["token"]
    decoded = pyjwt.decode(token, options={"verify_signature": False})
    assert decoded["app_id"] == APP_ID and abs(decoded["iat"] - time.time()) < 5 and len(decoded["jti"]) >= 16


async def test_user_ids_of_up_to_128_characters(gw):
    long_id = "auth0|" + "a" * 100 + "@example.com" + "b" * 10  # 128 characters
    assert len(long_id) == 128
    async with gw.session.get(f"{gw.url}/bp/server/user/{long_id}/ai/assets", headers=gw.server_headers()) as resp:
        assert resp.status == 200
    async with gw.session.get(f"{gw.url}/bp/server/user/{long_id}x/ai/assets", headers=gw.server_headers()) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["error"]["message"].startswith("user_id: must be 1-128 characters")
    status, _ = await assets(gw, gw.user_token(long_id))
    assert status == 200
