"""The translations file: the same keys in en and zh, every string the pages name exists, and the
placeholders of each pair agree."""

from __future__ import annotations

import json
import re

from gateway.web import STATIC

STRINGS = json.loads((STATIC / "i18n" / "strings.json").read_text())
SOURCES = {path.name: path.read_text() for path in (STATIC / "js").rglob("*.js")}
# Keys built at run time from a prefix and an API value, with the values each can take.
DYNAMIC = {
    "kind.": ["image", "video", "text"],
    "status.": [
        "queued",
        "running",
        "succeeded",
        "failed",
        "canceled",
        "pending",
        "completed",
        "expired",
        "skipped",
    ],
    "records.": ["recharge", "consumption", "refund", "adjustment", "callback"],
    "billing.": ["per_generation", "per_image", "per_second", "per_1k_tokens"],
    "workflow.refund.": ["full", "proportional"],
    "account.status.": ["active", "unverified", "disabled"],
    "admin.": ["models", "templates", "recharge", "channels", "users", "audit"],
    "outcome.": ["credited", "duplicate", "ignored", "rejected", "error"],
    "error.": [
        "insufficient_balance",
        "model_disabled",
        "unsupported_spec",
        "email_not_verified",
        "rate_limited",
    ],
}


def test_both_languages_have_the_same_keys_and_no_empty_string() -> None:
    assert set(STRINGS) == {"en", "zh"}
    assert set(STRINGS["en"]) == set(STRINGS["zh"])
    allowed_empty = {"outcome.unspecified", "workflow.refund.unspecified"}
    for lang in ("en", "zh"):
        empty = {key for key, value in STRINGS[lang].items() if not value.strip()} - allowed_empty
        assert empty == set(), lang


def test_placeholders_agree_between_languages() -> None:
    for key, english in STRINGS["en"].items():
        assert set(re.findall(r"\{(\w+)\}", english)) == set(re.findall(r"\{(\w+)\}", STRINGS["zh"][key])), (
            key
        )


def test_every_literal_key_in_the_pages_exists() -> None:
    used = {key for source in SOURCES.values() for key in re.findall(r'\bt\("([a-z0-9_.]+)"', source)}
    used |= {
        key
        for source in SOURCES.values()
        for key in re.findall(r'"(nav\.[a-z]+|auth\.[a-z.]+\.title)"', source)
    }
    assert len(used) > 200
    assert sorted(used - set(STRINGS["en"])) == []


def test_every_dynamic_key_has_its_values() -> None:
    dynamic = {m for source in SOURCES.values() for m in re.findall(r"\bt\(`([a-z0-9_.]+)\$\{", source)}
    assert dynamic <= set(DYNAMIC) | {"studio."}, dynamic - set(DYNAMIC)
    for prefix, values in DYNAMIC.items():
        for value in values:
            assert prefix + value in STRINGS["en"], prefix + value
    for kind in ("image", "video"):
        assert {f"studio.{kind}.title", f"studio.{kind}.intro"} <= set(STRINGS["en"])


def test_chinese_strings_are_chinese() -> None:
    sample = ["nav.pricing", "nav.billing", "pricing.empty", "billing.below_minimum", "studio.submit"]
    for key in sample:
        assert re.search(r"[\u4e00-\u9fff]", STRINGS["zh"][key]), key
