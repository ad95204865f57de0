"""Unknown /v1 paths and wrong methods answer OpenAI's error JSON (Anthropic's under
/v1/messages), so SDK errors carry a type and a code."""

from __future__ import annotations

import openai
import pytest

from tests.gateway import RELAY_KEY


async def test_unknown_path_is_openai_404_json(gw):
    async with gw.session.post(gw.url + "/v1/no/such/thing", json={}) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        assert await resp.json() == {
            "error": {
                "message": "Invalid URL (POST /v1/no/such/thing).",
                "type": "invalid_request_error",
                "param": None,
                "code": "unknown_url",
            }
        }


async def test_wrong_method_is_openai_405_json_with_allow(gw):
    async with gw.session.get(gw.url + "/v1/chat/completions") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        error = (await resp.json())["error"]
        assert error["code"] == "method_not_allowed" and error["type"] == "invalid_request_error"
        assert "GET /v1/chat/completions" in error["message"]
    async with gw.session.delete(gw.url + "/v1/models") as resp:
        assert resp.status == 405 and set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD"}


async def test_served_routes_are_untouched(gw):
    async with gw.session.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {RELAY_KEY}"}) as resp:
        assert resp.status == 200


async def test_the_sdk_sees_a_typed_not_found(gw):
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=RELAY_KEY, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.post("/fine_tuning/jobs", cast_to=object, body={})
    assert caught.value.code == "unknown_url" and caught.value.type == "invalid_request_error"


async def test_messages_paths_answer_in_anthropic_shape(gw):
    async with gw.session.get(gw.url + "/v1/messages/nope") as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
