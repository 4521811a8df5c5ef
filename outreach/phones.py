"""Phone numbers: parsing to E.164, masking for output, zone guess."""
from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import NamedTuple

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


# Every way of writing an extension above has one of these characters: a cell without any has none (one quick scan;
# the search for an extension tries its pattern at every character of the cell).
_EXTENSION_MARK = re.compile("[xXpP#]")


def split_extension(text: str) -> tuple[str, str | None]:
    """(the number, its extension or None) of a phone cell such as ``416 555 0123 ext 12``."""
    m = _EXTENSION.search(text) if _EXTENSION_MARK.search(text) else None
    return (text[: m.start()], m.group(1)) if m else (text, None)


@lru_cache(maxsize=65536)
def parse_phone(raw: str, region: str) -> str:
    """Return the E.164 form of ``raw`` or raise :class:`PhoneError`.  An extension in words is dropped; any
    other letter is refused; Excel's text prefix (a leading apostrophe) is ignored."""
    return _e164(_parse(raw, region))


class Phone(NamedTuple):
    """One phone cell read once: its E.164 form, :func:`zone_for` and :func:`why_not_textable` of it."""
    e164: str
    zone: str | None
    not_textable: str | None


def read_phone(raw: str, region: str) -> Phone:
    """:func:`parse_phone`, :func:`zone_for` and :func:`why_not_textable` of ``raw``, the number parsed once (the
    phone library's parsing and validation are most of an import's time).  A plain North American cell that is
    valid by the quick check (nearly every cell of a North American study) is read from its digits alone; any
    other goes through :func:`_parse`, which says what is wrong with it."""
    digits = _plain_north_american_digits(raw.strip().lstrip("'").strip(), region)
    if digits is not None and _surely_valid(digits, 1, region):
        e164 = "+1" + digits  # as the library formats the number it would have read: cells of that shape have
        # no extension, no letter and no national prefix left
    else:
        e164 = _e164(_parse(raw, region))
    return Phone(e164, _zone_of_e164(e164), why_not_textable(e164, region))


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse(raw: str, region: str) -> phonenumbers.PhoneNumber:
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
        number = _plain_north_american(number, region) or phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        raise PhoneError(f"cannot be read as a phone number ({mask_raw(text)})") from None
    if not is_valid(number, region):
        raise PhoneError(f"is not a valid phone number for region {region} ({mask_raw(text)})")
    return number


# A North American number written the way hospital systems and spreadsheets write it: ten digits, the area code
# and the exchange each starting 2-9, optionally after "1" or "+1", separated by nothing, spaces, dots, dashes or
# the area code's parentheses.  For a region of country code 1 the phone library reads such a cell as exactly
# this number (its national prefix 1 stripped); reading it here skips the library's general parser, which
# normalises every character through Unicode tables and was two thirds of an import's phone time.  Anything else
# (another country's "+", an international prefix, other separators) goes to the library.
_NANP_CELL = re.compile(r"(?:\+1|1)?[ .\-]?\(?([2-9]\d\d)\)?[ .\-]?([2-9]\d\d)[ .\-]?(\d{4})")


@lru_cache(maxsize=512)
def _country_code_of(region: str) -> int:
    return phonenumbers.country_code_for_region(region)


def _plain_north_american(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    digits = _plain_north_american_digits(text, region)
    return None if digits is None else phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))


def _plain_north_american_digits(text: str, region: str) -> str | None:
    """The ten digits (area code, exchange, line) of a plain North American cell in a region of country code 1, or
    None.  They are the number's national significant number: the area code does not start with 0."""
    if _country_code_of(region) != 1:
        return None
    m = _NANP_CELL.fullmatch(text)
    return None if m is None else m[1] + m[2] + m[3]


def is_valid(number: phonenumbers.PhoneNumber, region: str) -> bool:
    """``phonenumbers.is_valid_number(number)``, answered sooner for a number of ``region`` itself.

    The library checks a number in the region it belongs to, found by trying the regions of its country code in
    its own order (25 share +1: the United States first, Canada eighth), each by its leading digits where its
    metadata has them, else by a full check: three quarters of the time for a Canadian number.  A number valid in
    ``region`` is valid in the region found, unless a region tried before ``region`` (or ``region`` itself) goes
    by leading digits and they decide otherwise; only then, and for every number not valid in ``region``, is the
    library's own answer asked for."""
    return (_surely_valid(phonenumbers.national_significant_number(number), number.country_code, region)
            or phonenumbers.is_valid_number(number))


def _surely_valid(nsn: str, country_code: int, region: str) -> bool:
    """True when the number of ``country_code`` and national significant number ``nsn`` is valid in ``region``
    and no region the library tries before it can decide otherwise (see :func:`is_valid`); False when only the
    library can say."""
    rules = _region_rules(region)
    if rules is None or not _valid_nsn_for_region(nsn, country_code, rules):
        return False
    claimed_first, own = _leading_digits(country_code, region)
    return (claimed_first is None or not claimed_first.match(nsn)) and (own is None or own.match(nsn) is not None)


# The kinds of number the library tells apart: a number is valid for a region when its general pattern and the
# pattern of one of these kinds match it (phonenumbers' _number_type_helper is not UNKNOWN).
_KINDS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line", "mobile")


class _RegionRules(NamedTuple):
    country_code: int
    lengths: frozenset[int]  # the general description's possible lengths (empty: any)
    general: re.Pattern
    kinds: tuple[tuple[frozenset[int], str], ...]  # each kind's possible lengths (empty: any) and pattern
    by_length: dict[int, re.Pattern | None]  # the kinds' patterns that allow a length, as one, made when first asked


@lru_cache(maxsize=256)
def _region_rules(region: str) -> _RegionRules | None:
    from phonenumbers.phonemetadata import PhoneMetadata

    metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
    if metadata is None or not metadata.general_desc or not metadata.general_desc.national_number_pattern:
        return None
    kinds = []
    for kind in _KINDS:
        desc = getattr(metadata, kind, None)
        if desc is not None and desc.national_number_pattern:
            kinds.append((frozenset(desc.possible_length or ()), desc.national_number_pattern))
    general = metadata.general_desc
    return _RegionRules(metadata.country_code, frozenset(general.possible_length or ()),
                        re.compile(general.national_number_pattern), tuple(kinds), {})


def _valid_for_region(number: phonenumbers.PhoneNumber, region: str) -> bool:
    """``phonenumbers.is_valid_number_for_region(number, region)`` with the region's patterns read once and its
    kinds' patterns tried as one (the library tries up to ten, one call each: most of its validation time)."""
    rules = _region_rules(region)
    if rules is None:
        return phonenumbers.is_valid_number_for_region(number, region)
    return _valid_nsn_for_region(phonenumbers.national_significant_number(number), number.country_code, rules)


def _valid_nsn_for_region(nsn: str, country_code: int, rules: _RegionRules) -> bool:
    """:func:`_valid_for_region` of the number of ``country_code`` and national significant number ``nsn``."""
    if country_code != rules.country_code:
        return False
    length = len(nsn)
    if rules.lengths and length not in rules.lengths:
        return False
    if rules.general.fullmatch(nsn) is None:
        return False
    if length not in rules.by_length:
        allowed = [f"(?:{pattern})" for lengths, pattern in rules.kinds if not lengths or length in lengths]
        rules.by_length[length] = re.compile("|".join(allowed)) if allowed else None
    kinds = rules.by_length[length]
    return kinds is not None and kinds.fullmatch(nsn) is not None


@lru_cache(maxsize=256)
def _leading_digits(country_code: int, region: str) -> tuple[re.Pattern | None, re.Pattern | None]:
    """The leading-digit patterns of the regions the library tries before ``region`` for ``country_code``, as
    one (None: none has any), and ``region``'s own (None: it has none)."""
    from phonenumbers.phonemetadata import PhoneMetadata

    def pattern(code: str) -> str | None:
        metadata = PhoneMetadata.metadata_for_region(code.upper(), None)
        return metadata.leading_digits if metadata is not None and metadata.leading_digits else None

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    before = [p for p in map(pattern, regions[: regions.index(region)] if region in regions else regions) if p]
    own = pattern(region)
    return (re.compile("|".join(f"(?:{p})" for p in before)) if before else None,
            re.compile(own) if own else None)


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


@lru_cache(maxsize=256)
def _any_not_textable(country_code: int) -> re.Pattern:
    """The patterns of :func:`_not_textable_patterns` as one: a number matches it when it matches one of them."""
    return re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _not_textable_patterns(country_code)))


def why_not_textable(e164: str, region: str) -> str | None:
    """Why texts may not reach ``e164`` (a kind of number that cannot receive them, or another country's number
    in a study of ``region``), or None."""
    # Country codes are prefix-free: the first 1 to 3 digits that are one (cheaper than parsing the number again).
    digits = e164.lstrip("+")
    for n in (1, 2, 3):
        country_code = int(digits[:n])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[len(str(country_code)):]
    patterns = _not_textable_patterns(country_code)
    if patterns and _any_not_textable(country_code).fullmatch(national):  # one of them, found as the loop finds it
        for pattern, words in patterns:
            if pattern.fullmatch(national):
                return f"is a {words} number, which cannot receive texts"
    if country_code != _country_code_of(region):
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
    return _zone_of(phonenumbers.parse(e164, None))


def _zone_of(number: phonenumbers.PhoneNumber) -> str | None:
    return _zone_of_e164(_e164(number))


def _zone_of_e164(e164: str) -> str | None:
    """The zone of :func:`zone_for` from the E.164 text: ``phonenumbers.timezone.time_zones_for_geographical_number``
    looks up the longest prefix of its digits (up to TIMEZONE_LONGEST_PREFIX) in its table.  No key of the table
    is longer than the first n digits that begin none longer (4 for most North American numbers: +1 and the area
    code), so the answer depends on those only, and is kept for each."""
    digits = e164[1: 1 + pn_timezone.TIMEZONE_LONGEST_PREFIX]
    begin_longer = _zone_keys_begun()
    n = 1
    while n < len(digits) and digits[:n] in begin_longer:
        n += 1
    return _zone_of_prefix(digits[:n])


@cache
def _zone_keys_begun() -> frozenset[str]:
    """Every proper beginning of a key of the phone library's time zone table."""
    return frozenset(key[:n] for key in pn_timezone.TIMEZONE_DATA for n in range(1, len(key)))


@lru_cache(maxsize=65536)
def _zone_of_prefix(digits: str) -> str | None:
    zones = next((pn_timezone.TIMEZONE_DATA[digits[:n]] for n in range(len(digits), 0, -1)
                  if digits[:n] in pn_timezone.TIMEZONE_DATA), None)
    return zones[0] if zones is not None and len(zones) == 1 and zones[0] != "Etc/Unknown" else None
