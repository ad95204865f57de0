"""The writer's local append-only journal: where rows go when the database is down and
the writer's queue is full, so no request waits for the database to come back.

One file per process (``<dir>/<host>-<pid>-<random>.jsonl``), held under an exclusive
``flock`` while the process lives. Each line is one row, serialised with orjson:
``{"s": seq, "k": kind, "r": row}``; ``seq`` grows for the file's whole life. Rows are
appended in batches, each followed by one ``fsync``.

Replay is idempotent: every replayed chunk commits, in the same transaction as its rows,
the highest ``seq`` it covered into ``writer_journal`` (one row per journal file), and
replay skips what that row says is done, so a crash between the commit and the file's
truncation does not write a row twice. A journal whose lock can be taken belongs to a
process that is gone: the writer replays it at start-up and deletes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("aigate.writer")

Entry = tuple[int, str, dict[str, Any]]  # (seq, kind, row)

PROGRESS_SQL = (
    "INSERT INTO writer_journal (name, replayed_through) VALUES (:name, :seq) "
    "ON CONFLICT (name) DO UPDATE SET replayed_through = excluded.replayed_through"
)
PROGRESS_READ_SQL = "SELECT replayed_through FROM writer_journal WHERE name = :name"
PROGRESS_DELETE_SQL = "DELETE FROM writer_journal WHERE name = :name"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):  # money: kept exact, as the sinks accept it (a string)
        return format(value, "f")
    raise TypeError(f"cannot journal a {type(value).__name__}")


def encode(entries: list[Entry]) -> bytes:
    """The entries as journal lines; a row that cannot be serialised is logged with its
    content and left out (it could not be replayed either)."""
    lines = []
    for s, k, r in entries:
        try:
            lines.append(orjson.dumps({"s": s, "k": k, "r": r}, default=_default, option=orjson.OPT_APPEND_NEWLINE))
        except TypeError as exc:
            log.error("row cannot be journaled (%s): %s %r", exc, k, r)
    return b"".join(lines)


class JournalFile:
    """One journal file; its methods block (file I/O), so callers run them in a thread."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.name = path.stem
        self._fd = fd
        self.read_offset = 0

    @classmethod
    def create(cls, directory: Path) -> JournalFile:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        path = directory / f"{name}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _fsync_dir(directory)
        return cls(path, fd)

    @classmethod
    def claim(cls, path: Path) -> JournalFile | None:
        """Open another process's journal if that process is gone (its lock is free)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # alive: it replays its own journal
            os.close(fd)
            return None
        return cls(path, fd)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def read(self, max_rows: int) -> list[Entry]:
        """Up to ``max_rows`` whole lines from the read offset on (a torn last line, from a
        crash in the middle of an append, is left unread)."""
        out: list[Entry] = []
        with open(self.path, "rb") as f:
            f.seek(self.read_offset)
            while len(out) < max_rows:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break
                self.read_offset += len(line)
                try:
                    doc = orjson.loads(line)
                    out.append((int(doc["s"]), str(doc["k"]), doc["r"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.error("unreadable journal line skipped in %s: %r", self.path, line[:200])
        return out

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self) -> None:
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.read_offset = 0

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1


def orphans(directory: Path, own: str | None) -> list[Path]:
    """Journal files in ``directory`` other than this process's own."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.jsonl") if p.stem != own)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
