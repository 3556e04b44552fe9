"""Workflow runs over HTTP: start (Idempotency-Key), list (cursor, newest first), get, cancel.

The routes translate JSON to `atelier.workflow.v1` and back; every rule lives in the workflow
service, whose errors become problem+json in `gateway/problems.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from pydantic import BaseModel, Field

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from gateway.auth import CurrentPrincipal, VerifiedPrincipal, WriterPrincipal
from gateway.convert import credits_text
from gateway.problems import Problem
from kit.protoconv import enum_by_name

router = APIRouter(prefix="/v1/workflow-runs", tags=["workflows"])

RUN_STATUSES = enum_by_name(workflow_pb2.RunStatus)


class StartRunBody(BaseModel):
    template_code: str = Field(min_length=1, max_length=100, examples=["health-supplement"])
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        examples=[
            {
                "productText": "Vitamin D3 gummies",
                "productPhotos": ["up_123"],
                "ratio": "16:9",
                "tone": "friendly",
            }
        ],
    )


class ErrorOut(BaseModel):
    code: str
    message: str


class OutputOut(BaseModel):
    id: str
    mime_type: str
    url: str | None = None
    text: str | None = None
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


class StepOut(BaseModel):
    key: str
    index: int
    kind: str
    model_code: str
    status: str
    task_id: str | None
    outputs: list[OutputOut]
    error: ErrorOut | None
    started_at: datetime | None
    finished_at: datetime | None


class RunOut(BaseModel):
    id: str
    template_code: str
    status: str
    inputs: dict[str, Any]
    # Credits as decimal strings ("12", "0.5").
    price: str
    refund_amount: str
    refund_policy: str
    debit_transfer_id: str | None
    refund_transfer_id: str | None
    cancel_requested: bool
    error: ErrorOut | None
    steps: list[StepOut]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class StartRunOut(BaseModel):
    run: RunOut
    created: bool


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


def _stub(request: Request) -> workflow_pb2_grpc.WorkflowServiceStub:
    return workflow_pb2_grpc.WorkflowServiceStub(request.app.state.clients.channels["workflow"])


def _time(value: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return value.ToDatetime(tzinfo=UTC) if present else None


def _error(message: workflow_pb2.Run | workflow_pb2.RunStep) -> ErrorOut | None:
    if not message.HasField("error") or not message.error.code:
        return None
    return ErrorOut(code=message.error.code, message=message.error.message)


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


def run_out(run: workflow_pb2.Run) -> RunOut:
    return RunOut(
        id=run.id,
        template_code=run.template_code,
        status=_name(workflow_pb2.RunStatus.Name(run.status), "RUN_STATUS_"),
        inputs=json_format.MessageToDict(run.inputs),
        price=credits_text(run.price),
        refund_amount=credits_text(run.refund_amount),
        refund_policy="proportional"
        if run.template_snapshot.refund_policy == catalog_pb2.REFUND_POLICY_PROPORTIONAL
        else "full",
        debit_transfer_id=run.debit_transfer_id or None,
        refund_transfer_id=run.refund_transfer_id or None,
        cancel_requested=run.cancel_requested,
        error=_error(run),
        steps=[
            StepOut(
                key=step.key,
                index=step.index,
                kind=_name(common_pb2.ModelKind.Name(step.kind), "MODEL_KIND_"),
                model_code=step.model_code,
                status=_name(workflow_pb2.StepStatus.Name(step.status), "STEP_STATUS_"),
                task_id=step.task_id or None,
                outputs=[
                    OutputOut(
                        id=o.id,
                        mime_type=o.mime_type,
                        url=o.url or None,
                        text=o.text or None,
                        width=o.width or None,
                        height=o.height or None,
                        duration_seconds=o.duration_seconds or None,
                    )
                    for o in step.outputs
                ],
                error=_error(step),
                started_at=_time(step.started_at, step.HasField("started_at")),
                finished_at=_time(step.finished_at, step.HasField("finished_at")),
            )
            for step in run.steps
        ],
        created_at=_time(run.created_at, run.HasField("created_at")),
        started_at=_time(run.started_at, run.HasField("started_at")),
        finished_at=_time(run.finished_at, run.HasField("finished_at")),
    )


@router.post("", summary="Start a workflow run (debits the template price once)", status_code=201)
async def start_run(
    body: StartRunBody,
    request: Request,
    identity: VerifiedPrincipal,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> StartRunOut:
    inputs = struct_pb2.Struct()
    try:
        inputs.update(body.inputs)
    except (TypeError, ValueError) as exc:
        raise Problem(422, "invalid_input", "inputs must be JSON values") from exc
    reply = await _stub(request).StartRun(
        workflow_pb2.StartRunRequest(
            idempotency_key=idempotency_key or "", template_code=body.template_code, inputs=inputs
        ),
        metadata=identity.metadata(),
    )
    return StartRunOut(run=run_out(reply.run), created=reply.created)


@router.get("", summary="The caller's runs, newest first")
async def list_runs(
    request: Request,
    identity: CurrentPrincipal,
    cursor: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[str | None, Query(pattern="^(pending|running|succeeded|failed|canceled)$")] = None,
    template_code: Annotated[str, Query(max_length=100)] = "",
) -> RunPage:
    reply = await _stub(request).ListRuns(
        workflow_pb2.ListRunsRequest(
            page=common_pb2.PageRequest(cursor=cursor, limit=limit),
            status=RUN_STATUSES[status] if status else workflow_pb2.RUN_STATUS_UNSPECIFIED,
            template_code=template_code,
        ),
        metadata=identity.metadata(),
    )
    return RunPage(items=[run_out(run) for run in reply.runs], next_cursor=reply.page.next_cursor or None)


@router.get("/{run_id}", summary="A run with its steps, outputs, timings, price and refund")
async def get_run(
    run_id: Annotated[str, Path(max_length=100)], request: Request, identity: CurrentPrincipal
) -> RunOut:
    reply = await _stub(request).GetRun(
        workflow_pb2.GetRunRequest(run_id=run_id), metadata=identity.metadata()
    )
    return run_out(reply.run)


@router.post("/{run_id}/cancel", summary="Cancel a run; it is refunded by the template's policy")
async def cancel_run(
    run_id: Annotated[str, Path(max_length=100)], request: Request, identity: WriterPrincipal
) -> RunOut:
    reply = await _stub(request).CancelRun(
        workflow_pb2.CancelRunRequest(run_id=run_id), metadata=identity.metadata()
    )
    return run_out(reply.run)
