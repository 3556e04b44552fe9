"""The rules of workflow runs, pure of transport: input validation, refunds, how a run advances and
how each step's output feeds the next. Functions take a session (the caller owns the transaction)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2
from kit.errors import InvalidArgument, NotFound
from kit.outbox import Outbox
from services.workflow import events, repository
from services.workflow.models import RefundPolicy, RefundState, RunStatus, StepStatus
from services.workflow.repository import RunRecord, StepRecord

KIND_NAMES = {
    common_pb2.MODEL_KIND_TEXT: "text",
    common_pb2.MODEL_KIND_IMAGE: "image",
    common_pb2.MODEL_KIND_VIDEO: "video",
}
KINDS = {name: kind for kind, name in KIND_NAMES.items()}
POLICIES = {
    catalog_pb2.REFUND_POLICY_UNSPECIFIED: RefundPolicy.FULL,
    catalog_pb2.REFUND_POLICY_FULL: RefundPolicy.FULL,
    catalog_pb2.REFUND_POLICY_PROPORTIONAL: RefundPolicy.PROPORTIONAL,
}


def debit_transfer_id(run_id: str) -> str:
    return f"run:{run_id}:debit"


def refund_transfer_id(run_id: str) -> str:
    return f"run:{run_id}:refund"


def step_idempotency_key(run_id: str, step: StepRecord) -> str:
    # Generation keeps one task per (user, key): a resubmission after any crash returns that task.
    return f"run:{run_id}:step:{step.index}:{step.key}"


def request_hash(template_code: str, inputs: dict[str, Any]) -> str:
    canonical = json.dumps({"template": template_code, "inputs": inputs}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- inputs -------------------------------------------------------------------------------------

UploadCheck = Callable[[str], Awaitable[None]]


def _invalid(field: str, message: str, **details: Any) -> InvalidArgument:
    return InvalidArgument(message, code="invalid_input", field=field, **details)


async def validate_inputs(
    template: catalog_pb2.WorkflowTemplate,
    raw: dict[str, Any],
    *,
    check_upload: UploadCheck,
    text_max_length: int,
    max_uploads: int,
) -> dict[str, Any]:
    """The inputs checked by type against the template; raises invalid_input naming the field.

    `check_upload(upload_id)` raises NotFound unless the upload exists and belongs to the caller.
    """
    declared = {spec.name: spec for spec in template.inputs}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise _invalid(unknown[0], f"unknown input {unknown[0]!r}", allowed=",".join(declared))
    clean: dict[str, Any] = {}
    for name, spec in declared.items():
        value = raw.get(name)
        if value is None or value == "" or value == []:
            if spec.required:
                raise _invalid(name, f"{name} is required")
            continue
        if spec.type == catalog_pb2.INPUT_TYPE_TEXT:
            if not isinstance(value, str) or not value.strip():
                raise _invalid(name, f"{name} must be non-empty text")
            limit = spec.max_length or text_max_length
            if len(value) > limit:
                raise _invalid(name, f"{name} is longer than {limit} characters", max_length=limit)
            clean[name] = value.strip()
        elif spec.type == catalog_pb2.INPUT_TYPE_CHOICE:
            allowed = list(spec.allowed_values)
            if not isinstance(value, str) or value not in allowed:
                raise _invalid(name, f"{name} must be one of {', '.join(allowed)}", allowed=",".join(allowed))
            clean[name] = value
        elif spec.type == catalog_pb2.INPUT_TYPE_IMAGE_UPLOADS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise _invalid(name, f"{name} must be a list of upload ids")
            if len(set(value)) != len(value):
                raise _invalid(name, f"{name} lists an upload twice")
            most = spec.max_items or max_uploads
            if len(value) > most or len(value) < spec.min_items:
                raise _invalid(name, f"{name} takes {spec.min_items or 1} to {most} uploads", max_items=most)
            for upload_id in value:
                try:
                    await check_upload(upload_id)
                except NotFound as exc:
                    raise _invalid(name, f"upload {upload_id!r} was not found", upload_id=upload_id) from exc
            clean[name] = list(value)
        else:
            raise _invalid(name, f"{name} has an input type this service does not know")
    return clean


# -- refunds ------------------------------------------------------------------------------------


def refund_for(policy: RefundPolicy, price_milli: int, steps: list[StepRecord]) -> int:
    """FULL: the whole price. PROPORTIONAL: price × unfinished steps / all steps, rounded down."""
    if price_milli <= 0:
        return 0
    if policy == RefundPolicy.PROPORTIONAL and steps:
        unfinished = sum(1 for step in steps if step.status != StepStatus.SUCCEEDED)
        return price_milli * unfinished // len(steps)
    return price_milli


# -- advancing a run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """What the runner must do after the transaction that decided it has committed."""

    kind: Literal["submit", "refund", "wait", "done"]
    step: StepRecord | None = None


def _now() -> datetime:
    return datetime.now(UTC)


async def finalize(
    session: AsyncSession,
    outbox: Outbox,
    run: RunRecord,
    status: Literal[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED],
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Action:
    """Close a run: unfinished steps are skipped, a refund is owed by the snapshotted policy when the
    final output was not delivered. runs.completed leaves now, or once the refund is written."""
    now = _now()
    steps = []
    for step in run.steps:
        if step.status in (StepStatus.PENDING, StepStatus.RUNNING):
            canceled = status == RunStatus.CANCELED
            await repository.update_step(
                session,
                run.id,
                step.index,
                status=StepStatus.SKIPPED,
                finished_at=now,
                error_code=step.error_code or ("canceled" if canceled else "skipped"),
                error_message=step.error_message
                or ("the run was canceled" if canceled else "an earlier step failed"),
            )
            step = replace(step, status=StepStatus.SKIPPED)
        steps.append(step)
    refund = 0 if status == RunStatus.SUCCEEDED else refund_for(run.refund_policy, run.price_milli, steps)
    if not run.debit_transfer_id:
        refund = 0  # nothing was debited (a free template)
    await repository.update_run(
        session,
        run.id,
        status=status,
        finished_at=now,
        error_code=error_code,
        error_message=error_message,
        refund_state=RefundState.PENDING if refund else RefundState.NONE,
        refund_milli=refund,
    )
    if refund:
        return Action("refund")
    await events.run_completed(
        outbox,
        session,
        run,
        status=status,
        refund_milli=0,
        refund_transfer_id="",
        error_code=error_code,
        error_message=error_message,
    )
    return Action("done")


async def next_action(session: AsyncSession, outbox: Outbox, run: RunRecord) -> Action:
    """Decide (and persist) the next move of a locked run: resume at its first unfinished step."""
    if run.status == RunStatus.DEBITING:
        return Action("wait")  # the debit path owns it
    if run.is_final:
        return Action("refund") if run.refund_state == RefundState.PENDING else Action("done")
    if run.cancel_requested:
        return await finalize(
            session,
            outbox,
            run,
            RunStatus.CANCELED,
            error_code="canceled",
            error_message="the run was canceled",
        )
    for step in run.steps:
        if step.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            continue
        if step.status == StepStatus.FAILED:
            return await finalize(
                session,
                outbox,
                run,
                RunStatus.FAILED,
                error_code=step.error_code or "step_failed",
                error_message=f"step {step.key} failed: {step.error_message or 'no detail'}",
            )
        if step.status == StepStatus.PENDING:
            await repository.update_step(
                session, run.id, step.index, status=StepStatus.RUNNING, started_at=_now()
            )
            if run.status != RunStatus.RUNNING:
                await repository.update_run(session, run.id, status=RunStatus.RUNNING)
            await events.run_progress(outbox, session, run, RunStatus.RUNNING, step.key, StepStatus.RUNNING)
            return Action("submit", replace(step, status=StepStatus.RUNNING))
        # running: submit again until a task id is stored (idempotent), else wait for its event
        return Action("submit", step) if step.task_id is None else Action("wait", step)
    return await finalize(session, outbox, run, RunStatus.SUCCEEDED)


async def record_completion(
    session: AsyncSession,
    outbox: Outbox,
    run: RunRecord,
    *,
    step_key: str,
    task_id: str,
    succeeded: bool,
    outputs: list[generation_pb2.TaskOutput],
    error: common_pb2.ErrorDetail | None,
) -> bool:
    """Store a step's result. False (nothing changed) for duplicates, stale or foreign tasks, and
    events about steps that are not running."""
    step = next((s for s in run.steps if s.key == step_key), None)
    if step is None or step.status != StepStatus.RUNNING or run.is_final:
        return False
    if step.task_id is not None and step.task_id != task_id:
        return False
    status = StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED
    values: dict[str, Any] = {"status": status, "task_id": task_id, "finished_at": _now()}
    if succeeded:
        values["outputs"] = [
            json_format.MessageToDict(output, preserving_proto_field_name=True) for output in outputs
        ]
    else:
        values["error_code"] = (error.code if error else "") or "task_failed"
        values["error_message"] = (error.message if error else "") or "the step's task failed"
    await repository.update_step(session, run.id, step.index, **values)
    await events.run_progress(outbox, session, run, run.status, step.key, status)
    return True


def step_outputs(step: StepRecord) -> list[generation_pb2.TaskOutput]:
    return [
        json_format.ParseDict(output, generation_pb2.TaskOutput(), ignore_unknown_fields=True)
        for output in step.outputs
    ]


def template_of(run: RunRecord) -> catalog_pb2.WorkflowTemplate:
    return catalog_pb2.WorkflowTemplate.FromString(run.template_snapshot)


# -- how each step's output feeds the next --------------------------------------------------------

TEXT_SYSTEM = (
    "You write prompts for generative media models used in product marketing. "
    "Answer with the prompt only, in one paragraph, no preamble."
)


def _earlier(run: RunRecord, step: StepRecord, kind: str) -> generation_pb2.TaskOutput | None:
    """The first output of the closest earlier succeeded step of `kind`."""
    for earlier in reversed(run.steps[: step.index]):
        if earlier.kind == kind and earlier.status == StepStatus.SUCCEEDED:
            outputs = step_outputs(earlier)
            if outputs:
                return outputs[0]
    return None


def step_request(run: RunRecord, step: StepRecord) -> generation_pb2.SubmitTaskRequest:
    """The internal generation task of `step`, built only from the run's snapshot, inputs and the
    outputs of earlier steps — so a resubmission after a crash is the same request."""
    template = template_of(run)
    spec = template.steps[step.index]
    inputs = run.inputs
    product = str(inputs.get("productText", ""))
    tone = str(inputs.get("tone", ""))
    ratio = str(inputs.get("ratio", ""))
    photos = [str(p) for p in inputs.get("productPhotos", [])]
    previous_text = _earlier(run, step, "text")
    previous_image = _earlier(run, step, "image")
    request = generation_pb2.SubmitTaskRequest(
        idempotency_key=step_idempotency_key(run.id, step),
        kind=KINDS[step.kind],
        model_code=step.model_code,
        internal=True,
        workflow_step=generation_pb2.WorkflowStepRef(run_id=run.id, step_key=step.key),
    )
    tone_line = f" Tone: {tone}." if tone else ""
    if step.kind == "text":
        request.system_instruction = TEXT_SYSTEM
        if previous_image is None and previous_text is None:
            # prompt-image: the product text, tone and photos become an image prompt
            request.prompt = (
                f"Write an image-generation prompt for a product marketing visual (aspect ratio {ratio})."
                f"{tone_line} Product: {product}"
            )
            request.inputs.extend(
                generation_pb2.TaskInput(upload_id=photo, role=generation_pb2.INPUT_ROLE_REFERENCE)
                for photo in photos
            )
        else:
            # prompt-video: the video prompt continues the image that will be its first frame
            shown = previous_text.text if previous_text else ""
            request.prompt = (
                f"Write a short promotional video prompt (aspect ratio {ratio}) whose first frame is this "
                f"image: {shown}{tone_line} Product: {product}"
            )
        return request
    request.ratio = ratio
    request.resolution = spec.resolution
    request.prompt = previous_text.text if previous_text and previous_text.text else f"{product}{tone_line}"
    if step.kind == "video":
        request.duration_seconds = spec.duration_seconds
        if previous_image is not None and previous_image.id:
            request.capability = "first_frame"
            request.inputs.append(
                generation_pb2.TaskInput(
                    output_id=previous_image.id, role=generation_pb2.INPUT_ROLE_FIRST_FRAME
                )
            )
    return request
