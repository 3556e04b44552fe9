"""`python -m services.workflow [serve|migrate]`"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from atelier.events.v1 import events_pb2
from atelier.workflow.v1 import workflow_pb2, workflow_pb2_grpc
from kit.bus import Delivery, Permanent
from kit.grpc_server import GrpcServer
from kit.service import Runtime, ServiceDefinition, main
from services.workflow import events
from services.workflow.clients import Clients
from services.workflow.models import metadata
from services.workflow.runner import Runner
from services.workflow.servicer import WorkflowServicer
from services.workflow.settings import WorkflowSettings


def build_runner(runtime: Runtime[WorkflowSettings]) -> Runner:
    settings = runtime.settings
    assert runtime.outbox is not None
    relay = runtime.relay
    return Runner(
        runtime.db,
        runtime.outbox,
        Clients.connect(settings),
        settings,
        notify=relay.notify if relay is not None else None,
    )


async def setup(runtime: Runtime[WorkflowSettings], server: GrpcServer) -> None:
    runner = build_runner(runtime)
    settings = runner.settings
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(runner), server.server)
    server.add(workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name)

    async def on_task_completed(delivery: Delivery) -> None:
        try:
            event = events_pb2.TaskCompleted.FromString(delivery.data)
        except DecodeError as exc:
            raise Permanent(f"not a TaskCompleted: {exc}") from exc
        event_id = event.meta.event_id or delivery.event_id
        if not event_id:
            raise Permanent("a tasks.completed event without an id")
        await runner.on_task_completed(event_id, event)

    runtime.spawn(
        runtime.bus.consume(
            durable=events.STEPS_CONSUMER,
            subject=events.TASKS_COMPLETED,
            handler=on_task_completed,
            stop=runtime.stop,
            concurrency=settings.consumer_concurrency,
        )
    )
    # Runs once at startup, then periodically: every unfinished run continues where it stopped.
    runtime.spawn(runner.resume_loop(runtime.stop))
    runtime.close_on_stop(runner.clients.close)


DEFINITION = ServiceDefinition("workflow", WorkflowSettings, metadata, setup)

if __name__ == "__main__":
    main(DEFINITION)
