"""Phone numbers: parsing to E.164, masking for output, zone guess."""
from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import timezone as pn_timezone


class PhoneError(ValueError):
    pass


# An extension written after the number, in the words sites use (ext, x, poste, #, ...): it is split off, since a
# text cannot reach an extension.  Any other letter in a phone cell is refused: the phone library would read a letter
# O as a zero and a vanity number's letters as digits, and store a different, valid-looking number.
_EXTENSION = re.compile(r"(?i)\s*[,;]?\s*(?:ext(?:ension)?\.?|x|poste|p\.|#)\s*:?\s*(\d{1,7})\s*$")
_LETTER = re.compile(r"[^\W\d_]")
_TRAILING_WORD = re.compile(r"[^\W\d_]+[\s.]*$")


def split_extension(text: str) -> tuple[str, str | None]:
    """(the number, its extension or None) of a phone cell such as ``416 555 0123 ext 12``."""
    m = _EXTENSION.search(text)
    return (text[: m.start()], m.group(1)) if m else (text, None)


@lru_cache(maxsize=65536)
def parse_phone(raw: str, region: str) -> str:
    """Return the E.164 form of ``raw`` or raise :class:`PhoneError`.  An extension in words is dropped; any
    other letter is refused; Excel's text prefix (a leading apostrophe) is ignored."""
    text = raw.strip().lstrip("'").strip()
    if not text:
        raise PhoneError("is empty")
    number, _extension = split_extension(text)
    if _LETTER.search(number):
        word = _TRAILING_WORD.search(number)
        if word and _valid(number[: word.start()], region):
            raise PhoneError(f"has a word after the number ({word.group().strip(' .')!r}): write only the number "
                             "(an extension as 'ext 12')")
        raise PhoneError("has letters in it: write the number in digits (a letter O for a zero, or a number spelt "
                         "in letters, is not read as digits; an extension is written 'ext 12')")
    try:
        number = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        raise PhoneError(f"cannot be read as a phone number ({mask_raw(text)})") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"is not a valid phone number for region {region} ({mask_raw(text)})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _valid(text: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return False


# Kinds of number that cannot receive a text, as the phone library's metadata describes them.
NOT_TEXTABLE = {"toll_free": "toll-free", "premium_rate": "premium-rate", "shared_cost": "shared-cost",
                "pager": "pager", "uan": "universal access", "voicemail": "voicemail"}


@lru_cache(maxsize=256)
def _not_textable_patterns(country_code: int) -> tuple[tuple[re.Pattern, str], ...]:
    """The national-number patterns of the country's kinds of number that cannot receive texts (compiled once;
    phonenumbers.number_type tries every kind and costs 0.1 ms a number)."""
    from phonenumbers.phonemetadata import PhoneMetadata

    metadata = PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(country_code))
    found = []
    for attribute, words in NOT_TEXTABLE.items():
        desc = getattr(metadata, attribute, None) if metadata else None
        if desc is not None and desc.national_number_pattern:
            found.append((re.compile(desc.national_number_pattern), words))
    return tuple(found)


def why_not_textable(e164: str, region: str) -> str | None:
    """Why texts may not reach ``e164`` (a kind of number that cannot receive them, or another country's number
    in a study of ``region``), or None."""
    # Country codes are prefix-free: the first 1 to 3 digits that are one (cheaper than parsing the number again).
    digits = e164.lstrip("+")
    country_code = next((int(digits[:n]) for n in (1, 2, 3) if int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE),
                        None)
    if country_code is None:
        return None
    national = digits[len(str(country_code)):]
    for pattern, words in _not_textable_patterns(country_code):
        if pattern.fullmatch(national):
            return f"is a {words} number, which cannot receive texts"
    if country_code != phonenumbers.country_code_for_region(region):
        return f"is a number of another country (+{country_code}): check that texts can reach it"
    return None


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
