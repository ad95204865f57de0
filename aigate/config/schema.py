"""The shape of aigate's configuration: the YAML file and the Admin API share it.

Every model forbids unknown fields, so a typo is an error that names its path instead of
a setting silently ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from aigate.netguard import is_private_url

NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
APP_ID = r"^[A-Za-z0-9_-]{1,64}$"

Module = Literal["chat", "image", "video", "audio", "embedding"]
PlatformType = Literal["openai", "azure_openai", "anthropic", "gemini", "openai_compatible", "http_job"]


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# A credit quantity: exact, at most 6 decimal places (the store keeps millionths), never
# negative, a JSON number in dumps (``50`` stays ``50``); one JSON schema for input and output.
Quantity = Annotated[
    Decimal,
    Field(ge=0, decimal_places=6),
    PlainSerializer(_json_number, when_used="json"),
    WithJsonSchema({"type": "number", "minimum": 0}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerCfg(Strict):
    listen: str = "127.0.0.1:8080"
    admin_key: str = ""
    worker_id: int | None = Field(default=None, ge=0, le=1023)  # snowflake worker; derived if unset
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    instance_name: str = ""
    unauthenticated_ip_rpm: int = Field(default=120, ge=0)  # failed authentications per IP; 0: no cap
    trusted_proxies: list[str] = []  # addresses/CIDRs whose X-Forwarded-For entry names the client

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
        return value


class DatabaseCfg(Strict):
    url: str = "sqlite:///./data/aigate.db"
    pool_size: int = Field(default=20, ge=1, le=500)


class RedisCfg(Strict):
    url: str = ""


class LogsCfg(Strict):
    store_bodies: Literal["errors", "all", "none"] = "errors"
    body_max_bytes: int = Field(default=8192, ge=0)
    retention_days: int = Field(default=30, ge=0)  # 0 keeps rows forever


class WriterCfg(Strict):
    flush_interval_ms: int = Field(default=100, ge=1)
    batch_size: int = Field(default=500, ge=1)
    queue_size: int = Field(default=20_000, ge=1)
    journal_dir: str = "./data/journal"  # rows spilled during an outage (one file per process)
    wait_timeout_ms: int = Field(default=10_000, ge=1)  # longest group-commit wait, then 503


class Price(Strict):
    """Prices of seed 001: each ``*_price`` is charged per ``*_price_unit`` tokens."""

    input_price: Decimal = Decimal(0)
    input_price_unit: int = Field(default=1_000_000, ge=1)
    output_price: Decimal = Decimal(0)
    output_price_unit: int = Field(default=1_000_000, ge=1)
    cached_price: Decimal = Decimal(0)
    cached_price_unit: int = Field(default=1_000_000, ge=1)
    cache_creation_price: Decimal = Decimal(0)
    cache_creation_price_unit: int = Field(default=1_000_000, ge=1)
    image_input_price: Decimal = Decimal(0)
    image_input_price_unit: int = Field(default=1_000_000, ge=1)
    thinking_mode_output_price: Decimal = Decimal(0)
    thinking_mode_output_price_unit: int = Field(default=1_000_000, ge=1)
    web_search_price: Decimal = Decimal(0)
    web_search_price_unit: int = Field(default=1, ge=1)
    per_request_price: Decimal = Decimal(0)

    @field_validator("*")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if isinstance(value, (Decimal, int)) and value < 0:
            raise ValueError("must not be negative")
        return value


class ModelCfg(Strict):
    name: str = Field(min_length=1, max_length=200)
    price: Price | None = None  # None: from the price database (aigate.config.price_db)


class TimeoutCfg(Strict):
    connect_s: float = Field(default=5, gt=0)
    first_byte_s: float = Field(default=60, gt=0)
    total_s: float = Field(default=300, gt=0)


class PlatformCfg(Strict):
    id: str = Field(pattern=NAME)
    type: PlatformType
    base_url: str = Field(min_length=1)
    api_key: str = ""
    models: list[str] = Field(min_length=1)
    priority: int = 0  # higher is tried first
    weight: int = Field(default=1, ge=1)
    timeout: TimeoutCfg = TimeoutCfg()
    model_mapping: dict[str, str] = {}
    max_concurrency: int | None = Field(default=None, ge=1)  # async jobs beyond it wait in `queueing`
    options: dict[str, Any] = {}  # azure api_version, extra headers, http_job submit/poll
    enabled: bool = True
    api_keys: list[str] = []  # several keys: calls rotate over the healthy ones (with api_key)

    def all_keys(self) -> tuple[str, ...]:
        """``api_key`` then ``api_keys``, without blanks or repeats."""
        return tuple(dict.fromkeys(k for k in (self.api_key, *self.api_keys) if k))

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class AssetCfg(Strict):
    name: str = Field(pattern=NAME)
    type: str = "consumable"
    initial_quantity: Quantity = Decimal(0)
    recoverable: bool = False
    recovery_period: int = Field(default=1, ge=1)  # days, aligned to 00:00 UTC
    recovery_quantity: Quantity = Decimal(0)
    valid_seconds: int = Field(default=0, ge=0)
    precision: int = Field(default=0, ge=0, le=6)  # decimal places; charges are rounded up to it

    low_quantity: Quantity | None = None  # `asset.low` when a balance drops to it


class CostCfg(Strict):
    """What a call costs (SPEC 12). One of three forms:

    * ``{asset, per_request}``: a flat charge, taken before the call, refunded on failure;
    * ``{asset, per_1k_input_tokens, per_1k_output_tokens, per_request?, hold?}``: by tokens;
    * ``{asset, per_used_amount, hold?}``: credits per unit of the call's ``used_amount``.

    The last two are usage-based: a hold is reserved before the call and settled after it.
    """

    asset: str
    per_request: Quantity | None = None
    per_1k_input_tokens: Quantity | None = None
    per_1k_output_tokens: Quantity | None = None
    per_used_amount: Quantity | None = None
    hold: Quantity | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CostCfg:
        tokens = self.per_1k_input_tokens is not None or self.per_1k_output_tokens is not None
        if self.per_used_amount is not None:
            if tokens or self.per_request is not None:
                raise ValueError("per_used_amount cannot be combined with per_request or per_1k_* prices")
        elif not tokens:
            if self.per_request is None:
                raise ValueError(
                    "one of per_request, per_1k_input_tokens/per_1k_output_tokens or per_used_amount is required"
                )
            if self.hold is not None:
                raise ValueError("hold applies only to usage-based costs (per_1k_* or per_used_amount)")
        return self

    @property
    def usage_based(self) -> bool:
        return (
            self.per_used_amount is not None
            or self.per_1k_input_tokens is not None
            or self.per_1k_output_tokens is not None
        )


class LimitCfg(Strict):
    count: int = Field(ge=1)
    period: Literal["minute", "hour", "day", "week", "month"] = "day"


class HistoryCfg(Strict):
    save: bool = False
    context_messages: int = Field(default=20, ge=0, le=1000)


class StrategyCfg(Strict):
    name: str = Field(pattern=NAME)
    module: Module = "chat"
    platforms: list[str] = []  # empty: every platform that serves the model
    model: str = Field(min_length=1)
    fallback_models: list[str] = []  # tried in order when every platform of `model` failed
    system_prompt: str = ""
    params: dict[str, Any] = {}
    response_format: Literal["", "json_object", "text"] = ""
    history: HistoryCfg = HistoryCfg()
    cost: CostCfg | None = None
    limit: LimitCfg | None = None
    request: dict[str, Any] | None = None  # non-chat modules: the upstream body template
    custom_response: dict[str, str] = {}  # field -> JMESPath over the raw upstream response
    enabled: bool = True


class ImageUrl(Strict):
    url: str = ""


class ContentPart(Strict):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class InstructionMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str | None = None
    multi_content: list[ContentPart] | None = None


class InstructionCfg(Strict):
    name: str = Field(pattern=NAME)
    model: str = Field(min_length=1)
    platforms: list[str] = []
    max_token: int = Field(default=1000, ge=1)
    temperature: float = Field(default=1, ge=0, le=2)
    response_format: Literal["", "json_object", "text"] = ""
    messages: list[InstructionMessage] = Field(min_length=1)
    cost: CostCfg | None = None
    limit: LimitCfg | None = None


class ServerKeyCfg(Strict):
    name: str = Field(pattern=NAME)
    key: str = Field(min_length=16)


class RelayTokenCfg(Strict):
    name: str = Field(pattern=NAME)
    key: str = Field(min_length=16)
    models: list[str] = []
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    spend_limit: Decimal | None = Field(default=None, ge=0)
    expires_at: datetime | None = None
    enabled: bool = True


WebhookEvent = Literal["ai_request.succeeded", "ai_request.failed", "asset.low", "platform.down", "platform.up"]


class WebhookCfg(Strict):
    """One endpoint of an app; deliveries are signed per Standard Webhooks with ``secret``
    (``whsec_`` + base64 of 24 to 64 random bytes, the spec's form)."""

    url: str = Field(min_length=1, max_length=2000)
    events: list[WebhookEvent] = Field(min_length=1)
    secret: str
    allow_private: bool = False  # allow loopback / private / link-local targets
    enabled: bool = True

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        import base64
        import binascii

        if not value.startswith("whsec_"):
            raise ValueError("must start with whsec_ (then base64 of 24 to 64 random bytes)")
        try:
            raw = base64.b64decode(value[6:], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be whsec_ followed by base64") from None
        if not 24 <= len(raw) <= 64:
            raise ValueError("must hold 24 to 64 bytes after whsec_")
        return value

    @model_validator(mode="after")
    def _public_target(self) -> WebhookCfg:
        if not self.allow_private and is_private_url(self.url):
            raise ValueError(f"url: {self.url} is a loopback or private address; set allow_private: true to allow it")
        return self


# --- clients in the wild (SPEC §10): browsers, identity providers, attestation, edge limits

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
USER_PREFIX = r"^[A-Za-z0-9_.:@|-]{0,64}$"
HEADER_NAME = r"^[A-Za-z0-9-]{1,100}$"
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?$")


def is_loopback_url(url: str) -> bool:
    import ipaddress

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CorsCfg(Strict):
    """Browser origins allowed to call the client App API (``/bp/ai/...``) for this app."""

    origins: list[str] = []
    max_age_s: int = Field(default=600, ge=0, le=86_400)

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        out = []
        for origin in value:
            origin = origin.rstrip("/")
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] in lower case, no path, no wildcard, not 'null'"
                )
            out.append(origin)
        return out


class TokenIssuerCfg(Strict):
    """Who signs a JWT and how it is checked: a JWKS URL (asymmetric keys) or a shared secret
    (HMAC). The verifier and its algorithms come from here, never from the token."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str | None = None
    secret: str | None = Field(default=None, min_length=32)
    algorithms: list[str] | None = None  # default: [RS256, ES256] with jwks_url, [HS256] with secret
    allow_private: bool = False  # let jwks_url reach loopback / private / link-local addresses

    @model_validator(mode="after")
    def _verifier(self):
        if (self.jwks_url is None) == (self.secret is None):
            raise ValueError("exactly one of jwks_url and secret is required")
        if self.jwks_url is not None:
            if not (
                self.jwks_url.startswith("https://")
                or (self.jwks_url.startswith("http://") and is_loopback_url(self.jwks_url))
            ):
                raise ValueError("jwks_url: must be https:// (http:// only on a loopback address)")
            if not self.allow_private and is_private_url(self.jwks_url):
                raise ValueError(
                    f"jwks_url: {self.jwks_url} is a loopback or private address; set allow_private: true to allow it"
                )
        allowed = ASYMMETRIC_ALGORITHMS if self.jwks_url is not None else HMAC_ALGORITHMS
        for alg in self.algorithms or ():
            if alg not in allowed:
                kind = "a JWKS issuer" if self.jwks_url is not None else "a secret"
                raise ValueError(f"algorithms: {alg!r} cannot be used with {kind} (allowed: {', '.join(allowed)})")
        if self.algorithms is not None and not self.algorithms:
            raise ValueError("algorithms: must not be empty")
        return self

    @property
    def allowed_algorithms(self) -> tuple[str, ...]:
        if self.algorithms:
            return tuple(self.algorithms)
        return ("RS256", "ES256") if self.jwks_url is not None else ("HS256",)


class UserTokenIssuerCfg(TokenIssuerCfg):
    """An identity provider whose tokens identify this app's end users."""

    user_claim: str = Field(default="sub", min_length=1)
    user_prefix: str = Field(default="", pattern=USER_PREFIX)
    required_claims: dict[str, Any] = {}  # e.g. {email_verified: true}


class AttestationCfg(TokenIssuerCfg):
    """App attestation (Firebase App Check, or any JWT attestation service)."""

    header: str = Field(default="X-Firebase-AppCheck", pattern=HEADER_NAME)
    required: bool = True
    monitor: bool = False  # with required: false, count what would have been refused
    consume_once: bool = False  # refuse a token's jti seen before (until its exp)


class RateLimitsCfg(Strict):
    """Edge limits of client (user-token) calls, checked before any metering."""

    per_user_rpm: int | None = Field(default=None, ge=1)
    per_ip_rpm: int | None = Field(default=None, ge=1)
    max_concurrent_streams_per_user: int | None = Field(default=None, ge=1)


class PreviousSecretCfg(Strict):
    """A user-token secret still accepted until ``expires_at`` (rotation without sign-outs)."""

    secret: str = Field(min_length=32)
    expires_at: datetime


class ClientTrustCfg(Strict):
    """The SPEC §10 settings of an app, stored together in the app's row."""

    previous_user_token_secrets: list[PreviousSecretCfg] = []
    cors: CorsCfg | None = None
    user_tokens: list[UserTokenIssuerCfg] = []
    attestation: AttestationCfg | None = None
    rate_limits: RateLimitsCfg = RateLimitsCfg()


class AppCfg(Strict):
    id: str = Field(pattern=APP_ID)
    name: str = ""
    server_keys: list[ServerKeyCfg] = []
    user_token_secret: str = Field(min_length=32)  # HS256 wants at least 32 bytes
    assets: list[AssetCfg] = []
    strategies: list[StrategyCfg] = []
    instructions: list[InstructionCfg] = []
    relay_tokens: list[RelayTokenCfg] = []
    enabled: bool = True
    webhooks: list[WebhookCfg] = []
    previous_user_token_secrets: list[PreviousSecretCfg] = []
    cors: CorsCfg | None = None
    user_tokens: list[UserTokenIssuerCfg] = []
    attestation: AttestationCfg | None = None
    rate_limits: RateLimitsCfg = RateLimitsCfg()

    def client_trust(self) -> ClientTrustCfg:
        return ClientTrustCfg(**{name: getattr(self, name) for name in ClientTrustCfg.model_fields})


class SimulatorCfg(Strict):
    """Start the provider simulator inside the gateway (the offline demo)."""

    enabled: bool = False
    listen: str = "127.0.0.1:8090"
    latency_ms: int = Field(default=0, ge=0)


class RelayCfg(Strict):
    # /v1/audio/transcriptions uploads: larger bodies are refused with 413; parts over
    # 1 MiB are spooled to disk, never held whole in memory
    audio_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)


class CreditsCfg(Strict):
    """Holds of usage-based costs: how long a hold's lease lasts without renewal, and how
    often each instance sweeps holds whose lease lapsed (their instance died)."""

    hold_lease_s: float = Field(default=60, gt=0)
    sweep_interval_s: float = Field(default=15, gt=0)


class HealthCfg(Strict):
    """When a platform (or one of its keys) leaves rotation, and how it comes back."""

    failures: int = Field(default=3, ge=1)  # failures in a row that take it out
    probe_interval_s: float = Field(default=30, gt=0)
    recoveries: int = Field(default=2, ge=1)  # good probes in a row that bring it back
    cooldown_s: float = Field(default=5, ge=0)  # a 429 without Retry-After cools a key this long


class TelemetryCfg(Strict):
    otlp_endpoint: str = ""  # e.g. http://127.0.0.1:4318/v1/traces; empty: no traces
    capture_content: bool = False  # put prompts and replies on spans
    service_name: str = "aigate"


class WebhookDeliveryCfg(Strict):
    """Retry schedule of webhook deliveries (Standard Webhooks' own by default)."""

    retry_delays_s: list[float] = Field(default=[5, 300, 1800, 7200, 18000, 36000, 36000], min_length=1)
    give_up_after_s: float = Field(default=86400, gt=0)
    timeout_s: float = Field(default=15, gt=0)


class Config(Strict):
    server: ServerCfg = ServerCfg()
    simulator: SimulatorCfg = SimulatorCfg()
    database: DatabaseCfg = DatabaseCfg()
    redis: RedisCfg = RedisCfg()
    logs: LogsCfg = LogsCfg()
    writer: WriterCfg = WriterCfg()
    models: list[ModelCfg] = []
    platforms: list[PlatformCfg] = []
    apps: list[AppCfg] = []
    relay: RelayCfg = RelayCfg()
    credits: CreditsCfg = CreditsCfg()

    health: HealthCfg = HealthCfg()
    telemetry: TelemetryCfg = TelemetryCfg()
    webhook_delivery: WebhookDeliveryCfg = WebhookDeliveryCfg()
