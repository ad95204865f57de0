"""The open-streams load side: N concurrent SSE streams over raw HTTP/1.1, as cheap as
Python gets, so that the gateway (not this process) is the first limit.

    python -m bench.stream_load --spec JSON --streams 1000 --ramp 2 --min-events 200

One connection per stream on uvloop, an ``asyncio.Protocol`` per connection, request
bytes built once per user id. Parsing is the minimum: the status line, whether the body
is chunked, chunk sizes, and ``\\n\\n`` event ends counted (events are never parsed).
Per stream: time to the first event after the request was written (TTFB), the gaps
between successive reads that carry at least one event end, the number of events and
how the stream ended. The N streams start evenly spread over ``--ramp`` seconds.

Prints one JSON object: percentiles over every stream, totals, errors by kind and this
process's own CPU seconds (so the harness can say when the load side was the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.client import percentiles

now = time.perf_counter  # loop.time() has 1 ms resolution under uvloop


class Run:
    """What every stream of one run reports into."""

    def __init__(self, min_events: int) -> None:
        self.min_events = min_events
        self.ttfb: list[float] = []
        self.gaps: list[float] = []
        self.durations: list[float] = []
        self.events = 0
        self.errors: dict[str, int] = {}
        self.open: set[StreamProto] = set()
        self.max_open = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class StreamProto(asyncio.Protocol):
    __slots__ = (
        "run",
        "request",
        "done",
        "transport",
        "sent",
        "head",
        "chunked",
        "need",
        "size_line",
        "trail",
        "last",
        "first",
        "events",
        "gaps",
        "result",
        "activity",
    )

    def __init__(self, run: Run, request: bytes, done: asyncio.Future) -> None:
        self.run = run
        self.request = request
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0
        self.head: bytes | None = b""  # None once the headers are parsed
        self.chunked = False
        self.need = 0  # bytes left in the current chunk (chunked bodies)
        self.size_line = b""  # a chunk-size line split between reads
        self.trail = False  # a single "\n" ended the last payload: an event end may straddle
        self.last = 0.0
        self.first = 0.0
        self.events = 0
        self.gaps: list[float] = []
        self.result: str | None = None
        self.activity = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)
        self.sent = self.activity = now()
        self.run.open.add(self)
        self.run.max_open = max(self.run.max_open, len(self.run.open))

    def data_received(self, data: bytes) -> None:
        t = self.activity = now()
        if self.head is not None:
            buf = self.head + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.head = buf
                return
            head = buf[:end].lower()
            self.head = None
            status = head[9:12]
            if status != b"200":
                self.finish("status " + status.decode(errors="replace"))
                return
            self.chunked = b"transfer-encoding: chunked" in head
            data = buf[end + 4 :]
            if not data:
                return
        payload = self.dechunk(data) if self.chunked else data
        if payload:
            n = payload.count(b"\n\n") + (1 if self.trail and payload[:1] == b"\n" else 0)
            self.trail = payload[-1:] == b"\n" and payload[-2:] != b"\n\n"
            if n:
                if self.events:
                    self.gaps.append(t - self.last)
                else:
                    self.first = t
                self.events += n
                self.last = t
        if self.result is None and self.chunked and self.need == -1:  # the last chunk arrived
            self.finish("ok")

    def dechunk(self, data: bytes) -> bytes:
        out = []
        i, n = 0, len(data)
        while i < n and self.need != -1:
            if self.need > 0:
                take = min(self.need, n - i)
                out.append(data[i : i + take])
                self.need -= take
                i += take
                if self.need == 0:
                    self.need = -2  # the CRLF after the chunk
                continue
            if self.need == -2:  # skip the CRLF after a chunk's data (it may be split)
                if data[i : i + 1] == b"\r":
                    i += 1
                    continue
                if data[i : i + 1] == b"\n":
                    i += 1
                    self.need = 0
                    continue
                self.need = 0
            nl = data.find(b"\n", i)
            if nl < 0:
                self.size_line += data[i:]
                break
            line = self.size_line + data[i:nl]
            self.size_line = b""
            i = nl + 1
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self.need = -1  # end of body
                break
            self.need = size
        return b"".join(out) if len(out) != 1 else out[0]

    def connection_lost(self, exc) -> None:
        if self.result is None:
            if exc is not None:
                self.finish(type(exc).__name__)
            elif self.chunked or self.head is not None:
                self.finish("closed early")
            else:  # a body delimited by the connection's close
                self.finish("ok")

    def finish(self, result: str) -> None:
        if self.result is not None:
            return
        self.result = result
        run = self.run
        run.open.discard(self)
        if self.transport is not None:
            self.transport.close()
        if result == "ok" and self.events < run.min_events:
            result = "too few events"
        if result != "ok":
            run.error(result)
        else:
            run.ttfb.append(self.first - self.sent)
            run.gaps.extend(self.gaps)
            run.durations.append(self.last - self.sent)
            run.events += self.events
        if not self.done.done():
            self.done.set_result(None)


def requests(spec: dict, count: int) -> list[bytes]:
    """The request bytes of each stream (user ids round-robin over the pool; with
    ``tokens``, stream i authenticates with ``tokens[i % len]``)."""
    url = urlsplit(spec["url"])
    body = spec["body"].encode()
    tokens = spec.get("tokens") or []
    headers = {k: v for k, v in spec.get("headers", {}).items() if not (tokens and k.lower() == "authorization")}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    users = int(spec.get("users", 1))
    out = []
    for i in range(count):
        path = url.path.replace("{user}", f"bench-u{i % users}")
        auth = f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n" if tokens else ""
        out.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n{head}{auth}"
                f"Content-Length: {len(body)}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
            + body
        )
    return out


async def load(spec: dict, streams: int, ramp_s: float, min_events: int, idle_timeout_s: float) -> dict:
    loop = asyncio.get_running_loop()
    url = urlsplit(spec["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    run = Run(min_events)
    reqs = requests(spec, streams)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = now()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, started + i * ramp_s / streams - now()))
        done = loop.create_future()
        try:
            await loop.create_connection(lambda: StreamProto(run, reqs[i], done), host, port)
        except OSError as exc:
            run.error(f"connect: {type(exc).__name__}")
            return
        await done

    async def watchdog() -> None:  # a stream silent for too long fails as a timeout
        while True:
            await asyncio.sleep(1)
            cutoff = now() - idle_timeout_s
            for proto in [p for p in run.open if p.activity < cutoff]:
                proto.finish("timeout")

    dog = asyncio.create_task(watchdog())
    await asyncio.gather(*(one(i) for i in range(streams)))
    dog.cancel()
    wall = now() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "streams": streams,
        "completed": len(run.ttfb),
        "max_open": run.max_open,
        "errors": run.errors,
        "error_count": sum(run.errors.values()),
        "events": run.events,
        "stream_seconds": round(sum(run.durations), 3),
        "ttfb_ms": percentiles(run.ttfb),
        "gap_ms": percentiles(run.gaps),
        "duration_ms": percentiles(run.durations),
        "wall_s": round(wall, 3),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_pct": round(100 * cpu / max(wall, 1e-9), 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.stream_load")
    ap.add_argument(
        "--spec",
        required=True,
        help="JSON: url ({user} from a pool of users), headers, body, optional tokens; or @FILE holding it",
    )
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams start")
    ap.add_argument("--min-events", type=int, default=1, help="fewer events than this is an error")
    ap.add_argument("--idle-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per stream
    import uvloop

    spec = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
    result = uvloop.run(load(spec, args.streams, args.ramp, args.min_events, args.idle_timeout))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
