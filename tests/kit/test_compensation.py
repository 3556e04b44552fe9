"""kit.compensation.owned_or_undone: what it undoes, what it keeps, and that the first error wins."""

from __future__ import annotations

import asyncio

import pytest

from kit.compensation import owned_or_undone


class Effect:
    def __init__(self, *, owned: bool | Exception = False, undo_fails: bool = False) -> None:
        self._owned = owned
        self.undo_fails = undo_fails
        self.undone = 0

    async def owned(self) -> bool:
        await asyncio.sleep(0)
        if isinstance(self._owned, Exception):
            raise self._owned
        return self._owned

    async def undo(self) -> None:
        await asyncio.sleep(0.05)
        if self.undo_fails:
            raise ConnectionError("ledger unreachable")
        self.undone += 1


async def test_success_undoes_nothing() -> None:
    effect = Effect()
    async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
        pass
    assert effect.undone == 0


@pytest.mark.parametrize("error", [RuntimeError("bug"), ValueError("bad text"), ConnectionError("dropped")])
async def test_any_error_undoes_and_goes_on(error: Exception) -> None:
    effect = Effect()
    with pytest.raises(type(error)):
        async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
            raise error
    assert effect.undone == 1


async def test_an_owner_recorded_after_all_keeps_the_effect() -> None:
    effect = Effect(owned=True)
    with pytest.raises(RuntimeError):
        async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
            raise RuntimeError("the commit's answer was lost")
    assert effect.undone == 0


async def test_an_owner_that_cannot_be_looked_up_keeps_the_effect() -> None:
    effect = Effect(owned=ConnectionError("database down"))
    with pytest.raises(RuntimeError):
        async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
            raise RuntimeError("insert failed")
    assert effect.undone == 0


async def test_a_failing_undo_never_hides_the_first_error() -> None:
    effect = Effect(undo_fails=True)
    with pytest.raises(RuntimeError, match="insert failed"):
        async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
            raise RuntimeError("insert failed")


async def test_a_caller_cancelled_twice_still_undoes() -> None:
    effect = Effect()
    started = asyncio.Event()

    async def caller() -> None:
        async with owned_or_undone("hold h", owned=effect.owned, undo=effect.undo):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(caller())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)  # the undo has begun
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert effect.undone == 1
