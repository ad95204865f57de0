"""The SPEC §10 settings in the configuration: every mistake is an error naming its path."""

from __future__ import annotations

import pytest

from aigate.config.loader import ConfigError, parse_config
from aigate.edge.client_ip import ClientIp
from tests.gateway import base_config

SECRET = "an-hs256-issuer-secret-0123456789abcdef"


def doc_with(**app_fields) -> dict:
    doc = base_config("sqlite:///x.db", "http://127.0.0.1:9")
    doc["apps"][0].update(app_fields)
    return doc


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    return exc.value.errors


def issuer(iss="https://idp.example.com", aud="aud", **more) -> dict:
    return {"issuer": iss, "audience": aud, "jwks_url": "https://idp.example.com/jwks", **more}


def test_a_full_client_section_is_accepted():
    cfg = parse_config(
        doc_with(
            cors={"origins": ["https://app.example.com/", "http://localhost:5173"]},
            user_tokens=[
                issuer(),
                issuer(iss="https://b.example.com", user_prefix="b:"),
                {
                    "issuer": "https://sb.example.com",
                    "audience": "authenticated",
                    "secret": SECRET,
                    "user_prefix": "sb:",
                },
            ],
            attestation={
                "issuer": "https://att.example.com",
                "audience": "projects/1",
                "jwks_url": "https://att.example.com/jwks",
                "consume_once": True,
            },
            rate_limits={"per_user_rpm": 60, "per_ip_rpm": 600, "max_concurrent_streams_per_user": 2},
            previous_user_token_secrets=[{"secret": SECRET, "expires_at": "2030-01-01T00:00:00Z"}],
        ),
        env={},
    )
    app = cfg.apps[0]
    assert app.cors.origins == ["https://app.example.com", "http://localhost:5173"]
    assert app.user_tokens[0].allowed_algorithms == ("RS256", "ES256")
    assert app.user_tokens[2].allowed_algorithms == ("HS256",)
    assert app.attestation.header == "X-Firebase-AppCheck" and app.attestation.required
    assert cfg.server.unauthenticated_ip_rpm == 120


def test_an_issuer_audience_pair_used_by_two_apps_is_rejected():
    doc = doc_with(user_tokens=[issuer()])
    doc["apps"].append({"id": "APP2", "user_token_secret": SECRET, "user_tokens": [issuer()]})
    assert errors_of(doc) == [
        "apps[1].user_tokens[0]: issuer 'https://idp.example.com' with audience 'aud' is already used by app 'APPTEST'"
    ]


def test_two_issuers_of_one_app_need_different_prefixes():
    errors = errors_of(doc_with(user_tokens=[issuer(), issuer(iss="https://other.example.com")]))
    assert errors == [
        "apps[0].user_tokens[1].user_prefix: '' is also the prefix of user_tokens[0]; "
        "two issuers of one app need different prefixes"
    ]


@pytest.mark.parametrize(
    "field,value,expected",
    [
        (
            "user_tokens",
            [issuer(jwks_url="http://idp.example.com/jwks")],
            "apps[0].user_tokens[0]: Value error, jwks_url: must be https://",
        ),
        ("user_tokens", [issuer(algorithms=["HS256"])], "'HS256' cannot be used with a JWKS issuer"),
        ("user_tokens", [issuer(algorithms=["none"])], "'none' cannot be used"),
        ("user_tokens", [issuer(secret=SECRET)], "exactly one of jwks_url and secret"),
        (
            "user_tokens",
            [{"issuer": "i", "audience": "a", "secret": SECRET, "algorithms": ["RS256"]}],
            "'RS256' cannot be used with a secret",
        ),
        ("user_tokens", [issuer(user_prefix="bad prefix")], "apps[0].user_tokens[0].user_prefix"),
        ("cors", {"origins": ["null"]}, "apps[0].cors.origins: Value error, 'null' is not an origin"),
        ("cors", {"origins": ["*"]}, "'*' is not an origin"),
        ("cors", {"origins": ["https://app.example.com/path"]}, "is not an origin"),
        ("rate_limits", {"per_user_rpm": 0}, "apps[0].rate_limits.per_user_rpm"),
        (
            "attestation",
            {"issuer": "i", "audience": "a", "jwks_url": "https://x/j", "header": "Bad Header"},
            "apps[0].attestation.header",
        ),
        (
            "previous_user_token_secrets",
            [{"secret": "short", "expires_at": "2030-01-01T00:00:00Z"}],
            "apps[0].previous_user_token_secrets[0].secret",
        ),
    ],
)
def test_bad_settings_are_reported_by_path(field, value, expected):
    errors = errors_of(doc_with(**{field: value}))
    assert any(expected in e for e in errors), errors


def test_attestation_and_user_tokens_may_not_share_an_issuer():
    errors = errors_of(doc_with(user_tokens=[issuer()], attestation=issuer()))
    assert errors == ["apps[0].attestation: issuer and audience must differ from every user_tokens entry"]


def test_http_jwks_is_allowed_on_loopback_only():
    for url in ("http://127.0.0.1:8000/jwks", "http://localhost:8000/jwks"):
        parse_config(doc_with(user_tokens=[issuer(jwks_url=url, allow_private=True)]), env={})
    errors_of(doc_with(user_tokens=[issuer(jwks_url="http://10.0.0.1/jwks", allow_private=True)]))


def test_a_jwks_url_naming_a_private_address_needs_allow_private():
    for url in (
        "https://10.1.2.3/jwks",
        "https://169.254.169.254/keys",
        "https://[::1]:8443/jwks",
        "https://224.0.0.1/jwks",
        "https://240.0.0.7/jwks",
        "http://localhost:8000/jwks",
    ):
        [error] = errors_of(doc_with(user_tokens=[issuer(jwks_url=url)]))
        assert error.startswith("apps[0].user_tokens[0]: Value error, jwks_url:") and "allow_private" in error, error
        [error] = errors_of(doc_with(attestation=issuer("https://att.example.com", jwks_url=url)))
        assert error.startswith("apps[0].attestation: Value error, jwks_url:"), error
        parse_config(doc_with(user_tokens=[issuer(jwks_url=url, allow_private=True)]), env={})


def test_trusted_proxies_must_be_addresses():
    doc = doc_with()
    doc["server"]["trusted_proxies"] = ["10.0.0.0/8", "proxy.local"]
    assert errors_of(doc) == ["server.trusted_proxies: Value error, not an IP address or network: 'proxy.local'"]


def test_client_ip_believes_only_trusted_proxies():
    ip = ClientIp(["10.0.0.0/8", "192.0.2.1"])
    assert ip("203.0.113.5", "1.2.3.4") == "203.0.113.5"  # peer not a proxy
    assert ip("10.1.1.1", "1.2.3.4, 198.51.100.7") == "198.51.100.7"  # rightmost untrusted entry
    assert ip("10.1.1.1", "198.51.100.7, 192.0.2.1, 10.2.2.2") == "198.51.100.7"  # proxy chain
    assert ip("10.1.1.1", "") == "10.1.1.1"
    assert ip("10.1.1.1", "10.3.3.3") == "10.1.1.1"  # only proxies: the peer
    assert ClientIp([])("10.1.1.1", "1.2.3.4") == "10.1.1.1"
