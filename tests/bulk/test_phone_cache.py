"""The import's phone cache gives exactly what `normalise_phone` gives (number or error), for
numbers sharing leading digits, in any order (decision 0033)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.errors import Invalid
from patron.members.phone import PhoneCache, normalise_phone

# Leading digits per region: mobiles, landlines, service numbers, international spellings, an
# international prefix, the country code written without + — valid and invalid stems mixed.
STEMS = {
    "KR": [
        "010",
        "0105",
        "0109",
        "011",
        "016",
        "02",
        "031",
        "070",
        "1588",
        "+8210",
        "+82 2",
        "8210",
        "00",
        "001",
        "+82010",
    ],
    "CN": ["138", "139", "010", "021", "0755", "400", "+86138", "86138", "00"],
    "US": ["212", "415", "1212", "+1415", "800", "011"],
    "GB": ["07700", "020", "+44 7", "0800", "01", "447"],
    "JP": ["090", "03", "+8190", "0120", "81"],
    "DE": ["0151", "030", "+49151", "49"],
    "SG": ["9", "8", "6", "+65 9", "65"],
    "IT": ["06", "3", "+39 06", "+39 3", "39"],
}


def _reference(raw: str, region: str) -> str | tuple[str, str]:
    try:
        return normalise_phone(raw, region)
    except Invalid as exc:
        return ("error", exc.code)


def _cached(cache: PhoneCache, raw: str) -> str | tuple[str, str]:
    try:
        return cache.normalise(raw)
    except Invalid as exc:
        return ("error", exc.code)


def _spell(digits: str, style: int) -> str:
    if style == 0 or len(digits) < 8:
        return digits
    if style == 1:
        return f"{digits[:3]}-{digits[3:-4]}-{digits[-4:]}"
    if style == 2:
        return f"{digits[:3]} {digits[3:-4]} {digits[-4:]}"
    return f"({digits[:3]}) {digits[3:-4]}.{digits[-4:]}"


numbers = st.lists(
    st.tuples(
        st.integers(0, 10**6),  # which stem
        st.integers(0, 999),  # middle digits (few: numbers share their leading digits)
        st.integers(0, 3),  # middle length
        st.integers(0, 9999),  # the free tail
        st.integers(0, 3),  # spelling
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(region=st.sampled_from(sorted(STEMS)), rows=numbers)
def test_the_cache_equals_phonenumbers(region: str, rows: list[tuple[int, ...]]) -> None:
    cache = PhoneCache(region)
    stems = STEMS[region]
    for stem_at, middle, middle_length, tail, style in rows:
        stem = stems[stem_at % len(stems)]
        plus = stem.startswith("+")
        body = stem.lstrip("+").replace(" ", "") + f"{middle:03d}"[: middle_length + 1]
        digits = body + f"{tail:04d}"
        raw = ("+" if plus else "") + _spell(digits, style)
        assert _cached(cache, raw) == _reference(raw, region), raw


@pytest.mark.parametrize(
    ("region", "raws"),
    [
        # One stem, many tails: the first is parsed, the rest come from the template.
        ("KR", [f"010-{m:04d}-{t:04d}" for m in (1000, 5123, 9999, 1) for t in (0, 1234, 9999)]),
        ("KR", [f"+82 10-{m:04d}-{t:04d}" for m in (1000, 5123) for t in (0, 4321)]),
        ("KR", ["02-312-3456", "02-312-9999", "031-123-4567", "031-123-0000"]),
        ("CN", [f"138{m:04d}{t:04d}" for m in (0, 1234) for t in (0, 5678)]),
        ("US", ["(212) 555-0100", "(212) 555-0199", "+1 415 555 0100"]),
        ("GB", ["07700 900123", "07700 900999", "020 7946 0000", "020 7946 0999"]),
        ("KR", ["010-1234-5678", "010-12", "abc", "010-1234-5678 ext. 9", "+82-10-1234-5678"]),
    ],
)
def test_a_table_of_numbers(region: str, raws: list[str]) -> None:
    cache = PhoneCache(region)
    for raw in raws * 2:  # the second round comes from the cache where it may
        assert _cached(cache, raw) == _reference(raw, region), raw


def test_the_cache_is_used() -> None:
    cache = PhoneCache("KR")
    got = [cache.normalise(f"010-{5000 + n // 100:04d}-{n % 10_000:04d}") for n in range(1_000)]
    assert got[0] == "+821050000000"
    assert cache.hits >= 980
