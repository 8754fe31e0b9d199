"""Phone numbers are stored in E.164 so every spelling of one number matches."""

from __future__ import annotations

import phonenumbers

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
