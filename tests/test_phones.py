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
