"""The generation service's vocabulary: the kinds and states of tasks and messages and the roles of their
inputs. Each value is the very string the database, the events and the job subjects carry."""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


OPEN_STATUSES = (TaskStatus.QUEUED, TaskStatus.RUNNING)
FINAL_STATUSES = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)


class InputSource(StrEnum):
    """What an input of a task names: one of the caller's uploads or one of their outputs."""

    UPLOAD = "upload_id"
    OUTPUT = "output_id"


class InputRole(StrEnum):
    REFERENCE = "reference"
    FIRST_FRAME = "first_frame"
    EDIT = "edit"
    PRODUCT = "product"


class MessageRole(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    STREAMING = "streaming"
    COMPLETED = "completed"
    FAILED = "failed"
