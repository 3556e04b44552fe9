"""Every RPC of every service, called as every workload and as nobody, against a stack the launcher started
(mTLS everywhere): what `kit.access.ACCESS` grants gets past authorization, everything else is refused,
and the refused calls change nothing in any database.

Requests are empty: a granted call may then fail on its own terms (a missing id), which is not a refusal.
Grants that act for a user get a valid admin's token here, so an allowed call is never refused for its
user; the token cases are checked apart, on every method that needs one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import grpc
import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from atelier.accounts.v1 import accounts_pb2
from atelier.catalog.v1 import catalog_pb2
from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from devkit.clients import StackCaller
from devkit.pki import Authority, write_atomically
from kit import access
from kit.access import WORKLOADS
from kit.errors import from_rpc_error
from kit.identity import Identity
from kit.tls import WORKLOAD_HEADER
from kit.user_tokens import AUDIENCE, HEADER, UserTokenSigner
from tests.e2e.stack import Stack

MODULES: dict[str, ModuleType] = {
    "accounts": accounts_pb2,
    "catalog": catalog_pb2,
    "ledger": ledger_pb2,
    "generation": generation_pb2,
    "workflow": workflow_pb2,
}
# What kit.access answers when it refuses; a granted call never gets one of these here.
REFUSALS = {
    "workload_not_allowed",
    "user_token_required",
    "invalid_user_token",
    "user_token_expired",
    "not_owner",
}
ADMIN = Identity(user_id="security-admin", role="admin")


@dataclass(frozen=True)
class Rpc:
    service: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def grants(self) -> dict[str, access.Grant]:
        return dict(access.ACCESS.get(self.service, {}).get(self.method.name, {}))

    def __str__(self) -> str:
        return f"{self.service}/{self.method.name}"


RPCS = [
    Rpc(service, method)
    for service, module in MODULES.items()
    for descriptor in module.DESCRIPTOR.services_by_name.values()
    for method in descriptor.methods
]


async def call(channel: grpc.aio.Channel, rpc: Rpc, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    """ "OK", the domain error code, or the transport status name."""
    request = message_factory.GetMessageClass(rpc.method.input_type)()
    reply = message_factory.GetMessageClass(rpc.method.output_type)
    kind = channel.unary_stream if rpc.method.server_streaming else channel.unary_unary
    invoke = kind(
        rpc.path, request_serializer=type(request).SerializeToString, response_deserializer=reply.FromString
    )
    try:
        answer = invoke(request, metadata=metadata, timeout=15)
        if rpc.method.server_streaming:
            async for _ in answer:
                pass
        else:
            await answer
    except grpc.aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        return error.code if error is not None else exc.code().name
    return "OK"


def snapshot(stack: Stack) -> dict[str, str]:
    """Every table of every service's database, as one digest each."""
    digests: dict[str, str] = {}
    for service in MODULES:
        with psycopg.connect(stack.database(service), autocommit=True) as db:
            tables = [
                name
                for (name,) in db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                    " AND table_type = 'BASE TABLE' ORDER BY 1"
                )
            ]
            for table in tables:
                digest = "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                row = db.execute(f'SELECT count(*), {digest} FROM "{table}" t').fetchone()
                digests[f"{service}.{table}"] = repr(row)
    return digests


class Callers:
    """Channels to every service as each workload, from the stack's own certificates
    (`devkit.clients.StackCaller`), one per pair, and the ones that must not get in."""

    def __init__(self, stack: Stack) -> None:
        self.stack = StackCaller.from_stack_file(stack.home / "stack.json")
        self.pki, self.targets = self.stack.pki, self.stack.targets
        self.signer = self.stack.signer
        self.channels: dict[tuple[str, str, str], grpc.aio.Channel] = {}

    def _cached(self, key: tuple[str, str, str], opener: Callable[[], grpc.aio.Channel]) -> grpc.aio.Channel:
        if key not in self.channels:
            self.channels[key] = opener()
        return self.channels[key]

    def as_workload(self, workload: str, service: str) -> grpc.aio.Channel:
        return self._cached(
            (workload, service, "tls"), lambda: self.stack.channel(service, workload=workload)
        )

    def nobody(self, how: str, service: str, foreign: Path) -> grpc.aio.Channel:
        """A channel that must not get in: `how` is "no certificate", "another CA" or "plaintext".
        Without retries: each refused call fails at once."""
        ca = (self.pki / "ca.crt").read_bytes()
        options = [("grpc.enable_retries", 0), ("grpc.ssl_target_name_override", service)]
        target = self.targets[service]

        def opener() -> grpc.aio.Channel:
            if how == "plaintext":
                return grpc.aio.insecure_channel(target, options=options)
            if how == "another CA":
                key, certificate = (foreign / "tls.key").read_bytes(), (foreign / "tls.crt").read_bytes()
                return grpc.aio.secure_channel(
                    target, grpc.ssl_channel_credentials(ca, key, certificate), options
                )
            return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca), options)

        return self._cached(("", service, how), opener)

    def token(self, identity: Identity = ADMIN) -> tuple[tuple[str, str], ...]:
        return self.stack.user(identity)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))


def foreign_directory(tmp: Path, real_ca: Path) -> Path:
    """A gateway certificate from another CA (trusting the real one, so only the server can object)."""
    key, certificate = Authority.create("Someone else's CA").sign("gateway")
    write_atomically(tmp / "ca.crt", real_ca.read_bytes())
    write_atomically(tmp / "tls.key", key)
    write_atomically(tmp / "tls.crt", certificate)
    return tmp


def forged_tokens(signer: UserTokenSigner) -> dict[str, str]:
    """Made for each call: a token minted once would expire during the test."""
    now = time.time()
    stranger = ed25519.Ed25519PrivateKey.generate()
    claims = {"sub": ADMIN.user_id, "role": "admin", "status": "active", "iss": "atelier-gateway"}
    return {
        # Signed by another key under the real key's id.
        "forged": jwt.encode(
            {**claims, "aud": AUDIENCE, "iat": int(now), "exp": int(now) + 60},
            stranger,
            algorithm="EdDSA",
            headers={"kid": signer.kid},
        ),
        "expired": signer.mint(ADMIN, now=now - 3600),
        "wrong audience": signer.mint(ADMIN, audience="atelier-api"),
    }


async def test_every_rpc_is_allowed_exactly_as_the_table_says(stack: Stack, tmp_path: Path) -> None:
    callers = Callers(stack)
    foreign = foreign_directory(tmp_path / "foreign", callers.pki / "ca.crt")
    try:
        before = snapshot(stack)
        wrongly: list[str] = []
        for rpc in RPCS:
            # Nobody: no certificate, a certificate from another CA, or plaintext with a claim.
            for how in ("no certificate", "another CA", "plaintext"):
                claim = ((WORKLOAD_HEADER, "gateway"),)
                outcome = await call(
                    callers.nobody(how, rpc.service, foreign), rpc, (*claim, *callers.token())
                )
                if outcome != "UNAVAILABLE":
                    wrongly.append(f"{rpc} with {how} answered {outcome}")
            # Every workload the table does not name.
            for workload in WORKLOADS:
                if workload in rpc.grants:
                    continue
                outcome = await call(callers.as_workload(workload, rpc.service), rpc, callers.token())
                if outcome != "workload_not_allowed":
                    wrongly.append(f"{rpc} as {workload} answered {outcome}")
            # Granted workloads with a bad user token: refused, whether the grant needs a user or not.
            for workload in rpc.grants:
                for name, token in forged_tokens(callers.signer).items():
                    outcome = await call(callers.as_workload(workload, rpc.service), rpc, ((HEADER, token),))
                    expected = "user_token_expired" if name == "expired" else "invalid_user_token"
                    if outcome != expected:
                        wrongly.append(f"{rpc} as {workload} with a {name} token answered {outcome}")
                if rpc.grants[workload].user != "optional":
                    outcome = await call(callers.as_workload(workload, rpc.service), rpc)
                    if outcome != "user_token_required":
                        wrongly.append(f"{rpc} as {workload} with no user token answered {outcome}")
        assert not wrongly, "\n".join(wrongly)
        assert snapshot(stack) == before, "a refused call changed a database"

        # What the table grants gets past authorization (an empty request may still be invalid).
        for rpc in RPCS:
            for workload in rpc.grants:
                outcome = await call(callers.as_workload(workload, rpc.service), rpc, callers.token())
                if outcome in REFUSALS or outcome in ("UNAVAILABLE", "UNAUTHENTICATED", "PERMISSION_DENIED"):
                    wrongly.append(f"{rpc} as {workload} (granted) answered {outcome}")
        assert not wrongly, "\n".join(wrongly)
    finally:
        await callers.close()


def test_every_rpc_has_a_row_and_every_row_an_rpc() -> None:
    """Default deny makes a missing row safe but useless; a stale row is a grant for nothing."""
    named = {(rpc.service, rpc.method.name) for rpc in RPCS}
    rows = {(service, method) for service, methods in access.ACCESS.items() for method in methods}
    assert named - rows == set(), "RPCs nobody may call"
    assert rows - named == set(), "rows for RPCs that do not exist"
    for rpc in RPCS:
        for workload, grant in rpc.grants.items():
            assert workload in WORKLOADS, f"{rpc}: unknown workload {workload}"
            if grant.owner:
                field = rpc.method.input_type.fields_by_name.get(grant.owner)
                assert field is not None, f"{rpc}: no field {grant.owner} to check the owner by"
