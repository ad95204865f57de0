"""The App API's AI request routes (seed 000, SPEC §5.5–5.6), under both prefixes."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from aigate.api.app_routes import both_prefixes
from aigate.api.body import read_json_object
from aigate.api.bp import client_ip, json
from aigate.api.params import id_list, int_param
from aigate.auth.caller import Caller
from aigate.engine import ai_requests, modules
from aigate.engine.ai_requests import HistoryQuery
from aigate.errors import invalid
from aigate.services import Services

MAX_DELETE_IDS = 1000


async def submit_route(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    return json(await modules.submit(services, caller, body, request.url.path, client_ip(request)))


async def read_route(request: Request, caller: Caller, services: Services) -> Response:
    return json(await ai_requests.read_one(services, caller, request.path_params["request_id"]))


def status_param(query: QueryParams) -> tuple[str, ...]:
    raw = query.get("status")
    if not raw:
        return ()
    values = raw.split(",")
    for value in values:
        if value not in ai_requests.STATUSES:
            raise invalid(
                f"status: {value!r} is not one of {', '.join(ai_requests.STATUSES)} (comma-separated, no spaces)"
            )
    return tuple(dict.fromkeys(values))


def bool_param(query: QueryParams, name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise invalid(f"{name}: must be true or false")
    return raw == "true"


def history_query(query: QueryParams) -> HistoryQuery:
    return HistoryQuery(
        page=int_param(query, "page", None, 1, 100, required=True),
        page_size=int_param(query, "page_size", None, 1, 1000, required=True),
        start_ms=int_param(query, "start_time", None),
        end_ms=int_param(query, "end_time", None),
        statuses=status_param(query),
        from_appserver=bool_param(query, "from_appserver"),
    )


async def history_route(request: Request, caller: Caller, services: Services) -> Response:
    return json(await ai_requests.history(services, caller, history_query(request.query_params)))


async def delete_route(request: Request, caller: Caller, services: Services) -> Response:
    body = await read_json_object(request, services.config.server.max_body_bytes)
    await ai_requests.delete_records(services, caller, id_list(body, "request_ids", MAX_DELETE_IDS))
    return Response(status_code=200)


routes = [
    *both_prefixes("/ai_request", submit_route, ["POST"]),
    *both_prefixes("/ai_request/history/query", history_route, ["GET"]),
    *both_prefixes("/ai_request/history/delete", delete_route, ["POST"]),
    *both_prefixes("/ai_request/{request_id}", read_route, ["GET"]),
]
