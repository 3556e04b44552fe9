"""Each record of `services.generation.records` names exactly the columns of its table, so a column added
or renamed in `models` fails here rather than at the first query that reads it; each value of
`services.generation.values` has its protobuf enum value, and no two share one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum

import pytest
from sqlalchemy import Table

from services.generation import models, records, values, views


@pytest.mark.parametrize(
    ("table", "record"),
    [
        (models.tasks, records.TaskRecord),
        (models.outputs, records.OutputRecord),
        (models.uploads, records.UploadRecord),
        (models.conversations, records.ConversationRecord),
        (models.messages, records.MessageRecord),
    ],
    ids=lambda value: getattr(value, "name", getattr(value, "__name__", "")),
)
def test_a_record_has_the_columns_of_its_table(table: Table, record: type) -> None:
    assert [f.name for f in fields(record)] == [c.name for c in table.columns]


@pytest.mark.parametrize(
    ("values", "protobuf"),
    [
        (values.TaskKind, views.KINDS),
        (values.TaskStatus, views.STATUSES),
        (values.InputRole, views.ROLES),
        (values.MessageRole, views.MESSAGE_ROLES),
        (values.MessageStatus, views.MESSAGE_STATUSES),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_every_value_has_its_protobuf_counterpart(values: type[StrEnum], protobuf: Mapping[str, int]) -> None:
    assert set(protobuf) == set(values)
    assert len(set(protobuf.values())) == len(protobuf)
    assert 0 not in protobuf.values()  # no value maps to UNSPECIFIED


def test_open_and_final_statuses_divide_the_statuses() -> None:
    assert set(values.OPEN_STATUSES) | set(values.FINAL_STATUSES) == set(values.TaskStatus)
    assert not set(values.OPEN_STATUSES) & set(values.FINAL_STATUSES)
