"""Load clients that wrk cannot play, run as their own process (pinned next to the
simulator): an open-loop generator at a fixed rate and a streaming client.

    python -m bench.client openloop --spec JSON --rate 200 --duration 5
    python -m bench.client stream   --spec JSON --concurrency 64 --duration 5

``--spec`` is a JSON object: ``url`` (``{user}`` is replaced by a user id from a pool of
``users``), ``headers``, ``body``. Prints one JSON object with the results.

Open loop: request ``i`` is due at ``t0 + i / rate`` whatever happened before, and its
latency is measured from that intended send time, so a stalled server (or a stalled
generator) shows up in the latency instead of silently lowering the rate (no coordinated
omission). Failed requests keep their measured latency and are counted as errors.

Streaming: ``concurrency`` closed-loop workers; per stream the time to the first body
byte (TTFB), the number of SSE ``data:`` events, and the gaps between successive reads
that carry events (events that arrive in one read have no gap between them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import aiohttp

STREAM_TOTAL_S = 60


def percentiles(values: list[float], points=(50, 90, 99, 99.9)) -> dict[str, float | None]:
    """Nearest-rank percentiles in milliseconds (values in seconds)."""
    out: dict[str, float | None] = {}
    data = sorted(values)
    for p in points:
        key = f"p{p:g}".replace(".", "_")
        if not data:
            out[key] = None
            continue
        rank = max(1, -(-len(data) * p // 100))  # ceil
        out[key] = round(data[int(rank) - 1] * 1000, 3)
    out["max"] = round(data[-1] * 1000, 3) if data else None
    out["mean"] = round(sum(data) / len(data) * 1000, 3) if data else None
    return out


class Spec:
    def __init__(self, raw: dict):
        self.url: str = raw["url"]
        self.headers: dict = raw.get("headers", {})
        self.body: bytes = raw["body"].encode()
        self.users: int = int(raw.get("users", 1))
        self.n = 0

    def next_url(self) -> str:
        if "{user}" not in self.url:
            return self.url
        self.n = (self.n + 1) % self.users
        return self.url.replace("{user}", f"bench-u{self.n}")


def session(limit: int, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0),
        timeout=timeout,
        auto_decompress=False,
    )


async def openloop(spec: Spec, rate: float, duration: float, warmup: float, timeout: float) -> dict:
    now = time.perf_counter  # loop.time() has 1 ms resolution under uvloop
    latencies: list[float] = []
    lags: list[float] = []
    errors: dict[str, int] = {}
    warm_n = int(rate * warmup)
    total = warm_n + int(rate * duration)

    async with session(4000, aiohttp.ClientTimeout(total=timeout)) as s:

        async def one(i: int, intended: float) -> None:
            lags.append(now() - intended)
            err = None
            try:
                async with s.post(spec.next_url(), data=spec.body, headers=spec.headers) as r:
                    await r.read()
                    if r.status != 200:
                        err = f"status {r.status}"
            except TimeoutError:
                err = "timeout"
            except aiohttp.ClientError as exc:
                err = type(exc).__name__
            if i >= warm_n:
                latencies.append(now() - intended)
                if err:
                    errors[err] = errors.get(err, 0) + 1

        tasks = []
        t0 = now() + 0.02
        for i in range(total):
            intended = t0 + i / rate
            delay = intended - now()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, intended)))
        measured_from = t0 + warm_n / rate
        send_end = now()
        await asyncio.gather(*tasks)
    n = len(latencies)
    return {
        "rate": rate,
        "requests": n,
        "total_requests": total,
        "achieved_send_rate": round((total - warm_n) / max(1e-9, send_end - measured_from), 1),
        "errors": errors,
        "error_count": sum(errors.values()),
        "latency_ms": percentiles(latencies),
        "send_lag_ms": percentiles(lags[warm_n:], points=(50, 99)),
    }


async def stream(spec: Spec, concurrency: int, duration: float, warmup: float, timeout: float) -> dict:
    now = time.perf_counter  # loop.time() has 1 ms resolution under uvloop
    ttfb: list[float] = []
    gaps: list[float] = []
    totals: list[float] = []
    events_per_stream: list[int] = []
    errors: dict[str, int] = {}
    started = [0]
    record_from = now() + warmup
    deadline = record_from + duration

    # a slow stream is measured, not cut: only a silence of ``timeout`` seconds fails it
    limits = aiohttp.ClientTimeout(total=STREAM_TOTAL_S, sock_read=timeout)
    async with session(concurrency + 10, limits) as s:

        async def worker() -> None:
            while now() < deadline:
                sent = now()
                started[0] += 1
                first = None
                last_event = None
                my_gaps: list[float] = []
                events = 0
                tail = b""
                err = None
                try:
                    async with s.post(spec.next_url(), data=spec.body, headers=spec.headers) as r:
                        if r.status != 200:
                            err = f"status {r.status}"
                            await r.read()
                        else:
                            async for chunk in r.content.iter_any():
                                t = now()
                                if first is None:
                                    first = t
                                data = tail + chunk
                                tail = data[-4:]  # a "data:" split between two reads
                                n = data.count(b"data:")
                                if n:
                                    events += n
                                    if last_event is not None:
                                        my_gaps.append(t - last_event)
                                    last_event = t
                            if events == 0:
                                err = "no SSE events"
                except TimeoutError:
                    err = "timeout"
                except aiohttp.ClientError as exc:
                    err = type(exc).__name__
                if sent < record_from:
                    continue
                if err:
                    errors[err] = errors.get(err, 0) + 1
                    continue
                ttfb.append(first - sent)
                totals.append(now() - sent)
                gaps.extend(my_gaps)
                events_per_stream.append(events)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "concurrency": concurrency,
        "streams": len(ttfb),
        "total_requests": started[0],
        "streams_per_s": round(len(ttfb) / duration, 1),
        "errors": errors,
        "error_count": sum(errors.values()),
        "ttfb_ms": percentiles(ttfb),
        "total_ms": percentiles(totals),
        "gap_ms": percentiles(gaps),
        "events_per_stream": round(sum(events_per_stream) / max(1, len(events_per_stream)), 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.client")
    ap.add_argument("mode", choices=["openloop", "stream"])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=10)
    args = ap.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        run = uvloop.run
    except (ImportError, AttributeError):  # pragma: no cover
        run = asyncio.run
    spec = Spec(json.loads(args.spec))
    started = time.monotonic()
    if args.mode == "openloop":
        result = run(openloop(spec, args.rate, args.duration, args.warmup, args.timeout))
    else:
        result = run(stream(spec, args.concurrency, args.duration, args.warmup, args.timeout))
    result["wall_s"] = round(time.monotonic() - started, 2)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
