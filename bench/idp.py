"""An identity provider for the benchmarks: an RSA key, its JWKS served on loopback from
a daemon thread of the harness (it ends with the harness), and RS256 user tokens signed
with it, as Firebase Auth, Auth0 or Cognito sign theirs. aigate fetches the JWKS once
and verifies every token with it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.bench.example.com"
AUDIENCE = "bench"
KID = "bench-k1"


class IdentityProvider:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True) | {"kid": KID, "use": "sig", "alg": "RS256"}
        body = json.dumps({"keys": [jwk]}).encode()

        class Jwks(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
        self.jwks_url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self._server.serve_forever, name="bench-jwks", daemon=True).start()

    def issuer(self) -> dict:
        """The app's ``user_tokens`` entry for this provider."""
        return {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": self.jwks_url, "allow_private": True}

    def token(self, subject: str, ttl_s: int = 6 * 3600) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KID})
