"""Reply text, token counting and chunking shared by every simulated wire format.

Everything here is deterministic so tests can predict the numbers exactly.

Reply: ``REPLY_PREFIX + " " +`` the first 12 whitespace-separated words of the last user
message (its text parts joined by spaces, ``[[sim ...]]`` directives removed), or
``"Simulated reply (aigate provider simulator)."`` when it has no words. JSON mode wraps
it as ``{"reply": <reply>, "simulated": true}``; the ``reply`` switch replaces it verbatim.
Streams split it with ``split_chunks`` (near-equal character slices), so the deltas
always join to the non-stream text.

Token rule (the same for every format, so one conversation costs the same everywhere):

* ``count_tokens(text) = ceil(len(text) / 4)`` (characters, not bytes; ``""`` is 0).
* prompt tokens = ``3`` per message + ``count_tokens(t)`` for every text ``t`` in it.
  A system prompt given outside the message list (Anthropic ``system``, Gemini
  ``systemInstruction``) counts as one more message. Images, files and other non-text
  parts count 0. Embedding inputs count ``count_tokens`` per input, without the ``3``.
* completion tokens = ``count_tokens(reply)``; for a tool call the "reply" is the
  function name followed by its arguments (``"{}"``).
* ``reasoning_tokens`` / ``cached_tokens`` switches are reported on top, following each
  provider's own arithmetic (see the format modules).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

REPLY_PREFIX = "Simulated reply (aigate provider simulator):"
ECHO_WORDS = 12  # how many words of the last user text the reply echoes
MESSAGE_OVERHEAD = 3  # tokens added per message

DIRECTIVE_OPEN = "[[sim "
DIRECTIVE_CLOSE = "]]"


def count_tokens(text: str) -> int:
    """Deterministic token estimate: one token per started group of 4 characters."""
    return (len(text) + 3) // 4


def strip_directives(text: str) -> str:
    """Remove ``[[sim ...]]`` directives so the reply does not echo them."""
    while True:
        start = text.find(DIRECTIVE_OPEN)
        if start < 0:
            return text
        end = text.find(DIRECTIVE_CLOSE, start)
        if end < 0:
            return text[:start]
        text = text[:start] + text[end + len(DIRECTIVE_CLOSE) :]


def echo_reply(user_text: str) -> str:
    """The default reply: a fixed prefix plus the first words of the last user text."""
    if DIRECTIVE_OPEN in user_text:
        user_text = strip_directives(user_text)
    words = user_text.split()[:ECHO_WORDS]
    if not words:
        return REPLY_PREFIX[:-1] + "."
    return f"{REPLY_PREFIX} {' '.join(words)}"


def filler(chars: int) -> str:
    """A reply of exactly ``chars`` characters (long streams: one delta per few characters)."""
    words = "The quick brown fox jumps over the lazy dog. "
    return (words * (chars // len(words) + 1))[:chars]


def json_reply(text: str) -> str:
    """The reply used in JSON mode: a JSON object string wrapping the plain reply."""
    return orjson.dumps({"reply": text, "simulated": True}).decode()


def make_reply(override: str | None, user_text: str, json_mode: bool = False) -> str:
    """The assistant text: the ``reply`` switch verbatim, else the (JSON-wrapped) echo."""
    if override is not None:
        return override
    reply = echo_reply(user_text)
    return json_reply(reply) if json_mode else reply


def fault_message(status: int) -> str:
    """The error message of a ``status`` switch response."""
    return f"Simulated HTTP {status} error (aigate provider simulator)."


_ID_PREFIX = os.urandom(4).hex()  # keeps ids distinct across simulator restarts
_ID_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id such as ``chatcmpl-sim1a2b3c4d000001`` (cheaper than random ids)."""
    return f"{prefix}{_ID_PREFIX}{next(_ID_COUNTER):06x}"


def split_chunks(text: str, n: int) -> list[str]:
    """Split ``text`` into at most ``n`` non-empty pieces of near-equal length.

    ``"".join(split_chunks(t, n)) == t`` always; an empty text gives one empty piece.
    """
    size = len(text)
    n = max(1, min(n, size))
    if n == 1:
        return [text]
    bounds = [i * size // n for i in range(n + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(n)]


def part_texts(content: Any) -> Iterator[str]:
    """Texts in an OpenAI or Anthropic message ``content`` (string or list of parts)."""
    if isinstance(content, str):
        yield content
        return
    if not isinstance(content, list):
        return
    for part in content:
        if not isinstance(part, dict):
            continue
        text = part.get("text")
        if isinstance(text, str):
            yield text
        elif part.get("type") == "tool_result":  # Anthropic: nested string or blocks
            yield from part_texts(part.get("content"))


def prompt_tokens(messages: Iterable[Iterable[str]]) -> int:
    """Prompt tokens for messages given as iterables of their texts (see module rule)."""
    total = 0
    for texts in messages:
        total += MESSAGE_OVERHEAD
        for text in texts:
            total += count_tokens(text)
    return total


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit-length vector seeded by a hash of ``text``: same text, same vector."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")
    rng = random.Random(seed)
    values = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
