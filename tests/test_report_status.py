"""One status vocabulary: `waves status` (outreach.study.waves.funnels), the export and the report count the same
follow-ups the same way, on both databases."""
from __future__ import annotations

import datetime as dt
import itertools
import json

import pandas as pd
import pytest

from analysis.dataset import outcome_codes
from analysis.report import build_report, save_report
from outreach.db import unit_of_work
from outreach.models import Answer, FollowUp, Message, Wave
from outreach.clock import utcnow
from outreach.study.waves import FUNNEL, OPEN_LABEL, OUTCOME_RULES, OUTCOMES, funnels, launch_wave, outcome_of

AS_OF = dt.date(2026, 11, 20)
STATES = ["invited", "declined", "q_self_efficacy", "q_mental_health", "crisis", "completed", "expired", "opted_out",
          "undeliverable"]

# (state, usable answers, replied, an answer given only in a coordinator's preview) -> research outcome
SCENARIOS = [
    ("completed", 3, True, False, "completed"),
    ("expired", 1, True, False, "partial"),  # timed out mid-survey: `expired` as a state, `partial` as an outcome
    ("crisis", 2, True, False, "partial"),  # paused after answering: its answers count (waves status said partial,
    ("opted_out", 1, True, False, "partial"),  # the export said crisis: the old disagreement)
    ("q_mental_health", 1, True, False, "partial"),  # still open
    ("crisis", 0, True, False, "crisis"),
    ("opted_out", 0, True, False, "opted_out"),
    ("declined", 0, True, False, "declined"),
    ("undeliverable", 0, False, False, "undeliverable"),
    ("expired", 0, True, False, "replied_no_answer"),  # said yes, then nothing
    ("q_physical_health", 0, True, True, "replied_no_answer"),  # only a preview answered: not the patient's
    ("invited", 0, False, False, "no_reply"),
    ("expired", 0, False, False, "no_reply"),
]
KEYS = ["self_efficacy", "mental_health", "physical_health", "days_used"]


def test_every_follow_up_has_exactly_one_outcome_and_the_rules_agree_in_python_and_pandas():
    combos = list(itertools.product(STATES, [False, True], [False, True]))
    frame = pd.DataFrame(combos, columns=["state", "answered", "replied"])
    codes = outcome_codes(frame["state"], frame["answered"], frame["replied"])
    assert list(codes) == [outcome_of(*c) for c in combos]
    assert set(codes) <= set(OUTCOMES) and [code for code, _ in OUTCOME_RULES] == list(OUTCOMES)
    assert not set(OUTCOMES) & {"expired", "invited"}  # no outcome code reads like a conversation state it is not
    assert FUNNEL[FUNNEL.index("replied") + 1:] == [*OUTCOMES, OPEN_LABEL]


def _fill(sessions, settings, make_patient, timepoint: int, copies: int) -> None:
    for i in range(len(SCENARIOS) * copies):
        make_patient(discharge_date=AS_OF - dt.timedelta(days=timepoint + 1 + i % 5))
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, timepoint, AS_OF, actor="test")
    with unit_of_work(sessions) as s:
        fus = s.query(FollowUp).filter(FollowUp.timepoint_days == timepoint).order_by(FollowUp.id).all()
        for fu, (state, answers, replied, preview, _) in zip(fus, SCENARIOS * copies):
            fu.state = state
            fu.last_inbound_at = utcnow() if replied else None
            msg = None
            if preview:
                msg = Message(direction="in", kind="reply", status="received", patient_id=fu.patient_id,
                              followup_id=fu.id, body="9", preview=True)
                s.add(msg)
                s.flush()
            for key in KEYS[:answers]:
                s.add(Answer(followup_id=fu.id, question_key=key, raw_text="3", value=3))
            if preview:
                s.add(Answer(followup_id=fu.id, question_key="self_efficacy", raw_text="9", value=9, message_id=msg.id))
            if state == "expired" and answers == 0 and replied:  # an unparsed reply is no usable answer
                s.add(Answer(followup_id=fu.id, question_key="self_efficacy", raw_text="maybe", value=None,
                             missing_reason="unparsed"))


def test_waves_status_and_the_report_agree_on_every_count(make_patient, sessions, session, settings, engine,
                                                          tmp_path):
    from analysis.report import report_dataset

    _fill(sessions, settings, make_patient, 30, copies=2)
    _fill(sessions, settings, make_patient, 90, copies=1)
    waves = funnels(session)
    by_tp: dict[int, dict[str, int]] = {}
    for wave_id, f in waves.items():
        by_tp[session.get(Wave, wave_id).timepoint_days] = f
    df = report_dataset(engine)
    report = build_report(df, tmp_path, suppress_below=1)  # nothing suppressed: every count compared
    rows = {r["timepoint"]: r for r in report.data["contact"]["rows"]}
    assert set(rows) == set(by_tp) == {30, 90}
    for tp, f in by_tp.items():
        expected = {code: sum(1 for *_, out in SCENARIOS if out == code) * (2 if tp == 30 else 1)
                    for code in OUTCOMES}
        assert {code: f[code] for code in OUTCOMES} == expected
        assert {code: rows[tp][code] for code in OUTCOMES} == expected  # the report, code by code
        assert f["targeted"] == rows[tp]["targeted"] == sum(expected.values())  # the columns add up
        assert f["answered"] == rows[tp]["answered"] == expected["completed"] + expected["partial"]
        assert f["response_rate"] == pytest.approx(rows[tp]["response_rate"])
        assert dict(df.loc[df["timepoint_days"] == tp, "status"].value_counts()) == \
            {k: v for k, v in expected.items() if v}  # and the export
        assert f[OPEN_LABEL] == sum(1 for s, *_ in SCENARIOS if s in ("invited", "declined", "q_mental_health",
                                                                      "q_physical_health", "crisis")) * \
            (2 if tp == 30 else 1)
    # Suppressed, the report still agrees wherever it shows a number.
    out = tmp_path / "suppressed"
    save_report(build_report(df, out, suppress_below=5), out)
    stats = json.loads((out / "stats.json").read_text())
    for r in stats["contact"]["rows"]:
        for code in ["targeted", *OUTCOMES, "answered"]:
            if isinstance(r[code], int):
                assert r[code] == by_tp[r["timepoint"]][code]
    md = (out / "report.md").read_text()
    assert "| time point | targeted | completed | partial | crisis | opted out | declined | undeliverable | " \
           "replied no answer | no reply |" in md


def test_the_codebook_and_the_report_use_the_outcome_codes():
    from analysis.codebook import BY_NAME

    assert BY_NAME["status"].codes == OUTCOMES
    assert "expired" not in BY_NAME["status"].codes
