"""The shape of aigate's configuration: the YAML file and the Admin API share it.

Every model forbids unknown fields, so a typo is an error that names its path instead of
a setting silently ignored.
"""
from __future__ import annotations

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

NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
APP_ID = r"^[A-Za-z0-9_-]{1,64}$"

Module = Literal["chat", "image", "video", "audio", "embedding"]
PlatformType = Literal[
    "openai", "azure_openai", "anthropic", "gemini", "openai_compatible", "http_job"
]


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# A credit quantity: exact, at most 6 decimal places (the store keeps millionths), never
# negative, a JSON number in dumps (``50`` stays ``50``); one JSON schema for input and output.
Quantity = Annotated[Decimal, Field(ge=0, decimal_places=6), PlainSerializer(_json_number, when_used="json"),
                     WithJsonSchema({"type": "number", "minimum": 0})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerCfg(Strict):
    listen: str = "127.0.0.1:8080"
    admin_key: str = ""
    worker_id: int | None = Field(default=None, ge=0, le=1023)  # snowflake worker; derived if unset
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    instance_name: str = ""


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
                raise ValueError("one of per_request, per_1k_input_tokens/per_1k_output_tokens "
                                 "or per_used_amount is required")
            if self.hold is not None:
                raise ValueError("hold applies only to usage-based costs (per_1k_* or per_used_amount)")
        return self

    @property
    def usage_based(self) -> bool:
        return (self.per_used_amount is not None or self.per_1k_input_tokens is not None
                or self.per_1k_output_tokens is not None)


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


WebhookEvent = Literal[
    "ai_request.succeeded", "ai_request.failed", "asset.low", "platform.down", "platform.up"
]


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
        if not self.allow_private and is_private_host(urlsplit(self.url).hostname or ""):
            raise ValueError(f"url: {self.url} is a loopback or private address; set allow_private: true "
                             "to allow it")
        return self


def is_private_host(host: str) -> bool:
    """A literal loopback / private / link-local / reserved address, or ``localhost``.
    (Names are checked again when delivering: ``aigate.engine.webhooks``.)"""
    import ipaddress

    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not addr.is_global or addr.is_multicast

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


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
