"""Keyset pagination: one cursor codec and one page-size rule for every service.

A cursor names the last item a page showed by its sort key, (time, id), newest first everywhere; the
next page starts strictly after it, so rows inserted meanwhile never shift a page. A page is read one
row past its size, and `split_page` tells from that row whether another page follows. To clients it is an
opaque string (URL-safe base64 of a JSON pair); one that does not decode is refused as
`invalid_cursor`, never read as "from the start".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from kit.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE = 20
MAX_PAGE = 100


def encode_cursor(at: datetime, key: object) -> str:
    raw = json.dumps([at.isoformat(), str(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The (time, id) after which the next page starts; None for the first page (an empty cursor)."""
    if not cursor:
        return None
    try:
        at, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(at, str) or not isinstance(key, str):
            raise TypeError(cursor)
        decoded = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument("the cursor is not valid", code="invalid_cursor", field="cursor") from exc
    if decoded.tzinfo is None:
        raise InvalidArgument("the cursor is not valid", code="invalid_cursor", field="cursor")
    return decoded, key


def page_limit(limit: int, *, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    """The page size asked for, within `maximum`; 0 means the default."""
    if limit < 0:
        raise InvalidArgument("limit must not be negative", code="invalid_limit", field="limit")
    return min(limit or default, maximum)


def split_page(rows: Sequence[T], size: int, cursor_of: Callable[[T], str]) -> tuple[list[T], str]:
    """The page in `rows`, read with a limit of `size + 1`: its first `size` rows, and the cursor of the
    next page (`cursor_of` the page's last row), or "" when no row was left after them."""
    page = list(rows[:size])
    return page, cursor_of(page[-1]) if len(rows) > size else ""
