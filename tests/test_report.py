"""The researchers' report: files, figures, honest small-sample handling, small-cell suppression."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.report import Suppressor, write_report
from analysis.simulate import cohort

from .test_analysis_stats import readmitted


def test_report_files_figures_and_stats(tmp_path):
    df = cohort(400, 1, timepoints=(30, 90))
    payload = write_report(df, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"report.md", "report.html", "stats.json"} <= names
    assert {"fig1_funnel.png", "fig2_alliance.png", "fig3_self_efficacy.png", "fig4_health.png",
            "fig5_response.png", "fig6_timepoints.png"} <= names
    assert all((tmp_path / f).stat().st_size > 5000 for f in names if f.endswith(".png"))
    md = (tmp_path / "report.md").read_text()
    for heading in ["Rank correlation", "odds ratio per SD", "proportional-odds", "Highest alliance tertile",
                    "Who answered", "Across time points"]:
        assert heading in md
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["logistic"][0]["test"] == "Logistic regression" and stats["logistic"][0]["estimate"] > 1
    assert {r["outcome"] for r in stats["spearman"]} >= {"self_efficacy", "mental_health", "physical_health"}
    assert all("p_holm" in r for r in stats["spearman"])
    assert stats["mixed"]["timepoints"] == [30, 90]
    assert "<figure><img src='fig4_health.png'" in (tmp_path / "report.html").read_text()
    assert payload["figures"][0] == "fig1_funnel.png"


def test_small_counts_are_suppressed(tmp_path):
    df = cohort(300, 2)
    extra = df.head(3).assign(timepoint_days=90, responded=0, status="no_reply", self_efficacy=float("nan"))
    write_report(pd.concat([df, extra], ignore_index=True), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| 90 days | <5 | 0 | 0 | 0 | 0 | 0 | <5 |" in md
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["funnel"]["90"]["targeted"] == "<5"


def test_a_small_cell_in_a_2x2_table_is_suppressed_not_a_crash(tmp_path):
    """Few patients in the highest alliance tertile rate their mental health very good or better."""
    df = cohort(300, 2)
    high = df["alliance_tertile"] == "high"
    keep = df.index[high & (df["mental_health_high"] == 1)][:3]
    df.loc[high & (df["mental_health_high"] == 1) & ~df.index.isin(keep), "mental_health_high"] = 0
    write_report(df, tmp_path)
    stats = json.loads((tmp_path / "stats.json").read_text())
    table = next(r["table"] for r in stats["high_vs_other"] if r["outcome"] == "mental_health_high")
    assert table[0][0] == "<5"
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines()
               if line.startswith("| Mental health very good/excellent") and "yes" not in line)
    assert row.endswith(f"| <5/{table[0][1]} | {table[1][0]}/{table[1][1]} |")


def test_a_tertile_where_everyone_reports_good_health_still_gets_its_figure(tmp_path):
    df = cohort(120, 2)
    df.loc[df["alliance_tertile"] == "high", ["mental_health_high", "physical_health_high"]] = 1
    write_report(df, tmp_path)
    assert (tmp_path / "fig4_health.png").stat().st_size > 5000
    stats = json.loads((tmp_path / "stats.json").read_text())
    r = next(r for r in stats["high_vs_other"] if r["outcome"] == "mental_health_high")
    assert r["table"][0][1] == 0 and r["estimate"] is None and r["p"] < 0.05  # the test stands, no odds ratio
    assert "zero" in r["note"]


def test_too_small_sample_says_so_instead_of_estimates(tmp_path):
    df = cohort(40, 3, base_response=0.4)
    write_report(df, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "too small for stable estimates" in md and "Spearman's rho |" not in md and "odds ratio per SD" not in md
    assert json.loads((tmp_path / "stats.json").read_text())["too_small"] is True


def test_readmitted_participants_count_once_and_the_report_says_so(tmp_path):
    df = readmitted(300, 2, 40)
    write_report(df, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "300 follow-ups of 300 participants at their first treatment episode" in md
    assert "40 participants have more than one treatment episode (340 episodes in all)" in md
    assert "uses each participant's first episode in this dataset" in md
    assert "| 30 days | 300 |" in md  # the contact funnel counts each participant once
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_rows"] == 300 and stats["alliance"]["n"] == 300
    every_stay = df.drop_duplicates(["participant", "episode"])["alliance_mean"]  # as the dataset cuts tertiles
    assert stats["alliance"]["tertile_cuts"] == pytest.approx(every_stay.quantile([1 / 3, 2 / 3]).tolist())
    assert stats["episodes"]["n_participants_multi"] == 40 and stats["episodes"]["n_episodes"] == 340
    sensitivity = stats["episodes"]["sensitivity"]
    assert sensitivity["n"] == int(df["self_efficacy_high"].notna().sum()) > stats["logistic"][0]["n"]
    assert (f"| self-efficacy 8+, all episodes | Logistic regression, SE clustered by participant | "
            f"{sensitivity['n']} | {sensitivity['estimate']:.2f} |") in md
    assert "self-efficacy 8+, all episodes" in (tmp_path / "report.html").read_text()
    assert "cluster-robust (sandwich) standard errors by participant" in md  # Methods


def test_a_few_readmitted_participants_are_suppressed(tmp_path):
    write_report(readmitted(300, 2, 2), tmp_path)
    md = (tmp_path / "report.md").read_text()
    readmissions = md.split("## Readmissions\n\n")[1].split("\n\n")[0]
    assert readmissions.startswith("<5 participants have more than one treatment episode. The primary analysis")
    assert "2" not in readmissions  # neither the count nor "302 episodes in all", which would give it away
    stats = json.loads((tmp_path / "stats.json").read_text())
    episodes, primary_n = stats["episodes"], stats["logistic"][0]["n"]
    assert episodes["n_participants_multi"] == "<5" and episodes["n_episodes"] is None
    # The all-episodes n would also give away how few answers the later episodes add.
    assert episodes["sensitivity"]["n"] == f"{primary_n}+<5"
    assert (f"| self-efficacy 8+, all episodes | Logistic regression, SE clustered by participant | "
            f"{primary_n}+<5 |") in md


def test_a_report_without_readmissions_says_so_and_has_no_all_episodes_row(tmp_path):
    for name, df in [("with_column", cohort(300, 2).assign(episode=1)), ("before_episodes", cohort(300, 2))]:
        write_report(df, tmp_path / name)
        md = (tmp_path / name / "report.md").read_text()
        assert "No participant has more than one treatment episode in this dataset" in md
        assert "all episodes" not in md and "at their first treatment episode" not in md
        episodes = json.loads((tmp_path / name / "stats.json").read_text())["episodes"]
        assert episodes == {"n_participants_multi": 0, "n_episodes": 300, "primary": "first episode per participant",
                            "sensitivity": None}


def test_suppressor():
    sup = Suppressor(5)
    assert [sup(x) for x in (0, 1, 4, 5, 12)] == ["0", "<5", "<5", "5", "12"]


def test_report_command_on_a_real_database(run_cli, make_patient, make_followup, tmp_path):
    make_followup(make_patient())
    result = run_cli("report", "--out", str(tmp_path / "rep"), extra_env={"EXPORT_KEY": "k" * 32})
    assert result.exit_code == 0, result.output
    assert "too small" in (tmp_path / "rep" / "report.md").read_text()
