"""Platform type -> chat adapter.

Adapters are stateless, so one instance per wire format serves every platform.
``http_job`` platforms have no chat adapter: use ``aigate.providers.http_job``.
"""

from __future__ import annotations

from .anthropic import AnthropicChat
from .base import ChatProvider
from .gemini import GeminiChat
from .openai import OpenAIChat

_openai = OpenAIChat()

_PROVIDERS: dict[str, ChatProvider] = {
    "openai": _openai,
    "openai_compatible": _openai,
    "azure_openai": _openai,
    "anthropic": AnthropicChat(),
    "gemini": GeminiChat(),
}

# What each platform type can do, defined here once.
CHAT_TYPES = frozenset(_PROVIDERS)  # has a chat adapter
OPENAI_FORMAT = frozenset({"openai", "azure_openai", "openai_compatible"})  # OpenAI's wire format:
# images, embeddings, speech, and answers passed through byte for byte
JOB_TYPES = frozenset({"http_job"})  # async submit/poll APIs (aigate.providers.http_job)


def chat_provider(platform_type: str) -> ChatProvider:
    """The chat adapter for a platform type; ``KeyError`` for unknown types."""
    try:
        return _PROVIDERS[platform_type]
    except KeyError:
        raise KeyError(f"no chat adapter for platform type {platform_type!r}") from None
