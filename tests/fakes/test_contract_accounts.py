"""The accounts contract the gateway leans on, run through a gRPC stub against both the shared fake
(`tests/fakes/accounts.py`) and the real servicer on PostgreSQL: for a signed-in user whose token is
current, the session check and the caller's own record answer the same user (id, role, status)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from atelier.accounts.v1 import accounts_pb2 as pb
from atelier.accounts.v1 import accounts_pb2_grpc
from gateway.auth import identity_of
from kit.identity import Identity
from tests import identities
from tests.accounts.stack import PASSWORD, AccountsStack, new_email
from tests.fakes.accounts import FakeAccounts
from tests.fakes.serve import serve

Stub = accounts_pb2_grpc.AccountsServiceStub


@dataclass
class SignedIn:
    identity: Identity
    session_id: str


@dataclass
class Backend:
    stub: Stub
    sign_in: Callable[[], Awaitable[SignedIn]]


@pytest.fixture
async def fake() -> AsyncIterator[Backend]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    fake = (accounts_pb2_grpc.add_AccountsServiceServicer_to_server, FakeAccounts())  # type: ignore[abstract]

    async def sign_in() -> SignedIn:
        """A new user's token as the gateway mints it: unverified until the email is."""
        return SignedIn(Identity(user_id=str(uuid.uuid4()), status="unverified"), "test-session")

    async with serve("accounts-fake", fake) as address, identities.channel(address) as channel:
        yield Backend(Stub(channel), sign_in)


@pytest.fixture(params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return cast("Backend", request.getfixturevalue("fake"))
    stack = cast("AccountsStack", request.getfixturevalue("accounts_stack"))

    async def sign_in() -> SignedIn:
        """A newly registered user, signed in: the session and the identity its token carries."""
        email = new_email("contract")
        await stack.stub.Register(pb.RegisterRequest(email=email, password=PASSWORD, locale="en"))
        reply = await stack.stub.Login(pb.LoginRequest(email=email, password=PASSWORD))
        return SignedIn(identity_of(reply.user), reply.refresh_token.session_id)

    return Backend(stack.stub, sign_in)


def who(user: pb.User) -> tuple[str, int, int]:
    return user.id, user.role, user.status


async def test_a_live_session_answers_its_user_as_the_token_says(backend: Backend) -> None:
    signed = await backend.sign_in()
    reply = await backend.stub.CheckSession(
        pb.CheckSessionRequest(session_id=signed.session_id), metadata=identities.user(signed.identity)
    )
    assert who(reply.user) == (signed.identity.user_id, pb.ROLE_USER, pb.USER_STATUS_UNVERIFIED)


async def test_get_user_without_an_id_answers_the_caller(backend: Backend) -> None:
    signed = await backend.sign_in()
    reply = await backend.stub.GetUser(pb.GetUserRequest(), metadata=identities.user(signed.identity))
    assert who(reply.user) == (signed.identity.user_id, pb.ROLE_USER, pb.USER_STATUS_UNVERIFIED)
