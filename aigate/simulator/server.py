"""aigate provider simulator: an HTTP server speaking the upstream providers' wire formats.

Tests, benchmarks and demos run aigate against this server instead of the real
providers. Every reply is simulated: bodies say so, and every response carries the
header ``x-simulator: aigate``.

Routes
------
OpenAI (``Authorization: Bearer``): ``POST /v1/chat/completions``, ``POST /v1/embeddings``,
``POST /v1/images/generations``, ``POST /v1/audio/speech``, ``GET /v1/models``,
``POST /v1/responses`` (the Responses API, stream with its typed events; see
``aigate.simulator.responses``), ``POST /v1/audio/transcriptions`` (multipart; see
``aigate.simulator.audio``).
Azure OpenAI (``api-key`` header, ``?api-version=`` required):
``POST /openai/deployments/{deployment}/{chat/completions|embeddings|images/generations|
audio/speech}``.
Anthropic (``x-api-key`` or ``Authorization: Bearer``, and ``anthropic-version``):
``POST /v1/messages`` (a forced tool call answers a ``tool_use`` block whose input follows
the tool's schema: JSON mode), ``POST /v1/messages/count_tokens``.
Gemini (``x-goog-api-key`` or ``?key=``), under ``/v1beta`` and ``/v1``:
``POST /v1beta/models/{model}:generateContent``,
``:streamGenerateContent`` (``?alt=sse`` for SSE, else a streamed JSON array),
``:embedContent``, ``:batchEmbedContents``, ``:countTokens``.
Async jobs (``Authorization: Bearer``): ``POST /v1/jobs``, ``GET /v1/jobs/{id}``.

Any non-empty key is accepted unless the server was created with ``require_key=...``.
Reply text, token counts and chunking rules: see ``aigate.simulator.text``.

Switches
--------
Each request runs with a set of switches (``aigate.simulator.switches.Switches``):

- ``latency_ms``: delay before the response headers.
- ``ttft_ms``: stream: delay after the headers, before the first frame.
- ``chunks``: stream: number of content deltas (default 8).
- ``chunk_interval_ms``: stream: delay between content deltas.
- ``status``: answer with this HTTP status (>= 400; lower values are ignored) and the
  format's error body.
- ``malformed``: non-stream: a 200 JSON response whose body is not valid JSON; stream:
  one frame whose data is not JSON, after ``malformed_after`` content chunks (default 1);
  the stream then goes on normally.
- ``disconnect_after``: stream: close the connection after N content chunks, without the
  final frames (the client sees an incomplete body); non-stream (any value): close the
  connection without a response.
- ``error_after``: stream: answer 200, then after N content chunks send the format's
  in-stream error and end the stream. The error type follows ``status`` (default 529
  ``overloaded_error`` for Anthropic, 500 elsewhere); ``status`` then causes no upfront
  error for stream requests.
- ``reply``: the reply text instead of the echo (verbatim, also in JSON mode).
- ``usage``: ``false`` leaves usage out of the response and the stream.
- ``cached_tokens``, ``cache_creation_tokens`` (Anthropic only), ``reasoning_tokens``:
  reported in usage, with each provider's arithmetic (see the format modules).
- ``job_duration_ms`` (default 300), ``job_fail``, ``job_output_tokens`` (default 1000,
  the ``usage.output_tokens`` of a succeeded job): job API, read at submit.
- ``retry_after``: seconds; sets ``Retry-After`` on the responses of the ``status`` switch.

Values may be typed (scripts, defaults) or strings (headers, directives); booleans accept
``true/false/1/0/yes/no/on/off``; ``null`` in a script step means the built-in default.

Sources, highest priority first (each overrides single switches, not the whole set):

1. a script step: ``POST /_sim/script`` with a JSON list of switch objects; every later
   non-control request pops the next step (an empty script applies nothing);
2. directives in the body: ``[[sim status=429 retry_after=2 reply="two words"]]``
   anywhere in a prompt (the reply echo leaves them out);
3. per-key switches: ``POST /_sim/keys {"sk-bad": {"status": 401}}``: requests made
   with that API key (any format's key header, or ``?key=``) get those switches, so
   one key of a platform can fail while its others serve;
4. request headers: ``x-sim-status: 503``, ``x-sim-latency-ms: 20``;
5. the server defaults: ``create_app(latency_ms=50)`` / ``aigate simulator --latency-ms 50``.

Per request, in order: the switches are resolved (a script step is used up even if the
request then fails), ``latency_ms`` passes, auth and required headers are checked,
``status`` answers, a non-stream ``disconnect_after`` closes, then the reply is built.

Unknown switch names or bad values answer 400 in the provider's format (or raise, for
defaults and ``SimulatorHandle.script``).

Control API (no auth, never scripted, recorded or counted)
-----------------------------------------------------------
``POST /_sim/script``   body: list of switch objects; replaces the script
``POST /_sim/keys``     body: ``{key: {switches}}``; replaces the per-key switches
``POST /_sim/reset``    clears the script, per-key switches, recorded requests, jobs and stats
``GET /_sim/requests``  the last 1000 requests, oldest first: ``method``, ``path``,
                        ``query``, ``headers`` (names lower-cased, values verbatim),
                        ``body`` (parsed JSON, or None), ``text`` (only for non-JSON
                        bodies), ``route``, ``time``
``GET /_sim/stats``     ``{"<METHOD> <route template>": count}``, e.g.
                        ``{"POST /v1/chat/completions": 3}``
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from aigate import collector
from aigate.simulator import anthropic, audio, gemini, jobs, openai, responses, text
from aigate.simulator.switches import (
    DIRECTIVE_MARK,
    RequestError,
    SwitchError,
    Switches,
    directive_overrides,
    header_overrides,
    make_defaults,
    merge,
    parse_mapping,
    parse_script,
)

RECORD_LIMIT = 1000
SIM_HEADERS = {"x-simulator": "aigate"}
JSON_TYPE = "application/json"
MALFORMED_BODY = b'{"simulated": true, "note": "malformed on purpose", "choices": [{'


class Dialect(Protocol):
    """What a wire format tells the shared request pipeline."""

    def precheck(self, call: Call) -> web.Response | None:
        """Auth and required headers/parameters: an error response, or None."""

    def error_body(self, status: int, message: str, code: str | None = None, param: str | None = None) -> bytes:
        """The format's error document for ``status``."""


Handler = Callable[["Call"], Awaitable[web.StreamResponse]]


@dataclass
class SimState:
    defaults: Switches
    require_key: str | None = None
    script: deque[dict[str, Any]] = field(default_factory=deque)
    recorded: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_LIMIT))
    stats: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    key_switches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        self.script.clear()
        self.key_switches.clear()
        self.recorded.clear()
        self.stats.clear()
        self.jobs.clear()


STATE = web.AppKey("aigate_simulator_state", SimState)


class Call:
    """One simulated request: its parsed body, effective switches and reply helpers."""

    __slots__ = ("body", "dialect", "request", "state", "stream", "switches")

    def __init__(self, request: web.Request, state: SimState, dialect: Dialect, body: Any):
        self.request = request
        self.state = state
        self.dialect = dialect
        self.switches = state.defaults
        self.body = body
        self.stream = isinstance(body, dict) and body.get("stream") is True

    def body_object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise RequestError("the request body must be a JSON object")
        return self.body

    def json(self, data: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, headers=SIM_HEADERS, content_type=JSON_TYPE)

    def binary(self, data: bytes, content_type: str) -> web.Response:
        return web.Response(body=data, headers=SIM_HEADERS, content_type=content_type)

    def error(self, status: int, message: str, code: str | None = None, param: str | None = None) -> web.Response:
        headers = SIM_HEADERS
        retry_after = self.switches.retry_after
        if retry_after is not None and self.switches.status == status:
            value = int(retry_after) if float(retry_after).is_integer() else retry_after
            headers = {**SIM_HEADERS, "Retry-After": str(value)}
        return web.Response(
            body=self.dialect.error_body(status, message, code, param),
            status=status,
            headers=headers,
            content_type=JSON_TYPE,
        )

    def disconnect(self) -> None:
        """Close the connection; bytes already written are flushed first."""
        transport = self.request.transport
        if transport is not None:
            transport.close()

    async def send_stream(
        self,
        content_type: str,
        head: list[bytes],
        content: list[bytes],
        tail: list[bytes],
        malformed: bytes,
        error: Callable[[], bytes],
    ) -> web.StreamResponse:
        """Send a stream: ``head`` frames, ``content`` deltas, ``tail`` frames, with pacing
        and the stream faults applied."""
        sw = self.switches
        resp = web.StreamResponse(headers=SIM_HEADERS)
        resp.content_type = content_type
        resp.headers["Cache-Control"] = "no-cache"
        await resp.prepare(self.request)
        if sw.ttft_ms:
            await asyncio.sleep(sw.ttft_ms / 1000)
        faulty = sw.malformed or sw.disconnect_after is not None or sw.error_after is not None
        if not faulty and not sw.chunk_interval_ms:  # the common case: one write
            await resp.write(b"".join([*head, *content, *tail]))
            await resp.write_eof()
            return resp
        interval = sw.chunk_interval_ms / 1000
        count = len(content)

        def due(limit: int | None, index: int) -> bool:
            # a fault "after N chunks" with N >= count fires after the last chunk
            return limit is not None and (index == limit or (index == count and limit > count))

        pending = list(head)
        for index in range(count + 1):
            if due(sw.disconnect_after, index):
                await resp.write(b"".join(pending))
                self.disconnect()
                return resp
            if due(sw.error_after, index):
                pending.append(error())
                await resp.write(b"".join(pending))
                await resp.write_eof()
                return resp
            if sw.malformed and due(sw.malformed_after, index):
                pending.append(malformed)
            if index == count:
                break
            if index and interval:
                await resp.write(b"".join(pending))
                pending.clear()
                await asyncio.sleep(interval)
            pending.append(content[index])
        pending.extend(tail)
        await resp.write(b"".join(pending))
        await resp.write_eof()
        return resp


def _record(state: SimState, request: web.Request, route: str, raw: bytes, body: Any) -> None:
    entry: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "body": body,
        "route": route,
        "time": time.time(),
    }
    if body is None and raw:
        entry["text"] = raw.decode("utf-8", "replace")
    state.recorded.append(entry)


def request_key(request: web.Request) -> str:
    """The API key a request carries, whatever the format's header."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in ("api-key", "x-api-key", "x-goog-api-key"):
        if name in request.headers:
            return request.headers[name]
    return request.query.get("key", "")


def _resolve(state: SimState, request: web.Request, raw: bytes) -> Switches:
    step = state.script.popleft() if state.script else None
    directives = directive_overrides(raw) if DIRECTIVE_MARK in raw else None
    headers = header_overrides(request.raw_headers)
    by_key = state.key_switches.get(request_key(request)) if state.key_switches else None
    return merge(state.defaults, headers, by_key, directives, step)


def endpoint(
    state: SimState, dialect: Dialect, handler: Handler, route: str, *, stream: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a format handler in the shared pipeline: record, switches, auth, faults."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state.stats[route] = state.stats.get(route, 0) + 1
        raw = await request.read() if request.body_exists else b""
        body: Any = None
        bad_json = False
        if raw and request.content_type == "multipart/form-data":
            request[audio.RAW_KEY] = raw  # parsed by the handler
        elif raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad_json = True
        _record(state, request, route, raw, body)
        call = Call(request, state, dialect, body)
        call.stream = call.stream or stream
        try:
            call.switches = sw = _resolve(state, request, raw)
        except SwitchError as exc:
            return call.error(400, str(exc))
        if sw.latency_ms:
            await asyncio.sleep(sw.latency_ms / 1000)
        rejected = dialect.precheck(call)
        if rejected is not None:
            return rejected
        if sw.status is not None and sw.status >= 400 and not (call.stream and sw.error_after is not None):
            return call.error(sw.status, text.fault_message(sw.status))
        if sw.disconnect_after is not None and not call.stream:
            call.disconnect()
            return web.Response(status=500)  # never reaches the client
        if bad_json:
            return call.error(400, "The request body is not valid JSON.")
        try:
            response = await handler(call)
        except RequestError as exc:
            return call.error(400, str(exc), param=exc.param)
        if sw.malformed and isinstance(response, web.Response) and (response.content_type == JSON_TYPE):
            response.body = MALFORMED_BODY
        return response

    return handle


# --- control API ------------------------------------------------------------------------


def _control_routes(state: SimState) -> list[web.RouteDef]:
    async def script(request: web.Request) -> web.Response:
        try:
            steps = parse_script(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, SwitchError) as exc:
            return _control_json({"error": {"message": str(exc)}}, 400)
        state.script = deque(steps)
        return _control_json({"queued": len(steps)})

    async def keys(request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(await request.read())
            if not isinstance(doc, dict):
                raise SwitchError("per-key switches are a JSON object: {key: {switches}}")
            parsed = {str(k): parse_mapping(v) for k, v in doc.items()}
        except (orjson.JSONDecodeError, SwitchError) as exc:
            return _control_json({"error": {"message": str(exc)}}, 400)
        state.key_switches = parsed
        return _control_json({"keys": len(parsed)})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return _control_json({"reset": True})

    async def requests(request: web.Request) -> web.Response:
        return _control_json(list(state.recorded))

    async def stats(request: web.Request) -> web.Response:
        return _control_json(state.stats)

    return [
        web.post("/_sim/script", script),
        web.post("/_sim/keys", keys),
        web.post("/_sim/reset", reset),
        web.get("/_sim/requests", requests),
        web.get("/_sim/stats", stats),
    ]


def _control_json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=SIM_HEADERS, content_type=JSON_TYPE)


async def _not_found(request: web.Request) -> web.Response:
    body = {"error": {"message": f"no simulated route for {request.method} {request.path}"}}
    return _control_json(body, 404)


# --- app and runners ----------------------------------------------------------------------


def create_app(**defaults: Any) -> web.Application:
    """The simulator app. Keyword arguments are switch defaults plus ``require_key``."""
    require_key = defaults.pop("require_key", None)
    state = SimState(defaults=make_defaults(defaults), require_key=require_key or None)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    for module in (openai, responses, audio, anthropic, gemini, jobs):
        # each ROUTES entry: (method, path, dialect, handler, always_streams)
        for method, path, dialect, handler, streams in module.ROUTES:
            handle = endpoint(state, dialect, handler, f"{method} {path}", stream=streams)
            app.router.add_route(method, path, handle)
    app.router.add_routes(_control_routes(state))
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


@dataclass
class SimulatorHandle:
    """A simulator started in the running event loop (see ``start_simulator``)."""

    url: str
    app: web.Application
    runner: web.AppRunner | None = None

    @property
    def state(self) -> SimState:
        return self.app[STATE]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first (the same entries as ``GET /_sim/requests``)."""
        return list(self.state.recorded)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.state.stats)

    def script(self, steps: list[dict[str, Any]]) -> None:
        """Replace the script; raises ``SwitchError`` on unknown names or bad values."""
        self.state.script = deque(parse_script(steps))

    def key_switches(self, by_key: dict[str, dict[str, Any]]) -> None:
        """Replace the per-key switches (``{key: {switches}}``)."""
        self.state.key_switches = {k: parse_mapping(v) for k, v in by_key.items()}

    def reset(self) -> None:
        self.state.reset()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def start_simulator(host: str = "127.0.0.1", port: int = 0, **defaults: Any) -> SimulatorHandle:
    """Start a simulator in the running event loop; ``port=0`` picks a free port."""
    app = create_app(**defaults)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return SimulatorHandle(url=f"http://{bound_host}:{bound_port}", app=app, runner=runner)


def run(host: str = "127.0.0.1", port: int = 8090, **defaults: Any) -> None:
    """Serve until interrupted (the ``aigate simulator`` command); uses uvloop if present."""
    app = create_app(**defaults)
    # as the gateway does: a load test's streams must not wait on the simulator's full
    # collections (110 ms over its unfrozen modules, at 250 open streams)
    collector.settle()
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        loop=loop,
        print=lambda _: print(f"aigate provider simulator listening on http://{host}:{port}"),
    )
