"""A hold nobody owns is released at once: a failure at any step between the ledger's hold and the commit
of the task or message that owns it (a database error at the insert or at the commit, a dropped
connection, a bug, the caller going away) leaves the balance whole when the call ends."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import func, select

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit.identity import Identity
from services.generation import events, repository
from services.generation.models import messages, tasks
from tests.db_faults import heal, inject
from tests.generation.stack import Stack, metadata

FAULTS = ["error", "error_at_commit", "drop", "bug", "caller_gone"]
BALANCE = 10_000


async def count(stack: Stack, table: object) -> int:
    async with stack.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def whole(stack: Stack, who: Identity, *, within: float = 0.0) -> None:
    """Nothing of `who` is held any more (the caller that went away gets a moment: its call ended first)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        held = [h for h in stack.ledger.holds.values() if h.user_id == who.user_id and h.status == "pending"]
        if not held or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.05)
    assert stack.ledger.available(who.user_id) == BALANCE
    assert held == []
    assert stack.ledger.holds, "the failure must come after the hold"


async def arm(stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: str, table: str, bug: str) -> None:
    """`bug`: the module attribute (events.x or repository.x) that raises, after the insert and before
    the commit, for the `bug` fault; the others are real database failures on `table`."""
    if fault == "bug":
        module, name = bug.split(".")

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("injected bug after the insert")

        monkeypatch.setattr({"events": events, "repository": repository}[module], name, broken)
    else:
        await inject(stack.db, table, "stall" if fault == "caller_gone" else fault)  # type: ignore[arg-type]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_task_that_is_not_recorded_holds_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    alice = stack.user(BALANCE)
    await arm(stack, monkeypatch, fault, "tasks", "events.job_requested")
    request = generation_pb2.SubmitTaskRequest(
        idempotency_key="k",
        kind=common_pb2.MODEL_KIND_IMAGE,
        model_code="img",
        prompt="a mug",
        ratio="1:1",
        resolution="1K",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.SubmitTask(
            request, metadata=metadata(alice), timeout=1.0 if fault == "caller_gone" else None
        )
    expected = grpc.StatusCode.DEADLINE_EXCEEDED if fault == "caller_gone" else grpc.StatusCode.INTERNAL
    assert caught.value.code() == expected
    await whole(stack, alice, within=5.0 if fault == "caller_gone" else 0.0)
    assert await count(stack, tasks) == 0

    # The key's retry, once the database is well again, holds afresh and records the task.
    monkeypatch.undo()
    await heal(stack.db, "tasks")
    retried = (await stack.stub.SubmitTask(request, metadata=metadata(alice))).task
    assert stack.ledger.holds[retried.hold_id].status == "pending"
    assert stack.ledger.available(alice.user_id) == BALANCE - retried.price.milli


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_message_that_is_not_recorded_holds_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    alice = stack.user(BALANCE)
    chat = (
        await stack.stub.CreateConversation(
            generation_pb2.CreateConversationRequest(model_code="txt"), metadata=metadata(alice)
        )
    ).conversation
    await arm(stack, monkeypatch, fault, "messages", "repository.update_conversation")
    request = generation_pb2.SendMessageRequest(conversation_id=chat.id, content="hello", idempotency_key="m")
    stream = stack.stub.SendMessage(
        request, metadata=metadata(alice), timeout=1.0 if fault == "caller_gone" else None
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [item async for item in stream]
    expected = grpc.StatusCode.DEADLINE_EXCEEDED if fault == "caller_gone" else grpc.StatusCode.INTERNAL
    assert caught.value.code() == expected
    await whole(stack, alice, within=5.0 if fault == "caller_gone" else 0.0)
    assert await count(stack, messages) == 0

    monkeypatch.undo()
    await heal(stack.db, "messages")
    items = [item async for item in stack.stub.SendMessage(request, metadata=metadata(alice))]
    assert items[-1].final.status == generation_pb2.MESSAGE_STATUS_COMPLETED


@pytest.mark.parametrize("fault", ["error", "error_at_commit", "drop"])
async def test_an_answer_that_cannot_be_finished_releases_its_hold(stack: Stack, fault: str) -> None:
    """The message is recorded but its end is not (so no `tasks.completed` settles the hold): the
    hold is released when the stream ends, not two hours later."""
    alice = stack.user(BALANCE)
    chat = (
        await stack.stub.CreateConversation(
            generation_pb2.CreateConversationRequest(model_code="txt"), metadata=metadata(alice)
        )
    ).conversation
    await inject(
        stack.db,
        "messages",
        fault,  # type: ignore[arg-type]
        on="UPDATE",
        when="OLD.status = 'streaming' AND NEW.status <> 'streaming'",
    )
    request = generation_pb2.SendMessageRequest(conversation_id=chat.id, content="hello")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [item async for item in stack.stub.SendMessage(request, metadata=metadata(alice))]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    await whole(stack, alice)
