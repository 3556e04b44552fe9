"""An unverified payment callback never reaches a user's records, whatever order it names; admins still
find it in the callback log and in the order's spend chain."""

from __future__ import annotations

import json
import time
import uuid

from gateway.payments.base import OrderView
from gateway.payments.sandbox import SandboxProvider, sign
from gateway.payments.settings import PaymentSettings
from kit.money import Money
from tests.gateway.admin.conftest import Admin

FORGED_NOTE = "sent by mallory, not by the payment provider"


async def test_a_forged_callback_naming_a_real_order_stays_out_of_its_owners_records(
    api_without_catalog: Admin,
) -> None:
    api = api_without_catalog
    user = await api.new_user()
    order_id = await api.ledger.sandbox_order(user)

    # A forged delivery (no valid signature) naming the real order, with the sender's own payload.
    forged = json.dumps(
        {
            "id": f"evt_forged_{uuid.uuid4().hex[:8]}",
            "order_id": order_id,
            "status": "paid",
            "amount": {"minor": 30000, "currency": "CNY"},
            "note": FORGED_NOTE,
        }
    ).encode()
    refused = await api.http.post(
        "/callbacks/sandbox",
        content=forged,
        headers={"Atelier-Sandbox-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    assert refused.status_code == 400
    # Signed by the provider but not a payment we can credit (its amount is no amount): acknowledged,
    # logged as rejected, and just as absent from the owner's records.
    foreign = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex[:8]}", "order_id": order_id, "amount": "lots"}
    ).encode()
    settings: PaymentSettings = api.app.state.payments.settings
    secret = settings.sandbox_secret.get_secret_value()
    signed = {"Atelier-Sandbox-Signature": sign(secret, int(time.time()), foreign)}
    assert (await api.http.post("/callbacks/sandbox", content=foreign, headers=signed)).status_code == 200
    # And the genuine payment, so the user's records do have a callback to show.
    sandbox = api.app.state.payments.gateway.providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    body, headers = sandbox.signed_callback(OrderView(order_id, user, "sandbox", Money(30000, "CNY")))
    assert (await api.http.post("/callbacks/sandbox", content=body, headers=headers)).status_code == 200

    owner = await api.bearer(user)
    for query in ({"type": "callback"}, {}):
        reply = await api.http.get("/v1/billing/records", params=query, headers=owner)
        assert reply.status_code == 200, reply.text
        assert FORGED_NOTE not in reply.text
        callbacks = [item["callback"] for item in reply.json()["items"] if item["type"] == "callback"]
        assert [(c["verified"], c["outcome"]) for c in callbacks] == [(True, "credited")]
    as_admin = await api.http.get(
        f"/v1/admin/users/{user}/records", params={"type": "callback"}, headers=api.headers
    )
    assert FORGED_NOTE not in as_admin.text, "a user's statement is the same whoever reads it"

    # The admin's callback log and the order's spend chain still have the forged delivery.
    log = await api.http.get("/v1/admin/callbacks", params={"order_id": order_id}, headers=api.headers)
    assert log.status_code == 200, log.text
    logged = log.json()["items"]
    assert [(c["verified"], c["outcome"]) for c in logged] == [
        (True, "credited"),
        (True, "rejected"),
        (False, "rejected"),
    ]
    assert logged[1]["reason"] == "amount is not an amount"
    assert logged[2]["reason"] == "bad signature"
    assert logged[2]["user_id"] == user
    assert FORGED_NOTE in logged[2]["payload_json"]
    by_user = await api.http.get(
        "/v1/admin/callbacks", params={"user_id": user, "outcome": "rejected"}, headers=api.headers
    )
    assert [c["id"] for c in by_user.json()["items"]] == [logged[1]["id"], logged[2]["id"]]
    chain = (await api.http.get(f"/v1/admin/spend/{order_id}", headers=api.headers)).json()
    assert [c["verified"] for c in chain["callbacks"]] == [False, True, True]
    # Admins only: the owner cannot read the callback log.
    assert (await api.http.get("/v1/admin/callbacks", headers=owner)).status_code == 403
