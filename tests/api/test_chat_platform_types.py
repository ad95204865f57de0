"""The App API chat against every platform type, through the simulator's wire formats."""

from __future__ import annotations

import pytest

from tests.gateway import base_config, start_gateway

PLATFORMS = {
    "openai": lambda url: {"base_url": f"{url}/v1", "api_key": "sk-1"},
    "openai_compatible": lambda url: {
        "base_url": f"{url}/v1",
        "api_key": "local-1",
        "options": {"headers": {"X-Org": "acme"}},
    },
    "azure_openai": lambda url: {"base_url": url, "api_key": "az-1", "options": {"api_version": "2024-10-21"}},
    "anthropic": lambda url: {"base_url": url, "api_key": "ant-1"},
    "gemini": lambda url: {"base_url": url, "api_key": "gm-1"},
}


@pytest.mark.parametrize("kind", sorted(PLATFORMS))
async def test_chat_and_stream_on_each_platform_type(db_url, simulator, kind):
    doc = base_config(db_url, simulator.url)
    doc["models"].append({"name": "m-x", "price": {"input_price": 1, "output_price": 2}})
    doc["platforms"].append(
        {
            "id": "p-x",
            "type": kind,
            "models": ["m-x"],
            "model_mapping": {"m-x": "upstream-x"},
            **PLATFORMS[kind](simulator.url),
        }
    )
    doc["apps"][0]["strategies"].append(
        {
            "name": "s-x",
            "model": "m-x",
            "platforms": ["p-x"],
            "system_prompt": "Be {{ .mood }}.",
            "history": {"save": True},
        }
    )
    gw = await start_gateway(doc)
    body = {
        "strategy": "s-x",
        "parameters": {"mood": "kind"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                ],
            }
        ],
    }
    try:
        async with gw.session.post(gw.url + "/bp/ai/chat", json=body, headers=gw.user_headers("u1")) as r:
            once = await r.json()
            assert r.status == 200, once
        assert once["reply"]["content"].startswith("Simulated reply")
        assert once["tokens"]["prompt_tokens"] > 0 and once["tokens"]["completion_tokens"] > 0
        sent = simulator.requests[-1]
        assert "upstream-x" in (sent["path"] + str(sent["body"].get("model", "")))  # model_mapping applied
        async with gw.session.post(gw.url + "/bp/ai/chat/stream", json=body, headers=gw.user_headers("u1")) as r:
            text = (await r.read()).decode()
        assert r.status == 200 and '"is_finish":true' in text
        assert text.count("event: ai_chat_msg") >= 2
    finally:
        await gw.close()
