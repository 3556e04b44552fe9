"""Text PostgreSQL cannot store, against the real accounts service: refused at the gateway naming the
field, refused by the service's own gRPC edge for any other caller, and nothing created either way."""

from __future__ import annotations

import grpc
import httpx
import pytest
import sqlalchemy as sa

from atelier.accounts.v1 import accounts_pb2 as pb
from kit.errors import InvalidArgument, from_rpc_error
from services.accounts import models
from tests.accounts.stack import PASSWORD, AccountsStack, bearer, new_email, verified_user

TABLES = (models.users, models.email_tokens, models.refresh_tokens, models.api_keys)


async def row_counts(stack: AccountsStack) -> dict[str, int]:
    async with stack.db.session() as session:
        return {
            table.name: (await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            for table in TABLES
        }


def assert_invalid_text(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert (body["code"], body["field"], body["location"]) == ("invalid_text", field, "body"), body


async def test_register_email_and_api_key_name_refuse_nul(
    api: httpx.AsyncClient, accounts_stack: AccountsStack
) -> None:
    _, session = await verified_user(api, accounts_stack)
    before = await row_counts(accounts_stack)
    email = new_email()
    register = await api.post(
        "/v1/auth/register", json={"email": email.replace("@", "\x00@"), "password": PASSWORD}
    )
    assert_invalid_text(register, "/email")
    named = await api.post(
        "/v1/api-keys", json={"name": "ci\x00", "scopes": ["read"]}, headers=bearer(session["access_token"])
    )
    assert_invalid_text(named, "/name")
    assert await row_counts(accounts_stack) == before
    assert accounts_stack.inbox.to(email.replace("@", "\x00@")) == []


async def test_the_accounts_service_refuses_nul_from_any_caller(accounts_stack: AccountsStack) -> None:
    before = await row_counts(accounts_stack)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await accounts_stack.stub.Register(pb.RegisterRequest(email="a\x00@example.com", password=PASSWORD))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(caught.value)
    assert isinstance(error, InvalidArgument)
    assert (error.code, error.details) == ("invalid_text", {"field": "email"})
    assert await row_counts(accounts_stack) == before
