"""gRPC transport for the workflow service: protobuf in, a domain call, protobuf out."""

from __future__ import annotations

import grpc
from google.protobuf import json_format, struct_pb2

from atelier.common.v1 import common_pb2
from atelier.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from kit.cursors import page_limit
from kit.errors import InvalidArgument
from kit.identity import caller, require_verified
from kit.protoconv import enum_by_name, optional_timestamp, timestamp
from services.workflow import service
from services.workflow.events import RUN_STATUS, STEP_STATUS
from services.workflow.models import RefundState, RunStatus
from services.workflow.repository import RunRecord
from services.workflow.runner import Runner

_STATUS_NAMES = {value: RunStatus(name) for name, value in enum_by_name(workflow_pb2.RunStatus).items()}


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def StartRun(
        self, request: workflow_pb2.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.StartRunResponse:
        identity = require_verified(context)
        if not request.template_code:
            raise InvalidArgument("template_code is required", code="invalid_input", field="template_code")
        if len(request.idempotency_key) > 200:
            raise InvalidArgument("the idempotency key is too long", code="invalid_input")
        inputs = json_format.MessageToDict(request.inputs) if request.HasField("inputs") else {}
        run, created = await self.runner.start(
            identity, request.idempotency_key, request.template_code, inputs
        )
        return workflow_pb2.StartRunResponse(run=run_to_proto(run), created=created)

    async def GetRun(
        self, request: workflow_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.GetRunResponse:
        identity = caller(context)
        # Admins read any run (the spend debugger); everyone else only their own.
        run = await self.runner.get(request.run_id, None if identity.is_admin else identity.user_id)
        return workflow_pb2.GetRunResponse(run=run_to_proto(run))

    async def ListRuns(
        self, request: workflow_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.ListRunsResponse:
        identity = caller(context)
        status = _STATUS_NAMES.get(request.status)  # None for UNSPECIFIED: every status
        runs, next_cursor = await self.runner.list_runs(
            identity.user_id,
            cursor=request.page.cursor,
            limit=page_limit(request.page.limit),
            status=status,
            template_code=request.template_code or None,
        )
        page = common_pb2.PageInfo(next_cursor=next_cursor)
        return workflow_pb2.ListRunsResponse(runs=[run_to_proto(run) for run in runs], page=page)

    async def CancelRun(
        self, request: workflow_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> workflow_pb2.CancelRunResponse:
        identity = caller(context)
        run = await self.runner.cancel(identity.user_id, request.run_id)
        return workflow_pb2.CancelRunResponse(run=run_to_proto(run))


def run_to_proto(run: RunRecord) -> workflow_pb2.Run:
    template = service.template_of(run)
    inputs = struct_pb2.Struct()
    inputs.update(run.inputs)
    message = workflow_pb2.Run(
        id=run.id,
        user_id=run.user_id,
        template_code=run.template_code,
        status=RUN_STATUS[run.status],
        inputs=inputs,
        price=common_pb2.Credits(milli=run.price_milli),
        refund_amount=common_pb2.Credits(
            milli=run.refund_milli if run.refund_state == RefundState.DONE else 0
        ),
        template_snapshot=template,
        catalog_version=run.catalog_version,
        debit_transfer_id=run.debit_transfer_id or "",
        refund_transfer_id=run.refund_transfer_id or "",
        cancel_requested=run.cancel_requested,
        trace_id=run.trace_id,
        created_at=timestamp(run.created_at),
        updated_at=timestamp(run.updated_at),
        started_at=optional_timestamp(run.started_at),
        finished_at=optional_timestamp(run.finished_at),
    )
    if run.error_code:
        message.error.CopyFrom(common_pb2.ErrorDetail(code=run.error_code, message=run.error_message or ""))
    for step in run.steps:
        item = message.steps.add(
            key=step.key,
            index=step.index,
            kind=service.KINDS.get(step.kind, common_pb2.MODEL_KIND_UNSPECIFIED),
            model_code=step.model_code,
            status=STEP_STATUS[step.status],
            task_id=step.task_id or "",
            outputs=service.step_outputs(step),
            started_at=optional_timestamp(step.started_at),
            finished_at=optional_timestamp(step.finished_at),
        )
        if step.error_code:
            error = common_pb2.ErrorDetail(code=step.error_code, message=step.error_message or "")
            item.error.CopyFrom(error)
    return message
