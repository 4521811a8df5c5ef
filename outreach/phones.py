"""Phone numbers: parsing to E.164, masking for output, zone guess."""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as pn_timezone


class PhoneError(ValueError):
    pass


@lru_cache(maxsize=65536)
def parse_phone(raw: str, region: str) -> str:
    """Return the E.164 form of ``raw`` or raise :class:`PhoneError`."""
    text = raw.strip()
    if not text:
        raise PhoneError("is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise PhoneError(f"cannot be read as a phone number ({mask_raw(text)})") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"is not a valid phone number for region {region} ({mask_raw(text)})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str | None) -> str:
    """``+14165554567`` -> ``+1******4567``: country code and last four digits only."""
    if not e164:
        return "?"
    try:
        number = phonenumbers.parse(e164, None)
        cc = f"+{number.country_code}"
        national = str(number.national_number)
    except phonenumbers.NumberParseException:
        return mask_raw(e164)
    return cc + "*" * max(len(national) - 4, 0) + national[-4:]


def mask_raw(text: str) -> str:
    """Mask anything that may be a phone number: keep only its last two digits."""
    digits = re.sub(r"\D", "", text)
    return "*" * max(len(digits) - 2, 0) + digits[-2:] if digits else "(no digits)"


@lru_cache(maxsize=4096)
def zone_for(e164: str) -> str | None:
    """The single IANA zone a geographic number belongs to, if there is exactly one."""
    zones = pn_timezone.time_zones_for_geographical_number(phonenumbers.parse(e164, None))
    return zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None
