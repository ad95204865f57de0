"""Offline token counting with tiktoken's own encodings (``o200k_base``, ``cl100k_base``).

Used where an upstream reports no usage (the count is then marked estimated) and to size
a usage-based call's credit hold from its prompt. tiktoken normally downloads its
encoding files on first use; aigate ships them instead, in ``tiktoken_cache/``, under the
cache names tiktoken itself uses (the SHA-1 of the download URL). They are the files
OpenAI publishes, byte for byte, as carried by the ``litellm`` wheel on PyPI; each is
checked against the SHA-256 that tiktoken publishes for it before tiktoken sees it, and
tiktoken checks it again. Nothing is ever fetched at run time: a missing or altered file
is an error, not a download.

For non-OpenAI models the count is an approximation (their tokenizers differ); OpenAI
models get the encoding tiktoken names for them, anything unknown gets ``o200k_base``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.model import encoding_name_for_model

CACHE_DIR = Path(__file__).with_name("tiktoken_cache")
URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

# The SHA-256 of each encoding file as published in tiktoken (tiktoken_ext/openai_public.py).
PUBLISHED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
DEFAULT_ENCODING = "o200k_base"

# OpenAI's chat format: each message costs a few framing tokens, the reply's priming three.
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3

_load_lock = threading.Lock()


class EncodingFileError(RuntimeError):
    """A shipped encoding file is missing or is not the published one."""


def cache_file(name: str) -> Path:
    """Where the shipped file of encoding ``name`` lives (tiktoken's cache key for its URL)."""
    return CACHE_DIR / hashlib.sha1(URL.format(name).encode()).hexdigest()


def verify(name: str) -> Path:
    """The shipped file of ``name``, after checking it against the published SHA-256."""
    path = cache_file(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EncodingFileError(f"encoding file for {name} is missing: {path}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != PUBLISHED_SHA256[name]:
        raise EncodingFileError(f"encoding file for {name} has SHA-256 {actual}, expected {PUBLISHED_SHA256[name]}")
    return path


@cache
def encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, built from the shipped, verified file."""
    if name not in PUBLISHED_SHA256:
        raise ValueError(f"unsupported encoding {name!r}")
    verify(name)
    # tiktoken reads its cache directory from the environment at call time: point it at
    # the shipped files for this one load only (the lock keeps concurrent loads apart).
    with _load_lock:
        saved = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(CACHE_DIR)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if saved is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved


@lru_cache(maxsize=1024)
def encoding_name(model: str) -> str:
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING
    return name if name in PUBLISHED_SHA256 else DEFAULT_ENCODING


def count_text(text: str, model: str = "") -> int:
    """Tokens of ``text`` (special-token text counts as plain text)."""
    if not text:
        return 0
    return len(encoding(encoding_name(model) if model else DEFAULT_ENCODING).encode_ordinary(text))


def _message_text(msg: dict[str, Any]) -> list[str]:
    out: list[str] = []
    content = msg.get("content")
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        out.append(fn.get("name") or "")
        out.append(fn.get("arguments") or "")
    return out


def count_messages(messages: list[dict[str, Any]], model: str = "") -> int:
    """Prompt tokens of OpenAI-shaped chat messages, framing included (images not counted)."""
    if not messages:
        return 0
    total = REPLY_PRIMING
    for msg in messages:
        total += PER_MESSAGE + count_text(str(msg.get("role") or ""), model)
        if msg.get("name"):
            total += PER_NAME + count_text(str(msg["name"]), model)
        for text in _message_text(msg):
            total += count_text(text, model)
    return total


def warm() -> None:
    """Load both encodings now (a second or so) rather than on the first estimate."""
    for name in PUBLISHED_SHA256:
        encoding(name)
