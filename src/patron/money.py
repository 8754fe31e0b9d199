"""Money is Decimal in its currency's minor unit; rounding is a named rule."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

# ISO 4217 minor units for the currencies Patron knows; extend as programs need.
MINOR_UNITS: dict[str, int] = {
    "KRW": 0,
    "JPY": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "THB": 2,
    "MYR": 2,
    "PHP": 2,
    "INR": 2,
    "IDR": 2,
    "NZD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "MXN": 2,
    "BRL": 2,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}

# Default phone region per currency, for normalising local numbers like 010-1234-5678.
CURRENCY_REGION: dict[str, str] = {
    "KRW": "KR",
    "CNY": "CN",
    "JPY": "JP",
    "HKD": "HK",
    "TWD": "TW",
    "USD": "US",
    "EUR": "DE",
    "GBP": "GB",
    "SGD": "SG",
    "AUD": "AU",
    "CAD": "CA",
}


class Rounding(StrEnum):
    DOWN = "down"
    HALF_UP = "half_up"
    UP = "up"

    @property
    def decimal_mode(self) -> str:
        return {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}[self.value]


def minor_unit(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"unknown currency {currency!r}") from None


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def parse_amount(value: object, currency: str) -> Decimal:
    """A money amount, exact, with no more decimals than the currency allows."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if amount != amount.quantize(quantum(currency), rounding=ROUND_FLOOR):
        raise ValueError(f"{currency} has {minor_unit(currency)} decimal places; {value} has more")
    return amount.quantize(quantum(currency))


def round_points(value: Decimal, rounding: Rounding) -> int:
    return int(value.to_integral_value(rounding=rounding.decimal_mode))


def round_money(value: Decimal, currency: str, rounding: Rounding = Rounding.HALF_UP) -> Decimal:
    return value.quantize(quantum(currency), rounding=rounding.decimal_mode)


def spend_value(points: int, point_value: Decimal, currency: str) -> Decimal:
    """What `points` pay off a bill at `point_value` each: the sale path and the what-if replay
    both price points spent this way."""
    return round_money(Decimal(points) * point_value, currency)


def split_proportionally(total: int, weights: list[Decimal]) -> list[int]:
    """Split an integer over weights so the parts sum to ``total`` exactly (largest remainder).

    In whole numbers: the weights scaled to integers (amounts have a few decimal places), each
    part the floor of total × weight ÷ sum, the points left over to the largest remainders
    (ties to the first). Exact, where dividing Decimals rounds at 28 digits, and about four
    times faster on the sale path, which splits every basket's points over its lines."""
    if not weights:
        return []
    scaled = [int(w) for w in weights]
    if any(i != w for i, w in zip(scaled, weights, strict=True)):
        places = max(-int(w.as_tuple().exponent) for w in weights)
        scaled = [int(w.scaleb(places)) for w in weights]
    weight_sum = sum(scaled)
    if weight_sum <= 0:
        parts = [0] * len(weights)
        parts[0] = total
        return parts
    products = [total * w for w in scaled]
    parts = [x // weight_sum for x in products]
    left = total - sum(parts)
    if left:
        rest = [x - p * weight_sum for x, p in zip(products, parts, strict=True)]
        for i in sorted(range(len(weights)), key=lambda i: (-rest[i], i))[:left]:
            parts[i] += 1
    return parts


def to_minor(amount: Decimal, currency: str) -> int:
    """An exact amount as a whole number of the currency's minor unit (1,500 KRW -> 1500,
    12.34 CNY -> 1234)."""
    return int(amount / quantum(currency))


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor) * quantum(currency)
