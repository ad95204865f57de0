"""Audio through the relay with the official openai SDK: transcription of a WAV made in
the test (multipart, size-limited, retried whole), speech; priced, logged, limited."""

from __future__ import annotations

import io
from decimal import Decimal

import openai
import pytest
from openai.types.audio import Transcription
from sqlalchemy import select

from aigate.store import tables as t
from tests.api.test_relay import RPM_KEY, one_window, relay_config
from tests.contract.test_simulator_sdks import wav
from tests.gateway import RELAY_KEY, start_gateway
from tests.strict import strict_parse

LIMIT = 64 * 1024


def config(db_url, sim_url):
    doc = relay_config(db_url, sim_url)
    doc["models"] += [
        {"name": "whisper-1", "price": {"per_request_price": 0.006}},
        {"name": "gpt-4o-mini-transcribe", "price": {"input_price": 1.25, "output_price": 5}},
        {"name": "tts-1", "price": {"per_request_price": 0.015}},
    ]
    doc["platforms"][0]["models"] += ["whisper-1", "gpt-4o-mini-transcribe"]
    doc["relay"] = {"audio_max_bytes": LIMIT}
    return doc


@pytest.fixture
async def rgw(db_url, simulator):
    gateway = await start_gateway(config(db_url, simulator.url))
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
async def client(rgw):
    async with openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=RELAY_KEY, max_retries=0) as c:
        yield c


async def log_rows(gw):
    await gw.flush()
    async with gw.services.engine.connect() as conn:
        return (await conn.execute(select(t.usage_logs).order_by(t.usage_logs.c.id))).all()


async def test_transcription_priced_per_request_and_per_token(rgw, client, simulator):
    audio = wav(1.5)  # 24 KB of 8 kHz PCM
    whisper = await client.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", io.BytesIO(audio), "audio/wav"), language="en"
    )
    strict_parse(Transcription, whisper.model_dump(mode="json", exclude_unset=True))
    # the simulator read the duration from the WAV header: the bytes arrived whole
    assert whisper.text.endswith("of hello.wav, 1.5 s.")
    upstream = simulator.requests[-1]
    assert upstream["path"] == "/v1/audio/transcriptions" and "language" in upstream["text"]
    tokens = await client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=("b.wav", audio, "audio/wav")
    )
    assert tokens.usage.input_tokens == 15
    plain = await client.audio.transcriptions.create(
        model="whisper-1", file=("c.wav", audio, "audio/wav"), response_format="text"
    )
    assert plain.startswith("Simulated transcription")
    first, second, third = await log_rows(rgw)
    assert (first.code, first.model, first.used_amount) == (200, "whisper-1", Decimal("0.006"))
    assert (second.input_tokens, second.output_tokens) == (15, tokens.usage.output_tokens)
    assert second.used_amount == Decimal(15 * 1.25 + tokens.usage.output_tokens * 5) / 1_000_000
    assert third.code == 200 and all(r.endpoint == "/v1/audio/transcriptions" for r in (first, second, third))


async def test_a_retry_sends_the_whole_file_again(rgw, client, simulator):
    simulator.script([{"status": 500}])
    result = await client.audio.transcriptions.create(model="whisper-1", file=("again.wav", wav(0.5), "audio/wav"))
    assert result.text.endswith("of again.wav, 0.5 s.")
    [row] = await log_rows(rgw)
    assert row.code == 200 and row.retry_times == 1


async def test_uploads_over_the_limit_and_without_file_are_refused(rgw, client):
    big = wav(5.0)  # 80 KB > 64 KiB
    with pytest.raises(openai.APIStatusError) as caught:
        await client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big, "audio/wav"))
    assert caught.value.status_code == 413 and caught.value.body["param"] == "file"

    # streamed without a Content-Length: cut off once past the limit
    async def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        for _ in range(10):
            yield bytes(16 * 1024)
        yield b"\r\n--b--\r\n"

    async with rgw.session.post(
        rgw.url + "/v1/audio/transcriptions",
        data=chunks(),
        headers={"Authorization": f"Bearer {RELAY_KEY}", "Content-Type": "multipart/form-data; boundary=b"},
    ) as resp:
        assert resp.status == 413
    async with rgw.session.post(
        rgw.url + "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        headers={"Authorization": f"Bearer {RELAY_KEY}"},
    ) as resp:
        assert resp.status == 400  # a urlencoded form has no file part
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post(
            "/audio/transcriptions",
            cast_to=object,
            body={"model": "whisper-1"},
            files=[("other", ("a.txt", b"x"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert caught.value.body["param"] == "file"
    assert [r.code for r in await log_rows(rgw)] == [413, 413, 400, 400]


async def test_speech_and_token_limits(rgw, client, monkeypatch):
    audio = await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there", response_format="wav")
    assert audio.content.startswith(b"RIFF") and audio.response.headers["content-type"] == "audio/wav"
    one_window(monkeypatch)
    async with openai.AsyncOpenAI(base_url=rgw.url + "/v1", api_key=RPM_KEY, max_retries=0) as limited:
        for _ in range(3):
            await limited.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(0.2), "audio/wav"))
        with pytest.raises(openai.RateLimitError):
            await limited.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(0.2), "audio/wav"))
    rows = await log_rows(rgw)
    assert [r.code for r in rows] == [200, 200, 200, 200, 429]
    assert rows[0].endpoint == "/v1/audio/speech" and rows[0].used_amount == Decimal("0.015")
