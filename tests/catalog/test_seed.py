"""Seed fidelity: the catalog a fresh service loads says everything the product document says, item by
item, in the order the document lists it; and loading the seed twice changes nothing."""

from __future__ import annotations

import re

import pytest

from atelier.catalog.v1 import catalog_pb2 as pb
from atelier.common.v1 import common_pb2
from kit.money import Credits, Money
from services.catalog import seed
from services.catalog.settings import DEFAULT_SEED_FILE
from tests.catalog.seed_document import Page, read_seed_document
from tests.catalog.stack import CatalogStack

DEFAULT_SET_SENTENCE = "Uses the current default capability set from admin config."
KINDS = {"VIDEO MODELS": common_pb2.MODEL_KIND_VIDEO, "IMAGE MODELS": common_pb2.MODEL_KIND_IMAGE}


@pytest.fixture(scope="module")
def document() -> dict[str, Page]:
    return read_seed_document()


async def snapshot(catalog: CatalogStack) -> pb.CatalogSnapshot:
    reply: pb.GetCatalogResponse = await catalog.stub.GetCatalog(pb.GetCatalogRequest())
    return reply.catalog


def _public(snap: pb.CatalogSnapshot, kind: int) -> list[pb.Model]:
    return [m for m in snap.models if m.kind == kind and m.enabled and m.public]


@pytest.mark.parametrize("page_name", ["VIDEO MODELS", "IMAGE MODELS"])
async def test_every_public_model_matches_the_document(
    catalog: CatalogStack, document: dict[str, Page], page_name: str
) -> None:
    snap = await snapshot(catalog)
    page = document[page_name]
    names = {c.code: c.name for c in snap.capability_names}
    codes_by_en = {c.name.en: c.code for c in snap.capability_names}
    public = _public(snap, KINDS[page_name])

    count = int(page.bullet(r"^(\d+) public (video|image) models").group(1))
    assert len(public) == count == len(page.items)
    assert [m.code for m in public] == [item.fields["Model code"] for item in page.items]
    assert page.date == snap.updated_at.ToDatetime().strftime("%b %d, %Y")

    for item, model in zip(page.items, public, strict=True):
        assert model.name.en == item.title
        assert model.name.zh, f"{model.code} has no Chinese name"
        billing = re.fullmatch(r"Per generation ([\d.]+) credits", item.fields["Billing"])
        assert billing, item.fields["Billing"]
        assert model.billing_unit == pb.BILLING_UNIT_PER_GENERATION
        assert model.price.milli == Credits.parse(billing.group(1)).milli == 500
        assert list(model.ratios) == item.fields["Ratios"].split(", ")
        assert list(model.resolutions) == item.fields["Resolutions"].split(", ")
        if "Durations" in item.fields:
            assert list(model.durations) == [int(d) for d in item.fields["Durations"].split(", ")]
        else:
            assert list(model.durations) == []
        capabilities = item.fields["Capabilities"]
        if capabilities == DEFAULT_SET_SENTENCE:
            assert model.inherits_default_capabilities
            assert list(model.effective_capabilities) == list(snap.default_capabilities)
        else:
            assert not model.inherits_default_capabilities
            assert list(model.capabilities) == [codes_by_en[name] for name in capabilities.split(", ")]
        for code in model.effective_capabilities:
            assert names[code].en
            assert names[code].zh
        assert model.channel.channel_code == "local"
        assert model.channel.adapter == pb.ADAPTER_KIND_LOCAL


async def test_templates_and_their_internal_models_match_the_document(
    catalog: CatalogStack, document: dict[str, Page]
) -> None:
    snap = await snapshot(catalog)
    page = document["WORKFLOW GUIDE"]
    public = [t for t in snap.templates if t.enabled and t.public]
    models = {m.code: m for m in snap.models}

    assert len(public) == int(page.bullet(r"^(\d+) public workflow templates").group(1)) == len(page.items)
    for item, template in zip(page.items, public, strict=True):
        assert template.name.zh == item.title
        assert template.name.en
        assert template.notes.en
        assert template.code == item.fields["Template code"]
        price = re.fullmatch(r"(\d+) credits", item.fields["Price"])
        assert price
        assert template.price.milli == Credits.parse(price.group(1)).milli
        assert [i.name for i in template.inputs if i.required] == item.fields["Required inputs"].split(", ")
        steps = re.findall(r"([\w-]+)\(([\w.-]+)\)", item.fields["Steps"])
        assert [(s.key, s.model_code) for s in template.steps] == steps
        assert template.notes.zh == item.fields["Notes"]
        assert template.refund_policy != pb.REFUND_POLICY_UNSPECIFIED
        for step in template.steps:
            model = models[step.model_code]
            assert model.enabled
            assert model.kind == step.kind
        for template_input in template.inputs:
            if template_input.name in ("ratio", "tone"):
                assert template_input.type == pb.INPUT_TYPE_CHOICE
                assert template_input.allowed_values
    internal = {"gemini-2.5-pro", "google-flow-image", "imagen-4-pro", "veo_3_1", "veo-3.1-fast"}
    assert {code for code in internal if models[code].enabled and not models[code].public} == internal
    text_models = [m for m in snap.models if m.kind == common_pb2.MODEL_KIND_TEXT]
    assert all(m.billing_unit == pb.BILLING_UNIT_PER_1K_TOKENS for m in text_models)
    assert any(m.enabled and m.public for m in text_models), "Copy Studio needs a public text model"


async def test_recharge_rules_plans_and_payment_methods_match_the_document(
    catalog: CatalogStack, document: dict[str, Page]
) -> None:
    snap = await snapshot(catalog)
    page = document["PRICING GUIDE"]
    rules = snap.recharge_rules

    rate = page.bullet(r"(\d+) credit = (\d+) RMB")
    assert rules.currency == "CNY"
    assert rules.credits_per_major_unit.milli == Credits.parse(rate.group(1)).milli // int(rate.group(2))
    minimum = page.bullet(r"Minimum recharge amount: (\d+) RMB")
    assert (rules.minimum.minor, rules.minimum.currency) == (
        Money.parse(minimum.group(1), "CNY").minor,
        "CNY",
    )
    started = document["GETTING STARTED"].bullet(r"1 credit = 1 RMB with a (\d+) RMB minimum")
    assert started.group(1) == minimum.group(1)
    tiers = re.findall(r"(\d+) RMB delivers (\d+) credits", page.bullet("Recharge bonuses").string)
    assert [(t.amount.minor, t.credits.milli) for t in rules.bonus_tiers] == [
        (Money.parse(amount, "CNY").minor, Credits.parse(credits).milli) for amount, credits in tiers
    ]
    assert page.bullet("Credits never expire")
    assert rules.credits_expire is False

    plans = re.findall(r"^- (\w+): \$(\d+), delivers (\d+) credits$", "\n".join(page.lines), re.MULTILINE)
    assert [
        (p.name.en, p.price.minor, p.price.currency, p.credits.milli) for p in snap.plans if p.enabled
    ] == [
        (name, Money.parse(price, "USD").minor, "USD", Credits.parse(credits).milli)
        for name, price, credits in plans
    ]

    methods = page.bullet(r"Payment methods: (.+)$").group(1).split(", ")
    enabled = [m for m in snap.payment_methods if m.enabled]
    assert [m.name.en for m in enabled] == methods
    assert {m.name.zh for m in enabled} == {"Visa / MasterCard", "支付宝", "微信支付"}
    currencies = {m.code: list(m.currencies) for m in enabled}
    assert currencies == {"card": ["USD", "CNY"], "alipay": ["CNY"], "wechatpay": ["CNY"]}


@pytest.mark.parametrize(
    ("amount", "total"),
    [("30", "30"), ("300", "330"), ("500", "530"), ("999.99", "1029.99"), ("1000", "1150"), ("2000", "2150")],
)
async def test_recharge_quotes_follow_the_documented_bonuses(
    catalog: CatalogStack, amount: str, total: str
) -> None:
    money = Money.parse(amount, "CNY")
    reply = await catalog.stub.QuoteRecharge(
        pb.QuoteRechargeRequest(method="alipay", amount=common_pb2.Money(minor=money.minor, currency="CNY"))
    )
    assert str(Credits(reply.quote.total_credits.milli)) == total
    assert reply.quote.paid_credits.milli == Credits.parse(amount).milli


async def test_plans_deliver_their_credits(catalog: CatalogStack) -> None:
    for plan, credits in (("starter", "29"), ("growth", "99")):
        reply = await catalog.stub.QuoteRecharge(pb.QuoteRechargeRequest(method="card", plan_code=plan))
        assert str(Credits(reply.quote.total_credits.milli)) == credits
        assert reply.quote.amount.currency == "USD"


async def test_loading_the_seed_again_changes_nothing(catalog: CatalogStack) -> None:
    assert catalog.runtime.outbox is not None
    async with catalog.db.transaction() as session:
        loaded = await seed.load_seed(session, catalog.runtime.outbox, seed.read_seed(DEFAULT_SEED_FILE))
    assert loaded is False
    assert (await snapshot(catalog)).version == 1
