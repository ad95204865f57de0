"""Opt-in OpenTelemetry traces (SPEC §14), with the SDK's in-memory exporter: one request
span, one child per upstream attempt, GenAI attributes, no prompt text unless enabled;
and the per-model / per-strategy metrics of the same calls."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aigate import telemetry
from aigate.config.schema import TelemetryCfg
from tests.gateway import base_config, start_gateway

SECRET_PROMPT = "my-private-prompt-7f3a"


@pytest.fixture
async def traced(tmp_path, simulator):
    gw = await start_gateway(base_config(f"sqlite:///{tmp_path}/t.db", simulator.url))
    exporter = InMemorySpanExporter()
    try:
        yield gw, simulator, exporter
    finally:
        telemetry.shutdown()
        await gw.close()


async def chat(gw, text: str) -> int:
    body = {
        "strategy": "free-normal",
        "parameters": {"example_string": "a tester"},
        "messages": [{"role": "user", "content": text}],
    }
    async with gw.session.post(gw.url + "/bp/ai/chat", json=body, headers=gw.user_headers("u1")) as resp:
        await resp.read()
        return resp.status


def all_attribute_text(spans) -> str:
    return orjson.dumps([dict(s.attributes) for s in spans]).decode()


async def test_a_chat_is_one_request_span_with_a_child_per_upstream_attempt(traced):
    gw, simulator, exporter = traced
    telemetry.setup(TelemetryCfg(), exporter=exporter)
    simulator.script([{"status": 503}, {}])  # the first attempt fails, the retry serves
    assert await chat(gw, SECRET_PROMPT) == 200
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.parent is None]
    children = [s for s in spans if s.parent is not None]
    assert len(spans) == 3 and len(children) == 2
    assert all(c.parent.span_id == request.context.span_id for c in children)
    assert all(c.context.trace_id == request.context.trace_id for c in children)
    first, second = sorted(children, key=lambda s: s.attributes["aigate.attempt"])
    assert first.attributes["aigate.outcome"] == "server_error" and first.attributes["error.type"] == "503"
    assert second.attributes["aigate.outcome"] == "success"
    for span in children:
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert span.attributes["aigate.platform"] == "sim-openai"
    assert second.attributes["gen_ai.usage.input_tokens"] > 0
    assert second.attributes["gen_ai.usage.output_tokens"] > 0
    attrs = request.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == second.attributes["gen_ai.usage.input_tokens"]
    assert attrs["aigate.strategy"] == "free-normal" and attrs["aigate.retries"] == 1
    assert attrs["http.response.status_code"] == 200
    assert SECRET_PROMPT not in all_attribute_text(spans)  # no prompt content unless enabled

    async with gw.session.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert 'aigate_calls_total{code="200",model="gpt-4o-mini",strategy="free-normal"}' in text
    assert 'aigate_call_tokens_total{direction="output",model="gpt-4o-mini",strategy="free-normal"}' in text
    assert 'aigate_call_ttfb_seconds_count{model="gpt-4o-mini",strategy="free-normal"}' in text
    assert 'aigate_upstream_attempts_total{model="gpt-4o-mini",outcome="server_error",platform="sim-openai"}' in text


async def test_prompts_and_replies_are_on_spans_only_when_enabled(traced):
    gw, simulator, exporter = traced
    telemetry.setup(TelemetryCfg(capture_content=True), exporter=exporter)
    assert await chat(gw, SECRET_PROMPT) == 200
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.parent is None]
    [attempt] = [s for s in spans if s.parent is not None]
    assert SECRET_PROMPT in request.attributes["gen_ai.input.messages"]
    assert "Simulated reply" in attempt.attributes["gen_ai.output.messages"]


async def test_tracing_is_off_by_default(traced):
    gw, _, exporter = traced
    assert not telemetry.enabled()
    assert await chat(gw, "hello") == 200
    assert exporter.get_finished_spans() == ()
