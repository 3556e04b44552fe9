"""Users and credit adjustments through the gateway against the real accounts and ledger services."""

from __future__ import annotations

import asyncio
import uuid

from atelier.ledger.v1 import ledger_pb2
from tests.gateway.admin.conftest import Admin, random_user_id


async def balance_of(api: Admin, user_id: str) -> str:
    reply = await api.ledger.stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))
    return str(reply.balance.available.milli)


async def test_credit_adjustment_applies_once_per_idempotency_key(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user = await api.new_user()
    key = {"Idempotency-Key": f"adj-{uuid.uuid4()}", **api.headers}
    body = {"amount": "12.5", "reason": "goodwill after an outage"}

    replies = await asyncio.gather(
        *(
            api.http.post(f"/v1/admin/users/{user}/credit-adjustments", json=body, headers=key)
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 200, 201], [r.text for r in replies]
    transfer_ids = {r.json()["transfer"]["id"] for r in replies}
    assert len(transfer_ids) == 1
    first = next(r.json() for r in replies if r.status_code == 201)
    assert first["replayed"] is False
    assert first["transfer"]["kind"] == "adjustment"
    assert first["transfer"]["actor_id"] == api.admin_id
    assert first["transfer"]["reason"] == "goodwill after an outage"
    assert first["balance"]["available"] == "12.5"

    again = await api.http.post(f"/v1/admin/users/{user}/credit-adjustments", json=body, headers=key)
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert await balance_of(api, user) == "12500"

    detail = await api.http.get(f"/v1/admin/users/{user}", headers=api.headers)
    assert detail.status_code == 200
    assert detail.json()["balance"]["available"] == "12.5"
    assert detail.json()["user"]["id"] == user
    records = (await api.http.get(f"/v1/admin/users/{user}/records", headers=api.headers)).json()["items"]
    assert [(r["type"], r["delta"]) for r in records] == [("adjustment", "12.5")]

    # The user sees it too, in their own records.
    mine = await api.http.get("/v1/billing/records", headers=await api.bearer(user))
    assert [(r["type"], r["delta"]) for r in mine.json()["items"]] == [("adjustment", "12.5")]

    reused = await api.http.post(
        f"/v1/admin/users/{user}/credit-adjustments", json={**body, "amount": "99"}, headers=key
    )
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_conflict"

    debit = await api.http.post(
        f"/v1/admin/users/{user}/credit-adjustments",
        json={"amount": "-2.5", "reason": "duplicate grant"},
        headers={**api.headers, "Idempotency-Key": f"adj-{uuid.uuid4()}"},
    )
    assert debit.status_code == 201
    assert debit.json()["balance"]["available"] == "10"
    assert await balance_of(api, user) == "10000"


async def test_bad_adjustments_change_nothing(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user = await api.new_user()
    seeded = await api.http.post(
        f"/v1/admin/users/{user}/credit-adjustments",
        json={"amount": "3", "reason": "start"},
        headers={**api.headers, "Idempotency-Key": f"adj-{uuid.uuid4()}"},
    )
    assert seeded.status_code == 201
    cases = [
        ({"amount": "0", "reason": "x"}, 422, "invalid_request"),
        ({"amount": "1.0001", "reason": "x"}, 422, "invalid_request"),
        ({"amount": 5, "reason": "x"}, 422, "invalid_request"),
        ({"amount": "abc", "reason": "x"}, 422, "invalid_request"),
        ({"amount": "３０", "reason": "full-width digits"}, 422, "invalid_request"),
        ({"amount": "-٣", "reason": "Arabic-Indic digits"}, 422, "invalid_request"),
        ({"amount": "1", "reason": "   "}, 422, "invalid_request"),
        ({"amount": "1"}, 422, "invalid_request"),
        ({"amount": "2000000", "reason": "typo"}, 422, "invalid_request"),
        ({"amount": "1", "reason": "x", "user_id": "someone"}, 422, "invalid_request"),
        ({"amount": "-3.001", "reason": "more than there is"}, 402, "insufficient_balance"),
    ]
    for body, status, code in cases:
        reply = await api.http.post(
            f"/v1/admin/users/{user}/credit-adjustments",
            json=body,
            headers={**api.headers, "Idempotency-Key": f"adj-{uuid.uuid4()}"},
        )
        assert (reply.status_code, reply.json()["code"]) == (status, code), f"{body}: {reply.text}"
    no_key = await api.http.post(
        f"/v1/admin/users/{user}/credit-adjustments", json={"amount": "1", "reason": "x"}, headers=api.headers
    )
    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
    stranger = random_user_id()
    unknown = await api.http.post(
        f"/v1/admin/users/{stranger}/credit-adjustments",
        json={"amount": "1", "reason": "x"},
        headers={**api.headers, "Idempotency-Key": f"adj-{uuid.uuid4()}"},
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "user_not_found")
    assert await balance_of(api, user) == "3000"
    records = (await api.http.get(f"/v1/admin/users/{user}/records", headers=api.headers)).json()["items"]
    assert len(records) == 1
    stranger_records = await api.ledger.stub.ListRecords(ledger_pb2.ListRecordsRequest(user_id=stranger))
    assert list(stranger_records.records) == []


async def test_list_disable_and_promote_users(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user = await api.new_user()
    detail = (await api.http.get(f"/v1/admin/users/{user}", headers=api.headers)).json()
    email = detail["user"]["email"]
    found = await api.http.get("/v1/admin/users", params={"email": email}, headers=api.headers)
    assert [u["id"] for u in found.json()["items"]] == [user]

    page = await api.http.get("/v1/admin/users", params={"limit": 1}, headers=api.headers)
    assert len(page.json()["items"]) == 1
    assert page.json()["next_cursor"]
    following = await api.http.get(
        "/v1/admin/users", params={"limit": 1, "cursor": page.json()["next_cursor"]}, headers=api.headers
    )
    assert following.json()["items"][0]["id"] != page.json()["items"][0]["id"]

    disabled = await api.http.post(
        f"/v1/admin/users/{user}/status", json={"status": "disabled", "reason": "abuse"}, headers=api.headers
    )
    assert disabled.status_code == 200
    assert disabled.json()["user"]["status"] == "disabled"
    only_disabled = await api.http.get(
        "/v1/admin/users", params={"status": "disabled", "email": email}, headers=api.headers
    )
    assert [u["id"] for u in only_disabled.json()["items"]] == [user]

    promoted = await api.http.post(
        f"/v1/admin/users/{user}/role", json={"role": "admin"}, headers=api.headers
    )
    assert promoted.json()["user"]["role"] == "admin"

    self_demote = await api.http.post(
        f"/v1/admin/users/{api.admin_id}/role", json={"role": "user"}, headers=api.headers
    )
    assert (self_demote.status_code, self_demote.json()["code"]) == (409, "cannot_change_self")
    bad = await api.http.post(f"/v1/admin/users/{user}/role", json={"role": "owner"}, headers=api.headers)
    assert bad.status_code == 422
    missing = await api.http.get(f"/v1/admin/users/{random_user_id()}", headers=api.headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "user_not_found")
    malformed = await api.http.get("/v1/admin/users/not-a-uuid", headers=api.headers)
    assert malformed.status_code == 422


async def test_reconcile_reports_the_ledger_invariants(api_without_catalog: Admin) -> None:
    api = api_without_catalog
    user = await api.new_user()
    await api.http.post(
        f"/v1/admin/users/{user}/credit-adjustments",
        json={"amount": "1", "reason": "x"},
        headers={**api.headers, "Idempotency-Key": f"adj-{uuid.uuid4()}"},
    )
    reply = await api.http.get("/v1/admin/reconcile", headers=api.headers)
    assert reply.status_code == 200
    body = reply.json()
    assert body["violations"] == []
    assert body["healthy"] is True
    assert body["accounts_checked"] >= 2
    assert body["transfers_checked"] >= 1
