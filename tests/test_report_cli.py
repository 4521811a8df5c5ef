"""The command line around the report: `outreach report` needs no EXPORT_KEY, a time point outside FOLLOWUP_DAYS is
refused by `export` and `report` as by `waves plan`, and `waves status` prints the report's outcome codes.

"""
from __future__ import annotations

import pytest

from outreach.study.waves import OUTCOMES

KEY = "export-key-for-tests-0123456789abcdef"
def NEEDS_CLI(test):  # these waited for a change to outreach/cli.py, which has landed
    return test


@NEEDS_CLI
def test_report_runs_without_export_key(run_cli, make_patient, make_followup, tmp_path):
    for _ in range(6):
        make_followup(make_patient())
    result = run_cli("report", "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.md").exists() and "EXPORT_KEY" not in result.output


@NEEDS_CLI
@pytest.mark.parametrize("command", [["export", "--out", "r.csv"], ["report", "--out", "rep"]])
def test_a_time_point_outside_followup_days_is_refused_like_waves_plan(command, run_cli, tmp_path):
    plan = run_cli("waves", "plan", "--timepoint", "45")
    args = [a if a not in ("r.csv", "rep") else str(tmp_path / a) for a in command]
    result = run_cli(*args, "--timepoint", "45", extra_env={"EXPORT_KEY": KEY})
    assert plan.exit_code == result.exit_code == 2
    assert "time point 45 is not one of FOLLOWUP_DAYS (30, 90, 180, 365)" in plan.output
    assert "time point 45 is not one of FOLLOWUP_DAYS (30, 90, 180, 365)" in result.output
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "rep").exists()


@NEEDS_CLI
def test_waves_status_prints_the_outcome_codes_of_the_report(run_cli, make_patient, sessions, settings):
    import datetime as dt

    from outreach.db import unit_of_work
    from outreach.study.waves import launch_wave

    as_of = dt.date(2026, 11, 20)
    for _ in range(3):
        make_patient(discharge_date=as_of - dt.timedelta(days=31))
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, as_of, actor="t")
    out = run_cli("waves", "status").output
    for code in OUTCOMES:
        assert f"{code.replace('_', ' ')} " in out
    assert "expired" not in out and "open 3" in out
