"""The console's routes: sign-in and sign-out, the pages, and the static files.

A page loads the signed-in session (server-side, shared by every instance) or redirects
to the sign-in form. Sign-in is rate-limited per client IP before any hashing, makes a
new session id every time, and sets an HttpOnly SameSite=Strict cookie (Secure on HTTPS
or when a trusted proxy says the client used HTTPS).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import HTTPException
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from aigate.api.admin.access import Principal, client_ip, is_https
from aigate.api.app_docs import SWAGGER_URL
from aigate.auth import operators, sessions
from aigate.auth.caller import admin_ok
from aigate.auth.signin_limit import SigninLimiter
from aigate.clock import iso_ms
from aigate.console import views
from aigate.console.assets import serve_static, static_url
from aigate.console.security import secure_headers

PRE_COOKIE = "aigate_signin"  # double-submit token of the sign-in form (login CSRF)
NAV = (
    "Dashboard",
    "Logs",
    "Strategies",
    "Clients",
    "Platforms",
    "Health",
    "Webhooks",
    "Users",
    "Keys",
    "Playground",
    "Audit",
)

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static_url"] = static_url
templates.filters["amount"] = lambda v: format(Decimal(str(v or 0)).normalize(), "f")  # 0.0000078, not 7.8e-06
templates.filters["ms_time"] = iso_ms  # epoch milliseconds as the Admin API writes times
templates.globals["NAV"] = NAV


def render(template_name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template_name).render(**context)
    return secure_headers(HTMLResponse(html, status_code=status))


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form (the console's two plain forms: sign-in and sign-out)."""
    body = await request.body()
    if len(body) > 16_384:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _services(request: Request):
    return request.app.state.services


def _limiter(request: Request) -> SigninLimiter:
    """One per process (kept on the application's state), counting in Redis when configured."""
    state = request.app.state
    limiter = getattr(state, "signin_limiter", None)
    if limiter is None:
        limiter = state.signin_limiter = SigninLimiter(_services(request).redis)
    return limiter


async def current_session(request: Request) -> sessions.Session | None:
    services = _services(request)
    return await sessions.load(services.engine, request.cookies.get(sessions.COOKIE), services.config.server.admin_key)


# --- sign-in, sign-out


async def signin_form(request: Request) -> Response:
    return _signin_page(request, {}, 200)


def _signin_page(request: Request, errors: dict[str, str], status: int, username: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render("signin.html", status, errors=errors, pre_token=token, username=username)
    response.set_cookie(
        PRE_COOKIE, token, httponly=True, samesite="strict", path="/console/signin", secure=_secure(request)
    )
    return response


def _secure(request: Request) -> bool:
    return is_https(request, _services(request).config.server.trusted_proxies)


async def signin(request: Request) -> Response:
    services = _services(request)
    form = await form_fields(request)
    given = str(form.get("csrf_token", ""))
    expected = request.cookies.get(PRE_COOKIE, "")
    if not given or not expected or not secrets.compare_digest(given, expected):
        return _signin_page(request, {"form": "The form expired; please sign in again."}, 403)
    if not await _limiter(request).allow(client_ip(request)):
        return _signin_page(request, {"form": "Too many sign-in attempts; wait a minute."}, 429)
    admin_key = str(form.get("admin_key", ""))
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    if admin_key:
        if not admin_ok(services.config.server.admin_key, f"Bearer {admin_key}"):
            return _signin_page(request, {"admin_key": "Wrong admin key."}, 401)
        sid, _ = await sessions.create(
            services.engine,
            sessions.ADMIN_KEY_OPERATOR,
            "admin",
            sessions.admin_key_stamp(services.config.server.admin_key),
        )
    elif username and password:
        op = await operators.authenticate(services.engine, username, password)
        if op is None:
            return _signin_page(request, {"password": "Wrong username or password."}, 401, username)
        sid, _ = await sessions.create(services.engine, op.name, op.role, sessions.operator_stamp(op.auth_version))
    else:
        return _signin_page(request, {"form": "Enter the admin key, or a username and password."}, 400, username)
    old = request.cookies.get(sessions.COOKIE)
    if old:  # the session this browser had before is replaced, not kept alongside
        await sessions.end(services.engine, old)
    response = RedirectResponse("/console/dashboard", status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        path="/",
        secure=_secure(request),
        max_age=sessions.ABSOLUTE_MS // 1000,
    )
    response.delete_cookie(PRE_COOKIE, path="/console/signin")
    return secure_headers(response)


async def signout(request: Request) -> Response:
    session = await current_session(request)
    form = await form_fields(request)
    if session is not None:
        if not sessions.csrf_ok(session, str(form.get("csrf_token", ""))):
            return secure_headers(Response("csrf: missing or wrong CSRF token", status_code=403))
        await sessions.end(_services(request).engine, request.cookies[sessions.COOKIE])
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return secure_headers(response)


# --- pages


def page(template: str, loader, title: str):
    """A signed-in page: the session's operator and CSRF token, plus the loader's data."""

    async def endpoint(request: Request) -> Response:
        session = await current_session(request)
        if session is None:
            return secure_headers(RedirectResponse("/console/signin", status_code=303))
        # the Admin API functions a page calls see the same principal as over HTTP
        request.state.principal = Principal(session.actor, session.role, session.operator, session)
        try:
            data = await loader(request, _services(request), session)
        except HTTPException as exc:
            data = {"error": str(exc.detail)}
            return render(
                template,
                exc.status_code,
                session=session,
                title=title,
                q=request.query_params,
                request=request,
                is_admin=session.role == "admin",
                **data,
            )
        return render(
            template,
            session=session,
            title=title,
            q=request.query_params,
            request=request,
            is_admin=session.role == "admin",
            **data,
        )

    return endpoint


def query(request: Request, **changes: Any) -> str:
    params = {k: v for k, v in request.query_params.items() if v}
    for k, v in changes.items():
        if v in (None, ""):
            params.pop(k, None)
        else:
            params[k] = str(v)
    return "?" + urlencode(params)


templates.globals["query"] = query


async def root(request: Request) -> Response:
    return RedirectResponse("/console/dashboard", status_code=307)


routes = [
    Route("/", root),
    Route("/console", root),
    Route("/console/", root),
    Route("/console/signin", signin_form, methods=["GET"]),
    Route("/console/signin", signin, methods=["POST"]),
    Route("/console/signout", signout, methods=["POST"]),
    Route("/console/dashboard", page("dashboard.html", views.dashboard, "Dashboard")),
    Route("/console/logs", page("logs.html", views.logs, "Logs")),
    Route("/console/logs/{log_id:int}", page("log_detail.html", views.log_detail, "Logs")),
    Route("/console/strategies", page("strategies.html", views.strategies, "Strategies")),
    Route("/console/strategies/{app_id}/{kind}/{name}", page("spec_edit.html", views.spec_edit, "Strategies")),
    Route("/console/clients", page("clients.html", views.clients, "Clients")),
    Route("/console/platforms", page("platforms.html", views.platforms, "Platforms")),
    Route("/console/health", page("health.html", views.health, "Health")),
    Route("/console/webhooks", page("webhooks.html", views.webhooks, "Webhooks")),
    Route("/console/users", page("users.html", views.users, "Users")),
    Route("/console/keys", page("keys.html", views.keys, "Keys")),
    Route("/console/playground", page("playground.html", views.playground, "Playground")),
    Route("/console/audit", page("audit.html", views.audit, "Audit")),
    Route("/console/static/{version}/{name:path}", serve_static),
]


async def api_docs(request: Request) -> Response:
    """Swagger UI for the Admin API under the console's strict CSP, from the one vendored
    bundle that also serves /bp/docs (aigate.api.app_docs)."""
    return render("api_docs.html", swagger_url=SWAGGER_URL)


routes.append(Route("/api/docs", api_docs))
