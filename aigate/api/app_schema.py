"""The App API's shapes (SPEC §5, seeds 000 and 002), defined once as pydantic models.

The OpenAPI document (``app_openapi``) is generated from these models and from the
route table, and the contract tests validate live responses against that document, so
a response that drifts from a model here fails a test. Request models accept fields
they do not know (the handlers ignore them); response models forbid them, so the
document states each response exactly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ISO_TIME = "ISO 8601 UTC time with Z, e.g. 2025-04-28T02:27:08.523Z"
STATUS_PATTERN = r"^(succeeded|failed|processing|pending|queueing)(,(succeeded|failed|processing|pending|queueing))*$"


class Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- messages (OpenAI format)


class TextPart(Response):
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str = Field(min_length=1)


class ImageUrlPart(Response):
    type: Literal["image_url"]
    image_url: ImageUrl


class Message(Response):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart | ImageUrlPart] = Field(
        description="Text, or a non-empty list of content parts (text and image_url)."
    )


class Reply(Response):
    role: Literal["assistant"]
    content: str


class Tokens(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Asset(Response):
    """One of the user's balances (seed 002 ``asset``), recovery applied."""

    last_recovery_time: str = Field(description=f'{ISO_TIME} (seconds), or "" before the first recovery')
    name: str
    quantity: float = Field(description="The balance; a whole number unless the asset has a precision")
    recoverable: bool
    recovery_period: int = Field(description="Days between recoveries (aligned to 00:00 UTC)")
    recovery_quantity: float
    type: str
    valid_seconds: int


# --- chat


class ChatRequest(Request):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "strategy": "free-normal",
                    "parameters": {"example_string": "a teacher"},
                    "messages": [{"role": "user", "content": "hello"}],
                }
            ]
        },
    )

    strategy: str = Field(min_length=1, description="The strategy's name")
    messages: list[Message] = Field(min_length=1)
    response_format: Literal["", "text", "json_object"] | None = Field(
        default=None, description="json_object forces a JSON reply"
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="Variables of the strategy's system prompt template"
    )
    chat_id: str | None = Field(default=None, max_length=64, description="Continue this saved chat")


class ChatResponse(Response):
    asset: list[Asset] = Field(description="The user's assets after this call")
    chat_id: str = Field(description='The saved chat (new when none was sent); "" when the strategy saves none')
    current_count: int = Field(description="Calls of this strategy in the current limit period, this one included")
    current_total_count: int = Field(description="Calls of this strategy, all time")
    reply: Reply
    tokens: Tokens
    user_surplus_count: int = Field(description="Calls left in the period; -1 when the strategy has no limit")


class ChatDelta(Response):
    """``data`` of an ``ai_chat_msg`` event that carries a piece of the reply."""

    chat_id: str
    content: str = Field(description="The next piece of the reply, as the upstream produced it")
    is_finish: Literal[False]


class ChatFinish(Response):
    """``data`` of the last ``ai_chat_msg`` event: the stream ended normally."""

    chat_id: str
    content: Literal[""]
    is_finish: Literal[True]
    asset: list[Asset]
    current_count: int
    current_total_count: int
    tokens: Tokens
    user_surplus_count: int


class ErrorDetail(Response):
    error_type: str = Field(description="One of the error types of this API")
    message: str = Field(description="What went wrong; names the offending field")


class ErrorResponse(Response):
    error: ErrorDetail


# The events of a chat stream: (event name, the JSON in its data, what it means).
STREAM_EVENTS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("ai_chat_msg", ChatDelta, "A piece of the reply."),
    ("ai_chat_msg", ChatFinish, "The last event of a stream that ended well (is_finish: true)."),
    ("ai_chat_error", ErrorResponse, "The stream failed after it started; it closes after this event."),
)


# --- chat history


class ChatHistoryQuery(Request):
    chat_id: str = Field(min_length=1)
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=10, ge=1, le=100)


class ChatExchange(Response):
    chat_id: str
    app_id: str
    user_id: str
    token: int = Field(description="Tokens the exchange used")
    strategy: str
    role: str
    messages: list[Message] = Field(description="The user turn(s) and the assistant's reply")
    sys_created_time: str = Field(description=ISO_TIME)
    sys_updated_time: str = Field(description=ISO_TIME)


class ChatHistoryResponse(Response):
    chat_histories: list[ChatExchange] = Field(description="Newest first")
    total_chat: int


class ChatsQuery(Request):
    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=10, ge=1, le=100)


class ChatSummary(Response):
    chat_id: str
    strategy: str
    title: str = Field(description="The first user message, cut to 100 characters")
    sys_created_time: str = Field(description=ISO_TIME)
    sys_updated_time: str = Field(description=ISO_TIME)


class ChatsResponse(Response):
    chats: list[ChatSummary] = Field(description="Newest first")
    total: int


class ChatDeleteRequest(Request):
    chat_ids: list[str] = Field(min_length=1, max_length=1000)


# --- instruction


class InstructionRequest(Request):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"name": "test", "parameters": {"role": "doctor", "question": "H1N1"}}]},
    )

    name: str = Field(min_length=1, description="The instruction's name")
    parameters: dict[str, Any] | None = Field(default=None, description="Variables of its message templates")


class InstructionContent(Response):
    content: str


class InstructionResponse(Response):
    instruction: InstructionContent
    usage: Tokens


# --- assets


class AssetsResponse(Response):
    asset: list[Asset]


class GrantRequest(Request):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"asset": "ai_credit", "quantity": 100, "idempotency_key": "order-42"}]},
    )

    asset: str = Field(min_length=1, description="The asset's name, e.g. ai_credit")
    quantity: int = Field(gt=0)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="The same key twice grants once (e.g. the order id)"
    )


class GrantResponse(Response):
    granted: bool = Field(description="false when this idempotency key was already used")
    asset: list[Asset]


# --- user tokens (app server only)


class TokenRequest(Request):
    ttl_seconds: int = Field(default=3600, ge=1, le=31_536_000)


class TokenResponse(Response):
    token: str = Field(description="An HS256 JWT for this user (claims app_id, sub, exp, iat, jti)")
    expires_at: str = Field(description=ISO_TIME)


class TokensRevoked(Response):
    user_id: str
    revoked_at: str = Field(description=f"{ISO_TIME}: tokens issued at or before it are refused")


# --- AI requests (seed 000)


class AiRequestSubmit(Request):
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"strategy": "dell-3", "parameters": {"prompt": "a red fox"}}]}
    )

    strategy: str = Field(min_length=1)
    parameters: dict[str, Any] | None = Field(default=None, description="Variables of the strategy's templates")


class UnitPrice(Response):
    input_per_price: float
    output_per_price: float
    input_token: int
    output_token: int


class AiRequestRecord(Response):
    request_id: str = Field(description="Snowflake id")
    platform_id: str = Field(description="Id of the upstream call (the usage log's request id)")
    platform: str = Field(description="Platform type")
    module: str = Field(description="chat, image, video, audio, embedding")
    strategy: str
    status: Literal["pending", "queueing", "processing", "succeeded", "failed"]
    response: str = Field(description="The raw upstream response, as a JSON string")
    error: str
    unit_price: UnitPrice
    custom_response: dict[str, Any] | None = Field(description="Fields the strategy extracts from the response")
    created_time: str = Field(description=ISO_TIME)
    updated_time: str = Field(description=ISO_TIME)


class AiRequestHistoryQuery(Request):
    page: int = Field(ge=1, le=100)
    page_size: int = Field(ge=1, le=1000)
    start_time: int | None = Field(default=None, description="Exclusive lower bound, ms since the epoch")
    end_time: int | None = Field(default=None, description="Exclusive upper bound, ms since the epoch")
    status: str | None = Field(default=None, pattern=STATUS_PATTERN, description="Comma-separated statuses, no spaces")
    from_appserver: Literal["true", "false"] | None = Field(
        default=None, description="true: only calls through the app server API; false: only the client's"
    )


class AiRequestHistory(Response):
    data: list[AiRequestRecord] = Field(description="Newest first")
    has_more: bool


class AiRequestDelete(Request):
    request_ids: list[str] = Field(min_length=1, max_length=1000)
