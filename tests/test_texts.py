"""Outbound texts: short, in both languages, and saying nothing sensitive before consent."""
import pytest

from conversations.catalog import rendered_texts
from conversations.sms import encoding, segments

LONG_ORG = "Institut de recherche en santé Homewood"  # 39 characters
ALL = list(rendered_texts(org=LONG_ORG, contact="+1 (800) 555-0199 ext. 1234"))
# Before a patient has said yes, nobody reading their phone should learn why they are being texted.
BEFORE_CONSENT = {"invitation", "reminder", "consent_again", "declined", "help", "opted_in", "media_only",
                  "checkin_invitation", "checkin_invitation_first", "checkin_reminder"}
SENSITIVE = ["addiction", "alcohol", "drug", "substance", "treatment", "program", "rehab", "detox", "hospital",
             "clinic", "withdrawal", "recovery", "dépendance", "drogue", "traitement", "programme", "hôpital",
             "clinique", "sevrage", "rétablissement", "homewood health centre", "mental health", "santé mentale",
             "therap", "thérap", "counsel", "psychiatr", "diagnos"]


def test_every_text_exists_in_both_languages():
    names = {(name, lang) for name, lang, _ in ALL}
    assert {n for n, _ in names if _ == "en"} == {n for n, _ in names if _ == "fr"}


@pytest.mark.parametrize("name, lang, text", ALL, ids=[f"{n}-{l}" for n, l, _ in ALL])
def test_no_text_is_longer_than_320_characters(name, lang, text):
    assert len(text) <= 320, f"{name} ({lang}) has {len(text)} characters"


@pytest.mark.parametrize("name, lang, text", [t for t in ALL if t[0].split(" (")[0] in BEFORE_CONSENT])
def test_texts_before_consent_name_no_condition_program_or_substance(name, lang, text):
    lowered = text.lower()
    assert not [w for w in SENSITIVE if w in lowered]


# The weekly check-in during a stay is texted while the patient is in treatment: none of its texts (invitation,
# reminder, the six statements, their stalled-survey nudges) may tell whoever reads the phone what the stay is
# for.  "my recovery" / "mon rétablissement" in the sixth statement did.
CHECKIN = [t for t in ALL if t[0].startswith(("checkin_", "question alliance_", "stalled + alliance_"))]


def test_the_check_in_texts_are_all_checked_in_both_languages():
    assert len(CHECKIN) == 2 * (3 + 6 + 6) and {lang for _, lang, _ in CHECKIN} == {"en", "fr"}


@pytest.mark.parametrize("name, lang, text", CHECKIN, ids=[f"{n}-{l}" for n, l, _ in CHECKIN])
def test_check_in_texts_name_no_condition_program_or_treatment(name, lang, text):
    lowered = text.lower()
    assert not [w for w in SENSITIVE if w in lowered], (name, lang, text)


def test_invitation_names_the_sender_and_how_to_stop():
    for name, lang, text in ALL:
        if name.startswith("invitation"):
            assert text.startswith(LONG_ORG) and "STOP" in text


@pytest.mark.parametrize("text, enc, segs", [
    ("a" * 160, "GSM-7", 1), ("a" * 161, "GSM-7", 2), ("é" * 160, "GSM-7", 1), ("€" * 80, "GSM-7", 1),
    ("€" * 81, "GSM-7", 2), ("ê" * 70, "UCS-2", 1), ("ê" * 71, "UCS-2", 2), ("👍" * 35, "UCS-2", 1),
])
def test_encoding_and_segments(text, enc, segs):
    assert (encoding(text), segments(text)) == (enc, segs)


def test_docs_texts_table_is_current():
    from pathlib import Path

    from conversations.catalog import markdown_table

    page = (Path(__file__).parent.parent / "docs" / "coordinators.md").read_text(encoding="utf-8")
    assert markdown_table() in page, "docs/coordinators.md texts table is stale: run `python docs/generate.py`"


def test_docs_generated_sections_are_current():
    """The docs' state diagram, texts table and configuration table come from the code."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent
    result = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=root)
    assert result.returncode == 0, "docs are stale: run `python docs/generate.py`"


# Issue 23: the texts that say where to get help at any hour, with their segment counts (GSM-7 160 in one
# segment, 153 each when split).  An invitation stays within 2 segments in both languages.
HELP_AT_ANY_HOUR = {  # (name, language): segments
    ("invitation_first (30 d)", "en"): 2, ("invitation_first (30 d)", "fr"): 2,
    ("invitation_first (365 d)", "en"): 2, ("invitation_first (365 d)", "fr"): 2,
    ("help", "en"): 2, ("help", "fr"): 2,
    ("completed", "en"): 1, ("completed", "fr"): 2,
    ("crisis_line_note", "en"): 1, ("crisis_line_note", "fr"): 1,
}


def test_texts_that_say_where_to_get_help_name_the_crisis_line_within_their_segments():
    rendered = {(name, lang): text for name, lang, text in rendered_texts()}
    for (name, lang), expected in HELP_AT_ANY_HOUR.items():
        text = rendered[name, lang]
        assert "988" in text and encoding(text) == "GSM-7", (name, lang, text)
        assert segments(text) == expected, (name, lang, len(text))
        if name != "crisis_line_note":
            assert "911" in text and ("24/7" in text or "24 h sur 24" in text)
    for name, lang, text in rendered_texts():
        if name.startswith("invitation"):
            assert segments(text) <= 2, (name, lang)
