"""Credits as exact integers of milli-credits; fiat as integer minor units.

No float ever touches money. JSON shows credits as decimal strings ("0.5", "330").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MILLI_PER_CREDIT = 1000

# Minor units per major unit for the currencies Atelier accepts (ISO 4217 exponents).
CURRENCY_EXPONENT = {"CNY": 2, "USD": 2}

# ASCII digits only: Python's Decimal and int, and regex `\d`, also read full-width, Arabic-Indic and
# other scripts' digits, so a typed "３０" would become 30.
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def amount_pattern(*, digits: int, decimals: int, signed: bool = False) -> str:
    """The pattern of an amount field in an API body: at most `digits` whole and `decimals` fraction
    digits, ASCII only (pydantic's regex digit class is Unicode-aware too)."""
    sign = "[-+]?" if signed else ""
    return rf"^{sign}[0-9]{{1,{digits}}}(\.[0-9]{{1,{decimals}}})?$"


class MoneyParseError(ValueError):
    pass


@dataclass(frozen=True, order=True, slots=True)
class Credits:
    """An amount of credits, held as an integer number of milli-credits (0.5 credit == 500)."""

    milli: int

    def __post_init__(self) -> None:
        if not isinstance(self.milli, int) or isinstance(self.milli, bool):
            raise TypeError("Credits.milli must be an int")

    @classmethod
    def parse(cls, text: str | int | Decimal) -> Credits:
        """Parse "12", "0.5" or "-1.25" (credits, at most three decimals) without rounding."""
        value = _to_decimal(text)
        milli = value * MILLI_PER_CREDIT
        if milli != milli.to_integral_value():
            raise MoneyParseError(f"{text!r} has more precision than a milli-credit")
        return cls(int(milli))

    @classmethod
    def whole(cls, credits: int) -> Credits:
        return cls(credits * MILLI_PER_CREDIT)

    @classmethod
    def zero(cls) -> Credits:
        return cls(0)

    def __str__(self) -> str:
        sign = "-" if self.milli < 0 else ""
        whole, frac = divmod(abs(self.milli), MILLI_PER_CREDIT)
        if frac == 0:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{frac:03d}".rstrip("0")

    def __add__(self, other: Credits) -> Credits:
        return Credits(self.milli + other.milli)

    def __sub__(self, other: Credits) -> Credits:
        return Credits(self.milli - other.milli)

    def __mul__(self, factor: int) -> Credits:
        if not isinstance(factor, int):
            raise TypeError("Credits can only be multiplied by an int")
        return Credits(self.milli * factor)

    __rmul__ = __mul__

    def __neg__(self) -> Credits:
        return Credits(-self.milli)

    def __bool__(self) -> bool:
        return self.milli != 0

    @property
    def is_positive(self) -> bool:
        return self.milli > 0


@dataclass(frozen=True, slots=True)
class Money:
    """A fiat amount in the currency's minor unit (CNY fen, USD cents)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if self.currency not in CURRENCY_EXPONENT:
            raise MoneyParseError(f"unsupported currency {self.currency!r}")

    @classmethod
    def parse(cls, text: str | int | Decimal, currency: str) -> Money:
        """Parse a major-unit amount such as "300" or "29.99" in `currency`."""
        currency = currency.upper()
        exponent = CURRENCY_EXPONENT.get(currency)
        if exponent is None:
            raise MoneyParseError(f"unsupported currency {currency!r}")
        minor = _to_decimal(text) * (10**exponent)
        if minor != minor.to_integral_value():
            raise MoneyParseError(f"{text!r} has more precision than {currency} allows")
        return cls(int(minor), currency)

    def major_str(self) -> str:
        """The amount in major units with all minor digits, e.g. "300.00" (Alipay's total_amount)."""
        exponent = CURRENCY_EXPONENT[self.currency]
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exponent)
        return f"{sign}{whole}.{frac:0{exponent}d}"

    def __str__(self) -> str:
        return f"{self.major_str()} {self.currency}"


def _to_decimal(text: Any) -> Decimal:
    if isinstance(text, bool) or isinstance(text, float):
        raise MoneyParseError("money is never parsed from a float or bool")
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, Decimal):
        if not text.is_finite():
            raise MoneyParseError(f"{text!r} is not a finite amount")
        return text
    if not isinstance(text, str) or not _DECIMAL.fullmatch(text.strip()):
        raise MoneyParseError(f"{text!r} is not a decimal amount")
    try:
        return Decimal(text.strip())
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise MoneyParseError(f"{text!r} is not a decimal amount") from exc
