"""Every credit the ledger moves is one JSON log line with the trace and span of the request."""

from __future__ import annotations

from collections.abc import Callable

from kit.db import Database
from kit.money import Credits
from services.ledger.service import Kind, Ledger
from tests.json_logs import json_logs
from tests.tracing import traced

C = Credits.whole
NewId = Callable[[str], str]


async def test_each_committed_transfer_is_logged_with_its_trace(
    db: Database, ledger: Ledger, new_id: NewId
) -> None:
    user = new_id("u")
    with json_logs("services.ledger") as written:
        with traced() as granted_in:
            async with db.transaction() as session:
                await ledger.credit(
                    session,
                    transfer_id=f"grant-{user}",
                    user_id=user,
                    amount=C(5),
                    kind=Kind.GRANT,
                    actor_id="a",
                )
        with traced() as charged_in:
            async with db.transaction() as session:
                await ledger.hold(session, transfer_id=f"hold-{user}", user_id=user, amount=C(2))
            async with db.transaction() as session:
                await ledger.capture(session, transfer_id=f"capture-{user}", hold_id=f"hold-{user}")
            async with db.transaction() as session:  # a replay moves nothing and logs nothing
                await ledger.capture(session, transfer_id=f"capture-{user}", hold_id=f"hold-{user}")
    posted = [e for e in written.entries() if e.get("transfer_id", "").endswith(user)]
    assert [(e["kind"], e["amount"], e["trace_id"]) for e in posted] == [
        ("grant", "5", granted_in),
        ("hold", "2", charged_in),
        ("capture", "2", charged_in),
    ]
    assert all(len(e["span_id"]) == 16 for e in posted), "the span current at commit is on the line"
    assert all(e["user_id"] == user and e["level"] == "info" for e in posted)
