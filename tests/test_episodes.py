"""Treatment episodes: a readmitted patient keeps every discharge, its alliance and its own follow-ups.

Through the real CLI (import, waves, export) and the real signed webhook, on both databases."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import func, select

from outreach.models import AllianceRating, AuditEvent, Episode, FollowUp, Patient

HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"
TODAY = dt.date.today()
EXPORT = {"EXPORT_KEY": "key-for-episode-tests-0123456789abcdef"}


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def csv_file(tmp_path, name: str, *rows: str, header: str = HEADER):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def imported(run_cli, path, *flags: str):
    result = run_cli("import-discharges", str(path), *flags)
    return result.exit_code, result.output


def answer_30_day_survey(twilio, phone: str, self_efficacy: str) -> None:
    for text in ["yes", self_efficacy, "good", "good"]:
        twilio.text(phone, text)


def test_readmitted_patient_has_two_stays_each_linked_to_its_own_alliance(tmp_path, run_cli, twilio, session):
    # First stay: discharged 35 days ago, alliance 1 on every item; the 30-day survey is answered.
    code, out = imported(run_cli, csv_file(tmp_path, "first.csv", f"R-1,416-555-0101,{ago(35)},yes,1,1,1,1,1,1"))
    assert code == 0 and "imported 1 new patients, 1 new episodes, updated 0, unchanged 0, rejected 0" in out
    assert "wave 1 launched: 1 invitation(s) queued" in run_cli("waves", "launch", "--timepoint", "30",
                                                                "--yes").output
    answer_30_day_survey(twilio, "+14165550101", "2")

    # Second stay: discharged 31 days ago, alliance 6.  It is a new episode, not an update of the first.
    code, out = imported(run_cli, csv_file(tmp_path, "second.csv", f"R-1,416-555-0101,{ago(31)},yes,6,6,6,6,6,6"))
    assert code == 0 and "imported 0 new patients, 1 new episodes, updated 0, unchanged 0, rejected 0" in out
    plan = run_cli("waves", "plan", "--timepoint", "30").output
    assert "1 eligible" in plan and "excluded, already has a follow-up for this time point: 1" in plan
    assert "wave 2 launched: 1 invitation(s) queued" in run_cli("waves", "launch", "--timepoint", "30",
                                                                "--yes").output
    answer_30_day_survey(twilio, "+14165550101", "9")

    stays = session.execute(select(Episode.discharge_date, AllianceRating.mean_score, FollowUp.state)
                            .join(AllianceRating, AllianceRating.episode_id == Episode.id)
                            .join(FollowUp, FollowUp.episode_id == Episode.id)
                            .order_by(Episode.discharge_date)).all()
    assert [(str(d), m, s) for d, m, s in stays] == [(ago(35), 1.0, "completed"), (ago(31), 6.0, "completed")]

    out_file = tmp_path / "results.csv"
    result = run_cli("export", "--out", str(out_file), "--timepoint", "30", extra_env=EXPORT)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out_file)
    assert len(df) == 2 and df["participant"].nunique() == 1
    by_episode = df.set_index("episode")
    assert by_episode.loc[1, "alliance_mean"] == 1.0 and by_episode.loc[1, "self_efficacy"] == 2
    assert by_episode.loc[2, "alliance_mean"] == 6.0 and by_episode.loc[2, "self_efficacy"] == 9
    assert by_episode.loc[1, "days_to_response"] == 35 and by_episode.loc[2, "days_to_response"] == 31
    codebook = pd.read_csv(tmp_path / "results.codebook.csv").set_index("variable")
    assert "discharge order" in codebook.loc["episode", "label"]


def test_a_cumulative_extract_holds_every_stay_and_the_latest_gives_the_contact_details(tmp_path, run_cli, session):
    # A phone that changed between two stays needs the stays' episode_id (without it the two rows might be two
    # people under one id: tests/test_import_misreads.py).
    path = csv_file(tmp_path, "extract.csv",
                    f"C-1,416-555-0101,{ago(200)},yes,3,3,3,3,3,3,S1",
                    f"C-1,416-555-0199,{ago(40)},yes,5,5,5,5,5,5,S2",
                    f"C-2,416-555-0102,{ago(100)},no,4,4,4,4,4,4,S3", header=HEADER + ",episode_id")
    code, out = imported(run_cli, path)
    assert code == 0 and "imported 2 new patients, 3 new episodes, updated 0, unchanged 0, rejected 0" in out
    c1 = session.scalar(select(Patient).where(Patient.patient_id == "C-1"))
    assert c1.phone == "+14165550199"  # from the row of the latest stay, whatever the row order
    assert session.scalar(select(func.count()).select_from(Episode).where(Episode.patient_id == c1.id)) == 2
    # The same file again changes nothing.
    assert "imported 0 new patients, 0 new episodes, updated 0, unchanged 3, rejected 0" in imported(run_cli, path)[1]


def test_with_and_without_episode_id_the_same_stays_are_matched(tmp_path, run_cli, session):
    with_ids = csv_file(tmp_path, "with.csv", f"E-1,416-555-0101,{ago(200)},yes,3,3,3,3,3,3,A",
                        f"E-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5,B", header=HEADER + ",episode_id")
    without = csv_file(tmp_path, "without.csv", f"E-1,416-555-0101,{ago(200)},yes,3,3,3,3,3,3",
                       f"E-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5")
    assert "imported 1 new patients, 2 new episodes" in imported(run_cli, with_ids)[1]
    assert "imported 0 new patients, 0 new episodes, updated 0, unchanged 2, rejected 0" in imported(
        run_cli, without)[1]
    assert "unchanged 2" in imported(run_cli, with_ids)[1]
    sites = session.scalars(select(Episode.site_episode_id).order_by(Episode.discharge_date)).all()
    assert sites == ["A", "B"]


def test_stays_loaded_without_episode_id_take_the_site_number_later(tmp_path, run_cli, session):
    without = csv_file(tmp_path, "without.csv", f"F-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5")
    with_ids = csv_file(tmp_path, "with.csv", f"F-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5,S-7",
                        header=HEADER + ",episode_id")
    imported(run_cli, without)
    assert "0 new episodes, updated 1, unchanged 0" in imported(run_cli, with_ids)[1]
    assert session.scalars(select(Episode.site_episode_id)).all() == ["S-7"]


def test_an_earlier_new_discharge_without_episode_id_is_refused(tmp_path, run_cli, session):
    imported(run_cli, csv_file(tmp_path, "a.csv", f"G-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5"))
    code, out = imported(run_cli, csv_file(tmp_path, "b.csv", f"G-1,416-555-0101,{ago(300)},yes,2,2,2,2,2,2"))
    assert code == 1
    assert (f"line 2: discharge_date: earlier than the stay discharged on {ago(40)}; add an episode_id column to "
            "load past stays") in out
    assert session.scalar(select(func.count()).select_from(Episode)) == 1
    # With the site's stay number, the past stay loads.
    code, out = imported(run_cli, csv_file(tmp_path, "c.csv", f"G-1,416-555-0101,{ago(300)},yes,2,2,2,2,2,2,1",
                                           header=HEADER + ",episode_id"))
    assert code == 0 and "0 new patients, 1 new episodes" in out
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Episode)) == 2


def test_a_past_stay_does_not_overwrite_the_contact_details_of_the_latest(tmp_path, run_cli, session):
    imported(run_cli, csv_file(tmp_path, "a.csv", f"H-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5"))
    imported(run_cli, csv_file(tmp_path, "b.csv", f"H-1,416-555-0177,{ago(300)},no,2,2,2,2,2,2,old",
                               header=HEADER + ",episode_id"))
    patient = session.scalar(select(Patient))
    assert patient.phone == "+14165550101" and patient.sms_consent is True


@pytest.mark.parametrize("second_row, message", [
    (f"D-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5,",
     f"line 3: discharge_date: 'D-1' discharged on {ago(40)} repeats line 2"),
    (f"D-1,416-555-0101,{ago(20)},yes,5,5,5,5,5,5,X",
     "line 3: episode_id: stay 'X' of 'D-1' repeats line 2"),
])
def test_two_rows_for_the_same_stay_are_refused_as_duplicates(tmp_path, run_cli, session, second_row, message):
    path = csv_file(tmp_path, "dup.csv", f"D-1,416-555-0101,{ago(40)},yes,5,5,5,5,5,5,X", second_row,
                    header=HEADER + ",episode_id")
    code, out = imported(run_cli, path)
    assert code == 1 and message in out
    assert session.scalar(select(func.count()).select_from(Patient)) == 0


def _answered_stay(tmp_path, run_cli, twilio):
    imported(run_cli, csv_file(tmp_path, "a.csv", f"J-1,416-555-0101,{ago(35)},yes,4,4,4,4,4,4"))
    run_cli("waves", "launch", "--timepoint", "30", "--yes")
    answer_30_day_survey(twilio, "+14165550101", "7")


def test_changed_ratings_on_a_stay_with_answers_are_refused(tmp_path, run_cli, twilio, session):
    _answered_stay(tmp_path, run_cli, twilio)
    code, out = imported(run_cli, csv_file(tmp_path, "b.csv", f"J-1,416-555-0101,{ago(35)},yes,4,4,2,4,4,4"))
    assert code == 1
    assert ("line 2: alliance_3: this stay already has follow-up answers; pass --allow-rating-changes to change "
            "them") in out
    assert session.scalar(select(AllianceRating.items)) == [4] * 6
    # Other details of that stay, or the patient's, may still change.
    code, out = imported(run_cli, csv_file(tmp_path, "c.csv", f"J-1,416-555-0101,{ago(35)},no,4,4,4,4,4,4"))
    assert code == 0 and "updated 1" in out


def test_allowed_rating_changes_are_audited_with_old_and_new_values(tmp_path, run_cli, twilio, session):
    _answered_stay(tmp_path, run_cli, twilio)
    code, out = imported(run_cli, csv_file(tmp_path, "b.csv", f"J-1,416-555-0101,{ago(35)},yes,4,4,2,4,4,4"),
                         "--allow-rating-changes")
    assert code == 0 and "updated 1" in out and "alliance ratings changed on 1 stay(s)" in out
    rating = session.scalar(select(AllianceRating))
    assert rating.items == [4, 4, 2, 4, 4, 4] and rating.mean_score == pytest.approx(22 / 6, abs=1e-4)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "alliance_rating_changed"))
    assert event.details["old_items"] == [4] * 6 and event.details["new_items"] == [4, 4, 2, 4, 4, 4]
    assert event.details["discharge_date"] == ago(35)


def test_ratings_of_a_stay_without_answers_may_change(tmp_path, run_cli, session):
    imported(run_cli, csv_file(tmp_path, "a.csv", f"K-1,416-555-0101,{ago(35)},yes,4,4,4,4,4,4"))
    code, out = imported(run_cli, csv_file(tmp_path, "b.csv", f"K-1,416-555-0101,{ago(35)},yes,5,4,4,4,4,4"))
    assert code == 0 and "updated 1" in out
    assert session.scalar(select(AllianceRating.items)) == [5, 4, 4, 4, 4, 4]


def test_when_two_stays_fall_due_together_the_later_one_is_followed_up(tmp_path, run_cli, session):
    imported(run_cli, csv_file(tmp_path, "a.csv", f"L-1,416-555-0101,{ago(38)},yes,2,2,2,2,2,2",
                               f"L-1,416-555-0101,{ago(31)},yes,5,5,5,5,5,5",
                               f"L-2,416-555-0102,{ago(33)},yes,5,5,5,5,5,5"))
    plan = run_cli("waves", "plan", "--timepoint", "30").output
    assert "2 eligible" in plan and "excluded, superseded by a later discharge: 1" in plan
    run_cli("waves", "launch", "--timepoint", "30", "--yes")
    chosen = session.scalars(select(Episode.discharge_date).join(FollowUp, FollowUp.episode_id == Episode.id)
                             .join(Patient, Patient.id == Episode.patient_id)
                             .where(Patient.patient_id == "L-1")).all()
    assert [str(d) for d in chosen] == [ago(31)]


def test_a_time_point_due_after_the_next_stay_began_is_superseded_for_good(tmp_path, run_cli, twilio, session):
    # The first stay's 90-day follow-up falls due after the second stay's discharge: answers would
    # describe life after the second stay, so it is never asked, not even once the second stay's survey ends.
    imported(run_cli, csv_file(tmp_path, "a.csv", f"M-1,416-555-0101,{ago(92)},yes,2,2,2,2,2,2",
                               f"M-1,416-555-0101,{ago(32)},yes,5,5,5,5,5,5"))
    assert "superseded by a later discharge: 1" in run_cli("waves", "plan", "--timepoint", "90").output
    run_cli("waves", "launch", "--timepoint", "30", "--yes")
    answer_30_day_survey(twilio, "+14165550101", "8")
    plan = run_cli("waves", "plan", "--timepoint", "90").output
    assert "0 eligible" in plan and "excluded, superseded by a later discharge: 1" in plan


def test_an_admission_date_supersedes_from_the_day_the_next_stay_began(tmp_path, run_cli):
    # Readmitted 40 days after the first discharge: the 90-day point would fall during the second stay.
    header = HEADER + ",admission_date"
    imported(run_cli, csv_file(tmp_path, "a.csv", f"N-1,416-555-0101,{ago(95)},yes,2,2,2,2,2,2,",
                               f"N-1,416-555-0101,{ago(1)},yes,5,5,5,5,5,5,{ago(55)}", header=header))
    assert "superseded by a later discharge: 1" in run_cli("waves", "plan", "--timepoint", "90").output
    imported(run_cli, csv_file(tmp_path, "b.csv", f"O-1,416-555-0102,{ago(95)},yes,2,2,2,2,2,2,",
                               f"O-1,416-555-0102,{ago(1)},yes,5,5,5,5,5,5,{ago(3)}", header=header))
    plan = run_cli("waves", "plan", "--timepoint", "90").output
    assert "1 eligible" in plan  # O-1 went back in after the 90-day point


def test_two_rows_that_reach_the_same_stored_stay_are_refused(tmp_path, run_cli, session):
    header = HEADER + ",episode_id"
    imported(run_cli, csv_file(tmp_path, "a.csv", f"S-1,416-555-0101,{ago(40)},yes,4,4,4,4,4,4,A", header=header))
    code, out = imported(run_cli, csv_file(tmp_path, "b.csv", f"S-1,416-555-0101,{ago(38)},yes,2,2,2,2,2,2,A",
                                           f"S-1,416-555-0101,{ago(40)},yes,3,3,3,3,3,3,", header=header))
    assert code == 1 and "line 3: patient_id: this row and line 2 describe the same stay of 'S-1'" in out
    assert session.scalar(select(AllianceRating.items)) == [4] * 6
