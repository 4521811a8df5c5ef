"""`outreach lexicon test "message"`: would this text trigger the crisis check, and which rule matched."""
from __future__ import annotations

from click.testing import CliRunner

from conversations.crisis import detect
from outreach.cli import cli

# Texts a person in danger might send; the test uses the first the detector catches, so it follows the rules.
CRISIS = ["I want to kill myself", "i want to die", "je veux mourir", "I took all my pills", "kms"]


def lexicon_test(text: str) -> str:
    result = CliRunner().invoke(cli, ["lexicon", "test", text])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_crisis_text_says_yes_and_names_the_rule_that_matched():
    text = next(t for t in CRISIS if detect(t) is not None)
    match = detect(text)
    out = lexicon_test(text)
    assert out.startswith("yes: this text would trigger the crisis check")
    assert f"rule: {match.rule}\n" in out and f"why: {match.why}\n" in out


def test_an_ordinary_text_says_no():
    text = "thanks, see you next week"
    assert detect(text) is None
    assert lexicon_test(text) == "no: this text would not trigger the crisis check\n"


def test_the_command_is_listed_under_lexicon():
    out = CliRunner().invoke(cli, ["lexicon", "--help"]).output
    assert "test" in out and "missed" in out
