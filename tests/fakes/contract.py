"""What the contract tests share: how a refusal is compared, fake against real."""

from __future__ import annotations

import grpc
import pytest

from atelier.common.v1 import common_pb2
from kit.errors import from_rpc_error


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    """The status and domain error code `call` (an awaitable RPC) fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    error = from_rpc_error(caught.value)
    assert error is not None
    return caught.value.code(), error.code


def cny(minor: int) -> common_pb2.Money:
    return common_pb2.Money(minor=minor, currency="CNY")
