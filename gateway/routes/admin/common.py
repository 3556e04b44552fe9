"""What every admin area shares: the service stubs, path and query types, and answer helpers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, cast

import grpc
from fastapi import Path, Query, Request
from google.protobuf.message import Message

from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceStub
from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceStub
from atelier.common.v1 import common_pb2
from atelier.generation.v1.generation_pb2_grpc import GenerationServiceStub
from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from atelier.workflow.v1.workflow_pb2_grpc import WorkflowServiceStub
from gateway.convert import to_json

if TYPE_CHECKING:
    from atelier.accounts.v1.accounts_pb2_grpc import AccountsServiceAsyncStub
    from atelier.catalog.v1.catalog_pb2_grpc import CatalogServiceAsyncStub
    from atelier.generation.v1.generation_pb2_grpc import GenerationServiceAsyncStub
    from atelier.ledger.v1.ledger_pb2_grpc import LedgerServiceAsyncStub
    from atelier.workflow.v1.workflow_pb2_grpc import WorkflowServiceAsyncStub

CODE = r"^[a-z0-9][a-z0-9._-]{0,63}$"

Code = Annotated[str, Path(pattern=CODE, description="lower-case letters, digits, '.', '_', '-'")]
UserId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{32,36}$", description="the user's id (a UUID)")]
Cursor = Annotated[str, Query(max_length=512, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200)]


# -- clients ----------------------------------------------------------------------------------------
def _channel(request: Request, name: str) -> grpc.aio.Channel:
    channel: grpc.aio.Channel = request.app.state.clients.channels[name]
    return channel


def catalog_stub(request: Request) -> CatalogServiceAsyncStub:
    return cast("CatalogServiceAsyncStub", CatalogServiceStub(_channel(request, "catalog")))


def ledger_stub(request: Request) -> LedgerServiceAsyncStub:
    return cast("LedgerServiceAsyncStub", LedgerServiceStub(_channel(request, "ledger")))


def accounts_stub(request: Request) -> AccountsServiceAsyncStub:
    return cast("AccountsServiceAsyncStub", AccountsServiceStub(_channel(request, "accounts")))


def generation_stub(request: Request) -> GenerationServiceAsyncStub:
    return cast("GenerationServiceAsyncStub", GenerationServiceStub(_channel(request, "generation")))


def workflow_stub(request: Request) -> WorkflowServiceAsyncStub:
    return cast("WorkflowServiceAsyncStub", WorkflowServiceStub(_channel(request, "workflow")))


# -- answers ----------------------------------------------------------------------------------------
def page_request(cursor: str, limit: int) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(cursor=cursor, limit=limit)


def as_dict(message: Message) -> dict[str, Any]:
    """`to_json` of a message that is a JSON object (not Credits, Money or a timestamp)."""
    body: dict[str, Any] = to_json(message)
    return body


def page_json(items: Iterable[Message], page: common_pb2.PageInfo) -> dict[str, Any]:
    """A page as every admin list answers it: {"items": [...], "next_cursor": "..." or null}."""
    return {"items": [to_json(item) for item in items], "next_cursor": page.next_cursor or None}
