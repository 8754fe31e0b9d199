"""Coupon codes people can type: 80 random bits in Crockford base32 and a check character.

`7KQM-3X9P-DV2T-H8WC-R` is sixteen symbols of randomness (5 bits each) and one check symbol
(Luhn mod 32 over the same alphabet, so the check is as typable as the rest), grouped by four. Reading is
forgiving: case, dashes and spaces do not matter, O reads as 0 and I or L as 1. A typo in one
symbol, and every swap of two neighbours but 0↔Z, fails the check before any database look-up.

Codes imported from a partner are kept as they come (upper-cased, without spaces or dashes) and
carry no check symbol.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RANDOM_SYMBOLS = 16  # 16 × 5 = 80 bits
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def normalise(raw: str) -> str:
    """What was typed or scanned, in stored form: upper case, no separators."""
    return raw.strip().upper().replace("-", "").replace(" ", "")


def _canonical(raw: str) -> str:
    return normalise(raw).translate(_READS_AS)


def check_symbol(symbols: str) -> str:
    """Luhn mod 32: double every second symbol's value from the right, fold, sum."""
    total, factor = 0, 2
    for c in reversed(symbols):
        doubled = factor * _VALUE[c]
        total += doubled // 32 + doubled % 32
        factor = 3 - factor
    return ALPHABET[(32 - total % 32) % 32]


def generate() -> str:
    """A new code in stored form (17 symbols); `display` groups it for people."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    return body + check_symbol(body)


def is_generated(raw: str) -> bool:
    """Whether `raw` is one of our codes with a correct check symbol."""
    code = _canonical(raw)
    if len(code) != RANDOM_SYMBOLS + 1:
        return False
    body, check = code[:-1], code[-1]
    return all(c in ALPHABET for c in body) and check_symbol(body) == check


def lookup_form(raw: str) -> str:
    """The stored form to look `raw` up by: our codes read forgivingly (O→0, I/L→1), partner
    codes exactly as normalised."""
    return _canonical(raw) if is_generated(raw) else normalise(raw)


def display(code: str) -> str:
    """7KQM-3X9P-DV2T-H8WC-R for our codes; partner codes as stored."""
    if len(code) != RANDOM_SYMBOLS + 1:
        return code
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))
