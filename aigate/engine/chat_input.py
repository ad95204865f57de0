"""Validating the body of ``POST .../ai/chat`` (seed 002): every error names its field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aigate.errors import invalid

ROLES = ("system", "user", "assistant")
KNOWN_FIELDS = {"strategy", "messages", "response_format", "parameters", "chat_id"}


@dataclass(slots=True)
class ChatInput:
    strategy: str
    messages: list[dict[str, Any]]
    response_format: str
    parameters: dict[str, Any]
    chat_id: str


def _part(part: Any, path: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid(f"{path}: must be an object")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise invalid(f"{path}.text: must be a string")
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(image, dict) or not isinstance(url, str) or not url:
            raise invalid(f"{path}.image_url.url: must be a non-empty string")
        return {"type": "image_url", "image_url": dict(image)}
    raise invalid(f"{path}.type: must be 'text' or 'image_url'")


def validate_messages(value: Any, path: str = "messages") -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid(f"{path}: must be a list of messages")
    if not value:
        raise invalid(f"{path}: must not be empty")
    out = []
    for i, msg in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(msg, dict):
            raise invalid(f"{where}: must be an object")
        role = msg.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role: must be one of {', '.join(ROLES)}")
        content = msg.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list) and content:
            out.append({"role": role, "content": [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]})
        else:
            raise invalid(f"{where}.content: must be a string or a non-empty list of content parts")
    return out


def parse_chat_input(body: dict[str, Any]) -> ChatInput:
    strategy = body.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise invalid("strategy: required, a non-empty string")
    if "messages" not in body:
        raise invalid("messages: required")
    messages = validate_messages(body["messages"])
    response_format = body.get("response_format") or ""
    if isinstance(response_format, dict):  # accept OpenAI's {"type": "json_object"} too
        response_format = response_format.get("type", "")
    if response_format not in ("", "text", "json_object"):
        raise invalid("response_format: must be 'json_object' or empty")
    parameters = body.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise invalid("parameters: must be an object")
    chat_id = body.get("chat_id") or ""
    if not isinstance(chat_id, str) or len(chat_id) > 64:
        raise invalid("chat_id: must be a string")
    return ChatInput(strategy, messages, response_format, parameters, chat_id)


def first_user_text(messages: list[dict[str, Any]]) -> str:
    for msg in messages:
        if msg["role"] != "user":
            continue
        content = msg["content"]
        if isinstance(content, str):
            return content
        for part in content:
            if part["type"] == "text":
                return part["text"]
    return ""
