"""The pure rules: refunds by policy, and how a step's request is built from earlier outputs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atelier.generation.v1 import generation_pb2
from kit.errors import InvalidArgument, NotFound
from services.workflow import service
from services.workflow.models import RefundPolicy, RefundState, RunStatus, StepStatus
from services.workflow.repository import RunRecord, StepRecord
from tests.workflow.fakes import seed_templates

STATUSES = list(StepStatus)


def step(
    index: int, status: StepStatus, kind: str = "image", outputs: list[dict[str, object]] | None = None
) -> StepRecord:
    return StepRecord(
        key=f"s{index}",
        kind=kind,
        model_code="m",
        run_id="r1",
        index=index,
        status=status,
        task_id=None,
        outputs=outputs or [],
        error_code=None,
        error_message=None,
        started_at=None,
        finished_at=None,
    )


@given(
    price=st.integers(min_value=0, max_value=10**9),
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8),
    policy=st.sampled_from(list(RefundPolicy)),
)
def test_a_refund_is_never_more_than_the_price_and_full_means_all(
    price: int, statuses: list[StepStatus], policy: RefundPolicy
) -> None:
    steps = [step(i, s) for i, s in enumerate(statuses)]
    refund = service.refund_for(policy, price, steps)
    assert 0 <= refund <= price
    if policy == RefundPolicy.FULL:
        assert refund == price
    else:
        unfinished = sum(s != StepStatus.SUCCEEDED for s in statuses)
        assert refund == price * unfinished // len(statuses)


def test_proportional_examples() -> None:
    steps = [
        step(0, StepStatus.SUCCEEDED),
        step(1, StepStatus.FAILED),
        step(2, StepStatus.SKIPPED),
        step(3, StepStatus.SKIPPED),
    ]
    assert service.refund_for(RefundPolicy.PROPORTIONAL, 20_000, steps) == 15_000
    assert (
        service.refund_for(RefundPolicy.PROPORTIONAL, 1, steps) == 0
    )  # rounds down, in the house's favor by < 1 milli
    assert service.refund_for(RefundPolicy.FULL, 0, steps) == 0


def run_of(template_code: str, steps: list[StepRecord], inputs: dict[str, object]) -> RunRecord:
    now = datetime.now(UTC)
    template = seed_templates()[template_code]
    return RunRecord(
        id="r1",
        user_id="u1",
        idempotency_key="k",
        request_hash="h",
        template_code=template_code,
        template_snapshot=template.SerializeToString(),
        catalog_version=1,
        inputs=inputs,
        status=RunStatus.RUNNING,
        price_milli=template.price.milli,
        refund_policy=RefundPolicy.FULL,
        debit_transfer_id="run:r1:debit",
        refund_state=RefundState.NONE,
        refund_milli=0,
        refund_transfer_id=None,
        cancel_requested=False,
        error_code=None,
        error_message=None,
        trace_id="",
        created_at=now,
        started_at=now,
        finished_at=None,
        updated_at=now,
        steps=steps,
    )


def test_each_output_feeds_the_next_step() -> None:
    inputs: dict[str, object] = {
        "productText": "Gummies",
        "productPhotos": ["up1", "up2"],
        "ratio": "9:16",
        "tone": "calm",
    }
    text: list[dict[str, object]] = [{"id": "o-text", "text": "a bright kitchen shot"}]
    image: list[dict[str, object]] = [{"id": "o-img", "mime_type": "image/png"}]
    video_text: list[dict[str, object]] = [{"id": "o-vt", "text": "slow dolly in"}]
    steps = [
        step(0, StepStatus.SUCCEEDED, "text", text),
        step(1, StepStatus.SUCCEEDED, "image", image),
        step(2, StepStatus.SUCCEEDED, "text", video_text),
        step(3, StepStatus.RUNNING, "video"),
    ]
    run = run_of("health-supplement", steps, inputs)

    first = service.step_request(run, replace(steps[0], status=StepStatus.RUNNING))
    assert [i.upload_id for i in first.inputs] == ["up1", "up2"]
    assert "Gummies" in first.prompt
    assert "calm" in first.prompt
    assert first.internal
    assert first.workflow_step.step_key == "s0"
    assert first.idempotency_key == "run:r1:step:0:s0"

    second = service.step_request(run, replace(steps[1], status=StepStatus.RUNNING))
    assert second.prompt == "a bright kitchen shot"
    assert second.ratio == "9:16"

    third = service.step_request(run, replace(steps[2], status=StepStatus.RUNNING))
    assert "a bright kitchen shot" in third.prompt
    assert not third.inputs

    video = service.step_request(run, steps[3])
    assert video.prompt == "slow dolly in"
    assert video.duration_seconds == 5
    assert video.capability == "first_frame"
    assert video.inputs[0].output_id == "o-img"
    assert video.inputs[0].role == generation_pb2.INPUT_ROLE_FIRST_FRAME
    # the same state always builds the same request (resubmissions are identical)
    assert service.step_request(run, steps[3]) == video


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
NAMES = st.sampled_from(["productText", "productPhotos", "ratio", "tone", "other"])


async def _validate(raw: dict[str, object]) -> dict[str, object] | InvalidArgument:
    async def check_upload(upload_id: str) -> None:
        if upload_id != "up_ok":
            raise NotFound("no such upload")

    try:
        return await service.validate_inputs(
            seed_templates()["health-supplement"],
            raw,
            check_upload=check_upload,
            text_max_length=2000,
            max_uploads=8,
        )
    except InvalidArgument as exc:
        return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(NAMES, JSON | st.sampled_from(["16:9", "friendly", "up_ok"]), max_size=5))
def test_any_input_is_either_clean_or_refused_with_invalid_input(raw: dict[str, object]) -> None:
    """Whatever JSON arrives, the answer is clean inputs or invalid_input naming a field — never a crash."""
    result = asyncio.run(_validate(raw))
    if isinstance(result, InvalidArgument):
        assert result.code == "invalid_input"
        assert result.details["field"] in {*raw, "productText", "productPhotos", "ratio", "tone"}
        return
    assert set(result) == {"productText", "productPhotos", "ratio", "tone"}
    assert result["productPhotos"] == ["up_ok"]
    assert isinstance(result["productText"], str)
