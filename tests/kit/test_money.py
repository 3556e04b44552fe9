from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.money import Credits, Money, MoneyParseError


@pytest.mark.parametrize(
    ("text", "milli"),
    [("0.5", 500), ("330", 330_000), ("1150", 1_150_000), ("0.001", 1), ("-1.25", -1250), ("12.340", 12_340)],
)
def test_parse_credits(text: str, milli: int) -> None:
    assert Credits.parse(text).milli == milli


@pytest.mark.parametrize("text", ["0.0001", "abc", "1e3", "", " ", "1.2.3", "NaN", "∞"])
def test_parse_rejects_what_is_not_an_exact_amount(text: str) -> None:
    with pytest.raises(MoneyParseError):
        Credits.parse(text)


NON_ASCII_DIGITS = ["３０", "٣٠", "۳۰", "३०", "𝟑𝟎", "3０", "30.５", "١.٥"]


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_amounts_are_ascii_digits_only(text: str) -> None:
    """Python's Decimal and int read full-width, Arabic-Indic, Devanagari... digits as numbers: a typed
    "３０" must be refused, not become 30."""
    with pytest.raises(MoneyParseError):
        Credits.parse(text)
    with pytest.raises(MoneyParseError):
        Money.parse(text, "CNY")
    assert Credits.parse("30") == Credits(30_000)
    assert Money.parse("30", "CNY") == Money(3000, "CNY")


def test_credits_never_come_from_floats() -> None:
    with pytest.raises(MoneyParseError):
        Credits.parse(0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Credits(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("milli", "text"), [(500, "0.5"), (330_000, "330"), (1, "0.001"), (-1250, "-1.25"), (0, "0")]
)
def test_format_credits(milli: int, text: str) -> None:
    assert str(Credits(milli)) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_is_identity(milli: int) -> None:
    assert Credits.parse(str(Credits(milli))) == Credits(milli)


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12), st.integers(0, 1000))
def test_arithmetic_is_exact(a: int, b: int, n: int) -> None:
    assert (Credits(a) + Credits(b)).milli == a + b
    assert (Credits(a) - Credits(b)).milli == a - b
    assert (Credits(a) * n).milli == a * n


def test_money_minor_units() -> None:
    assert Money.parse("29.99", "CNY").minor == 2999
    assert Money.parse("300", "cny") == Money(30000, "CNY")
    assert Money(30000, "CNY").major_str() == "300.00"
    assert Money(2900, "USD").major_str() == "29.00"
    with pytest.raises(MoneyParseError):
        Money.parse("1.001", "CNY")
    with pytest.raises(MoneyParseError):
        Money.parse("1", "EUR")
