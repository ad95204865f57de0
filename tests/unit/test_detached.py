"""finish_shielded: runs at once when it can, and a cancelled caller never stops it half way."""

import asyncio

import pytest

from aigate.engine.detached import finish_shielded


async def test_work_that_never_suspends_runs_in_the_caller_without_a_task():
    steps = []

    async def settle():
        steps.append(asyncio.current_task())
        return 42

    assert await finish_shielded(settle()) == 42
    assert steps == [asyncio.current_task()]  # ran inside the caller's own task


async def test_work_that_suspends_goes_on_in_a_task_with_sends_and_results_passed_through():
    gate = asyncio.get_running_loop().create_future()

    async def settle():
        first = asyncio.current_task()
        value = await gate  # a real suspension on a future
        await asyncio.sleep(0)  # and a bare yield
        return value, first, asyncio.current_task()

    caller = asyncio.current_task()
    waiter = asyncio.ensure_future(finish_shielded(settle()))
    await asyncio.sleep(0)
    gate.set_result("settled")
    value, first, later = await waiter
    assert value == "settled"
    assert first is not caller  # the eager part ran in the waiter's task
    assert later is not first  # the rest in a task of its own


async def test_a_cancelled_caller_leaves_the_work_running_to_its_end():
    gate = asyncio.Event()
    done = []

    async def settle():
        await gate.wait()
        await asyncio.sleep(0.01)
        done.append("written")

    caller = asyncio.ensure_future(finish_shielded(settle()))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == []
    gate.set()
    for _ in range(50):
        if done:
            break
        await asyncio.sleep(0.01)
    assert done == ["written"]


async def test_errors_reach_the_caller_before_and_after_a_suspension():
    async def fails_at_once():
        raise ValueError("eager")

    async def fails_later():
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="eager"):
        await finish_shielded(fails_at_once())
    with pytest.raises(KeyError, match="later"):
        await finish_shielded(fails_later())


async def test_an_exception_thrown_into_the_suspended_work_is_passed_to_it():
    caught = []
    started = asyncio.Event()

    async def settle():
        try:
            started.set()
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            caught.append("cancelled inside")
            return "cleaned up"

    waiter = asyncio.ensure_future(finish_shielded(settle()))
    await started.wait()
    await asyncio.sleep(0)
    inner = next(t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t is not waiter)
    inner.cancel()  # e.g. the loop shutting down cancels every task
    assert await waiter == "cleaned up"
    assert caught == ["cancelled inside"]
