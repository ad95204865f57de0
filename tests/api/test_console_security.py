"""The console's security rules over real HTTP: sessions, CSRF, roles, the audit log, and
the Admin API routes the console added (adjust, preview, platform test, playground)."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import select

from aigate.api.admin.access import AuditMiddleware
from aigate.store import tables as t
from tests.console_client import ConsoleClient
from tests.gateway import ADMIN_KEY, APP_ID, base_config, start_gateway

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def console(gw):
    client = ConsoleClient(gw.url)
    await client.signin()
    try:
        yield client
    finally:
        await client.close()


async def _viewer(gw, console: ConsoleClient, name: str = "vera") -> ConsoleClient:
    status, doc = await console.api(
        "POST", "/operators", {"name": name, "password": "viewer-pass-123", "role": "viewer"}
    )
    assert status == 201, doc
    viewer = ConsoleClient(gw.url)
    await viewer.signin(username=name, password="viewer-pass-123")
    return viewer


async def test_root_redirects_and_pages_need_a_session(gw):
    client = ConsoleClient(gw.url)
    try:
        status, _, headers = await client.page("/")
        assert status == 307 and headers["location"] == "/console/dashboard"
        status, _, headers = await client.page("/console/logs")
        assert status == 303 and headers["location"] == "/console/signin"
        status, doc = await client.api("GET", "/apps")
        assert status == 401 and doc["success"] is False
    finally:
        await client.close()


async def test_session_cookie_flags_and_a_new_id_at_every_signin(gw):
    client = ConsoleClient(gw.url)
    try:
        r = await client.signin_response(admin_key=ADMIN_KEY)
        cookie = next(c for c in r.headers.getall("set-cookie") if c.startswith("aigate_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Secure" not in cookie  # plain HTTP, no trusted proxy
        first = client.session_id()
        await client.signin()
        second = client.session_id()
        assert first and second and first != second
        client.set_session(first)  # the replaced session ended with the new sign-in
        status, _, _ = await client.page("/console/dashboard")
        assert status == 303
        client.set_session("forged-session-id")
        status, _, _ = await client.page("/console/dashboard")
        assert status == 303
    finally:
        await client.close()


async def test_secure_flag_behind_a_trusted_proxy(db_url, simulator):
    doc = base_config(db_url, simulator.url)
    doc["server"]["trusted_proxies"] = ["127.0.0.1/32"]
    gw = await start_gateway(doc)
    https = {"X-Forwarded-Proto": "https"}
    try:
        async with gw.session.get(gw.url + "/console/signin", headers=https) as r:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
            assert "Secure" in r.headers["set-cookie"]
        async with gw.session.post(
            gw.url + "/console/signin",
            allow_redirects=False,
            data={"csrf_token": token, "admin_key": ADMIN_KEY},
            headers={**https, "Cookie": f"aigate_signin={token}"},
        ) as r:
            assert r.status == 303
            cookie = next(c for c in r.headers.getall("set-cookie") if c.startswith("aigate_session="))
            assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await gw.close()


async def test_writes_without_the_csrf_token_are_refused_whatever_the_content_type(gw, console):
    body = {"name": "no-csrf", "models": []}
    status, doc = await console.api("POST", f"/apps/{APP_ID}/relay_tokens", body, csrf=False)
    assert status == 403 and doc["message"].startswith("csrf:")
    async with console.http.post(
        gw.url + f"/api/apps/{APP_ID}/relay_tokens",
        data="name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 403
    async with console.http.post(
        gw.url + f"/api/apps/{APP_ID}/relay_tokens",
        data=b'{"name": "x"}',
        headers={"Content-Type": "text/plain", "X-CSRF-Token": "wrong"},
    ) as r:
        assert r.status == 403
    status, doc = await console.api("POST", f"/apps/{APP_ID}/relay_tokens", body)
    assert status == 201, doc
    # sign-out is a write too
    async with console.http.post(gw.url + "/console/signout", data={"csrf_token": "wrong"}, allow_redirects=False) as r:
        assert r.status == 403
    status, _, _ = await console.page("/console/dashboard")
    assert status == 200


async def test_signin_is_rate_limited_per_ip_before_hashing(gw):
    client = ConsoleClient(gw.url)
    try:
        for _ in range(10):
            r = await client.signin_response(admin_key="wrong-key")
            assert r.status == 401
        r = await client.signin_response(admin_key=ADMIN_KEY)  # even the right key now waits
        assert r.status == 429
        assert "Too many sign-in attempts" in await r.text()
    finally:
        await client.close()


async def test_viewer_reads_but_cannot_write_see_bodies_or_spend(gw, console):
    await gw.session.post(
        gw.url + "/bp/ai/chat",
        headers=gw.user_headers("u1"),
        json={
            "strategy": "free-normal",
            "parameters": {"example_string": "x"},
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    await gw.flush()
    viewer = await _viewer(gw, console)
    try:
        for path in (
            "/dashboard",
            "/logs/search",
            f"/apps/{APP_ID}/strategies",
            "/platforms",
            "/audit",
            f"/apps/{APP_ID}/users/u1",
        ):
            status, doc = await viewer.api("GET", path)
            assert status == 200, (path, doc)
        status, doc = await viewer.api("GET", "/logs/search")
        assert all(r["request_detail"]["request_body"] == "" for r in doc["data"]["logs"])
        log_id = doc["data"]["logs"][0]["id"]
        refused = [
            ("PATCH", f"/apps/{APP_ID}/strategies/free-normal", {"enabled": False}),
            ("POST", f"/apps/{APP_ID}/relay_tokens", {"name": "v"}),
            (
                "POST",
                f"/apps/{APP_ID}/users/u1/assets/ai_credit/adjust",
                {"delta": 5, "reason": "gift", "idempotency_key": "v1"},
            ),
            ("GET", f"/logs/detail/{log_id}", None),
            ("GET", "/logs/export", None),
            ("POST", "/platforms/sim-openai/test", {}),
            (
                "POST",
                "/playground/chat",
                {"app_id": APP_ID, "strategy": "free-normal", "messages": [{"role": "user", "content": "hi"}]},
            ),
            ("POST", "/operators", {"name": "x", "password": "0123456789", "role": "admin"}),
        ]
        for method, path, body in refused:
            status, doc = await viewer.api(method, path, body)
            assert status == 403, (method, path, doc)
            assert doc["message"].startswith("role:")
        status, text, _ = await viewer.page(f"/console/logs/{log_id}")
        assert status == 200 and "shown to admins only" in text
        status, doc = await viewer.api("GET", f"/apps/{APP_ID}/users/u1")
        assert doc["data"]["chats"]["count"] == 1 and doc["data"]["chats"]["latest"][0]["title"] == ""
        status, text, _ = await viewer.page(f"/console/users?app={APP_ID}&user=u1")
        assert "hi" not in re.findall(r"<summary>(.*?)</summary>", text)[0]
        status, doc = await console.api("GET", f"/apps/{APP_ID}/users/u1")
        assert doc["data"]["chats"]["latest"][0]["title"] == "hi"
        # a preview changes nothing and costs nothing: allowed
        status, doc = await viewer.api(
            "POST", f"/apps/{APP_ID}/preview", {"template": "hi {{ .a }}", "parameters": {"a": "b"}}
        )
        assert status == 200 and doc["data"]["rendered"] == "hi b"
    finally:
        await viewer.close()


async def test_no_operator_changes_their_own_role_and_the_last_admin_stays(gw, console):
    status, _ = await console.api("POST", "/operators", {"name": "ada", "password": "admin-pass-123", "role": "admin"})
    assert status == 201
    viewer = await _viewer(gw, console, "vic")
    ada = ConsoleClient(gw.url)
    await ada.signin(username="ada", password="admin-pass-123")
    try:
        status, doc = await viewer.api("PATCH", "/operators/vic", {"role": "admin"})
        assert status == 403  # a viewer writes nothing, its own role included
        status, doc = await ada.api("PATCH", "/operators/ada", {"role": "viewer"})
        assert status == 403 and "own role" in doc["message"]
        status, doc = await console.api("PATCH", "/operators/ada", {"role": "viewer"})
        assert status == 409 and "last admin" in doc["message"]
        # a role change ends the operator's sessions
        status, doc = await console.api("PATCH", "/operators/vic", {"role": "admin"})
        assert status == 200, doc
        status, _ = await viewer.api("GET", "/apps")
        assert status == 401
    finally:
        await viewer.close()
        await ada.close()


async def test_password_change_and_signout_end_sessions(gw, console):
    viewer = await _viewer(gw, console, "pat")
    try:
        status, _ = await console.api("PATCH", "/operators/pat", {"password": "a-new-password-1"})
        assert status == 200
        status, _, _ = await viewer.page("/console/dashboard")
        assert status == 303
        await viewer.signin(username="pat", password="a-new-password-1")
        async with viewer.http.post(
            gw.url + "/console/signout", data={"csrf_token": viewer.csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        status, _ = await viewer.api("GET", "/apps")
        assert status == 401
        r = await viewer.signin_response(username="pat", password="wrong-password")
        assert r.status == 401 and "Wrong username or password" in await r.text()
    finally:
        await viewer.close()


async def test_audit_log_records_writes_with_secrets_masked(gw, console):
    status, doc = await console.api("POST", f"/apps/{APP_ID}/relay_tokens", {"name": "audited"})
    assert status == 201
    secret = doc["data"]["key"]
    async with gw.session.patch(
        gw.url + f"/api/apps/{APP_ID}/strategies/free-normal",
        json={"system_prompt": "Changed."},
        headers=gw.admin_headers(),
    ) as r:
        assert r.status == 200
    status, doc = await console.api("GET", "/audit")
    entries = doc["data"]["entries"]
    patch = entries[0]
    assert patch["actor"] == "admin-key" and patch["action"] == "PATCH"
    assert patch["object"] == f"/api/apps/{APP_ID}/strategies/free-normal"
    assert patch["before"]["system_prompt"] == "You play {{ .example_string }}."
    assert patch["after"]["system_prompt"] == "Changed."
    create = entries[1]
    assert create["actor"] == "admin-key" or create["actor"] == "operator:" or create["actor"] == "admin-key"
    assert create["object"] == f"/api/apps/{APP_ID}/relay_tokens"
    assert create["after"]["key"] == "***" and secret not in str(entries)
    async with gw.services.engine.connect() as conn:
        stored = (await conn.execute(select(t.audit_log.c.after))).all()
    assert secret not in str(stored)


async def test_a_write_answers_only_once_its_audit_row_is_written(gw, monkeypatch):
    record = AuditMiddleware._record

    async def slow_record(*args):
        await asyncio.sleep(0.2)  # a busy database
        await record(*args)

    monkeypatch.setattr(AuditMiddleware, "_record", staticmethod(slow_record))
    path = f"/api/apps/{APP_ID}/strategies/free-normal"
    async with gw.session.patch(gw.url + path, json={"system_prompt": "Later."}, headers=gw.admin_headers()) as r:
        assert r.status == 200  # the status alone, the body unread
        async with gw.services.engine.connect() as conn:
            rows = (await conn.execute(select(t.audit_log.c.action, t.audit_log.c.object))).all()
    assert ("PATCH", path) in [tuple(row) for row in rows]


async def test_adjust_is_idempotent_never_negative_and_keeps_the_reason(gw, console):
    path = f"/apps/{APP_ID}/users/u7/assets/ai_credit/adjust"
    status, doc = await console.api("POST", path, {"delta": 25, "reason": "support refund", "idempotency_key": "k1"})
    assert status == 200 and doc["data"] == {"applied": True, "quantity": 75, "asset": "ai_credit"}
    status, doc = await console.api("POST", path, {"delta": 25, "reason": "support refund", "idempotency_key": "k1"})
    assert doc["data"] == {"applied": False, "quantity": 75, "asset": "ai_credit"}
    status, doc = await console.api("POST", path, {"delta": -100, "reason": "abuse", "idempotency_key": "k2"})
    assert status == 402 and doc["message"].startswith("delta:")
    status, doc = await console.api("POST", path, {"delta": -5, "reason": "abuse", "idempotency_key": "k3"})
    assert doc["data"]["quantity"] == 70
    status, doc = await console.api("POST", path, {"delta": 0, "reason": "x", "idempotency_key": "k4"})
    assert status == 400 and doc["message"].startswith("delta:")
    status, doc = await console.api(
        "POST", f"/apps/{APP_ID}/users/u7/assets/nope/adjust", {"delta": 1, "reason": "x", "idempotency_key": "k5"}
    )
    assert status == 404 and doc["message"].startswith("asset:")
    status, doc = await console.api("GET", f"/apps/{APP_ID}/users/u7/ledger")
    ledger = doc["data"]["ledger"]
    assert [(e["delta"], e["reason"], e["note"]) for e in ledger[:2]] == [
        (-5, "adjust", "abuse"),
        (25, "adjust", "support refund"),
    ]


async def test_preview_names_the_missing_variable(gw, console):
    status, doc = await console.api(
        "POST",
        f"/apps/{APP_ID}/preview",
        {"template": "You play {{ .role }} for {{ .who.name }}.", "parameters": {"role": "a <b>teacher</b>"}},
    )
    assert status == 400 and doc["message"].startswith("parameters.who")
    status, doc = await console.api(
        "POST",
        f"/apps/{APP_ID}/preview",
        {"template": [{"role": "system", "content": "be {{ .role }}"}], "parameters": {"role": "kind"}},
    )
    assert doc["data"]["rendered"] == [{"role": "system", "content": "be kind"}]


async def test_platform_test_reports_status_latency_and_error(gw, console, simulator):
    status, doc = await console.api("POST", "/platforms/sim-openai/test", {})
    assert status == 200 and doc["data"]["ok"] is True and doc["data"]["status"] == 200
    assert doc["data"]["latency_ms"] >= 0
    status, doc = await console.api("POST", "/platforms/sim-openai/test", {"model": "no-such-model-fail"})
    assert status == 200
    status, doc = await console.api("POST", "/platforms/nope/test", {})
    assert status == 404


async def test_playground_streams_bills_and_logs_as_a_console_user(gw, console):
    async with console.http.post(
        gw.url + "/api/playground/chat",
        headers={"X-CSRF-Token": console.csrf},
        json={
            "app_id": APP_ID,
            "strategy": "free-normal",
            "user": "tester",
            "parameters": {"example_string": "a pirate"},
            "messages": [{"role": "user", "content": "hello"}],
        },
    ) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = await r.text()
    assert "event: playground" in text and "You play a pirate." in text and '"is_finish":true' in text
    await gw.flush()
    status, doc = await console.api("GET", "/logs/search?user=console:tester")
    row = doc["data"]["logs"][0]
    assert row["endpoint"] == "/api/playground/chat" and row["code"] == 200
    status, doc = await console.api("GET", f"/apps/{APP_ID}/users/console:tester")
    assert doc["data"]["assets"][0]["quantity"] == 49  # billed like any call
    assert doc["data"]["usage"]["requests"] == 1  # from the per-user daily rollup


async def test_pages_send_a_strict_csp_and_escape_attacker_text(gw, console):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    await gw.session.post(
        gw.url + "/bp/ai/chat",
        headers=gw.user_headers("u9"),
        json={
            "strategy": "free-normal",
            "parameters": {"example_string": evil},
            "messages": [{"role": "user", "content": evil}],
        },
    )
    await gw.flush()
    status, doc = await console.api("GET", "/logs/search?user=u9")
    log_id = doc["data"]["logs"][0]["id"]
    for path in (
        "/console/dashboard",
        "/console/logs?user=u9",
        f"/console/logs/{log_id}",
        f"/console/users?app={APP_ID}&user=u9",
        "/console/signin",
    ):
        status, html, headers = await console.page(path)
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "<script>alert" not in html and "<img src=x" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path  # no inline script at all
    status, html, _ = await console.page(f"/console/users?app={APP_ID}&user=u9")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the chat message, shown as text


async def test_static_assets_are_versioned_and_cached(gw, console):
    status, html, _ = await console.page("/console/dashboard")
    urls = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', html)
    assert any("htmx.min.js" in u for u in urls) and any("uPlot" in u for u in urls)
    for url in urls:
        async with console.http.get(gw.url + url) as r:
            assert r.status == 200 and "immutable" in r.headers["cache-control"]
    async with console.http.get(gw.url + urls[0].replace("/static/", "/static/0000").rsplit("/", 1)[0] + "/x") as r:
        assert r.status == 404
    status, html, headers = await console.page("/api/docs")
    assert status == 200 and "/console/static/" in html and "cdn" not in html.lower()


async def test_csv_export_neutralises_formulas(gw, console):
    await gw.services.writer.put(
        "usage_log",
        {
            "request_id": "1",
            "created_ms": 1_700_000_000_000,
            "request_ms": 1_700_000_000_000,
            "code": 500,
            "app_id": APP_ID,
            "model": "gpt-4o-mini",
            "user": "=cmd|' /C calc'!A0",
            "content": "+1+1",
            "token_name": "@sum",
            "ttfb_ms": 1,
        },
    )
    await gw.flush()
    async with console.http.get(gw.url + "/api/logs/export?start_timestamp=1699999999000") as r:
        text = await r.text()
    assert "'=cmd" in text and "'+1+1" in text and "'@sum" in text
    assert "\n=cmd" not in text and ",=cmd" not in text


async def test_signout_on_one_instance_ends_the_session_on_another(pg_url, simulator):
    a = await start_gateway(base_config(pg_url, simulator.url))
    b = await start_gateway(base_config(pg_url, simulator.url))
    client = ConsoleClient(a.url)
    try:
        await client.signin()
        sid = client.session_id()
        other = ConsoleClient(b.url)
        other.set_session(sid)
        status, _, _ = await other.page("/console/dashboard")
        assert status == 200  # shared: the session works on the second instance
        async with client.http.post(
            a.url + "/console/signout", data={"csrf_token": client.csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        status, _, _ = await other.page("/console/dashboard")
        assert status == 303
        await other.close()
    finally:
        await client.close()
        await a.close()
        await b.close()


async def test_a_new_admin_key_ends_admin_key_sessions(db_url, simulator):
    gw = await start_gateway(base_config(db_url, simulator.url))
    client = ConsoleClient(gw.url)
    try:
        await client.signin()
        sid = client.session_id()
    finally:
        await gw.close()
    doc = base_config(db_url, simulator.url)
    doc["server"]["admin_key"] = "a-brand-new-admin-key-0123456789"
    gw2 = await start_gateway(doc)
    try:
        client.url = gw2.url
        client.set_session(sid)
        status, _, _ = await client.page("/console/dashboard")
        assert status == 303
    finally:
        await client.close()
        await gw2.close()


async def test_signin_limit_is_shared_through_redis(db_url, simulator, redis_url):
    doc = base_config(db_url, simulator.url, redis_url=redis_url)
    a = await start_gateway(doc)
    b = await start_gateway(doc)
    ca, cb = ConsoleClient(a.url), ConsoleClient(b.url)
    try:
        for _ in range(5):
            assert (await ca.signin_response(admin_key="wrong")).status == 401
            assert (await cb.signin_response(admin_key="wrong")).status == 401
        assert (await ca.signin_response(admin_key=ADMIN_KEY)).status == 429  # 11th attempt, either instance
    finally:
        await ca.close()
        await cb.close()
        await a.close()
        await b.close()


async def test_log_pages_read_through_the_log_search_pool(gw, console):
    """The console's log list and detail run on the log search's own pool (on PostgreSQL:
    custom plans for every statement), like the Admin API's log routes."""
    assert gw.services.log_reader is None  # made on first use
    await gw.session.post(
        gw.url + "/bp/ai/chat",
        headers=gw.user_headers("u7"),
        json={
            "strategy": "free-normal",
            "parameters": {"example_string": "x"},
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    await gw.flush()
    status, html, _ = await console.page("/console/logs?user=u7")
    assert status == 200 and "u7" in html
    log_id = re.search(r'href="/console/logs/(\d+)"', html).group(1)
    status, _, _ = await console.page(f"/console/logs/{log_id}")
    assert status == 200
    reader = gw.services.log_reader
    if gw.services.engine.dialect.name == "postgresql":
        assert reader is not None and reader is not gw.services.engine
        async with reader.connect() as conn:
            mode = (await conn.exec_driver_sql("SHOW plan_cache_mode")).scalar()
        assert mode == "force_custom_plan"
    else:
        assert reader is gw.services.engine  # SQLite: one connection serves everything
