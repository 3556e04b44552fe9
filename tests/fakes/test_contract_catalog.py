"""The catalog's contract, run through a gRPC stub against both the shared fake (`tests/fakes/catalog.py`,
laid out from the seed snapshot) and the real servicer on its seeded PostgreSQL database: the same
requests must get the same observable answers (status codes, error codes, prices, versions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.catalog.v1 import catalog_pb2_grpc
from atelier.common.v1 import common_pb2
from tests import identities
from tests.catalog.stack import CatalogStack
from tests.docs.catalog_fixture import seed_snapshot
from tests.fakes.catalog import FakeCatalog
from tests.fakes.contract import cny, refused
from tests.fakes.serve import serve

Stub = catalog_pb2_grpc.CatalogServiceStub


@pytest.fixture
async def fake_stub() -> AsyncIterator[Stub]:
    fake = (catalog_pb2_grpc.add_CatalogServiceServicer_to_server, FakeCatalog.from_snapshot(seed_snapshot()))
    async with serve("catalog-fake", fake) as address, identities.channel(address) as channel:
        yield Stub(channel)


@pytest.fixture(params=["fake", "real"])
def stub(request: pytest.FixtureRequest) -> Stub:
    if request.param == "fake":
        return cast("Stub", request.getfixturevalue("fake_stub"))
    # The catalog suite's own stack: the real servicer on a fresh seeded database.
    return cast("CatalogStack", request.getfixturevalue("catalog")).stub


async def test_get_catalog_answers_the_snapshot_then_not_modified(stub: Stub) -> None:
    full = await stub.GetCatalog(pb.GetCatalogRequest())
    assert not full.not_modified
    assert full.catalog.version == seed_snapshot().version
    assert {m.code for m in full.catalog.models} == {m.code for m in seed_snapshot().models}
    same = await stub.GetCatalog(pb.GetCatalogRequest(known_version=full.catalog.version))
    assert same.not_modified


async def test_get_template_by_code_and_an_unknown_one(stub: Stub) -> None:
    reply = await stub.GetTemplate(pb.GetTemplateRequest(code="creator-video"))
    assert reply.template.code == "creator-video"
    assert reply.catalog_version == seed_snapshot().version
    assert [s.key for s in reply.template.steps] == [
        s.key for s in next(t for t in seed_snapshot().templates if t.code == "creator-video").steps
    ]
    missing = stub.GetTemplate(pb.GetTemplateRequest(code="no-such-template"))
    assert await refused(missing) == (grpc.StatusCode.NOT_FOUND, "template_not_found")


async def test_a_quote_prices_a_supported_spec(stub: Stub) -> None:
    request = pb.QuoteRequest(
        model_code="google-flow-video", ratio="9:16", resolution="1080p", duration_seconds=8
    )
    quote = (await stub.Quote(request)).quote
    assert (quote.model_code, quote.kind) == ("google-flow-video", common_pb2.MODEL_KIND_VIDEO)
    assert (quote.unit, quote.unit_price.milli, quote.quantity, quote.total.milli) == (
        pb.BILLING_UNIT_PER_GENERATION,
        500,
        1,
        500,
    )
    assert (quote.ratio, quote.resolution, quote.duration_seconds) == ("9:16", "1080p", 8)
    assert quote.catalog_version == seed_snapshot().version


async def test_quotes_refuse_unknown_models_and_unsupported_specs(stub: Stub) -> None:
    unknown = stub.Quote(pb.QuoteRequest(model_code="no-such-model"))
    assert await refused(unknown) == (grpc.StatusCode.NOT_FOUND, "model_not_found")
    ratio = stub.Quote(pb.QuoteRequest(model_code="grok-video-3", ratio="1:1"))
    assert await refused(ratio) == (grpc.StatusCode.INVALID_ARGUMENT, "unsupported_spec")
    capability = stub.Quote(
        pb.QuoteRequest(
            model_code="google-flow-video",
            ratio="9:16",
            resolution="1080p",
            duration_seconds=8,
            capability="image_edit",
        )
    )
    assert await refused(capability) == (grpc.StatusCode.INVALID_ARGUMENT, "unsupported_capability")


async def test_recharge_quotes_follow_the_rules(stub: Stub) -> None:
    small = await stub.QuoteRecharge(pb.QuoteRechargeRequest(method="alipay", amount=cny(5000)))
    assert (small.quote.paid_credits.milli, small.quote.bonus_credits.milli) == (50_000, 0)
    tier = await stub.QuoteRecharge(pb.QuoteRechargeRequest(method="alipay", amount=cny(30_000)))
    assert tier.quote.provider == "alipay"
    assert tier.quote.total_credits.milli == 330_000
    big = await stub.QuoteRecharge(pb.QuoteRechargeRequest(method="alipay", amount=cny(100_000)))
    assert big.quote.total_credits.milli == 1_150_000
    below = stub.QuoteRecharge(pb.QuoteRechargeRequest(method="alipay", amount=cny(2000)))
    assert await refused(below) == (grpc.StatusCode.FAILED_PRECONDITION, "below_minimum_recharge")
    plan = stub.QuoteRecharge(pb.QuoteRechargeRequest(method="alipay", plan_code="no-such-plan"))
    assert await refused(plan) == (grpc.StatusCode.NOT_FOUND, "plan_not_found")
