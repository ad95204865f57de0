"""Who may call the Admin API, and the audit log of what they changed.

Two ways in: ``Authorization: Bearer <admin key>`` (scripts), or a console session cookie
(browsers), which must send the session's CSRF token on every non-GET request whatever
its content type. A ``viewer`` may only call the routes listed in ``VIEWER_READS``; every
other route (each write, bodies, exports, the playground, platform tests, and any route
added later) answers 403 to a viewer.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException, Request
from sqlalchemy import insert

from aigate.auth import sessions
from aigate.auth.caller import admin_ok
from aigate.clock import now_ms
from aigate.edge.gate import edge_of
from aigate.store import tables as t

log = logging.getLogger("aigate.admin")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"

# Routes a viewer may call (by module and function name): reads without bodies or chats.
VIEWER_READS = frozenset(
    {
        "aigate.api.admin.apps.list_apps",
        "aigate.api.admin.apps.get_app",
        "aigate.api.admin.specs.spec_router.<locals>.list_all",
        "aigate.api.admin.specs.spec_router.<locals>.get_one",
        "aigate.api.admin.keys.list_server_keys",
        "aigate.api.admin.keys.list_relay_tokens",
        "aigate.api.admin.keys.get_relay_token",
        "aigate.api.admin.users.list_users",
        "aigate.api.admin.users.get_user",
        "aigate.api.admin.users.get_ledger",
        "aigate.api.admin.platforms.list_platforms",
        "aigate.api.admin.platforms.get_platform",
        "aigate.api.admin.models.list_models",
        "aigate.api.admin.models.get_model",
        "aigate.api.admin.logs.search_all_logs",
        "aigate.api.admin.logs.search_group_logs",
        "aigate.api.admin.dashboard.dashboard",
        "aigate.api.admin.console_api.list_audit",
        "aigate.api.admin.console_api.list_operators",
        "aigate.api.admin.console_api.whoami",
        "aigate.api.admin.operations.platform_health",  # keys masked
        "aigate.api.admin.operations.list_webhooks",  # secrets masked
        "aigate.api.admin.operations.list_deliveries",
    }
)
# POST routes that change nothing and cost nothing (a viewer may use them; not audited).
READ_ONLY_POSTS = frozenset({"aigate.api.admin.console_api.preview"})


@dataclass(frozen=True, slots=True)
class Principal:
    actor: str  # "admin-key" or "operator:<name>"
    role: str
    operator: str = ""  # the operator's name ("" for the admin key)
    session: sessions.Session | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


INTERNAL = Principal("internal", "admin")  # the audit log's own read of an object's state


def _endpoint_name(request: Request) -> str:
    fn = request.scope.get("endpoint")
    return f"{fn.__module__}.{fn.__qualname__}" if fn is not None else ""


def viewer_may(request: Request) -> bool:
    name = _endpoint_name(request)
    return name in READ_ONLY_POSTS or (request.method in SAFE_METHODS and name in VIEWER_READS)


async def session_principal(request: Request) -> Principal | None:
    services = request.app.state.services
    session = await sessions.load(
        services.engine, request.cookies.get(sessions.COOKIE), services.config.server.admin_key
    )
    if session is None:
        return None
    return Principal(session.actor, session.role, session.operator, session)


async def require_operator(request: Request) -> Principal:
    """The Admin API's dependency: authenticate, check CSRF and the viewer policy."""
    if request.scope.get("aigate.internal"):
        principal = INTERNAL
    elif request.headers.get("authorization"):
        if not admin_ok(request.app.state.services.config.server.admin_key, request.headers.get("authorization")):
            raise HTTPException(status_code=401, detail="invalid or missing admin key")
        principal = Principal("admin-key", "admin")
    else:
        found = await session_principal(request)
        if found is None or found.session is None:  # a session's principal always has one
            raise HTTPException(status_code=401, detail="invalid or missing admin key")
        principal = found
        if request.method not in SAFE_METHODS and not sessions.csrf_ok(found.session, request.headers.get(CSRF_HEADER)):
            raise HTTPException(status_code=403, detail="csrf: missing or wrong CSRF token")
    if not principal.is_admin and not viewer_may(request):
        raise HTTPException(status_code=403, detail="role: viewers can only read")
    request.state.principal = principal
    audit = request.scope.get("aigate.audit")
    if audit is not None and _endpoint_name(request) not in READ_ONLY_POSTS:
        audit["actor"] = principal.actor
    return principal


def may_see_bodies(request: Request) -> bool:
    principal = getattr(request.state, "principal", None)
    return principal is not None and principal.is_admin


# --- client address and HTTPS behind trusted proxies


def _trusted(peer: str, proxies: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(peer)
        return any(addr in ipaddress.ip_network(p, strict=False) for p in proxies)
    except ValueError:
        return False


def client_ip(request: Request) -> str:
    """The client's address as the edge sees it (``server.trusted_proxies`` honoured)."""
    return edge_of(request.app.state.services).client_ip(request)


def is_https(request: Request, proxies: list[str]) -> bool:
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    return bool(proxies) and _trusted(peer, proxies) and request.headers.get("x-forwarded-proto", "").lower() == "https"


# --- the audit log

SECRET_FIELD = re.compile(r"^(key|api_key|password|secret|token|admin_key|new_password)$|_secrets?$", re.I)
MASK = "***"
MAX_AUDIT_BODY = 256 * 1024


def mask_secrets(value: Any) -> Any:
    """A copy with every secret-looking field replaced by ``***``."""
    if isinstance(value, dict):
        return {
            k: MASK if SECRET_FIELD.search(str(k)) and v not in (None, "", []) else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def _json(body: bytes) -> Any:
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    return doc.get("data", doc) if isinstance(doc, dict) and "success" in doc else doc


class AuditMiddleware:
    """Around the Admin API: every successful write is stored with who made it, the
    object (its path), the state before (a read of the same path, when one exists) and
    the response after, secrets masked. A response in one part is sent once the row is
    written, so a read of the audit log after the response finds it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or scope.get("aigate.internal"):
            return await self.app(scope, receive, send)
        before = await self._read(scope) if scope["method"] in ("PUT", "PATCH", "DELETE") else None
        holder: dict[str, Any] = {}
        scope["aigate.audit"] = holder
        status = 0
        chunks: list[bytes] = []
        size = 0

        # A response in one body waits whole (its start too) until the audit row is
        # written: a client that reads only the status and then the audit log must find
        # the row. A streamed response goes out as it comes, its row after it.
        held: list[dict] = []

        async def capture(message):
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                held.append(message)
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if size < MAX_AUDIT_BODY:
                    chunks.append(body)
                    size += len(body)
                if not message.get("more_body", False):
                    held.append(message)
                    return
            while held:  # a streamed response: its start goes out with its first part
                await send(held.pop(0))
            await send(message)

        await self.app(scope, receive, capture)
        try:
            if "actor" in holder and 200 <= status < 300:
                await self._record(
                    scope, holder["actor"], status, before, b"".join(chunks) if size < MAX_AUDIT_BODY else None
                )
        finally:
            for message in held:
                await send(message)

    @staticmethod
    async def _record(scope, actor: str, status: int, before: Any, body: bytes | None) -> None:
        root, path = scope.get("root_path", ""), scope["path"]
        path = path if path.startswith(root) else root + path
        try:
            async with scope["app"].state.services.engine.begin() as conn:
                await conn.execute(
                    insert(t.audit_log).values(
                        created_ms=now_ms(),
                        actor=actor,
                        action=scope["method"],
                        object=path[:500],
                        status=status,
                        before=mask_secrets(before),
                        after=mask_secrets(_json(body) if body is not None else None),
                    )
                )
        except Exception:  # the write is done; a lost audit row is logged, never hidden
            log.exception("audit log write failed", extra={"object": path})

    async def _read(self, scope) -> Any:
        """The object's state before the write: a GET of the same path, if there is one."""
        inner = {
            **scope,
            "method": "GET",
            "query_string": b"",
            "aigate.internal": True,
            "headers": [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-type")],
        }
        if "state" in scope:
            inner["state"] = dict(scope["state"])
        status, chunks = 0, []

        async def empty():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def collect(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(inner, empty, collect)
        except Exception:
            return None
        return _json(b"".join(chunks)) if status == 200 else None
