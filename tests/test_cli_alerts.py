"""Alerts on the command line: every time in one zone (CONSOLE_TIMEZONE, with its abbreviation), `alerts list
--all` with the resolved ones, and a bad ALERT_SMS_TO entry named."""
from __future__ import annotations

import re

from sqlalchemy import select

from outreach.models import Alert

VANCOUVER = {"CONSOLE_TIMEZONE": "America/Vancouver"}  # the patients' DEFAULT_TIMEZONE is Toronto
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d P[SD]T"


def test_list_and_resolve_show_times_in_the_coordinators_zone_and_all_shows_resolved_ones(
        twilio, make_patient, make_followup, session, run_cli):
    first, second = make_patient(patient_id="AL-1"), make_patient(patient_id="AL-2")
    for p in (first, second):
        make_followup(p, state="q_self_efficacy")
        twilio.text(p.phone, "I want to die")
    alert_id = session.scalar(select(Alert.id).where(Alert.patient_id == first.id))
    listing = run_cli("alerts", "list", extra_env=VANCOUVER).output
    assert re.search(rf"#{alert_id}  {STAMP}  patient AL-1  open \(survey crisis\)", listing), listing
    resolved = run_cli("alerts", "resolve", str(alert_id), "--note", "called; safe", extra_env=VANCOUVER)
    assert resolved.exit_code == 0 and re.fullmatch(rf"alert {alert_id} resolved at {STAMP}\n", resolved.output)
    again = run_cli("alerts", "resolve", str(alert_id), "--note", "x", extra_env=VANCOUVER)
    assert again.exit_code == 1 and re.search(rf"already resolved on {STAMP} by cli:", again.output)
    assert "AL-1" not in run_cli("alerts", "list", extra_env=VANCOUVER).output
    everything = run_cli("alerts", "list", "--all", extra_env=VANCOUVER).output
    assert re.search(rf"#{alert_id}  {STAMP}  patient AL-1  resolved {STAMP} by cli:\S+: called; safe", everything)
    assert "patient AL-2  open" in everything and everything.endswith("2 alert(s), 1 open\n")
    assert "UTC" not in listing + resolved.output + again.output + everything


def test_a_bad_on_call_number_is_named_by_its_place_in_the_list(run_cli):
    result = run_cli("worker", "--once", extra_env={"SMS_BACKEND": "simulator",
                                                    "ALERT_SMS_TO": "+1 416 555 0100, 555-01, +1 613 555 0111"})
    assert result.exit_code == 2
    assert result.output == ("error: ALERT_SMS_TO: a number is not a valid phone number for region CA: entry 2 of 3, "
                             "'555-01' (numbers are separated by commas)\n")
