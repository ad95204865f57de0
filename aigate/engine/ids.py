"""Identifiers: snowflake request ids and chat ids."""

from __future__ import annotations

import secrets
import string
import threading
import time

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
_SEQ_MASK = (1 << SEQUENCE_BITS) - 1

_CHAT_ALPHABET = string.ascii_letters + string.digits
_CHAT_ID_LENGTH = 18
_CHAT_ID_SPACE = len(_CHAT_ALPHABET) ** _CHAT_ID_LENGTH


class Snowflake:
    """64-bit ids: 41 bits of milliseconds, 10 bits of worker, 12 bits of sequence.

    Unique across instances as long as each instance has its own worker id (from the
    config, or leased from Redis at start-up), and sortable by creation time.
    """

    def __init__(self, worker_id: int) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be 0..{MAX_WORKER}")
        self.worker_id = worker_id
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now = time.time_ns() // 1_000_000
            if now < self._last_ms:  # clock moved back: keep counting from the last time
                now = self._last_ms
            if now == self._last_ms:
                self._seq = (self._seq + 1) & _SEQ_MASK
                if self._seq == 0:  # 4096 ids in one ms: wait for the next one
                    while now <= self._last_ms:
                        now = time.time_ns() // 1_000_000
            else:
                self._seq = 0
            self._last_ms = now
            return ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | self._seq


def snowflake_ms(value: int) -> int:
    """The creation time (ms since the Unix epoch) encoded in a snowflake."""
    return (value >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


def new_chat_id() -> str:
    """18 letters and digits, like ``CtESPJTMUWJ2R6RDSW``."""
    # one draw from the OS for the whole id (a draw per letter cost 18 system calls),
    # written out in base 62: every id equally likely
    n = secrets.randbelow(_CHAT_ID_SPACE)
    letters = []
    for _ in range(_CHAT_ID_LENGTH):
        n, digit = divmod(n, len(_CHAT_ALPHABET))
        letters.append(_CHAT_ALPHABET[digit])
    return "".join(letters)


async def lease_worker_id(redis) -> int:
    """A worker id that no other live instance sharing this Redis uses."""
    n = await redis.incr("aigate:worker_seq")
    return int(n) % (MAX_WORKER + 1)


def random_worker_id() -> int:
    return secrets.randbelow(MAX_WORKER + 1)
