"""The generation service's contract as the workflow and the admin API use it, run through a gRPC stub
against both the shared fake (`tests/fakes/generation.py`) and the real servicer (on PostgreSQL, with the
generation suite's catalog and ledger stand-ins): the same requests, the same observable answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest

from atelier.common.v1 import common_pb2
from atelier.generation.v1 import generation_pb2 as pb
from atelier.generation.v1 import generation_pb2_grpc
from kit.bus import Bus
from kit.identity import Identity
from tests import identities
from tests.fakes.contract import refused
from tests.fakes.generation import FakeGeneration
from tests.fakes.serve import serve
from tests.generation.stack import Stack

Stub = generation_pb2_grpc.GenerationServiceStub
ADMIN = Identity(user_id="admin-1", role="admin")


@pytest.fixture
async def fake_stub(bus: Bus) -> AsyncIterator[Stub]:
    # RPCs a fake leaves out answer UNIMPLEMENTED (the generated base); only its stub calls them abstract.
    fake = FakeGeneration(bus)  # type: ignore[abstract]
    fake.auto = False  # the real one has no worker here either: tasks stay queued
    served = (generation_pb2_grpc.add_GenerationServiceServicer_to_server, fake)
    async with serve("generation-fake", served) as address, identities.channel(address) as channel:
        yield Stub(channel)


@pytest.fixture(params=["fake", "real"])
def stub(request: pytest.FixtureRequest) -> Stub:
    if request.param == "fake":
        return cast("Stub", request.getfixturevalue("fake_stub"))
    # The generation suite's own stack: the real servicer, its catalog offering the model "img".
    return cast("Stack", request.getfixturevalue("stack")).stub


def user() -> Identity:
    return Identity(user_id=f"u_{uuid.uuid4().hex[:10]}", status="active")


def step(key: str) -> pb.SubmitTaskRequest:
    return pb.SubmitTaskRequest(
        kind=common_pb2.MODEL_KIND_IMAGE,
        model_code="img",
        prompt="a step",
        ratio="1:1",
        resolution="1K",
        internal=True,
        idempotency_key=key,
        workflow_step=pb.WorkflowStepRef(run_id=f"run_{key}", step_key="image"),
    )


async def test_unknown_tasks_and_uploads_are_not_found(stub: Stub) -> None:
    who = identities.user(user())
    missing = pb.GetTaskRequest(task_id="task_missing")
    assert await refused(stub.GetTask(missing, metadata=who)) == (grpc.StatusCode.NOT_FOUND, "task_not_found")
    cancel = pb.CancelTaskRequest(task_id="task_missing")
    assert await refused(stub.CancelTask(cancel, metadata=who)) == (
        grpc.StatusCode.NOT_FOUND,
        "task_not_found",
    )
    upload = pb.GetUploadRequest(upload_id="up_missing")
    assert await refused(stub.GetUpload(upload, metadata=who)) == (
        grpc.StatusCode.NOT_FOUND,
        "upload_not_found",
    )


async def test_a_workflow_step_is_created_once_per_key(stub: Stub) -> None:
    owner = user()
    key = uuid.uuid4().hex[:12]
    first = await stub.SubmitTask(step(key), metadata=identities.for_owner(owner.user_id))
    assert first.created
    assert first.task.internal
    assert first.task.status == pb.TASK_STATUS_QUEUED
    assert (first.task.workflow_step.run_id, first.task.workflow_step.step_key) == (f"run_{key}", "image")
    again = await stub.SubmitTask(step(key), metadata=identities.for_owner(owner.user_id))
    assert not again.created
    assert again.task.id == first.task.id


async def test_a_task_is_read_by_its_owner_and_admins_only(stub: Stub) -> None:
    owner = user()
    task = (
        await stub.SubmitTask(step(uuid.uuid4().hex[:12]), metadata=identities.for_owner(owner.user_id))
    ).task
    mine = await stub.GetTask(pb.GetTaskRequest(task_id=task.id), metadata=identities.user(owner))
    assert mine.task.id == task.id
    seen = await stub.GetTask(pb.GetTaskRequest(task_id=task.id), metadata=identities.user(ADMIN))
    assert seen.task.user_id == owner.user_id
    other = stub.GetTask(pb.GetTaskRequest(task_id=task.id), metadata=identities.user(user()))
    assert await refused(other) == (grpc.StatusCode.NOT_FOUND, "task_not_found")
