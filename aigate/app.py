"""Builds the ASGI application: routes, middleware and the lifespan that owns the
database engine, Redis, the configuration cache, the batched writer and the upstream
HTTP session."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from aigate import collector, metrics, telemetry
from aigate.api import ops
from aigate.api.errors import error_response
from aigate.api.event_stream import SERVER_SEND
from aigate.config.apply import apply_config
from aigate.config.runtime import ConfigCache
from aigate.config.schema import Config
from aigate.edge.gate import start_edge
from aigate.engine import metering
from aigate.engine.ids import Snowflake, lease_worker_id, random_worker_id
from aigate.errors import AppError
from aigate.services import Services
from aigate.store.checkpoint import start_checkpointer
from aigate.store.db import create_engine
from aigate.store.migrate import upgrade
from aigate.store.sinks import register_sinks
from aigate.store.writer import BatchWriter

log = logging.getLogger("aigate")


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


async def start_services(cfg: Config, *, apply: bool = True) -> Services:
    engine = create_engine(cfg.database.url, pool_size=cfg.database.pool_size)
    await upgrade(engine)
    if apply:
        await apply_config(engine, cfg)
    redis = None
    if cfg.redis.url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(cfg.redis.url)
    worker_id = cfg.server.worker_id
    if worker_id is None:
        worker_id = await lease_worker_id(redis) if redis is not None else random_worker_id()
    cache = ConfigCache(engine, redis)
    await cache.reload()
    cache.start()
    writer = BatchWriter(
        engine,
        flush_interval_s=cfg.writer.flush_interval_ms / 1000,
        batch_size=cfg.writer.batch_size,
        queue_size=cfg.writer.queue_size,
        journal_dir=cfg.writer.journal_dir,
        wait_timeout_s=cfg.writer.wait_timeout_ms / 1000,
    )
    register_sinks(writer)
    metering.register_writer_kinds(writer)
    writer.start()
    checkpointer = await start_checkpointer(engine)  # SQLite: checkpoints off the commit path
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=300),
        json_serialize=None,  # type: ignore[arg-type]  # as before: json= is unusable on this session
        auto_decompress=True,
    )
    services = Services(
        config=cfg,
        engine=engine,
        cache=cache,
        writer=writer,
        http=http,
        ids=Snowflake(worker_id),
        redis=redis,
        instance=cfg.server.instance_name or f"{socket.gethostname()}:{os.getpid()}",
    )
    if cfg.simulator.enabled:
        from aigate.simulator.server import start_simulator

        host, port = _host_port(cfg.simulator.listen)
        services.simulator = await start_simulator(host=host, port=port, latency_ms=cfg.simulator.latency_ms)
    services.checkpointer = checkpointer
    await start_edge(services)  # before the workers: it owns the App API's edge checks
    for starter in _background_starters():
        await starter(services)
    return services


def _background_starters():
    """Background workers of the engine (async jobs, retention), started with the app.
    Imported here: they import the engine, which imports this module's neighbours."""
    from aigate.engine import background

    return background.STARTERS


async def stop_services(services: Services) -> None:
    stoppers, services.stoppers = services.stoppers, []
    for stopper in stoppers:
        await stopper()
    if services.checkpointer is not None:
        await services.checkpointer.stop()
    await services.cache.stop()
    await services.writer.stop()  # drain every queued row before the process exits
    await services.http.close()
    sim, services.simulator = services.simulator, None
    if sim is not None:
        await sim.close()
    if services.redis is not None:
        await services.redis.aclose()
    await services.engine.dispose()
    if services.checkpointer is not None:  # its file descriptor: after SQLite's connections
        services.checkpointer.close()


def create_app(cfg: Config, *, apply: bool = True) -> Starlette:
    from aigate.api import (
        app_docs,
        bp,
        bp_requests,
        bp_tokens,
        relay,
        relay_audio,
        relay_fallback,
        relay_messages,
        relay_responses,
    )
    from aigate.api.admin.app import create_admin_app

    admin_app = create_admin_app()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = await start_services(cfg, apply=apply)
        admin_app.state.services = app.state.services  # a mounted app sees its own state
        # everything loaded so far lives as long as the process: out of the collector's
        # sweeps (a full sweep over it paused requests for ~100 ms)
        collector.settle()
        log.info("aigate ready", extra={"instance": app.state.services.instance})
        try:
            yield
        finally:
            await stop_services(app.state.services)

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)  # registered for AppError only
        return error_response(exc)

    from aigate.console import web as console

    # Starlette tries routes in order: the busiest paths (relay chat, App API chat) first.
    # No two lists here share a path prefix, except the relay fallback, which stays last.
    routes = [
        *relay.routes,
        *bp.routes,
        *ops.routes,
        *bp_requests.routes,
        *console.routes,
        Mount("/api", app=admin_app),
    ]
    routes += bp_tokens.routes
    routes += app_docs.routes
    routes += relay_responses.routes
    routes += relay_messages.routes
    routes += relay_audio.routes
    routes += relay_fallback.routes  # last: OpenAI-shaped 404/405 for the rest of /v1
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={AppError: app_error})
    return observe_requests(app)


def observe_requests(app):
    """Counts requests and latency per surface, and runs App API and relay requests
    inside a trace span when tracing is on: one thin pure-ASGI wrapper, so an open
    stream keeps one frame for both. It is the outermost wrapper: it puts the server's
    own ``send`` in the scope, where ``EventStream`` finds it for the frames between a
    stream's start and its end (no wrapper in between reads them)."""
    import time

    def surface_of(path: str) -> str:
        if path.startswith("/bp/"):
            return "app"
        if path.startswith("/v1/"):
            return "relay"
        if path.startswith("/api/"):
            return "admin"
        return "ops"

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started = time.perf_counter()
        scope[SERVER_SEND] = send  # a streamed answer's frames go straight to it (EventStream)
        surface = surface_of(scope["path"])
        status = 500

        def send_wrapper(message):  # a plain function: no extra coroutine per streamed event
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            if telemetry.traces(scope["path"]):
                await telemetry.traced(app, scope, receive, send_wrapper, lambda: status)
            else:
                await app(scope, receive, send_wrapper)
        finally:
            metrics.child(metrics.REQUESTS, surface, str(status)).inc()
            metrics.child(metrics.LATENCY, surface).observe(time.perf_counter() - started)

    wrapped.state = app.state  # type: ignore[attr-defined]
    wrapped.app = app  # type: ignore[attr-defined]
    return wrapped
