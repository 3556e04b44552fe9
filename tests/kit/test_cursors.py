"""The one cursor codec: round trips for any (time, id), and anything else is `invalid_cursor`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.cursors import decode_cursor, encode_cursor, page_limit, split_page
from kit.errors import InvalidArgument


@given(at=st.datetimes(timezones=st.just(UTC)), key=st.text())
def test_a_cursor_round_trips(at: datetime, key: str) -> None:
    cursor = encode_cursor(at, key)
    assert cursor.isascii()
    assert "=" not in cursor  # fits a query string as it is
    assert decode_cursor(cursor) == (at, key)


def test_the_first_page_has_no_cursor() -> None:
    assert decode_cursor("") is None


@pytest.mark.parametrize(
    "cursor",
    [
        "x",
        "not base64 at all!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'["yesterday", "id"]').decode(),
        base64.urlsafe_b64encode(b'["2026-12-07T10:00:00", "naive"]').decode(),
        base64.urlsafe_b64encode(b'{"at": 1}').decode(),
        base64.urlsafe_b64encode(b'["2026-12-07T10:00:00+00:00"]').decode(),
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode_cursor(cursor)
    assert refused.value.code == "invalid_cursor"


def test_page_limits() -> None:
    assert page_limit(0) == 20
    assert page_limit(5) == 5
    assert page_limit(10_000) == 100
    assert page_limit(0, default=50, maximum=200) == 50
    with pytest.raises(InvalidArgument):
        page_limit(-1)


@given(rows=st.lists(st.integers(), max_size=12), size=st.integers(min_value=1, max_value=10))
def test_a_page_read_one_row_past_its_size_knows_whether_another_follows(rows: list[int], size: int) -> None:
    read = rows[: size + 1]  # what a query with limit size + 1 returns
    page, next_cursor = split_page(read, size, str)
    assert page == rows[:size]
    assert next_cursor == (str(page[-1]) if len(rows) > size else "")
