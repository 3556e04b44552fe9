"""A debit whose run is not confirmed is refunded at once: a failure at any step between the ledger's
debit and the commit that lets the run go (a database error at the update or at the commit, a dropped
connection, a bug) fails the run, refunds it, and nothing runs later."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import select

from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from kit.db import Database
from services.workflow import events
from services.workflow.models import runs
from tests.db_faults import heal, inject
from tests.workflow.conftest import StartService, user
from tests.workflow.fakes import Fakes

INPUTS = {"productText": "A stainless steel water bottle that keeps drinks cold.", "ratio": "9:16"}
BALANCE = 50_000
PRICE = 12_000  # ecom-video-pro


@pytest.mark.parametrize("fault", ["error", "error_at_commit", "drop", "bug"])
async def test_a_debited_run_that_cannot_start_is_refunded_at_once(
    start_service: StartService, fakes: Fakes, db: Database, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    service = await start_service()
    alice = user()
    fakes.ledger.posted[alice.user_id] = BALANCE
    if fault == "bug":

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("injected bug after the debit")

        monkeypatch.setattr(events, "run_started", broken)
    else:
        await inject(
            db,
            "runs",
            fault,  # type: ignore[arg-type]
            on="UPDATE",
            when="OLD.status = 'debiting' AND NEW.status = 'pending'",
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.client.start(alice, "ecom-video-pro", INPUTS, key="k")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    # Whole as the call ends: debited, then refunded in full under the run's refund id.
    assert fakes.ledger.balance(alice.user_id) == BALANCE
    (debit,) = fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_DEBIT)
    (refund,) = fakes.ledger.of_kind(ledger_pb2.TRANSFER_KIND_REFUND)
    assert debit.amount.milli == refund.amount.milli == PRICE
    assert refund.linked_transfer_id == debit.id
    async with db.session() as session:
        (row,) = (await session.execute(select(runs))).mappings().all()
    assert (row["status"], row["refund_state"], row["refund_milli"]) == ("failed", "done", PRICE)
    assert refund.id == row["refund_transfer_id"]

    # Healed, the resume loop does not start it after all, and the key answers with the failed run.
    monkeypatch.undo()
    await heal(db, "runs")
    await asyncio.sleep(1.5)  # several resume intervals
    assert fakes.ledger.balance(alice.user_id) == BALANCE
    assert fakes.generation.created() == {}
    again = await service.client.start(alice, "ecom-video-pro", INPUTS, key="k")
    assert not again.created
    assert again.run.status == workflow_pb2.RUN_STATUS_FAILED
    assert again.run.refund_amount.milli == PRICE
