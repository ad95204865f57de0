"""A real identity provider for tests: keys generated here (RSA and EC, with
``cryptography``), a JWKS server on loopback (aiohttp) that counts its fetches and can be
switched off, and helpers that sign tokens the way an identity provider does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class Key:
    kid: str
    alg: str
    private: Any

    @property
    def public_jwk(self) -> dict:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict, **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers})


def rsa_key(kid: str) -> Key:
    return Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> Key:
    return Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def claims(iss: str, aud: str | list[str], sub: str = "alice", **extra: Any) -> dict:
    now = int(time.time())
    return {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600, **extra}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(payload: dict) -> str:
    """``alg: none``: no signature at all."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(payload).encode())}."


def hs256_with(secret: bytes, payload: dict, kid: str | None = None) -> str:
    """An HS256 token keyed with arbitrary bytes (e.g. an RSA public key's PEM, the classic
    algorithm-confusion attack), built by hand because PyJWT refuses to make one."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@dataclass
class JwksServer:
    """Serves ``/{name}`` as a JWKS of the keys in ``sets[name]``; ``down`` answers 503."""

    url: str = ""
    sets: dict[str, list[Key]] = field(default_factory=dict)
    fetches: dict[str, int] = field(default_factory=dict)
    down: bool = False
    cache_control: str | None = None
    runner: web.AppRunner | None = None

    def jwks_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.fetches[name] = self.fetches.get(name, 0) + 1
        if self.down:
            return web.Response(status=503, text="down")
        if name == "redirect":
            raise web.HTTPFound(self.jwks_url("a"))
        keys = [k.public_jwk for k in self.sets.get(name, [])]
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.json_response({"keys": keys}, headers=headers)

    async def start(self) -> JwksServer:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class MovableClock:
    """A monotonic clock a test moves by hand (30-second rules without sleeping 30 s)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
