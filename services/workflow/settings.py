from __future__ import annotations

from pydantic import Field

from kit.settings import ServiceSettings


class WorkflowSettings(ServiceSettings):
    database_url: str = "postgresql://postgres@127.0.0.1:5432/atelier_workflow"
    grpc_port: int = 50055
    # How often the resume loop looks for unfinished runs (it also runs once at startup).
    resume_interval_seconds: float = Field(default=5.0, gt=0)
    # A run still `debiting` after this long lost its start request (crash): the loop finishes it.
    debit_stale_seconds: float = Field(default=15.0, ge=0)
    # A step whose task has run this long without a tasks.completed event is checked with GetTask
    # (an event lost to the dead-letter subject must not strand a run).
    task_poll_seconds: float = Field(default=120.0, gt=0)
    # Concurrent tasks.completed handlers per replica.
    consumer_concurrency: int = Field(default=4, ge=1)
    # Limits applied when a template input leaves them at 0.
    default_text_max_length: int = Field(default=2000, ge=1)
    default_max_uploads: int = Field(default=8, ge=1)
