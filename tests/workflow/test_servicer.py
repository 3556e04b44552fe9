"""The gRPC API of the workflow: idempotent starts, refused starts that change nothing, the caller's
own runs only, and cursor pagination."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sqlalchemy import func, select

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.db import Database
from services.workflow.models import outbox, run_steps, runs
from tests import identities
from tests.workflow.conftest import StartService, user
from tests.workflow.fakes import Fakes, inputs_for

RUN = workflow_pb2


async def test_start_is_idempotent_per_user_and_key(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice, bob = user(), user()
    for who in (alice, bob):
        fakes.ledger.posted[who.user_id] = 12_000
    fakes.generation.auto = False
    inputs = inputs_for(fakes, alice.user_id, "ecom-video-pro")

    results = await asyncio.gather(
        *(service.client.start(alice, "ecom-video-pro", inputs, key="same-key") for _ in range(4))
    )
    assert len({r.run.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert fakes.ledger.balance(alice.user_id) == 0
    # the same key of another user is another run
    other = await service.client.start(bob, "ecom-video-pro", inputs, key="same-key")
    assert other.created
    assert other.run.id != results[0].run.id
    # the same key with another body is refused
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(alice, "ecom-video-pro", {**inputs, "ratio": "1:1"}, key="same-key")
    assert refused.value.code() == grpc.StatusCode.ABORTED
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "idempotency_conflict"


async def count_rows(db: Database) -> tuple[int, int, int]:
    async with db.session() as session:
        return (
            (await session.execute(select(func.count()).select_from(runs))).scalar_one(),
            (await session.execute(select(func.count()).select_from(run_steps))).scalar_one(),
            (await session.execute(select(func.count()).select_from(outbox))).scalar_one(),
        )


BAD_STARTS: list[tuple[str, dict[str, object], str]] = [
    ("health-supplement", {"productText": ""}, "invalid_input"),
    ("health-supplement", {"productText": "x" * 501}, "invalid_input"),
    ("health-supplement", {"productText": 42}, "invalid_input"),
    ("health-supplement", {"productPhotos": []}, "invalid_input"),
    ("health-supplement", {"productPhotos": ["up_missing"]}, "invalid_input"),
    ("health-supplement", {"productPhotos": "BOB"}, "invalid_input"),
    ("health-supplement", {"ratio": "4:3"}, "invalid_input"),
    ("health-supplement", {"tone": "sarcastic"}, "invalid_input"),
    ("health-supplement", {"tone": None}, "invalid_input"),
    ("ecom-video-pro", {"surprise": "field"}, "invalid_input"),
    ("no-such-template", {}, "template_not_found"),
    ("disabled", {}, "template_disabled"),
]


async def test_bad_starts_change_nothing(start_service: StartService, fakes: Fakes, db: Database) -> None:
    service = await start_service()
    alice, bob = user(), user()
    fakes.ledger.posted[alice.user_id] = 50_000
    disabled = catalog_pb2.WorkflowTemplate()
    disabled.CopyFrom(fakes.catalog.templates["ecom-video-pro"])
    disabled.code, disabled.enabled = "disabled", False
    fakes.catalog.templates["disabled"] = disabled
    for template, change, code in BAD_STARTS:
        inputs = inputs_for(
            fakes, alice.user_id, "ecom-video-pro" if template != "health-supplement" else template
        )
        if change.get("productPhotos") == "BOB":
            change = {"productPhotos": [fakes.generation.add_upload(bob.user_id)]}  # another user's upload
        inputs.update(change)
        if "tone" in inputs and inputs["tone"] is None:
            del inputs["tone"]

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.client.start(alice, template, inputs)

        assert dict(refused.value.trailing_metadata())["atelier-code"] == code, (template, change)
        assert fakes.ledger.balance(alice.user_id) == 50_000
        assert fakes.ledger.calls["Debit"] == 0
        assert not fakes.generation.tasks
        assert await count_rows(db) == (0, 0, 0)


async def test_insufficient_balance_is_refused_and_leaves_nothing(
    start_service: StartService, fakes: Fakes, db: Database
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 11_999
    inputs = inputs_for(fakes, alice.user_id, "ecom-video-pro")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(alice, "ecom-video-pro", inputs, key="k1")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "insufficient_balance"
    assert fakes.ledger.balance(alice.user_id) == 11_999
    assert await count_rows(db) == (0, 0, 0)
    assert not fakes.generation.tasks
    # after a recharge the same key starts afresh
    fakes.ledger.posted[alice.user_id] = 12_000
    retried = await service.client.start(alice, "ecom-video-pro", inputs, key="k1")
    assert retried.created
    assert fakes.ledger.balance(alice.user_id) == 0


async def test_unverified_callers_cannot_start(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    stranger = user()
    unverified = type(stranger)(user_id=stranger.user_id, status="unverified")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.client.start(
            unverified, "ecom-video-pro", inputs_for(fakes, stranger.user_id, "ecom-video-pro")
        )
    assert dict(refused.value.trailing_metadata())["atelier-code"] == "email_not_verified"


async def test_another_users_run_is_invisible(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice, mallory = user(), user()
    fakes.ledger.posted[alice.user_id] = 12_000
    fakes.generation.auto = False
    started = await service.client.start(
        alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro")
    )
    run_id = started.run.id

    for call in (service.client.get(mallory, run_id), service.client.cancel(mallory, run_id)):
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await call
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await service.client.stub.ListRuns(
        workflow_pb2.ListRunsRequest(), metadata=identities.user(mallory)
    )
    assert not listed.runs
    run = await service.client.get(alice, run_id)
    assert run.status == RUN.RUN_STATUS_RUNNING
    assert not run.cancel_requested
    # another user's event for the run is ignored too
    forged = fakes.generation.completion(fakes.generation.task_for("image").id, succeeded=True)
    forged.user_id = mallory.user_id
    await fakes.generation.publish(forged)
    await asyncio.sleep(0.4)
    assert (await service.client.get(alice, run_id)).steps[0].status == RUN.STEP_STATUS_RUNNING


async def test_list_is_newest_first_with_a_cursor(start_service: StartService, fakes: Fakes) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = 100_000
    fakes.generation.auto = False
    ids = []
    for _ in range(5):
        started = await service.client.start(
            alice, "ecom-video-pro", inputs_for(fakes, alice.user_id, "ecom-video-pro"), key=uuid.uuid4().hex
        )
        ids.append(started.run.id)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await service.client.stub.ListRuns(
            workflow_pb2.ListRunsRequest(page=common_pb2.PageRequest(cursor=cursor, limit=2)),
            metadata=identities.user(alice),
        )
        seen += [r.id for r in page.runs]
        cursor = page.page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(ids))
    filtered = await service.client.stub.ListRuns(
        workflow_pb2.ListRunsRequest(status=RUN.RUN_STATUS_SUCCEEDED), metadata=identities.user(alice)
    )
    assert not filtered.runs
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await service.client.stub.ListRuns(
            workflow_pb2.ListRunsRequest(page=common_pb2.PageRequest(cursor="not-a-cursor")),
            metadata=identities.user(alice),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
