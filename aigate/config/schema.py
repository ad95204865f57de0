"""The shape of aigate's configuration: the YAML file and the Admin API share it.

Every model forbids unknown fields, so a typo is an error that names its path instead of
a setting silently ignored.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
APP_ID = r"^[A-Za-z0-9_-]{1,64}$"

Module = Literal["chat", "image", "video", "audio", "embedding"]
PlatformType = Literal[
    "openai", "azure_openai", "anthropic", "gemini", "openai_compatible", "http_job"
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerCfg(Strict):
    listen: str = "127.0.0.1:8080"
    admin_key: str = ""
    worker_id: int | None = Field(default=None, ge=0, le=1023)  # snowflake worker; derived if unset
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    instance_name: str = ""
    trusted_proxies: list[str] = []  # proxies whose X-Forwarded-For/-Proto are believed (IPs or CIDRs)


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
    price: Price = Price()


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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class AssetCfg(Strict):
    name: str = Field(pattern=NAME)
    type: str = "consumable"
    initial_quantity: int = Field(default=0, ge=0)
    recoverable: bool = False
    recovery_period: int = Field(default=1, ge=1)  # days, aligned to 00:00 UTC
    recovery_quantity: int = Field(default=0, ge=0)
    valid_seconds: int = Field(default=0, ge=0)


class CostCfg(Strict):
    asset: str
    per_request: int = Field(ge=0)


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


class SimulatorCfg(Strict):
    """Start the provider simulator inside the gateway (the offline demo)."""

    enabled: bool = False
    listen: str = "127.0.0.1:8090"
    latency_ms: int = Field(default=0, ge=0)


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
