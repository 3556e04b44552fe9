"""The five product documentation pages, rendered from one catalog snapshot.

Pure functions: `render(page, lang, snapshot)` reads only the snapshot it is given (the live catalog) and
the fixed prose in `text.TEXT`, so a catalog change shows on the next render and no copy of the data is
kept anywhere. Both languages walk the same code path, so they always have the same structure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, TypeVar, get_args

from atelier.catalog.v1 import catalog_pb2
from atelier.common.v1 import common_pb2
from gateway.docs.text import Lang, format_date, has, t
from kit.money import CURRENCY_EXPONENT, Credits

PageId = Literal["pricing", "video-models", "image-models", "getting-started", "workflow-guide"]
PAGE_IDS: Final[tuple[PageId, ...]] = get_args(PageId)

# The message-id prefix of each page's label, title and subtitle.
_PREFIX: Final[dict[PageId, str]] = {
    "pricing": "pricing",
    "video-models": "video",
    "image-models": "image",
    "getting-started": "start",
    "workflow-guide": "workflow",
}


@dataclass(frozen=True, slots=True)
class Section:
    heading: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Page:
    id: PageId
    lang: Lang
    section_label: str
    title: str
    subtitle: str
    # The day the configuration last changed, written for readers ("Mar 14, 2026").
    date: str
    view_label: str
    sections: tuple[Section, ...]
    catalog_version: int
    updated_at: datetime = field(compare=False)


@dataclass(frozen=True, slots=True)
class PageSummary:
    id: PageId
    lang: Lang
    section_label: str
    title: str


def page_summary(page: PageId, lang: Lang) -> PageSummary:
    """The label and title of a page: fixed prose, no catalog needed."""
    prefix = _PREFIX[page]
    return PageSummary(page, lang, t(f"{prefix}.label", lang), t(f"{prefix}.title", lang))


def render(page: PageId, lang: Lang, catalog: catalog_pb2.CatalogSnapshot) -> Page:
    if page not in _PREFIX:
        raise ValueError(f"unknown page {page!r}")
    prefix = _PREFIX[page]
    builder = _BUILDERS[page]
    subtitle, sections = builder(lang, catalog)
    updated_at = catalog.updated_at.ToDatetime(tzinfo=UTC)
    return Page(
        id=page,
        lang=lang,
        section_label=t(f"{prefix}.label", lang),
        title=t(f"{prefix}.title", lang),
        subtitle=subtitle,
        date=format_date(updated_at.year, updated_at.month, updated_at.day, lang),
        view_label=t("view_label", lang),
        sections=tuple(sections),
        catalog_version=catalog.version,
        updated_at=updated_at,
    )


def to_text(page: Page) -> str:
    """Plain text in the product document's own layout: header lines, then headings and "- " lines."""
    out = [page.section_label, page.title, page.subtitle, page.date, page.view_label]
    for section in page.sections:
        out.append(section.heading)
        out.extend(f"- {line}" for line in section.lines)
    return "\n".join(out) + "\n"


def to_markdown(page: Page) -> str:
    out = [
        f"**{_md(page.section_label)}**",
        "",
        f"# {_md(page.title)}",
        "",
        _md(page.subtitle),
        "",
        f"*{_md(page.date)}*",
    ]
    for section in page.sections:
        out += ["", f"## {_md(section.heading)}", ""]
        out.extend(f"- {_md(line)}" for line in section.lines)
    return "\n".join(out) + "\n"


_MD_SPECIAL: Final = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<"})


def _md(text: str) -> str:
    return text.translate(_MD_SPECIAL)


# -- pages -------------------------------------------------------------------------------------------

Rendered = tuple[str, list[Section]]


def _pricing(lang: Lang, catalog: catalog_pb2.CatalogSnapshot) -> Rendered:
    rules = catalog.recharge_rules
    currency = rules.currency or "CNY"
    tiers = [
        t("pricing.bonus_tier", lang, amount=_money(tier.amount, lang), credits=_credits(tier.credits))
        for tier in sorted(rules.bonus_tiers, key=lambda tier: tier.amount.minor)
    ]
    credit_system = [
        t("pricing.rule", lang, rate=_rate(rules, currency, lang)),
        t("pricing.minimum", lang, amount=_money(rules.minimum, lang, currency)),
        t("pricing.bonuses", lang, tiers=t("clause_sep", lang).join(tiers))
        if tiers
        else t("pricing.no_bonuses", lang),
        t("pricing.may_expire" if rules.credits_expire else "pricing.never_expire", lang),
    ]
    plans = [
        t(
            "pricing.plan",
            lang,
            name=_local(plan.name, lang) or plan.code,
            price=_money(plan.price, lang),
            credits=_credits(plan.credits),
        )
        for plan in _sorted(p for p in catalog.plans if p.enabled)
    ] or [t("pricing.no_plans", lang)]
    methods = [
        _local(m.name, lang) or m.code for m in _sorted(m for m in catalog.payment_methods if m.enabled)
    ]
    payments = [
        t("pricing.methods", lang, methods=_join(methods, lang)),
        t("pricing.records", lang),
        t("pricing.balance", lang),
    ]
    model_rules = [
        t("pricing.model_rules.current", lang),
        t("pricing.model_rules.workflows", lang),
        t("pricing.model_rules.public", lang),
    ]
    return t("pricing.subtitle", lang), [
        Section(t("pricing.credit_system", lang), tuple(credit_system)),
        Section(t("pricing.plans", lang), tuple(plans)),
        Section(t("pricing.payments", lang), tuple(payments)),
        Section(t("pricing.model_rules", lang), tuple(model_rules)),
    ]


def _model_page(
    kind: common_pb2.ModelKind.ValueType, prefix: str
) -> Callable[[Lang, catalog_pb2.CatalogSnapshot], Rendered]:
    def build(lang: Lang, catalog: catalog_pb2.CatalogSnapshot) -> Rendered:
        models = public_models(catalog, kind)
        intro = [t(f"{prefix}.generated", lang), t("models.live", lang)]
        if not models:
            intro.append(t(f"{prefix}.empty", lang))
        sections = [Section(t(f"{prefix}.enabled", lang), tuple(intro))]
        sections += [Section(_local(m.name, lang) or m.code, tuple(_model_lines(m, lang))) for m in models]
        return _count(f"{prefix}.subtitle", len(models), lang), sections

    return build


def _model_lines(model: catalog_pb2.Model, lang: Lang) -> list[str]:
    lines = [t("model.code", lang, code=model.code), t("model.billing", lang, billing=_billing(model, lang))]
    if model.ratios:
        lines.append(t("model.ratios", lang, values=_join(model.ratios, lang)))
    if model.resolutions:
        lines.append(t("model.resolutions", lang, values=_join(model.resolutions, lang)))
    if model.durations:
        lines.append(t("model.durations", lang, values=_join((str(d) for d in model.durations), lang)))
    if model.inherits_default_capabilities:
        lines.append(t("model.capabilities.inherited", lang))
    else:
        labels = [_capability(c, lang) for c in model.capabilities]
        lines.append(t("model.capabilities", lang, values=_join(labels, lang) if labels else t("none", lang)))
    return lines


def _getting_started(lang: Lang, catalog: catalog_pb2.CatalogSnapshot) -> Rendered:
    rules = catalog.recharge_rules
    currency = rules.currency or "CNY"
    path = [
        t("start.path.register", lang),
        t(
            "start.path.recharge",
            lang,
            rate=_rate(rules, currency, lang),
            minimum=_money(rules.minimum, lang, currency),
        ),
        t("start.path.studio", lang),
        t("start.path.submit", lang),
        t("start.path.track", lang),
    ]
    areas = [t(f"start.areas.{key}", lang) for key in ("copy", "image", "video", "workflow", "records")]
    notes = [t(f"start.notes.{key}", lang) for key in ("models", "balance", "languages")]
    return t("start.subtitle", lang), [
        Section(t("start.path", lang), tuple(path)),
        Section(t("start.areas", lang), tuple(areas)),
        Section(t("start.notes", lang), tuple(notes)),
    ]


def _workflow_guide(lang: Lang, catalog: catalog_pb2.CatalogSnapshot) -> Rendered:
    templates = public_templates(catalog)
    intro = [t("workflow.intro.chain", lang), t("workflow.intro.source", lang)]
    if not templates:
        intro.append(t("workflow.empty", lang))
    sections = [Section(t("workflow.intro", lang), tuple(intro))]
    for template in templates:
        required = [i.name for i in template.inputs if i.required]
        steps = [f"{s.key}({s.model_code})" if s.model_code else s.key for s in template.steps]
        lines = [
            t("template.code", lang, code=template.code),
            t("template.price", lang, price=_credits(template.price)),
            t("template.inputs", lang, values=_join(required, lang) if required else t("none", lang)),
            t("template.steps", lang, steps=" -> ".join(steps) if steps else t("none", lang)),
        ]
        notes = _local(template.notes, lang)
        if notes:
            lines.append(t("template.notes", lang, notes=notes))
        sections.append(Section(_local(template.name, lang) or template.code, tuple(lines)))
    sections.append(
        Section(
            t("workflow.results", lang),
            (t("workflow.results.debit", lang), t("workflow.results.history", lang)),
        )
    )
    return _count("workflow.subtitle", len(templates), lang), sections


_BUILDERS: Final[dict[PageId, Callable[[Lang, catalog_pb2.CatalogSnapshot], Rendered]]] = {
    "pricing": _pricing,
    "video-models": _model_page(common_pb2.MODEL_KIND_VIDEO, "video"),
    "image-models": _model_page(common_pb2.MODEL_KIND_IMAGE, "image"),
    "getting-started": _getting_started,
    "workflow-guide": _workflow_guide,
}


# -- selection and formatting --------------------------------------------------------------------------


def public_models(
    catalog: catalog_pb2.CatalogSnapshot, kind: common_pb2.ModelKind.ValueType
) -> list[catalog_pb2.Model]:
    """Enabled public models of `kind`, in the admin's sort order."""
    return _sorted(m for m in catalog.models if m.kind == kind and m.enabled and m.public)


def public_templates(catalog: catalog_pb2.CatalogSnapshot) -> list[catalog_pb2.WorkflowTemplate]:
    return _sorted(w for w in catalog.templates if w.enabled and w.public)


S = TypeVar("S", catalog_pb2.Model, catalog_pb2.WorkflowTemplate, catalog_pb2.Plan, catalog_pb2.PaymentMethod)


def _sorted(items: Iterable[S]) -> list[S]:
    # Stable: equal sort orders keep the catalog's own order.
    return sorted(items, key=lambda item: item.sort_order)


def _local(text: common_pb2.LocalizedText, lang: Lang) -> str:
    """The text in `lang`, falling back to the other language rather than showing nothing."""
    own, other = (text.zh, text.en) if lang == "zh" else (text.en, text.zh)
    return own or other


def _join(values: Iterable[str], lang: Lang) -> str:
    return t("list_sep", lang).join(values)


def _count(key: str, n: int, lang: Lang) -> str:
    return t(f"{key}.one" if n == 1 else f"{key}.other", lang, n=n)


def _credits(value: common_pb2.Credits) -> str:
    return str(Credits(value.milli))


def _billing(model: catalog_pb2.Model, lang: Lang) -> str:
    unit = model.billing_unit
    if unit == catalog_pb2.BILLING_UNIT_PER_1K_TOKENS:
        return t(
            "unit.per_1k_tokens",
            lang,
            input=_credits(model.input_price_per_1k_tokens),
            output=_credits(model.output_price_per_1k_tokens),
        )
    key = {
        catalog_pb2.BILLING_UNIT_PER_GENERATION: "unit.per_generation",
        catalog_pb2.BILLING_UNIT_PER_IMAGE: "unit.per_image",
        catalog_pb2.BILLING_UNIT_PER_SECOND: "unit.per_second",
    }.get(unit, "unit.unspecified")
    return t(key, lang, price=_credits(model.price))


def _capability(code: str, lang: Lang) -> str:
    key = f"capability.{code}"
    return t(key, lang) if has(key) else code.replace("_", " ")


def _money(money: common_pb2.Money, lang: Lang, default_currency: str = "CNY") -> str:
    """ "30 RMB", "$29", "29.90 元": whole amounts without minor digits."""
    currency = (money.currency or default_currency).upper()
    exponent = CURRENCY_EXPONENT.get(currency, 2)
    sign = "-" if money.minor < 0 else ""
    whole, frac = divmod(abs(money.minor), 10**exponent)
    amount = f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:0{exponent}d}"
    key = f"currency.{currency}.amount"
    return t(key, lang, amount=amount) if has(key) else f"{amount} {currency}"


def _rate(rules: catalog_pb2.RechargeRules, currency: str, lang: Lang) -> str:
    """ "1 credit = 1 RMB": credits granted per major unit of the recharge currency."""
    per_unit = Credits(rules.credits_per_major_unit.milli)
    key = f"currency.{currency}.unit"
    unit = t(key, lang) if has(key) else currency
    plural = "rate.one" if per_unit == Credits.whole(1) else "rate.other"
    return t(plural, lang, credits=str(per_unit), unit=unit)


def section_shape(page: Page) -> Sequence[int]:
    """The number of lines in each section: equal for every language of a page."""
    return [len(section.lines) for section in page.sections]
