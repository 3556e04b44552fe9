"""Admin routes of the ledger's side: the payment callback log, the spend debugger (the whole chain
behind a transfer, task, run, order or trace id, asked of every service that may know it) and the
ledger's reconciliation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import grpc
from fastapi import APIRouter, Path, Query, Request

from atelier.generation.v1 import generation_pb2
from atelier.ledger.v1 import ledger_pb2
from atelier.workflow.v1 import workflow_pb2
from gateway.auth import AdminPrincipal
from gateway.problems import Problem
from gateway.routes.admin.common import (
    Cursor,
    Limit,
    as_dict,
    generation_stub,
    ledger_stub,
    page_json,
    page_request,
    workflow_stub,
)
from kit.protoconv import enum_by_name

T = TypeVar("T")

# Transfer, task, run, order and trace ids: what the ledger and the services mint.
SPEND_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"
# Services still being built may be absent: the spend debugger waits this long for each.
AUXILIARY_TIMEOUT = 3.0

router = APIRouter()

_CALLBACK_OUTCOMES = enum_by_name(ledger_pb2.CallbackOutcome)


@router.get("/callbacks", summary="The payment callback log, newest first: every delivery, verified or not")
async def callback_log(
    request: Request,
    principal: AdminPrincipal,
    order_id: Annotated[str, Query(max_length=64)] = "",
    user_id: Annotated[str, Query(max_length=64)] = "",
    provider: Annotated[str, Query(max_length=32)] = "",
    outcome: Literal["credited", "duplicate", "ignored", "rejected", "error"] | None = None,
    cursor: Cursor = "",
    limit: Limit = 50,
) -> dict[str, Any]:
    """Forged and unverifiable deliveries are here only: a user's records show verified ones."""
    reply = await ledger_stub(request).ListCallbacks(
        ledger_pb2.ListCallbacksRequest(
            page=page_request(cursor, limit),
            order_id=order_id,
            user_id=user_id,
            provider=provider,
            outcome=_CALLBACK_OUTCOMES[outcome] if outcome else ledger_pb2.CALLBACK_OUTCOME_UNSPECIFIED,
        ),
        metadata=principal.metadata(),
    )
    return page_json(reply.callbacks, reply.page)


# -- spend debugging --------------------------------------------------------------------------------


async def _ask(call: Awaitable[T]) -> tuple[str, T | None]:
    """A call to a service that may be missing or unfinished: ("ok", reply) or (what went wrong, None)."""
    try:
        return "ok", await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
            return "not_found", None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return "unavailable", None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return "unimplemented", None
        return "error", None


async def _ask_about(some_id: str, call: Callable[[str], Awaitable[T]]) -> tuple[str, T | None]:
    """("skipped", None) when there is no id to ask about; else what `_ask` makes of `call(some_id)`."""
    if not some_id:
        return "skipped", None
    return await _ask(call(some_id))


def _trace_link(template: str, trace_id: str) -> str:
    return template.replace("{trace_id}", trace_id)


@router.get(
    "/spend/{spend_id}",
    summary="The whole chain behind a transfer, task, run, order or trace id, with trace links",
)
async def spend(
    request: Request, principal: AdminPrincipal, spend_id: Annotated[str, Path(pattern=SPEND_ID)]
) -> dict[str, Any]:
    metadata = principal.metadata()
    sources: dict[str, str] = {}
    status, chain = await _ask(
        ledger_stub(request).GetSpendChain(ledger_pb2.GetSpendChainRequest(id=spend_id), metadata=metadata)
    )
    sources["ledger"] = status
    reference = chain.reference if chain is not None else None
    task_id = run_id = ""
    if reference is not None and reference.id:
        if reference.type == ledger_pb2.REFERENCE_TYPE_TASK:
            task_id = reference.id
        elif reference.type == ledger_pb2.REFERENCE_TYPE_RUN:
            run_id = reference.id
    elif chain is None:  # the ledger knows nothing: the id may still be a task or a run
        task_id = run_id = spend_id

    generation, workflow = generation_stub(request), workflow_stub(request)
    options: dict[str, Any] = {"metadata": metadata, "timeout": AUXILIARY_TIMEOUT}

    def task_of(some_id: str) -> Awaitable[tuple[str, generation_pb2.GetTaskResponse | None]]:
        return _ask_about(
            some_id, lambda i: generation.GetTask(generation_pb2.GetTaskRequest(task_id=i), **options)
        )

    def run_of(some_id: str) -> Awaitable[tuple[str, workflow_pb2.GetRunResponse | None]]:
        return _ask_about(some_id, lambda i: workflow.GetRun(workflow_pb2.GetRunRequest(run_id=i), **options))

    (sources["generation"], task_reply), (sources["workflow"], run_reply) = await asyncio.gather(
        task_of(task_id), run_of(run_id)
    )
    task = task_reply.task if task_reply is not None else None
    if run_reply is None and task is not None and task.workflow_step.run_id:
        # A workflow step's task: its run carries the charge.
        sources["workflow"], run_reply = await run_of(task.workflow_step.run_id)
    run = run_reply.run if run_reply is not None else None

    if chain is None and task is None and run is None:
        if sources["ledger"] == "unavailable":
            raise Problem(
                503, "upstream_unavailable", "the ledger could not be asked; try again", sources=sources
            )
        raise Problem(404, "not_found", f"nothing is known about {spend_id!r}", sources=sources)

    template: str = request.app.state.settings.tracing_ui_url
    trace_ids: list[str] = []

    def traced(item: dict[str, Any], trace_id: str) -> dict[str, Any]:
        if trace_id:
            item["trace_url"] = _trace_link(template, trace_id)
            if trace_id not in trace_ids:
                trace_ids.append(trace_id)
        return item

    body: dict[str, Any] = {
        "id": spend_id,
        "reference": None,
        "task": traced(as_dict(task), task.trace_id) if task is not None else None,
        "run": traced(as_dict(run), run.trace_id) if run is not None else None,
        "transfers": [],
        "order": None,
        "callbacks": [],
    }
    if chain is not None:
        if chain.reference.id:
            body["reference"] = as_dict(chain.reference)
        body["transfers"] = [traced(as_dict(t), t.trace_id) for t in chain.transfers]
        if chain.HasField("order"):
            body["order"] = traced(as_dict(chain.order), chain.order.trace_id)
        body["callbacks"] = [traced(as_dict(c), c.trace_id) for c in chain.callbacks]
        for trace_id in chain.trace_ids:
            if trace_id not in trace_ids:
                trace_ids.append(trace_id)
    body["traces"] = [{"trace_id": t, "url": _trace_link(template, t)} for t in trace_ids]
    body["sources"] = sources
    return body


# -- reconciliation ---------------------------------------------------------------------------------
@router.get("/reconcile", summary="Check every ledger invariant; an empty violation list means healthy")
async def reconcile(request: Request, principal: AdminPrincipal) -> dict[str, Any]:
    reply = await ledger_stub(request).Reconcile(ledger_pb2.ReconcileRequest(), metadata=principal.metadata())
    body = as_dict(reply)
    body["healthy"] = not reply.violations
    return body
