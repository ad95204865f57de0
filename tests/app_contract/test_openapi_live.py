"""Live App API responses, under both prefixes, validate against the served /bp/openapi.json:
every endpoint's success and every error type the document lists for it, and each event of
a live stream (deltas, the final event, a mid-stream ai_chat_error)."""

from __future__ import annotations

import itertools

import orjson
import pytest
from jsonschema import Draft202012Validator

from aigate.api.app_openapi import SERVER_ROOT
from aigate.errors import STATUS
from tests.app_contract.config import MAX_BODY_BYTES, contract_config
from tests.app_contract.contract import Contract
from tests.gateway import start_gateway

# Error types that need a fault inside aigate (a bug, a database outage): produced by
# fault injection in their own test below.
FAULT_ONLY = {"internal_error", "service_unavailable"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gw(db_url, simulator):
    gateway = await start_gateway(contract_config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


class Client:
    """Calls one prefix as fresh users and checks every response against the contract."""

    def __init__(self, gw, contract: Contract, surface: str) -> None:
        self.gw, self.contract, self.surface = gw, contract, surface
        self.users = (f"{surface}-u{n}" for n in itertools.count())
        self.user = next(self.users)

    def fresh(self) -> str:
        self.user = next(self.users)
        return self.user

    def url(self, rel: str, user: str) -> str:
        root = "/bp" if self.surface == "client" else f"/bp/server/user/{user}"
        return self.gw.url + root + rel

    def headers(self, user: str, auth: bool = True) -> dict[str, str]:
        if not auth:
            return {"Authorization": "Bearer not-a-valid-credential"}
        return self.gw.user_headers(user) if self.surface == "client" else self.gw.server_headers()

    async def call(
        self,
        method: str,
        rel: str,
        *,
        json=None,
        params=None,
        data=None,
        auth=True,
        path: str | None = None,
        expect: str = "200",
        user: str | None = None,
    ):
        user = user or self.user
        async with self.gw.session.request(
            method,
            self.url(path or rel, user),
            json=json,
            params=params,
            data=data,
            headers=self.headers(user, auth),
        ) as resp:
            body = await resp.read()
            out = self.contract.check(
                self.surface, method, rel, resp.status, resp.headers.get("content-type", ""), body
            )
        got = "200" if resp.status == 200 else out["error"]["error_type"]
        assert got == expect, f"{method} {rel}: expected {expect}, got {resp.status} {body[:300]!r}"
        return out

    async def stream(self, body: dict, abort_after: int | None = None) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        async with self.gw.session.post(
            self.url("/ai/chat/stream", self.user), json=body, headers=self.headers(self.user)
        ) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
            event = ""
            async for line in resp.content:
                line = line.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, self.contract.check_event(event, line[6:])))
        self.contract.seen.add((self.surface, "POST", "/ai/chat/stream", "200"))
        return events


async def exercise_errors_common(c: Client, method: str, rel: str, body: dict | None, **kw) -> None:
    await c.call(method, rel, json=body, auth=False, expect="unauthorized", **kw)
    if c.surface == "server":
        await c.call(method, rel, json=body, user="not a user id!", expect="invalid_parameter", **kw)
    if body is not None:
        big = orjson.dumps({**body, "pad": "x" * (MAX_BODY_BYTES + 1)})
        await c.call(method, rel, data=big, expect="payload_too_large", **kw)


async def exercise_metered(c: Client, rel: str, good: dict, name_field: str, extra: dict) -> None:
    """A metered call (chat, stream, instruction, ai_request): success and each error type."""

    def with_name(name: str) -> dict:
        return {**good, name_field: name, **extra.get(name, {})}

    c.fresh()
    await c.call("POST", rel, json={k: v for k, v in good.items() if k != name_field}, expect="invalid_parameter")
    await c.call("POST", rel, json=with_name("no-such-name"), expect="item_not_found")
    await c.call("POST", rel, json=with_name("off"), expect="config_invalid")
    await c.call("POST", rel, json=with_name("pricey"), expect="insufficient_asset")
    await c.call("POST", rel, json=with_name("broken"), expect="upstream_error")
    await c.call("POST", rel, json=with_name("slow"), expect="upstream_timeout")
    c.fresh()
    if rel != "/ai/chat/stream":
        await c.call("POST", rel, json=with_name("once"))
    else:
        await c.stream(with_name("once"))
    await c.call("POST", rel, json=with_name("once"), expect="limit_exceeded")
    await exercise_errors_common(c, "POST", rel, good)


async def exercise(c: Client) -> None:
    gw = c.gw
    chat = {"strategy": "free-normal", "parameters": {"example_string": "a pirate"}, "messages": HI}
    # chat, and its history
    reply = await c.call("POST", "/ai/chat", json=chat)
    chat_id = reply["chat_id"]
    await c.call("POST", "/ai/chat", json={**chat, "chat_id": chat_id})
    await exercise_metered(c, "/ai/chat", chat, "strategy", {})

    # stream: read to the end; then one cut by an upstream error after two pieces
    c.fresh()
    events = await c.stream({**chat, "messages": [{"role": "user", "content": "tell me a story"}]})
    assert [e for e, _ in events] == ["ai_chat_msg"] * len(events) and events[-1][1]["is_finish"]
    assert len(events) >= 3
    cut = await c.stream({**chat, "messages": [{"role": "user", "content": "[[sim error_after=2]] go"}]})
    assert [e for e, _ in cut] == ["ai_chat_msg", "ai_chat_msg", "ai_chat_error"]
    assert cut[-1][1]["error"]["error_type"] == "upstream_error"
    await exercise_metered(c, "/ai/chat/stream", chat, "strategy", {})

    # chat history and the list of chats belong to the user who chatted first in this run
    c.user = f"{c.surface}-u0"
    page = await c.call("GET", "/ai/chat/history", params={"chat_id": chat_id})
    assert page["total_chat"] == 2 and len(page["chat_histories"]) == 2
    await c.call("GET", "/ai/chat/history", params={}, expect="invalid_parameter")
    await c.call("GET", "/ai/chat/history", params={"chat_id": "NOSUCHCHAT0000000X"}, expect="item_not_found")
    await exercise_errors_common(c, "GET", "/ai/chat/history", None, params={"chat_id": chat_id})
    chats = await c.call("GET", "/ai/chats", params={"page": 1, "page_size": 5})
    assert [x["chat_id"] for x in chats["chats"]] == [chat_id]
    await c.call("GET", "/ai/chats", params={"page": 0}, expect="invalid_parameter")
    await exercise_errors_common(c, "GET", "/ai/chats", None)
    await c.call("POST", "/ai/chat/delete", json={"chat_ids": [chat_id, "unknown"]})
    await c.call("POST", "/ai/chat/delete", json={"chat_ids": []}, expect="invalid_parameter")
    await exercise_errors_common(c, "POST", "/ai/chat/delete", {"chat_ids": [chat_id]})
    await c.call("GET", "/ai/chat/history", params={"chat_id": chat_id}, expect="item_not_found")

    # instruction
    ins = {"name": "test", "parameters": {"role": "doctor", "question": "H1N1"}}
    c.fresh()
    out = await c.call("POST", "/ai/chat/instruction", json=ins)
    assert out["usage"]["total_tokens"] > 0
    await c.call("POST", "/ai/chat/instruction", json={"name": "test", "parameters": {}}, expect="invalid_parameter")
    await exercise_metered(c, "/ai/chat/instruction", ins, "name", {})

    # assets
    assets = await c.call("GET", "/ai/assets")
    assert assets["asset"][0]["name"] == "ai_credit"
    await exercise_errors_common(c, "GET", "/ai/assets", None)

    # AI requests: a sync image, an async video, the history, reading one, deleting
    c.fresh()
    image = await c.call("POST", "/ai/ai_request", json={"strategy": "dell-3", "parameters": {"prompt": "a fox"}})
    assert image["status"] == "succeeded" and image["custom_response"]["image_urls"]
    video = await c.call("POST", "/ai/ai_request", json={"strategy": "video", "parameters": {"prompt": "waves"}})
    assert video["status"] in ("pending", "queueing")
    rid = video["request_id"]
    await c.call("GET", "/ai/ai_request/{request_id}", path=f"/ai/ai_request/{rid}")
    await c.call("GET", "/ai/ai_request/{request_id}", path="/ai/ai_request/404404", expect="item_not_found")
    await exercise_errors_common(c, "GET", "/ai/ai_request/{request_id}", None, path=f"/ai/ai_request/{rid}")
    q = "/ai/ai_request/history/query"
    hist = await c.call("GET", q, params={"page": 1, "page_size": 10, "status": "succeeded,pending,processing"})
    assert image["request_id"] in [r["request_id"] for r in hist["data"]]
    await c.call("GET", q, params={"page": 0, "page_size": 10}, expect="invalid_parameter")
    await exercise_errors_common(c, "GET", q, None, params={"page": 1, "page_size": 1})
    d = "/ai/ai_request/history/delete"
    await c.call("POST", d, json={"request_ids": [image["request_id"], "unknown"]})
    await c.call("POST", d, json={"request_ids": []}, expect="invalid_parameter")
    await exercise_errors_common(c, "POST", d, {"request_ids": ["1"]})
    metered = {"strategy": "free-normal", "parameters": {"example_string": "x", "messages": HI}}
    extra = {name: {"parameters": {"messages": HI}} for name in ("off", "pricey", "broken", "slow", "once")}
    await exercise_metered(c, "/ai/ai_request", metered, "strategy", extra)

    # app server only: minting tokens, revoking them, granting credits
    if c.surface == "server":
        c.user = "revoked-user"
        revoked = await c.call("POST", "/tokens/revoke")
        assert revoked["user_id"] == "revoked-user" and revoked["revoked_at"].endswith("Z")
        await exercise_errors_common(c, "POST", "/tokens/revoke", None)
        c.fresh()
        token = await c.call("POST", "/token", json={"ttl_seconds": 60})
        async with gw.session.get(
            gw.url + "/bp/ai/assets", headers={"Authorization": f"Bearer {token['token']}"}
        ) as resp:
            assert resp.status == 200
        await c.call("POST", "/token", json={"ttl_seconds": 0}, expect="invalid_parameter")
        await exercise_errors_common(c, "POST", "/token", {"ttl_seconds": 60})
        g = "/ai/assets/grant"
        grant = {"asset": "ai_credit", "quantity": 5, "idempotency_key": "order-1"}
        first = await c.call("POST", g, json=grant)
        again = await c.call("POST", g, json=grant)
        assert first["granted"] is True and again["granted"] is False
        await c.call("POST", g, json={**grant, "quantity": 0}, expect="invalid_parameter")
        await exercise_errors_common(c, "POST", g, grant)


async def test_live_responses_match_the_document(gw):
    async with gw.session.get(gw.url + "/bp/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    contract = Contract(doc)
    for surface in ("client", "server"):
        await exercise(Client(gw, contract, surface))

    documented = contract.documented()
    # faults, and limit_exceeded of the routes no strategy limits, are produced in the next test
    missing = {d for d in documented if d[3] not in FAULT_ONLY | {"limit_exceeded"}} - contract.seen
    assert not missing, f"documented outcomes never produced live: {sorted(missing)}"
    assert contract.seen <= documented
    # every type in the code's table is documented somewhere, under its own status
    assert {d[3] for d in documented} == {"200", *STATUS}


async def send_everywhere(gw, contract: Contract, expect: str, headers: dict | None = None) -> None:
    """One request to every documented operation (both prefixes); each answers ``expect``."""
    for path, item in contract.doc["paths"].items():
        surface, root = ("server", SERVER_ROOT) if path.startswith(SERVER_ROOT) else ("client", "/bp")
        url = gw.url + path.replace("{user_id}", "u1").replace("{request_id}", "1")
        for method in item:
            async with gw.session.request(
                method.upper(), url, json={} if method == "post" else None, headers=headers
            ) as resp:
                body = await resp.read()
                data = contract.check(
                    surface, method.upper(), path[len(root) :], resp.status, resp.headers.get("content-type", ""), body
                )
                assert data["error"]["error_type"] == expect, (path, method, data)
                if resp.status in (429, 503):
                    assert int(resp.headers["Retry-After"]) > 0


async def test_faults_and_floods_answer_as_documented_on_every_operation(db_url, simulator, monkeypatch):
    """A database outage (503 with Retry-After) and a bug (500), injected where every App API
    request starts (authentication), and the cap on failed authentications per address
    (429), answer as the document says on every operation."""
    import sqlalchemy.exc

    from aigate.edge.gate import EdgeGate

    doc = contract_config(db_url, simulator.url)
    doc["server"]["unauthenticated_ip_rpm"] = 1
    gw = await start_gateway(doc)
    try:
        async with gw.session.get(gw.url + "/bp/openapi.json") as resp:
            contract = Contract(await resp.json())
        # after one failed authentication from this address, every other one is refused
        async with gw.session.get(gw.url + "/bp/ai/assets", headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        await send_everywhere(gw, contract, "limit_exceeded", {"Authorization": "Bearer wrong"})

        faults = {
            "service_unavailable": lambda: sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()),
            "internal_error": lambda: RuntimeError("an injected bug"),
        }
        current = {}

        async def broken(self, request):
            raise current["fault"]()

        monkeypatch.setattr(EdgeGate, "user_caller", broken)
        monkeypatch.setattr(EdgeGate, "server_caller", broken)
        for error_type, make in faults.items():
            current["fault"] = make
            await send_everywhere(gw, contract, error_type)
    finally:
        await gw.close()
    wanted = FAULT_ONLY | {"limit_exceeded"}
    documented = {d for d in contract.documented() if d[3] in wanted}
    assert documented and documented == {d for d in contract.seen if d[3] in wanted}


def test_the_document_is_valid_openapi_with_2020_12_schemas():
    from openapi_spec_validator import validate

    from aigate.api import bp, bp_requests, bp_tokens
    from aigate.api.app_openapi import build_document

    doc = build_document([*bp.routes, *bp_requests.routes, *bp_tokens.routes], "test")
    validate(doc)
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    stream = doc["paths"]["/bp/ai/chat/stream"]["post"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    client_ops = {p for p in doc["paths"] if p.startswith("/bp/ai/")}
    server_ops = {p.replace("/bp/server/user/{user_id}", "/bp") for p in doc["paths"] if p.startswith("/bp/server/")}
    assert client_ops < server_ops
    assert server_ops - client_ops == {"/bp/token", "/bp/tokens/revoke", "/bp/ai/assets/grant"}


def test_a_route_without_documentation_is_an_error():
    from starlette.routing import Route

    from aigate.api.app_openapi import build_document
    from aigate.api.app_routes import both_prefixes

    async def handler(request, caller, services):  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(LookupError, match="/bp/ai/undocumented"):
        build_document([*both_prefixes("/undocumented", handler, ["GET"]), Route("/x", handler)], "test")
