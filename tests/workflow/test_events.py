from atelier.workflow.v1 import workflow_pb2
from services.workflow import events
from services.workflow.models import RunStatus, StepStatus


def test_every_status_has_its_protobuf_counterpart() -> None:
    assert set(events.RUN_STATUS) == set(RunStatus)
    assert set(events.STEP_STATUS) == set(StepStatus)
    assert events.RUN_STATUS[RunStatus.DEBITING] == workflow_pb2.RUN_STATUS_PENDING
