"""The importer reads each phone cell once (``read_phone``) and asks the phone library's full validity check only
when its quicker one cannot answer: both must say exactly what the library says."""
from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.phones import PhoneError, is_valid, parse_phone, read_phone, why_not_textable, zone_for

REGIONS = ["CA", "US", "JM", "BS", "AG", "PR", "GB", "JE", "IM", "FR", "RU", "KZ", "IT", "NO", "SJ", "AU", "CC"]


@pytest.mark.parametrize("region", ["CA", "US", "JM", "BS", "PR"])
def test_validity_is_the_librarys_for_every_north_american_area_code(region):
    rng = random.Random(region)
    for area in range(200, 1000):
        for _ in range(12):
            number = phonenumbers.PhoneNumber(
                country_code=1, national_number=int(f"{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"))
            assert is_valid(number, region) == phonenumbers.is_valid_number(number), (area, region)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)), st.integers(10**4, 10**12),
       st.sampled_from(REGIONS))
def test_validity_is_the_librarys_for_any_number(country_code, national, region):
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=national)
    assert is_valid(number, region) == phonenumbers.is_valid_number(number)


CELLS = ["(416) 555-0123", "416-555-0123 ext 12", "'613 555 0199", "+1 800 555 0199", "+33 1 42 68 53 00",
         "+44 20 7946 0018", "1-604-555-0111", "+1 876 555 0123", "(902) 555-01 23 x 7", "514.555.0100",
         "5550123", "+1 268 464 1234", "ABC", "416 555 0123 home", "", "12"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("region", ["CA", "US"])
def test_reading_a_cell_once_says_what_the_three_readings_said(cell, region):
    try:
        e164 = parse_phone(cell, region)
    except PhoneError as exc:
        with pytest.raises(PhoneError) as again:
            read_phone(cell, region)
        assert str(again.value) == str(exc)
        return
    phone = read_phone(cell, region)
    assert phone.e164 == e164
    assert phone.zone == zone_for(e164)
    assert phone.not_textable == why_not_textable(e164, region)


NANP_REGIONS = ["CA", "US", "JM", "PR", "BS"]


def _cells(rng: random.Random) -> list[str]:
    """Phone cells as hospital files write them, and near misses: every area-code and exchange first digit, with
    and without 1 or +1, in the separators the quick reading accepts and some it leaves to the library."""
    cells = []
    for _ in range(4000):
        area, exchange, line = f"{rng.randint(0, 999):03d}", f"{rng.randint(0, 999):03d}", f"{rng.randint(0, 9999):04d}"
        prefix = rng.choice(["", "1", "+1", "1 ", "+1 ", "+1-", "1-", "+", "+4", "+44 ", "01", "011 ", "(1)", "+ 1 "])
        shape = rng.choice(["{a}{e}{l}", "{a}-{e}-{l}", "({a}) {e}-{l}", "{a}.{e}.{l}", "{a} {e} {l}", "({a}){e}{l}",
                            "{a}  {e} {l}", "{a}/{e}-{l}", "{a}-{e}{l}", "({a} {e}-{l}", "{a}) {e}-{l}",
                            "{a}{e}{l}0", "{a}{e}{s}", "{a}–{e}–{l}"])
        cells.append(prefix + shape.format(a=area, e=exchange, l=line, s=line[:3]))
    return cells


@pytest.mark.parametrize("region", NANP_REGIONS)
def test_the_quick_reading_of_north_american_cells_is_the_librarys(region):
    """What an import stores for a cell (or the problem it reports) does not depend on whether the phone library's
    general parser or the quick reading of plain North American numbers read it."""
    from outreach import phones

    for cell in _cells(random.Random(region)):
        quick = phones._plain_north_american(cell, region)
        try:
            library = phonenumbers.parse(cell, region)
        except phonenumbers.NumberParseException:
            assert quick is None, cell
            continue
        if quick is not None:
            assert quick == library, cell
            assert phonenumbers.format_number(quick, phonenumbers.PhoneNumberFormat.E164) == \
                phonenumbers.format_number(library, phonenumbers.PhoneNumberFormat.E164), cell


def test_the_quick_reading_takes_the_common_shapes_and_leaves_other_countries_to_the_library():
    from outreach import phones

    for cell in ["(416) 555-0123", "416-555-0123", "4165550123", "1-416-555-0123", "+1 416 555 0123",
                 "416.555.0123"]:
        assert phones._plain_north_american(cell, "CA") is not None, cell
    for cell, region in [("+4165550123", "CA"), ("4165550123", "GB"), ("011 44 20 7946 0018", "US"),
                         ("416 055 0123", "CA")]:
        assert phones._plain_north_american(cell, region) is None, (cell, region)


@settings(max_examples=4000, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)), st.integers(10**3, 10**13),
       st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.booleans())
def test_validity_for_a_region_is_the_librarys(country_code, national, region, own_country):
    from outreach.phones import _valid_for_region

    if own_country:  # most numbers of an import are of the study's own country
        country_code = phonenumbers.country_code_for_region(region)
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=national)
    assert _valid_for_region(number, region) == phonenumbers.is_valid_number_for_region(number, region)


@pytest.mark.parametrize("region", ["CA", "US", "JM", "PR"])
def test_validity_for_a_north_american_region_is_the_librarys_for_every_area_code(region):
    from outreach.phones import _valid_for_region

    rng = random.Random(f"{region}-for-region")
    for area in range(200, 1000):
        for _ in range(12):
            number = phonenumbers.PhoneNumber(
                country_code=1, national_number=int(f"{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"))
            assert _valid_for_region(number, region) == phonenumbers.is_valid_number_for_region(number, region)


def test_validity_for_a_region_is_the_librarys_near_each_regions_own_example_numbers():
    """Numbers of every kind of every region, and their neighbours (digits changed, one more or fewer)."""
    from phonenumbers import PhoneNumberType

    from outreach.phones import _valid_for_region

    rng = random.Random(7)
    checked = valid = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE,
                     PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP, PhoneNumberType.PAGER, PhoneNumberType.UAN):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            digits = str(example.national_number)
            variants = {digits, digits[:-1], digits + str(rng.randint(0, 9))}
            variants |= {digits[:-k] + "".join(str(rng.randint(0, 9)) for _ in range(k)) for k in (1, 2, 4, 6)}
            for v in variants:
                number = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(v),
                                                  italian_leading_zero=example.italian_leading_zero)
                expected = phonenumbers.is_valid_number_for_region(number, region)
                assert _valid_for_region(number, region) == expected, (region, kind, v)
                checked, valid = checked + 1, valid + expected
    assert checked > 5000 and valid > checked / 3  # the check saw many valid numbers, not only refusals


def _textable_as_before(e164: str, region: str) -> str | None:
    """why_not_textable as it was written before its patterns were tried as one."""
    from outreach.phones import _not_textable_patterns

    digits = e164.lstrip("+")
    country_code = next((int(digits[:n]) for n in (1, 2, 3)
                         if int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE), None)
    if country_code is None:
        return None
    national = digits[len(str(country_code)):]
    for pattern, words in _not_textable_patterns(country_code):
        if pattern.fullmatch(national):
            return f"is a {words} number, which cannot receive texts"
    if country_code != phonenumbers.country_code_for_region(region):
        return f"is a number of another country (+{country_code}): check that texts can reach it"
    return None


@pytest.mark.parametrize("region", [*NANP_REGIONS, "GB", "FR"])
def test_read_phone_says_what_the_general_reading_and_the_library_say(region):
    """read_phone reads a plain North American cell from its digits, and its zone from a table of prefixes: the same
    number, zone, reason it cannot receive texts, or problem, as the general reading with the library's zone."""
    from phonenumbers import timezone

    from outreach import phones

    cells = _cells(random.Random(f"{region}-read")) + CELLS + [
        "+1 800 555 0199", "1-888-555-0123", "(900) 555-0123", "+44 7700 900123", "+33 6 12 34 56 78", "+1 416 555 0123"]
    for cell in cells:
        try:
            number = phones._parse(cell, region)
        except PhoneError as exc:
            with pytest.raises(PhoneError) as again:
                read_phone(cell, region)
            assert str(again.value) == str(exc), cell
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        zones = timezone.time_zones_for_geographical_number(number)
        zone = zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None
        assert read_phone(cell, region) == (e164, zone, _textable_as_before(e164, region)), cell
