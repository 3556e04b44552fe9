"""The documentation pages rendered from a catalog snapshot: the seed configuration reproduces the product
document line for line in English, Chinese has the same structure, and catalog changes show at once."""

from __future__ import annotations

import string

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from gateway.docs import LANGUAGES, PAGE_IDS, Page, render, to_markdown, to_text
from gateway.docs.text import TEXT
from tests.docs.catalog_fixture import model, seed_snapshot
from tests.docs.seed_document import seed_pages, seed_text


def shape(page: Page) -> list[int]:
    return [len(section.lines) for section in page.sections]


def sections(page: Page) -> list[tuple[str, list[str]]]:
    return [(section.heading, list(section.lines)) for section in page.sections]


def section(page: Page, heading: str) -> list[str]:
    return next(list(s.lines) for s in page.sections if s.heading == heading)


def test_the_english_pages_are_the_product_document_line_for_line() -> None:
    snapshot = seed_snapshot()
    expected = seed_pages()
    assert len(expected) == len(PAGE_IDS) == 5
    for page_id, seed in zip(PAGE_IDS, expected, strict=True):
        page = render(page_id, "en", snapshot)
        assert page.section_label == seed.section_label
        assert page.title == seed.title
        assert page.subtitle == seed.subtitle
        assert page.date == seed.date == "Mar 14, 2026"
        assert page.view_label == seed.view_label
        assert sections(page) == seed.sections, page_id
    # And the whole document, byte for byte, as plain text.
    assert "".join(to_text(render(p, "en", snapshot)) for p in PAGE_IDS) == seed_text()


def test_chinese_pages_have_the_same_structure_in_chinese() -> None:
    snapshot = seed_snapshot()
    for page_id in PAGE_IDS:
        en, zh = render(page_id, "en", snapshot), render(page_id, "zh", snapshot)
        assert shape(zh) == shape(en), page_id
        assert zh.title != en.title
        assert zh.date == "2026年3月14日"
        assert zh.catalog_version == en.catalog_version == snapshot.version
    video = render("video-models", "zh", snapshot)
    assert video.subtitle == "2 个公开视频模型及其支持的规格、计费方式和能力。"
    assert section(video, "Flow") == [
        "模型代码：google-flow-video",
        "计费：按次 0.5 积分",
        "比例：16:9、9:16",
        "分辨率：720p、1080p",
        "时长（秒）：5、8",
        "能力：首帧、图生视频、参考图",
    ]
    image = render("image-models", "zh", snapshot)
    # Localized model names come from the catalog.
    assert section(image, "豆包 Seedream 5.0")[-1] == "能力：使用后台配置中的当前默认能力集。"
    pricing = render("pricing", "zh", snapshot)
    assert section(pricing, "积分体系")[:3] == [
        "当前规则：1 积分 = 1 元。",
        "最低充值金额：30 元。",
        "充值赠送：充值 300 元，到账 330 积分；充值 1000 元，到账 1150 积分。",
    ]
    assert section(pricing, "当前充值套餐") == ["入门版：$29，到账 29 积分", "成长版：$99，到账 99 积分"]


def test_every_message_exists_in_every_language_with_the_same_placeholders() -> None:
    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    for key, texts in TEXT.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts[lang].strip() for lang in LANGUAGES), key
        assert fields(texts["zh"]) == fields(texts["en"]), key


def test_disabling_a_model_removes_it_and_updates_the_count() -> None:
    snapshot = seed_snapshot()
    model(snapshot, "grok-video-3").enabled = False
    page = render("video-models", "en", snapshot)
    assert page.subtitle == "1 public video model with its supported specs, billing, and capabilities."
    assert [s.heading for s in page.sections] == ["Currently Enabled Video Models", "Flow"]
    assert shape(render("video-models", "zh", snapshot)) == shape(page)

    model(snapshot, "grok-4-1-image").public = False
    image = render("image-models", "en", snapshot)
    assert image.subtitle.startswith("4 public image models ")
    assert "Grok 4.1 Image" not in [s.heading for s in image.sections]


def test_no_enabled_model_says_an_admin_must_enable_models() -> None:
    snapshot = seed_snapshot()
    for m in snapshot.models:
        m.enabled = False
    for lang in LANGUAGES:
        page = render("image-models", lang, snapshot)
        assert len(page.sections) == 1
        assert len(page.sections[0].lines) == 3
    page = render("image-models", "en", snapshot)
    assert page.subtitle.startswith("0 public image models ")
    assert (
        page.sections[0].lines[-1]
        == "No public image model is enabled right now. An admin must enable models first."
    )


def test_price_unit_and_capability_changes_show_at_once() -> None:
    snapshot = seed_snapshot()
    flow = model(snapshot, "google-flow-video")
    flow.price.milli = 1250
    assert (
        section(render("video-models", "en", snapshot), "Flow")[1] == "Billing: Per generation 1.25 credits"
    )
    flow.billing_unit = catalog_pb2.BILLING_UNIT_PER_SECOND
    flow.price.milli = 100
    assert section(render("video-models", "en", snapshot), "Flow")[1] == "Billing: Per second 0.1 credits"
    flow.inherits_default_capabilities = True
    assert section(render("video-models", "en", snapshot), "Flow")[-1] == (
        "Capabilities: Uses the current default capability set from admin config."
    )
    seedream = model(snapshot, "doubao-seedream-5-0-260128")
    seedream.billing_unit = catalog_pb2.BILLING_UNIT_PER_IMAGE
    seedream.inherits_default_capabilities = False
    seedream.capabilities[:] = ["image_edit", "style_transfer"]
    lines = section(render("image-models", "en", snapshot), "Doubao Seedream 5.0")
    assert lines[1] == "Billing: Per image 0.5 credits"
    # An unknown capability code still reads as words.
    assert lines[-1] == "Capabilities: image edit, style transfer"


def test_text_models_are_priced_per_thousand_tokens() -> None:
    snapshot = seed_snapshot()
    # A public video model billed per 1k tokens is odd, but the renderer must not lie about it.
    flow = model(snapshot, "google-flow-video")
    flow.billing_unit = catalog_pb2.BILLING_UNIT_PER_1K_TOKENS
    flow.input_price_per_1k_tokens.milli = 2
    flow.output_price_per_1k_tokens.milli = 8
    assert section(render("video-models", "en", snapshot), "Flow")[1] == (
        "Billing: Per 1K tokens: input 0.002 credits, output 0.008 credits"
    )


def test_recharge_rules_plans_and_methods_come_from_the_catalog() -> None:
    snapshot = seed_snapshot()
    rules = snapshot.recharge_rules
    rules.minimum.minor = 5000
    del rules.bonus_tiers[1]
    rules.bonus_tiers[0].credits.milli = 345_000
    snapshot.plans[0].enabled = False
    snapshot.plans[1].price.minor = 10950
    snapshot.payment_methods[2].enabled = False
    pricing = render("pricing", "en", snapshot)
    assert section(pricing, "Credit System")[1:3] == [
        "Minimum recharge amount: 50 RMB.",
        "Recharge bonuses: 300 RMB delivers 345 credits.",
    ]
    assert section(pricing, "Current Recharge Plans") == ["Growth: $109.50, delivers 99 credits"]
    assert section(pricing, "Payments and Records")[0] == "Payment methods: Visa / MasterCard, 支付宝"
    start = render("getting-started", "en", snapshot)
    assert section(start, "Quick Start Path")[1] == (
        "Recharge on the Billing page. The current rule is 1 credit = 1 RMB with a 50 RMB minimum."
    )
    rules.credits_per_major_unit.milli = 2000
    rules.credits_expire = True
    assert (
        section(render("pricing", "en", snapshot), "Credit System")[0] == "Current rule: 2 credits = 1 RMB."
    )
    assert section(render("pricing", "en", snapshot), "Credit System")[3].startswith(
        "Credits expire as configured"
    )


def test_templates_follow_the_workflow_configuration() -> None:
    snapshot = seed_snapshot()
    snapshot.templates[1].enabled = False
    added = snapshot.templates.add(
        code="poster",
        name=common_pb2.LocalizedText(en="Poster", zh="海报"),
        price=common_pb2.Credits(milli=2500),
        enabled=True,
        public=True,
        sort_order=5,
    )
    added.inputs.add(name="productText", type=catalog_pb2.INPUT_TYPE_TEXT, required=True)
    added.inputs.add(name="tone", type=catalog_pb2.INPUT_TYPE_CHOICE, required=False)
    added.steps.add(key="image", kind=common_pb2.MODEL_KIND_IMAGE, model_code="imagen-4-pro")
    page = render("workflow-guide", "en", snapshot)
    assert page.subtitle == "3 public workflow templates with their inputs, steps, and billing behavior."
    headings = [s.heading for s in page.sections]
    assert headings == ["Workflow Guide", "Poster", "保健品宣传视频", "文案生成视频", "Execution and Results"]
    # Optional inputs are not required; a template without notes has no notes line.
    assert section(page, "Poster") == [
        "Template code: poster",
        "Price: 2.5 credits",
        "Required inputs: productText",
        "Steps: image(imagen-4-pro)",
    ]
    assert render("workflow-guide", "zh", snapshot).sections[1].heading == "海报"


def test_the_date_is_the_day_the_configuration_last_changed() -> None:
    snapshot = seed_snapshot()
    snapshot.updated_at.CopyFrom(Timestamp(seconds=1_767_225_599))  # 2025-12-31T23:59:59Z
    assert render("pricing", "en", snapshot).date == "Dec 31, 2025"
    assert render("pricing", "zh", snapshot).date == "2025年12月31日"


def test_markdown_keeps_the_structure_and_escapes_data() -> None:
    snapshot = seed_snapshot()
    markdown = to_markdown(render("workflow-guide", "en", snapshot))
    assert markdown.startswith("**WORKFLOW GUIDE**\n\n# Workflow Guide\n\n3 public workflow templates")
    assert "\n## 达人视频制作\n\n- Template code: creator-video\n- Price: 20 credits\n" in markdown
    assert r"video(veo\_3\_1)" in markdown
    assert markdown.count("\n## ") == 5


MODEL_COUNT = len(seed_snapshot().models)


@settings(max_examples=60, deadline=None)
@given(
    enabled=st.lists(st.booleans(), min_size=MODEL_COUNT, max_size=MODEL_COUNT),
    public=st.lists(st.booleans(), min_size=MODEL_COUNT, max_size=MODEL_COUNT),
    templates=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_any_configuration_renders_both_languages_alike(
    enabled: list[bool], public: list[bool], templates: list[bool]
) -> None:
    snapshot = seed_snapshot()
    for m, on, pub in zip(snapshot.models, enabled, public, strict=True):
        m.enabled, m.public = on, pub
    for template, on in zip(snapshot.templates, templates, strict=True):
        template.enabled = on
    for page_id, kind in (
        ("video-models", common_pb2.MODEL_KIND_VIDEO),
        ("image-models", common_pb2.MODEL_KIND_IMAGE),
    ):
        en = render(page_id, "en", snapshot)  # type: ignore[arg-type]
        shown = [m for m in snapshot.models if m.kind == kind and m.enabled and m.public]
        assert en.subtitle.split()[0] == str(len(shown))
        assert len(en.sections) == 1 + len(shown)
        assert [line for s in en.sections[1:] for line in s.lines if line.startswith("Model code: ")] == [
            f"Model code: {m.code}" for m in sorted(shown, key=lambda m: m.sort_order)
        ]
    for page_id in PAGE_IDS:
        assert shape(render(page_id, "zh", snapshot)) == shape(render(page_id, "en", snapshot))
