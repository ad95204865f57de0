"""The lifecycle of one metered upstream call, written once for every flow.

    record → prepare → reserve → route (retries, failover, cooldown)
           → [streams: first-event failover, pump, detach on disconnect]
           → settle or release → records

The flows (chat once and stream, instruction, ai_request, the relay) keep only what
differs: how they prepare the upstream request, how they reserve (a ``Meter``), how they
speak errors (an ``Errors``) and, for streams, how they frame events (a ``StreamOutput``).

Guarantees, whatever ends the call — an answer, an upstream error or timeout, a bug, a
database error or outage, an encoding error, a client that disconnects, a cancellation:

* what was reserved is settled or released exactly once (``Meter``);
* exactly one usage-log row (and, for App API calls, one AI request record) is queued,
  with the right code: 200, the upstream failure's mapped status, 500 for a bug (its
  message carries a reference id, the traceback goes to the log), 503 with
  ``Retry-After`` for a database outage, 499 for a client that left;
* rows leave through the batched writer, so they reach the database after an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aigate.auth.caller import Caller
from aigate.clock import now_ms
from aigate.engine import metering, observe, routing
from aigate.engine.detached import finish_shielded, run_detached
from aigate.engine.records import CallRecord, write_records
from aigate.providers.base import Platform, StreamEvent, UpstreamError, Usage
from aigate.providers.openai_wire import ReplyText
from aigate.services import Services
from aigate.store.outage import is_outage

log = logging.getLogger("aigate.calls")

T = TypeVar("T")

RETRY_AFTER_S = 5  # what a 503 during a database outage tells the client


class Failure(Protocol):
    """An error a surface answers with (``AppError``, ``RelayError``)."""

    status: int
    message: str


class Errors(Protocol):
    """How a surface speaks about failures."""

    @property
    def kind(self) -> type[Exception]:
        """The surface's own error class: raised as it is."""

    def upstream(self, exc: UpstreamError) -> Exception: ...
    def internal(self, ref: str) -> Exception: ...
    def unavailable(self, retry_after_s: int) -> Exception: ...


class Meter(Protocol):
    """What a call reserved, and how to end it: exactly one of the two is called."""

    async def release(self, record: CallRecord) -> None:
        """The call failed: give back what was reserved."""

    async def settle(self, record: CallRecord) -> None:
        """The call was served (or its client left after a partial answer): keep the charge."""


def app_record(
    services: Services, caller: Caller, module: str, endpoint: str, ip: str, strategy: str = ""
) -> CallRecord:
    """The record of an App API call: an AI request id and a usage-log request id."""
    return CallRecord(
        request_id=services.ids.next(),
        log_request_id=str(services.ids.next()),
        app_id=caller.app.id,
        user_id=caller.user_id,
        module=module,
        strategy=strategy,
        endpoint=endpoint,
        started_ms=now_ms(),
        from_appserver=caller.from_appserver,
        ip=ip,
    )


@dataclass(slots=True)
class Call:
    """One metered call. ``ending()`` wraps everything between the record's creation and the
    answer; ``succeed()`` ends a served call. Both are idempotent."""

    services: Services
    record: CallRecord
    errors: Errors
    meter: Meter | None = None
    durable: bool = False  # commit the records before answering (a GET right after finds them)
    ended: bool = False
    ai_row: dict[str, Any] | None = None  # the AI request record, once written

    # --- ending the call

    async def succeed(self) -> None:
        if self.ended:
            return
        self.ended = True
        # shielded: a cancellation now must not leave the call half settled
        await finish_shielded(self._settle_and_write())

    async def _settle_and_write(self) -> None:
        if self.meter is not None:
            await _quietly(self.meter.settle(self.record), "settle", self.record)
        await self._write()

    def hand_off(self) -> None:
        """The call lives on elsewhere (an async job records and settles itself)."""
        self.ended = True

    async def fail(self, err: Exception) -> Exception:
        """Release what was reserved, record the failure; hands back the error to raise."""
        if self.ended:
            return err
        self.ended = True
        record = self.record
        record.code = getattr(err, "status", 500)
        record.status = "failed"
        record.error = getattr(err, "message", str(err))
        await finish_shielded(self._release_and_write())
        return err

    async def _release_and_write(self) -> None:
        if self.meter is not None:
            await _quietly(self.meter.release(self.record), "release", self.record)
        await self._write()

    def surface_error(self, exc: BaseException) -> Exception:
        """Any exception as the surface's error: its own kind as is, upstream failures
        mapped, a database outage 503, anything else a 500 with a reference id."""
        if isinstance(exc, self.errors.kind):
            return exc  # type: ignore[return-value]
        if isinstance(exc, UpstreamError):
            self.record.response_raw = exc.body
            return self.errors.upstream(exc)
        if is_outage(exc):
            log.warning("database unavailable during call %s: %s", self.record.log_request_id, exc)
            return self.errors.unavailable(RETRY_AFTER_S)
        ref = self.record.log_request_id
        log.error("call %s failed unexpectedly", ref, exc_info=exc, extra={"request_id": ref})
        return self.errors.internal(ref)

    def ending(self) -> Call:
        """``async with call.ending():`` any exception inside ends the call as failed and is
        raised as the surface's error. A cancellation (the client left, the server stops)
        releases and records 499. (The call is its own context manager: no generator per
        call, as ``contextlib.asynccontextmanager`` would make.)"""
        return self

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if isinstance(exc, asyncio.CancelledError):
            if not self.ended:
                self.record.error = "the request was cancelled before the answer"
                run_detached(self._cancelled())
            return False
        if isinstance(exc, Exception):
            raise await self.fail(self.surface_error(exc)) from None
        return False

    async def _cancelled(self) -> None:
        await self.fail(_Cancelled())

    async def _write(self) -> None:
        self.ai_row = await write_records(self.services, self.record, durable=self.durable)
        observe.call_ended(self.services, self.record)  # ops: metrics per model/strategy, span attributes

    # --- routing

    async def route(self, cands: list[tuple[Platform, str]], attempt: Callable[[Platform, str], Awaitable[T]]) -> T:
        """Run ``attempt`` over the candidates with retries and failover (``routing``)."""
        return await routing.call_with_retries(cands, attempt, self.record.trace, routing.cooldowns_of(self.services))

    async def open_stream(
        self,
        cands: list[tuple[Platform, str]],
        start: Callable[[Platform, str], AsyncIterator[StreamEvent]],
    ) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
        """Start an upstream stream, failing over only until its first event arrives."""

        async def attempt(platform: Platform, model: str):
            events = start(platform, model).__aiter__()
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                raise UpstreamError(
                    "the upstream stream ended before any event", retryable=True, kind="protocol"
                ) from None
            return events, first

        return await self.route(cands, attempt)


@dataclass(slots=True)
class CreditMeter:
    """The App API's meter: the user's credits and limit slot (``aigate.engine.metering``)."""

    services: Services
    reservation: metering.Reservation

    async def release(self, record: CallRecord) -> None:
        await metering.release(self.services, self.reservation)
        self.released(record)

    def released(self, record: CallRecord) -> None:
        """Note on the record that the call was given back (charged nothing)."""
        credits = self.summary(0)
        if credits is not None:
            record.metadata["credits"] = credits

    def summary(self, charge: int, won: bool = True) -> dict[str, Any] | None:
        """What the call cost, for its records (None without a cost); ``won`` is False when
        the sweep had released the hold first (nothing was charged)."""
        res = self.reservation
        if res.cost is None:
            return None
        credits = metering.charge_summary(res, charge if won else 0)
        if not won:
            credits["expired"] = True
        return credits

    async def settle(self, record: CallRecord) -> None:
        res = self.reservation
        if not res.holds:  # a flat per-request cost was taken whole at the reservation
            await self.settled(record, res.flat, True)
            return
        # usage-based: the actual charge from what was used (a client that left mid-stream
        # pays for what was generated); the response then shows the settled balance
        charge = self.charge(record)
        await self.settled(record, charge, await metering.settle(self.services, res, charge))

    def charge(self, record: CallRecord) -> int:
        """A usage-based call's actual charge (millionths), from the record's model and usage."""
        return metering.usage_charge(self.services, self.reservation, record.model, record.usage)

    async def settled(self, record: CallRecord, charge: int, won: bool) -> None:
        """Note the settled charge on the record and tell observers; ``won`` is False when
        the sweep had released the hold first (nothing was charged)."""
        credits = self.summary(charge, won)
        if credits is None:
            return
        record.metadata["credits"] = credits
        if won:
            await observe.charge_settled(self.services, self.reservation, charge)  # `asset.low` webhooks


class _Cancelled(Exception):
    status = 499
    message = "the request was cancelled before the answer"


async def _quietly(step: Awaitable[None], what: str, record: CallRecord) -> None:
    """Settlement must not stop the records: a failure is logged with the call's id."""
    try:
        await step
    except Exception:
        log.exception("could not %s call %s", what, record.log_request_id)


# --- streams


@dataclass(slots=True)
class StreamState:
    """What a stream delivered so far."""

    reply: ReplyText = field(default_factory=ReplyText)  # or the adapter's (``StreamEvent.reply``)
    usage: Usage | None = None
    chunk_id: str = ""
    passed_bytes: int = 0  # the upstream reads sent on as they came (``StreamEvent.sse``)

    @property
    def text(self) -> str:
        return self.reply.text()

    @property
    def generated(self) -> str:
        """The text and any tool-call arguments: what a usage estimate counts."""
        return self.reply.generated()


class StreamOutput(Protocol):
    """How a surface frames a stream."""

    def frame(self, event: StreamEvent, state: StreamState) -> bytes | None:
        """The bytes to send for one upstream event (None: nothing); not called for a
        read the adapter hands over whole (``StreamEvent.sse``), which goes out as it came."""

    async def complete(self, state: StreamState) -> None:
        """The upstream finished: last work before the call is settled (e.g. save the chat)."""

    def closing(self, state: StreamState) -> list[bytes]:
        """The frames after settlement (the final event, ``[DONE]``)."""

    def error_frame(self, err: Exception) -> bytes:
        """One frame that tells the client the stream failed."""

    async def abandoned(self, state: StreamState) -> None:
        """The client left: keep what was generated (e.g. save the partial reply)."""

    def estimate(self, state: StreamState) -> Usage:
        """Usage when the upstream reported none before the stream ended."""


async def pump(
    call: Call, events: AsyncIterator[StreamEvent], first: StreamEvent, out: StreamOutput
) -> AsyncIterator[bytes]:
    """Forward a started stream to the client. An error after the first byte becomes one
    error frame (the call released and recorded); a client that leaves stops the upstream
    read, and what was generated is billed as 499 in a task of its own.

    The frames of events that came in one upstream read (``StreamEvent.more``) go out
    as one write: a gateway that falls behind catches up in fewer, larger writes. A read
    the adapter hands over whole (``StreamEvent.sse``) goes out as it came, with nothing
    more done per read than counting its bytes."""
    state = StreamState()
    finished = False
    batch: list[bytes] = []  # frames held back while more events of the same read follow
    event: StreamEvent | None = first
    del first  # not kept for the whole stream
    try:
        while event is not None:
            frame = event.sse
            if frame is not None:  # ordinary chunks, SSE framing included: the relay's usual event
                state.passed_bytes += len(frame)
            else:
                if event.usage is not None:
                    state.usage = event.usage
                if event.reply is None and event.delta:  # else the adapter keeps the reply
                    state.reply.add_text(event.delta)
                if not state.chunk_id:
                    state.chunk_id = event.upstream_id
                frame = out.frame(event, state)
            if event.reply is not None:
                state.reply = event.reply
            if event.more:
                if frame is not None:
                    batch.append(frame)
            elif batch:
                if frame is not None:
                    batch.append(frame)
                yield b"".join(batch)
                batch.clear()
            elif frame is not None:
                yield frame
            event = None  # the sent event (its chunk's bytes, its text) is not kept while the next is awaited
            try:  # not anext(events, None): that wraps every event's await in one more object
                event = await events.__anext__()
            except StopAsyncIteration:
                pass
        if batch:  # the stream ended right after an event that announced more
            yield b"".join(batch)
            batch.clear()
        finished = True
    except Exception as exc:  # the upstream failed mid-stream, or framing hit a bug
        finished = True
        if state.reply or state.usage:  # what was generated before the failure is logged
            call.record.usage = state.usage or out.estimate(state)
        failed = out.error_frame(await call.fail(call.surface_error(exc)))
        yield b"".join([*batch, failed])
        return
    finally:
        if not finished:
            run_detached(_abandon(call, events, state, out))
    # shielded: a client leaving now must not stop the settlement
    err = await finish_shielded(_complete(call, state, out))
    try:
        frames = out.closing(state) if err is None else [out.error_frame(err)]
    except Exception as exc:  # the call is settled and recorded; say that the end failed
        frames = [out.error_frame(call.surface_error(exc))]
    for frame in frames:
        yield frame


async def _complete(call: Call, state: StreamState, out: StreamOutput) -> Exception | None:
    call.record.usage = state.usage or out.estimate(state)
    try:
        await out.complete(state)
    except asyncio.CancelledError:
        await call.fail(_Cancelled())
        raise
    except Exception as exc:
        return await call.fail(call.surface_error(exc))
    await call.succeed()
    return None


async def _abandon(call: Call, events: AsyncIterator[StreamEvent], state: StreamState, out: StreamOutput) -> None:
    # stop reading the upstream (closes its connection); a broken one has nothing to stop
    with contextlib.suppress(Exception):
        await events.aclose()  # type: ignore[attr-defined]
    record = call.record
    record.usage = state.usage or out.estimate(state)
    record.code = 499  # the client closed the request (the partial answer is billed)
    record.error = f"client disconnected after {len(state.text)} characters"
    try:
        await out.abandoned(state)
    except Exception:
        log.exception("could not keep the partial answer of call %s", record.log_request_id)
    await call.succeed()
