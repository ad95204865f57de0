"""What a flood of failed authentications from one IP costs aigate (SPEC §10).

Serves aigate (SQLite, pinned to CPU 0) twice: with ``server.unauthenticated_ip_rpm: 0``
(no cap: every bad token is verified and answered 401) and with the default cap of 120
(after 120 failures in a minute the IP is marked in memory and answered 429 without
shared-counter round trips or JWKS fetches). The load (aiohttp, 32 connections, this
process, pinned to CPU 1) sends bad tokens from 127.0.0.1 to ``GET /bp/ai/assets``:

* ``hs256-bad``: an aigate-style HS256 token with a wrong signature, sent again and again
  (refused from memory after the first time);
* ``hs256-bad, all different``: a new bad token every request (each parsed and verified);
* ``rs256-bad``: an identity-provider RS256 token signed by a stranger's key (the JWKS is
  served by this process on loopback and fetched once);
* ``garbage``: not a JWT at all;
* ``valid``: a valid user token, for reference (reads the user's assets from the database);
* ``(healthz)``: ``GET /healthz`` without a token, the HTTP floor of this machine.

It reports the gateway's CPU time per request (utime+stime from /proc) and the rate.

    .venv/bin/python -m bench.auth_flood               # writes bench/AUTH_FLOOD.md
    .venv/bin/python -m bench.auth_flood --requests 2000 --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import jwt
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bench import procs as P

APP_ID = "APPBENCH"
SECRET = "bench-user-token-secret-0123456789abcdef"
ISSUER = "https://idp.bench.example.com"
CONCURRENCY = 32


def config(db: str, port: int, jwks_url: str, cap: int) -> dict:
    return {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "admin_key": "bench-admin-key-0123456789",
            "unauthenticated_ip_rpm": cap,
        },
        "database": {"url": f"sqlite:///{db}"},
        "platforms": [{"id": "none", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}],
        "apps": [
            {
                "id": APP_ID,
                "user_token_secret": SECRET,
                "assets": [{"name": "ai_credit", "initial_quantity": 10}],
                # the JWKS is served on loopback by this process
                "user_tokens": [{"issuer": ISSUER, "audience": "bench", "jwks_url": jwks_url, "allow_private": True}],
            }
        ],
    }


def tokens() -> dict[str, str]:
    now = int(time.time())
    real = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp_claims = {"iss": ISSUER, "aud": "bench", "sub": "u1", "iat": now, "exp": now + 3600}
    own = {"app_id": APP_ID, "sub": "u1", "iat": now, "exp": now + 3600}
    return {
        "jwk": RSAAlgorithm.to_jwk(real.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"},
        "hs256-bad": jwt.encode(own, "not-the-secret-0123456789abcdef-xyz", algorithm="HS256"),
        "rs256-bad": jwt.encode(idp_claims, stranger, algorithm="RS256", headers={"kid": "k1"}),
        "rs256-good": jwt.encode(idp_claims, real, algorithm="RS256", headers={"kid": "k1"}),
        "garbage": "x" * 200,
        "valid": jwt.encode(own, SECRET, algorithm="HS256"),
    }


def distinct_bad_tokens(n: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"app_id": APP_ID, "sub": "u1", "iat": now, "exp": now + 3600, "jti": str(i)},
            "not-the-secret-0123456789abcdef-xyz",
            algorithm="HS256",
        )
        for i in range(n)
    ]


async def flood(url: str, token: str | list[str], n: int) -> tuple[dict[int, int], float]:
    statuses: dict[int, int] = {}
    tokens = token if isinstance(token, list) else [token]
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(n))

        async def worker():
            for i in queue:
                headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return statuses, time.monotonic() - t0


async def serve_jwks(jwk: dict) -> tuple[web.AppRunner, str]:
    async def jwks(request):
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/jwks"


async def run_gateway(workdir: Path, cap: int, jwks_url: str, toks: dict, n: int, pin: bool) -> list[dict]:
    port = P.free_port()
    cfg_path = workdir / f"cap{cap}.yaml"
    cfg_path.write_text(yaml.safe_dump(config(str(workdir / f"cap{cap}.db"), port, jwks_url, cap)))
    procs = P.Processes(workdir, pin=pin)
    aigate = str(Path(sys.executable).with_name("aigate"))
    gw = procs.start(
        f"aigate-cap{cap}", [aigate, "serve", "--config", str(cfg_path), "--log-level", "WARNING"], cpu=P.GATEWAY_CPU
    )
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        P.wait_http(gw, f"{base}/healthz", ok=lambda s: s == 200)
        url = f"{base}/bp/ai/assets"
        await flood(url, toks["rs256-good"], 50)  # fetch the JWKS once, warm every path
        await flood(url, toks["valid"], 200)
        toks["hs256-bad, all different"] = distinct_bad_tokens(n)
        for name in ("(healthz)", "valid", "garbage", "hs256-bad", "hs256-bad, all different", "rs256-bad"):
            cpu0 = P.cpu_seconds(gw.pid)
            target = f"{base}/healthz" if name == "(healthz)" else url
            statuses, seconds = await flood(target, toks.get(name, ""), n)
            cpu = P.cpu_seconds(gw.pid) - cpu0
            rows.append({"cap": cap, "token": name, "statuses": statuses, "rps": n / seconds, "cpu_us": cpu / n * 1e6})
        # a valid token from the flooding address is still served
        statuses, _ = await flood(url, toks["valid"], 10)
        rows.append({"cap": cap, "token": "valid, after the flood", "statuses": statuses, "rps": 0, "cpu_us": 0})
    finally:
        procs.stop_all()
    return rows


def report(rows: list[dict], n: int, pinned: bool) -> str:
    lines = [
        "# Failed-authentication floods: CPU per refused request",
        "",
        f"`python -m bench.auth_flood --requests {n}`; gateway pinned to CPU 0 ({'yes' if pinned else 'no'}), "
        f"load from one IP with {CONCURRENCY} connections on CPU 1. CPU = the gateway's utime+stime / requests.",
        "",
        "| unauthenticated_ip_rpm | token | answers | req/s | gateway CPU per request |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        answers = ", ".join(f"{k}×{v}" for k, v in sorted(r["statuses"].items()))
        rps = f"{r['rps']:.0f}" if r["rps"] else "—"
        cpu = f"{r['cpu_us']:.0f} µs" if r["cpu_us"] else "—"
        lines.append(f"| {r['cap'] or 'off'} | {r['token']} | {answers} | {rps} | {cpu} |")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("AUTH_FLOOD.md"))
    args = parser.parse_args()
    pin = P.pinning_available()
    if pin:
        os.sched_setaffinity(0, {P.LOAD_CPU})
    toks = tokens()
    runner, jwks_url = await serve_jwks(toks["jwk"])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for cap in (0, 120):
                rows += await run_gateway(Path(tmp), cap, jwks_url, toks, args.requests, pin)
    finally:
        await runner.cleanup()
    text = report(rows, args.requests, pin)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
