"""Phone numbers are stored in E.164 so every spelling of one number matches."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers import phonenumberutil as pnu

from patron.errors import Invalid


def normalise_phone(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise Invalid(f"{raw!r} is not a phone number", code="invalid_phone") from None
    if not phonenumbers.is_valid_number(number):
        raise Invalid(
            f"{raw!r} is not a valid phone number for region {region}", code="invalid_phone"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A number written with ASCII digits and plain separators only (an optional leading +).
_PLAIN = re.compile(r"\+?[0-9][0-9 ().\-]*")
_SEPARATORS = str.maketrans("", "", "+ ().-")
TAIL = 4  # the trailing digits a template leaves free
_UNSEEN = object()


class PhoneCache:
    """`normalise_phone` for the many numbers of one region in a migration's file, with the
    work of phonenumbers' parse done once per leading digits (decision 0033).

    The first number of each (leading +, length, all digits but the last four) goes through
    `normalise_phone`; what parsing made of it (country code, national prefix stripped) is
    kept as a template when it is unambiguous: one region for the country code, the last four
    digits carried through unchanged, no country code or international prefix hidden in a
    national number, and a national prefix stripped whenever phonenumbers' pattern finds one.
    A later number of the same leading digits is the template with its own last four digits,
    **checked on its own** with phonenumbers' patterns: the general description and the type
    the template matched (a valid number is one that matches both). Anything else — a number
    that fails that check, any other spelling, an invalid first number — goes through
    `normalise_phone` itself, so the results and errors are phonenumbers' (tests/bulk's
    property test compares the two over random numbers of several regions)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._templates: dict[tuple[bool, int, str], Any] = {}
        self.hits = 0

    def normalise(self, raw: str) -> str:
        if not _PLAIN.fullmatch(raw):
            return normalise_phone(raw, self.region)
        digits = raw.translate(_SEPARATORS)
        if len(digits) < TAIL + 4 or len(digits) > 17:
            return normalise_phone(raw, self.region)
        plus = raw.startswith("+")
        key = (plus, len(digits), digits[:-TAIL])
        template = self._templates.get(key, _UNSEEN)
        if template is _UNSEEN:
            result = normalise_phone(raw, self.region)  # raises for an invalid number
            self._templates[key] = self._learn(raw, digits, plus, result)
            return result
        if template is None:
            return normalise_phone(raw, self.region)
        head, cc_length, general, typed = template
        candidate = head + digits[-TAIL:]
        national = candidate[1 + cc_length :]
        if pnu._is_number_matching_desc(national, general) and pnu._is_number_matching_desc(
            national, typed
        ):
            self.hits += 1
            return candidate
        return normalise_phone(raw, self.region)

    def _learn(self, raw: str, digits: str, plus: bool, result: str) -> Any:
        """The template of a valid number, or None where the cache would not be exact."""
        tail = digits[-TAIL:]
        if not result.endswith(tail):
            return None
        number = phonenumbers.parse(raw, self.region)
        cc = number.country_code
        if cc is None:
            return None
        regions = pnu.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
        if len(regions) != 1 or regions[0] == "001":
            return None
        metadata = PhoneMetadata.metadata_for_region(regions[0], None)
        if metadata is None or metadata.general_desc is None:
            return None
        if plus:
            if not digits.startswith(str(cc)):
                return None
            national_raw = digits[len(str(cc)) :]
        else:
            home = PhoneMetadata.metadata_for_region(self.region, None)
            if home is None or home.country_code != cc or digits.startswith(str(cc)):
                return None
            if home.international_prefix and re.match(home.international_prefix, digits):
                return None
            national_raw = digits
        national = pnu.national_significant_number(number)
        if not national_raw.endswith(national) or len(national) < TAIL + 3:
            return None
        prefix = metadata.national_prefix_for_parsing
        stripped = len(national) < len(national_raw)
        if not stripped and prefix and re.match(prefix, national_raw):
            return None
        if stripped and (not prefix or metadata.national_prefix_transform_rule):
            return None
        kind = pnu.number_type(number)
        typed = pnu._number_desc_by_type(metadata, kind)
        if typed is None or kind == phonenumbers.PhoneNumberType.UNKNOWN:
            return None
        return (result[:-TAIL], len(str(cc)), metadata.general_desc, typed)


def national_format(phone: str | None) -> str | None:
    """+821012345678 -> 010-1234-5678 (the number's own country's way of writing it)."""
    if not phone:
        return None
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(phone, None), phonenumbers.PhoneNumberFormat.NATIONAL
        )
    except phonenumbers.NumberParseException:
        return phone
