"""Each record of `services.generation.records` names exactly the columns of its table, so a column added
or renamed in `models` fails here rather than at the first query that reads it."""

from __future__ import annotations

from dataclasses import fields

import pytest
from sqlalchemy import Table

from services.generation import models, records


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
