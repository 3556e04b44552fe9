"""Callers for in-process service tests, which run plaintext (no certificates; `kit.access` then takes a
workload's claim): the user token the gateway would send, signed with the suite's key (tests/conftest.py
makes it), and a workload's claim for one call."""

from __future__ import annotations

import functools
import os
from typing import Any

import grpc

from kit import access, grpc_client
from kit.access import ON_BEHALF_OF
from kit.identity import Identity
from kit.tls import WORKLOAD_HEADER
from kit.user_tokens import HEADER as USER_TOKEN_HEADER
from kit.user_tokens import UserTokenSigner

Metadata = tuple[tuple[str, str], ...]


@functools.cache
def _signer() -> UserTokenSigner:
    # An hour, as tests/tokens.py: some suites make their callers at import, long before the test runs.
    return UserTokenSigner.from_file(os.environ["ATELIER_USER_TOKEN_SIGNING_KEY_FILE"], ttl=3600)


def user(identity: Identity) -> Metadata:
    """A call made for `identity`, as the gateway makes it."""
    return _signer().metadata(identity)


def workload(name: str) -> Metadata:
    """A call claimed by workload `name` (overrides the channel's own claim)."""
    return ((WORKLOAD_HEADER, name),)


def for_owner(user_id: str, by: str = "workflow") -> Metadata:
    """A workload acting for the owner of a record it holds (a workflow step)."""
    return ((ON_BEHALF_OF, user_id), *workload(by))


def _as_granted(details: grpc.aio.ClientCallDetails, request: Any) -> grpc.aio.ClientCallDetails:
    """The call claims a workload `kit.access.ACCESS` lets make it: the gateway when its grant can be met
    (it needs no user, the call carries a user token, or the grant is for the owner of the request's
    `user_id`), else one that needs no user, else the first granted; where the grant is for the owner
    and the test sent no token, the owner's is added. Service tests exercise behaviour as a legitimate
    caller would make the call; access itself is tested in tests/security."""
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    service, name = access.split(method)
    grants = access.ACCESS.get(service, {}).get(name, {})
    metadata = details.metadata or {}
    if not grants or WORKLOAD_HEADER in metadata:
        return details
    user_id, carried = getattr(request, "user_id", ""), USER_TOKEN_HEADER in metadata

    def satisfiable(grant: access.Grant) -> bool:
        return grant.user == "optional" or carried or bool(grant.owner and user_id)

    gateway = grants.get(access.GATEWAY)
    unattended = [workload for workload, grant in grants.items() if grant.user == "optional"]
    if gateway is not None and satisfiable(gateway):
        claimed = access.GATEWAY
    else:
        claimed = (unattended or list(grants))[0]
    pairs = [(WORKLOAD_HEADER, claimed)]
    if grants[claimed].user != "optional" and not carried and grants[claimed].owner and user_id:
        pairs.extend(user(Identity(user_id=user_id)))
    return grpc_client.with_metadata(details, *pairs)


def channel(target: str) -> grpc.aio.Channel:
    """A plaintext channel to an in-process service, each call made as `_as_granted` says."""
    return grpc.aio.insecure_channel(target, interceptors=grpc_client.editing(_as_granted))
