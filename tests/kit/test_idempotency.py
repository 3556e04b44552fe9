from dataclasses import dataclass

import pytest

from kit.errors import Conflict
from kit.idempotency import same_request


@dataclass(frozen=True)
class Made:
    id: str
    request_hash: str


def test_the_same_request_gets_the_earlier_record() -> None:
    earlier = Made("t1", "abc")
    assert same_request(earlier, "abc", "taken") is earlier


@pytest.mark.parametrize("earlier", [Made("t1", "abc"), None])
def test_another_request_or_no_record_is_a_conflict(earlier: Made | None) -> None:
    with pytest.raises(Conflict) as caught:
        same_request(earlier, "xyz", "key reused", transfer_id="t1")
    assert (caught.value.code, caught.value.message) == ("idempotency_conflict", "key reused")
    assert caught.value.details == {"transfer_id": "t1"}
