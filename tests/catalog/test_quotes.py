"""Quotes: every billing unit is priced exactly, and every unsupported request is refused with a stable
code that names the allowed values. The rules run on the seed catalog; the wire tests check that the
codes and details reach a gRPC client."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.common.v1 import common_pb2
from kit.errors import DomainError, from_rpc_error
from kit.money import Credits
from services.catalog import quotes, recharge, seed
from services.catalog.quotes import QuoteParams
from services.catalog.schemas import Amount, Catalog
from services.catalog.settings import DEFAULT_SEED_FILE
from tests.catalog.stack import CatalogStack

SEED = Catalog.model_validate(seed.read_seed(DEFAULT_SEED_FILE).model_dump(exclude={"effective_date"}))


def seed_catalog() -> Catalog:
    return SEED.model_copy(deep=True)


def refused(catalog: Catalog, params: QuoteParams) -> DomainError:
    with pytest.raises(DomainError) as caught:
        quotes.quote(catalog, params)
    return caught.value


# -- billing units -------------------------------------------------------------------------------


def test_per_generation_costs_the_price_whatever_the_spec() -> None:
    quote = quotes.quote(
        seed_catalog(),
        QuoteParams(
            "google-flow-video",
            ratio="9:16",
            resolution="1080p",
            duration_seconds=8,
            capability="first_frame",
        ),
    )
    assert (quote.unit, quote.unit_price, quote.quantity, quote.total) == ("per_generation", 500, 1, 500)
    priced = quote.params
    assert (priced.ratio, priced.resolution, priced.duration_seconds) == ("9:16", "1080p", 8)
    assert quote.catalog_version == SEED.version


def test_empty_spec_means_the_models_first_allowed_values() -> None:
    quote = quotes.quote(seed_catalog(), QuoteParams("grok-video-3"))
    priced = quote.params
    assert (priced.ratio, priced.resolution, priced.duration_seconds, priced.n) == ("16:9", "720p", 5, 1)


@given(n=st.integers(min_value=1, max_value=4))
def test_per_image_costs_price_times_n(n: int) -> None:
    catalog = seed_catalog()
    model = catalog.model("gpt-image-1.5-all")
    assert model is not None
    model.billing_unit = "per_image"
    model.price = 250
    model.max_images = 4
    quote = quotes.quote(catalog, QuoteParams(model.code, n=n))
    assert (quote.unit, quote.quantity, quote.total) == ("per_image", n, 250 * n)


@pytest.mark.parametrize("duration", [5, 10])
def test_per_second_costs_price_times_duration(duration: int) -> None:
    catalog = seed_catalog()
    model = catalog.model("grok-video-3")
    assert model is not None
    model.billing_unit = "per_second"
    model.price = 100  # 0.1 credit a second
    quote = quotes.quote(catalog, QuoteParams(model.code, duration_seconds=duration))
    assert (quote.unit, quote.quantity, quote.total) == ("per_second", duration, 100 * duration)
    assert str(Credits(quote.total)) == ("0.5" if duration == 5 else "1")


def test_per_1k_tokens_prices_input_and_the_output_cap_rounding_up() -> None:
    quote = quotes.quote(
        seed_catalog(), QuoteParams("gemini-2.5-flash", input_tokens=1500, max_output_tokens=1000)
    )
    # 1.5k × 0.002 + 1k × 0.008 = 0.003 + 0.008 = 0.011 credits
    assert (quote.unit, quote.total, quote.quantity) == ("per_1k_tokens", 11, 2500)
    tiny = quotes.quote(seed_catalog(), QuoteParams("gemini-2.5-flash", input_tokens=1, max_output_tokens=1))
    assert tiny.total == 1  # 0.00001 credits rounds up to one milli-credit, never down to free
    default_cap = quotes.quote(seed_catalog(), QuoteParams("gemini-2.5-flash", input_tokens=0))
    assert default_cap.params.max_output_tokens == 8192
    assert default_cap.total == 8192 * 8 // 1000 + 1


def test_internal_models_are_quoted_only_for_workflow_steps() -> None:
    assert refused(seed_catalog(), QuoteParams("veo_3_1")).code == "model_not_found"
    quote = quotes.quote(seed_catalog(), QuoteParams("veo_3_1", internal=True))
    assert quote.params.duration_seconds == 8


# -- rejections ----------------------------------------------------------------------------------


def test_a_disabled_model_is_refused() -> None:
    catalog = seed_catalog()
    model = catalog.model("grok-4-1-image")
    assert model is not None
    model.enabled = False
    error = refused(catalog, QuoteParams("grok-4-1-image"))
    assert (error.code, error.status) == ("model_disabled", grpc.StatusCode.FAILED_PRECONDITION)


@pytest.mark.parametrize(
    ("params", "field", "allowed"),
    [
        (QuoteParams("grok-video-3", ratio="1:1"), "ratio", "16:9,9:16"),
        (QuoteParams("grok-video-3", resolution="4k"), "resolution", "720p,1080p"),
        (QuoteParams("grok-video-3", duration_seconds=8), "duration_seconds", "5,10"),
        (QuoteParams("google-flow-imagen", resolution="2048"), "resolution", "1024"),
        (QuoteParams("google-flow-imagen", duration_seconds=5), "duration_seconds", ""),
        (QuoteParams("gpt-image-1.5-all", n=2), "n", "1"),
        (QuoteParams("gpt-image-1.5-all", input_image_count=5), "input_image_count", "0,1,2,3,4"),
        (QuoteParams("gemini-2.5-flash", ratio="1:1"), "ratio", ""),
        (QuoteParams("gemini-2.5-flash", max_output_tokens=9000), "max_output_tokens", "1..8192"),
    ],
)
def test_an_unsupported_spec_names_the_allowed_values(params: QuoteParams, field: str, allowed: str) -> None:
    error = refused(seed_catalog(), params)
    assert (error.code, error.status) == ("unsupported_spec", grpc.StatusCode.INVALID_ARGUMENT)
    assert error.details["field"] == field
    assert error.details["allowed"] == allowed


def test_text_asked_of_an_image_or_video_model_names_its_kind() -> None:
    for code, kind in (("grok-4-1-image", "image"), ("grok-video-3", "video")):
        error = refused(seed_catalog(), QuoteParams(code, input_tokens=3, max_output_tokens=2048))
        assert (error.code, error.details["kind"]) == ("unsupported_spec", kind)
        assert error.message.startswith(f"{code} is not a text model ({kind})")


def test_an_unsupported_capability_names_the_models_capabilities() -> None:
    error = refused(seed_catalog(), QuoteParams("grok-video-3", capability="first_frame"))
    assert error.code == "unsupported_capability"
    assert error.details["allowed"] == "image_to_video,reference_image"
    # A model that inherits the default set is checked against that set.
    inherited = refused(seed_catalog(), QuoteParams("grok-imagine-image", capability="product_image"))
    assert inherited.details["allowed"] == ",".join(SEED.default_capabilities)
    assert (
        quotes.quote(seed_catalog(), QuoteParams("grok-imagine-image", capability="image_edit")).total == 500
    )


def test_an_unknown_model_is_not_found() -> None:
    assert refused(seed_catalog(), QuoteParams("no-such-model")).code == "model_not_found"


@pytest.mark.parametrize(
    ("method", "amount", "plan", "code"),
    [
        ("alipay", Amount(minor=2999, currency="CNY"), "", "below_minimum_recharge"),
        ("alipay", Amount(minor=10000, currency="USD"), "", "unsupported_currency"),
        ("card", Amount(minor=10000, currency="USD"), "", "unsupported_currency"),  # free amounts are in CNY
        ("wechatpay", None, "starter", "unsupported_currency"),  # plans are priced in USD
        ("paypal", Amount(minor=10000, currency="CNY"), "", "payment_method_not_found"),
        ("card", None, "enterprise", "plan_not_found"),
        ("card", None, "", "invalid_recharge"),
    ],
)
def test_recharge_rejections(method: str, amount: Amount | None, plan: str, code: str) -> None:
    with pytest.raises(DomainError) as caught:
        recharge.quote_recharge(seed_catalog(), method_code=method, amount=amount, plan_code=plan)
    assert caught.value.code == code


def test_the_bonus_between_tiers_is_the_lower_tiers_flat_bonus() -> None:
    rules = seed_catalog().recharge_rules
    bonus = {
        yuan: recharge.bonus_for(rules, Amount(minor=yuan * 100, currency="CNY"))
        for yuan in (299, 300, 500, 999, 1000)
    }
    assert bonus == {299: 0, 300: 30_000, 500: 30_000, 999: 30_000, 1000: 150_000}


@given(
    smaller=st.integers(min_value=3000, max_value=500_000),
    extra=st.integers(min_value=0, max_value=500_000),
)
def test_more_money_never_buys_fewer_credits(smaller: int, extra: int) -> None:
    catalog = seed_catalog()

    def total(minor: int) -> int:
        quote = recharge.quote_recharge(
            catalog, method_code="alipay", amount=Amount(minor=minor, currency="CNY")
        )
        assert quote.paid_credits == minor * 10  # 1 fen = 0.01 credit = 10 milli-credits, exactly
        assert 0 <= quote.bonus_credits <= 150_000
        return quote.total_credits

    assert total(smaller + extra) >= total(smaller)


# -- over the wire -------------------------------------------------------------------------------


async def test_quote_rejections_keep_their_code_and_details_over_grpc(catalog: CatalogStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await catalog.stub.Quote(pb.QuoteRequest(model_code="grok-video-3", ratio="1:1"))
    error = from_rpc_error(caught.value)
    assert error is not None
    assert (error.code, error.details["allowed"]) == ("unsupported_spec", "16:9,9:16")

    with pytest.raises(grpc.aio.AioRpcError) as below:
        await catalog.stub.QuoteRecharge(
            pb.QuoteRechargeRequest(method="alipay", amount=common_pb2.Money(minor=2900, currency="CNY"))
        )
    assert below.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rebuilt = from_rpc_error(below.value)
    assert rebuilt is not None
    assert rebuilt.code == "below_minimum_recharge"


async def test_a_quote_is_a_snapshot_of_the_catalog_version(catalog: CatalogStack) -> None:
    reply = await catalog.stub.Quote(pb.QuoteRequest(model_code="google-flow-video", duration_seconds=8))
    quote = reply.quote
    assert (quote.total.milli, quote.catalog_version, quote.unit) == (500, 1, pb.BILLING_UNIT_PER_GENERATION)
    assert quote.channel.adapter == pb.ADAPTER_KIND_LOCAL
    assert quote.channel.upstream_model_id == "google-flow-video"
    assert quote.snapshot["model"]["code"] == "google-flow-video"
    assert quote.snapshot["params"]["duration_seconds"] == 8
