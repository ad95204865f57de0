"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations


async def test_health_ready_and_metrics(gw):
    async with gw.session.get(gw.url + "/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with gw.session.get(gw.url + "/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200 and body["checks"]["database"] == "ok"
    await gw.session.post(gw.url + "/bp/ai/chat", json={}, headers={"Authorization": "Bearer nope"})
    async with gw.session.get(gw.url + "/metrics") as resp:
        text = await resp.text()
    assert "aigate_requests_total" in text and "aigate_writer_queue_depth" in text
    assert 'aigate_unauthenticated_total{surface="user"}' in text


async def test_readyz_reports_a_database_that_does_not_answer(gw):
    from aigate.store.db import create_engine

    good = gw.services.engine
    gw.services.engine = create_engine("postgresql://postgres@127.0.0.1:1/nothing")  # nothing listens
    try:
        async with gw.session.get(gw.url + "/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["database"].startswith("error")
    finally:
        await gw.services.engine.dispose()
        gw.services.engine = good


async def test_a_database_that_does_not_answer_is_a_503_with_retry_after(gw):
    from aigate.store.db import create_engine

    good = gw.services.engine
    gw.services.engine = create_engine("postgresql://postgres@127.0.0.1:1/nothing")  # the database is gone
    try:
        async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as resp:
            body = await resp.json()
        assert resp.status == 503 and body["error"]["error_type"] == "service_unavailable"
        assert int(resp.headers["Retry-After"]) > 0
    finally:
        await gw.services.engine.dispose()
        gw.services.engine = good


async def test_an_unexpected_failure_is_an_internal_error_with_an_id_and_no_trace(gw, monkeypatch):
    from aigate.engine import metering

    async def broken(services, caller):
        raise RuntimeError("a bug with a secret detail")

    monkeypatch.setattr(metering, "read_assets", broken)
    async with gw.session.get(gw.url + "/bp/ai/assets", headers=gw.user_headers("u1")) as resp:
        body = await resp.json()
    assert resp.status == 500 and body["error"]["error_type"] == "internal_error"
    assert "request_id:" in body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert "secret detail" not in body["error"]["message"]


async def test_a_started_gateway_freezes_its_start_up_objects_and_spaces_out_full_collections(gw):
    import gc

    from aigate import collector

    # Full collections walk every open stream's objects; the default (one per 10 middle
    # collections) paused 250 open relay streams for 30-55 ms at a time.
    assert gc.get_threshold() == collector.THRESHOLDS and collector.THRESHOLDS[2] > 10
    assert gc.get_freeze_count() > 10_000
