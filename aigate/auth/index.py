"""Look-ups over the configuration snapshot that the client edge needs on every request,
built once per snapshot (a new snapshot after any change builds them again)."""

from __future__ import annotations

from dataclasses import dataclass

from aigate.config.runtime import AppRuntime, Snapshot
from aigate.config.schema import UserTokenIssuerCfg


@dataclass(frozen=True, slots=True)
class ClientIndex:
    issuers: dict[tuple[str, str], tuple[AppRuntime, UserTokenIssuerCfg]]  # (iss, aud) -> app, issuer
    cors_max_age: dict[str, int]  # origin listed by any enabled app -> longest max_age_s
    attestation_headers: tuple[str, ...]  # every app's attestation header, for preflights


def client_index(snapshot: Snapshot) -> ClientIndex:
    found = snapshot.__dict__.get("_client_index")
    if found is None:
        found = snapshot.__dict__["_client_index"] = _build(snapshot)
    return found


def _build(snapshot: Snapshot) -> ClientIndex:
    issuers: dict[tuple[str, str], tuple[AppRuntime, UserTokenIssuerCfg]] = {}
    cors: dict[str, int] = {}
    headers: set[str] = set()
    for app in snapshot.apps.values():
        if not app.enabled:
            continue
        for issuer in app.client.user_tokens:
            issuers.setdefault((issuer.issuer, issuer.audience), (app, issuer))
        if app.client.cors is not None:
            for origin in app.client.cors.origins:
                cors[origin] = max(cors.get(origin, 0), app.client.cors.max_age_s)
        if app.client.attestation is not None:
            headers.add(app.client.attestation.header)
    return ClientIndex(issuers, cors, tuple(sorted(headers)))
