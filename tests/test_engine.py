"""The conversation engine on a plain model: the real shared state machine, no database."""
import datetime as dt
from dataclasses import dataclass

import pytest

from conversations.engine import Context, respond
from conversations.machine import MACHINE, STATES, attached, mermaid

NOW = dt.datetime(2026, 11, 2, 15, 0)


@dataclass
class FU:
    state: str = "invited"
    timepoint_days: int = 30
    retries: int = 0
    paused_state: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    last_ack_at: dt.datetime | None = None


def ctx(**kw):
    return Context(org="Recovery Study", help_contact="1-800-555-0199", now=kw.pop("now", NOW), **kw)


def talk(model, *texts, **kw):
    outs = [respond(model, t, ctx(**kw)) for t in texts]
    return outs[-1] if len(outs) == 1 else outs


def test_full_30_day_survey_records_coded_answers():
    fu = FU()
    first = talk(fu, "yes")
    assert fu.state == "q_self_efficacy" and "0 (not at all) to 10 (completely)" in first.replies[0]
    o1, o2, o3 = talk(fu, "eight", "very good", "2")
    assert [a.value for a in o1.answers + o2.answers + o3.answers] == [8, 4, 4]
    assert "1 Excellent, 2 Very good, 3 Good, 4 Fair, 5 Poor" in o1.replies[0]
    assert fu.state == "completed" and fu.completed_at == NOW
    assert "completed" in o3.events and o3.replies[0].startswith("Thank you")


def test_later_surveys_ask_days_used():
    fu = FU(timepoint_days=90)
    talk(fu, "oui", "7", "3", "3")
    assert fu.state == "q_days_used"
    out = talk(fu, "none")
    assert out.answers[0].key == "days_used" and out.answers[0].value == 0 and fu.state == "completed"


def test_unusable_reply_asks_again_then_records_missing():
    fu = FU(state="q_self_efficacy")
    first = talk(fu, "7 or 8")
    assert "from 0 to 10" in first.replies[0] and first.answers == [] and fu.state == "q_self_efficacy"
    second = talk(fu, "dunno")
    assert second.answers[0].missing_reason == "unparsed" and second.answers[0].raw_text == "dunno"
    assert second.answers[0].value is None and fu.state == "q_mental_health"


def test_skip_records_skipped_and_moves_on():
    fu = FU(state="q_mental_health")
    out = talk(fu, "PASSER", language="fr")
    assert out.answers[0].missing_reason == "skipped" and fu.state == "q_physical_health"
    assert "santé physique" in out.replies[0]


def test_decline_then_yes_within_window_starts():
    fu = FU()
    out = talk(fu, "not now")
    assert fu.state == "declined" and "declined" in out.events
    talk(fu, "YES")
    assert fu.state == "q_self_efficacy"


@pytest.mark.parametrize("state", ["invited", "declined", "q_self_efficacy", "q_days_used", "crisis"])
def test_stop_opts_out_from_any_open_state_without_reply(state):
    fu = FU(state=state, timepoint_days=90, paused_state="q_self_efficacy")
    out = talk(fu, "Stop")
    assert fu.state == "opted_out" and out.replies == [] and out.events == ["opted_out"]


@pytest.mark.parametrize("state", ["invited", "q_self_efficacy", "crisis"])
def test_a_plain_request_to_stop_opts_out_and_is_confirmed_once(state):
    """The carrier acts on STOP and confirms it; 'please stop texting me' only we can honour and confirm."""
    fu = FU(state=state, timepoint_days=30, paused_state="q_self_efficacy")
    out = talk(fu, "Please stop texting me")
    assert fu.state == "opted_out" and out.events == ["opted_out"]
    assert out.replies == ["Recovery Study: you will not get any more texts from us. Reply START to get them again."]
    assert talk(fu, "arrêtez svp", opted_out=True).replies == []  # already opted out: no second confirmation
    assert "START" in talk(None, "désabonnez-moi", language="fr").replies[0]


@pytest.mark.parametrize("text", ["ok", "OK thanks", "👍", "merci", "d'accord"])
def test_acknowledging_not_now_neither_starts_the_survey_nor_gets_a_reply(text):
    fu = FU(state="declined")
    out = talk(fu, text)
    assert fu.state == "declined" and out.replies == [] and out.events == []
    talk(fu, "yes")  # a real change of mind still starts it
    assert fu.state == "q_self_efficacy"


@pytest.mark.parametrize("text", ["ok", "OK thanks", "👍", "sure", "k"])
def test_acknowledging_the_opt_out_confirmation_does_not_opt_back_in(text):
    assert talk(None, text, opted_out=True).events == []


@pytest.mark.parametrize("text", ["START", "unstop", "Yes", "oui!"])
def test_start_unstop_or_a_plain_yes_opts_back_in(text):
    assert talk(None, text, opted_out=True).events == ["opted_in"]


def test_stop_inside_a_sentence_is_an_answer_attempt_not_an_opt_out():
    fu = FU(state="q_self_efficacy")
    out = talk(fu, "I can't stop drinking")
    assert fu.state == "q_self_efficacy" and "opted_out" not in out.events


def test_stop_without_any_followup_is_still_an_opt_out():
    assert talk(None, "STOP").events == ["opted_out"]


def test_opted_out_patient_can_opt_back_in_but_nothing_restarts():
    out = talk(None, "START", opted_out=True)
    assert out.events == ["opted_in"] and "again" in out.replies[0]
    assert talk(None, "7", opted_out=True).replies == []


def test_help_repeats_the_current_question_and_keeps_state():
    fu = FU(state="q_mental_health")
    out = talk(fu, "help")
    assert "Recovery Study" in out.replies[0] and "1-800-555-0199" in out.replies[0] and "STOP" in out.replies[0]
    assert "mental health" in out.replies[1] and fu.state == "q_mental_health"


@pytest.mark.parametrize("state", ["invited", "q_self_efficacy", "completed", "expired", "opted_out"])
def test_crisis_message_in_any_state_gets_safety_reply(state):
    fu = FU(state=state)
    out = talk(fu, "I want to end my life")
    assert "988" in out.replies[0] and "911" in out.replies[0] and out.events == ["crisis"]
    if state in ("invited", "q_self_efficacy"):
        assert fu.state == "crisis" and fu.paused_state == state
    else:
        assert fu.state == state


def test_crisis_after_opt_out_still_gets_safety_reply():
    out = talk(None, "je veux mourir", opted_out=True, language="fr")
    assert "988" in out.replies[0] and "urgence" in out.replies[0]


def test_crisis_pauses_until_resumed():
    fu = FU(state="q_mental_health")
    talk(fu, "I want to kill myself")
    assert talk(fu, "3").replies == [] and fu.state == "crisis"
    with attached(fu):
        MACHINE.events["resume"].trigger(fu)
    assert fu.state == "q_mental_health"


def test_completed_gets_one_acknowledgement_per_day():
    fu = FU(state="completed")
    assert talk(fu, "thanks").replies == []  # "thanks" for our thank-you needs no answer
    assert talk(fu, "hello?").replies
    assert talk(fu, "hello?", now=NOW + dt.timedelta(hours=5)).replies == []
    assert talk(fu, "hi", now=NOW + dt.timedelta(hours=25)).replies


def test_media_without_text_asks_for_text_and_repeats_question():
    fu = FU(state="q_self_efficacy")
    out = respond(fu, "", ctx(), media_count=1)
    assert "only read text" in out.replies[0] and "0 (not at all)" in out.replies[1]


def test_machine_is_shared_and_models_are_detached():
    fu = FU(state="q_self_efficacy")
    talk(fu, "5", "good", "STOP")
    assert MACHINE.models == []
    assert not hasattr(fu, "advance") and not hasattr(fu, "is_invited")


def test_mermaid_diagram_covers_every_state_and_matches_docs():
    diagram = mermaid()
    for state in STATES:
        assert state in diagram
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "coordinators.md").read_text(encoding="utf-8")
    assert diagram in page, "docs/coordinators.md state diagram is stale: run `python docs/generate.py`"
