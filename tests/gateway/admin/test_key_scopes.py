"""An admin's API keys against the real catalog, ledger and accounts services: a key without the
`admin` scope reads the admin API but changes nothing through it; a key with it acts only while its
owner is an admin."""

from __future__ import annotations

import asyncio
import uuid

from atelier.ledger.v1 import ledger_pb2
from tests.gateway.admin.conftest import Admin, ensure_admin, sign_in

MODEL = "doubao-seedream-5-0-260128"


async def _key(api: Admin, *scopes: str) -> dict[str, str]:
    made = await api.http.post(
        "/v1/api-keys", json={"name": "ops", "scopes": list(scopes)}, headers=api.headers
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def _state(api: Admin, user: str) -> tuple[int, str, str]:
    """What the refused calls would have changed: the balance, the role and the model's price."""
    balance = await api.ledger.stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user))
    found = await api.http.get(f"/v1/admin/users/{user}", headers=api.headers)
    model = await api.http.get(f"/v1/admin/models/{MODEL}", headers=api.headers)
    role = found.json()["user"]["role"]
    return balance.balance.available.milli, role, model.json()["model"]["price"]


async def test_a_read_only_admin_key_reads_but_changes_nothing(api: Admin) -> None:
    user = await api.new_user()
    before = await _state(api, user)
    for scopes in (("read",), ("read", "write")):
        key = await _key(api, *scopes)
        assert (await api.http.get("/v1/admin/users", headers=key)).status_code == 200
        assert (await api.http.get(f"/v1/admin/models/{MODEL}", headers=key)).status_code == 200
        attempts = await asyncio.gather(
            api.http.post(
                f"/v1/admin/users/{user}/credit-adjustments",
                json={"amount": "500", "reason": "a read-only key tries"},
                headers={**key, "Idempotency-Key": str(uuid.uuid4())},
            ),
            api.http.post(f"/v1/admin/users/{user}/role", json={"role": "admin"}, headers=key),
            api.http.patch(f"/v1/admin/models/{MODEL}", json={"price": "0.01"}, headers=key),
        )
        for refused in attempts:
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "insufficient_scope"
            assert refused.json()["scope"] == "admin"
    assert await _state(api, user) == before


async def test_an_admin_scoped_key_acts_only_while_its_owner_is_an_admin(api: Admin) -> None:
    user = await api.new_user()
    key = await _key(api, "admin", "read")
    path = f"/v1/admin/users/{user}/credit-adjustments"
    made = await api.http.post(
        path, json={"amount": "2", "reason": "ok"}, headers={**key, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert made.status_code == 201, made.text

    _, other_email = await ensure_admin(api.accounts)
    other = {"Authorization": f"Bearer {await sign_in(api.accounts, api.tokens, other_email)}"}
    demoted = await api.http.post(
        f"/v1/admin/users/{api.admin_id}/role", json={"role": "user"}, headers=other
    )
    assert demoted.status_code == 200, demoted.text
    late = await api.http.post(
        path, json={"amount": "2", "reason": "no"}, headers={**key, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert late.status_code == 403
    assert late.json()["code"] == "admin_required"
    me = (await api.http.get("/v1/me", headers=key)).json()
    assert "admin" not in me["scopes"], "a user's key carries no admin scope, whatever was stored"
    balance = await api.ledger.stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user))
    assert balance.balance.available.milli == 2000
