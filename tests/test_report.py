"""The researchers' report: files, figures, honest small-sample handling, small-cell suppression."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.report import write_report
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
    for heading in ["rank correlation", "odds ratio per SD", "Brant test", "highest alliance tertile",
                    "Who answered", "Across time points", "## Participant flow", "## Table 1", "## Limitations",
                    "Missing answers: the assumption", "Primary analysis (pre-specified"]:
        assert heading in md
    stats = json.loads((tmp_path / "stats.json").read_text())
    main = next(r for r in stats["estimates"] if r["role"] == "primary")
    assert main["test"] == "Linear regression" and main["estimate"] > 0 and main["timepoint"] == 30
    assert {r["outcome"] for r in stats["spearman"]} >= {"self_efficacy", "mental_health", "physical_health"}
    assert all("p_holm" in r for r in stats["estimates"] if r["role"] == "secondary")
    assert not any("p_holm" in r for r in stats["estimates"] if r["role"] != "secondary")
    assert stats["mixed"]["timepoints"] == [30, 90] and stats["mixed"]["reference"] == 30
    html = (tmp_path / "report.html").read_text()
    assert html.count("<figure><img src='data:image/png;base64,") == 6  # embedded: the file travels alone
    assert "src='fig" not in html
    assert payload["figures"][0] == "fig1_funnel.png"


def test_small_counts_are_suppressed(tmp_path):
    df = cohort(300, 2)
    extra = df.head(3).assign(timepoint_days=90, responded=0, status="no_reply", self_efficacy=float("nan"))
    write_report(pd.concat([df, extra], ignore_index=True), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| 90 days | <5 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | <5 |" in md  # a column for every outcome code
    stats = json.loads((tmp_path / "stats.json").read_text())
    row = next(r for r in stats["contact"]["rows"] if r["timepoint"] == 90)
    assert row["targeted"] == "<5" and row["no_reply"] == "<5" and row["response_rate"] is None
    assert stats["n_rows"] == "x"  # 303 follow-ups would give the 3 at 90 days away


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
    hidden = [c for row in table for c in row if c in ("<5", "x")]
    assert hidden.count("<5") == 1 and len(hidden) >= 2  # and the next smallest cell, so n minus the rest is no help
    r = next(r for r in stats["high_vs_other"] if r["outcome"] == "mental_health_high")
    assert r["estimate"] is None and r["ci_low"] is None and r["p"] is None  # an odds ratio would give it away
    row = next(line for line in (tmp_path / "report.md").read_text().splitlines()
               if line.startswith("| Mental health very good/excellent") and "yes" not in line)
    assert row.endswith(f"| {table[0][0]}/{table[0][1]} | {table[1][0]}/{table[1][1]} |")
    share = stats["shares_by_tertile"]["mental_health_high"]["high"]
    assert share["events"] == "<5" and share["share"] is None and share["ci_low"] is None


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
    assert "300 participants (their first treatment episode) were contacted at 30 days" in md
    assert "40 participants have more than one treatment episode (340 episodes in all)" in md
    assert "uses each participant's first episode in this dataset" in md
    assert "| 30 days | 300 |" in md  # the contact funnel counts each participant once
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_rows"] == 300 and stats["alliance"]["n"] == 300 and stats["participants"]["targeted"] == 300
    every_stay = df.drop_duplicates(["participant", "episode"])["alliance_mean"]  # as the dataset cuts tertiles
    assert stats["alliance"]["tertile_cuts"] == pytest.approx(every_stay.quantile([1 / 3, 2 / 3]).tolist())
    assert stats["episodes"]["n_participants_multi"] == 40 and stats["episodes"]["n_episodes"] == 340
    sensitivity = stats["episodes"]["sensitivity"]
    main = next(r for r in stats["estimates"] if r["role"] == "primary")
    assert sensitivity["n"] == int(df["self_efficacy"].notna().sum()) > main["n"]
    assert (f"| self-efficacy, all episodes | Linear regression, SE clustered by participant | "
            f"{sensitivity['n']} | {sensitivity['estimate']:.2f} |") in md
    assert "self-efficacy, all episodes" in (tmp_path / "report.html").read_text()
    assert "cluster-robust (sandwich) standard errors by participant" in md  # Methods


def test_a_few_readmitted_participants_are_suppressed(tmp_path):
    write_report(readmitted(300, 2, 2), tmp_path)
    md = (tmp_path / "report.md").read_text()
    readmissions = md.split("## Readmissions\n\n")[1].split("\n\n")[0]
    assert readmissions.startswith("<5 participants have more than one treatment episode. The primary analysis")
    assert "2" not in readmissions  # neither the count nor "302 episodes in all", which would give it away
    stats = json.loads((tmp_path / "stats.json").read_text())
    episodes, primary_n = stats["episodes"], next(r for r in stats["estimates"] if r["role"] == "primary")["n"]
    assert episodes["n_participants_multi"] == "<5" and episodes["n_episodes"] == "x"
    # The all-episodes n would also give away how few answers the later episodes add.
    assert episodes["sensitivity"]["n"] == "x" and isinstance(primary_n, int)
    assert "| self-efficacy, all episodes | Linear regression, SE clustered by participant | x |" in md


def test_a_report_without_readmissions_says_so_and_has_no_all_episodes_row(tmp_path):
    for name, df in [("with_column", cohort(300, 2).assign(episode=1)), ("before_episodes", cohort(300, 2))]:
        write_report(df, tmp_path / name)
        md = (tmp_path / name / "report.md").read_text()
        assert "No participant has more than one treatment episode in this dataset" in md
        assert "all episodes" not in md and "at their first treatment episode" not in md
        episodes = json.loads((tmp_path / name / "stats.json").read_text())["episodes"]
        assert episodes == {"n_participants_multi": 0, "n_episodes": 300, "primary": "first episode per participant",
                            "sensitivity": None}


def test_primary_and_complementary_suppression_of_one_row():
    """A row 20 = 2 + 6 + 12 + 0: the 2 is <5, and the next smallest cell (6) is hidden too, so that 20 minus the
    cells shown is not the 2; zeros stay, totals in running text go before table cells."""
    from analysis.results import Ledger

    ledger = Ledger(5)
    total = ledger.count("total", 20)
    cells = [ledger.count(k, v) for k, v in (("a", 2), ("b", 6), ("c", 12), ("d", 0))]
    ledger.line(total, cells)
    ledger.protect()
    assert [ledger.value(k) for k in ("total", "a", "b", "c", "d")] == [20, "<5", "x", 12, 0]
    prose = Ledger(5)
    people = prose.count("people", 302)
    prose.line(people, [prose.count("first", 300), prose.count("later", 2, internal=True)], prefer_total=True)
    prose.protect()
    assert (prose.value("people"), prose.value("first")) == ("x", 300)


def test_report_command_on_a_real_database(run_cli, make_patient, make_followup, tmp_path):
    make_followup(make_patient())
    result = run_cli("report", "--out", str(tmp_path / "rep"), extra_env={"EXPORT_KEY": "k" * 32})
    assert result.exit_code == 0, result.output
    assert "too small" in (tmp_path / "rep" / "report.md").read_text()


# -- conclusions follow the stated decision rules -----------------------------------------------------------------
def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n\n")[1].split("\n\n## ")[0]


def test_non_response_is_an_assumption_with_sensitivity_analyses_not_a_verdict(tmp_path):
    """Response driven by the alliance alone (MAR): no bias claim, no verdict; the assumption is stated and the
    imputation, the tipping point and the weights are shown, as they are when response does not depend on it."""
    for name, odds in (("alliance", 3.0), ("none", 1.0)):
        write_report(cohort(1000, 7, or_response=odds), tmp_path / name)
        md = (tmp_path / name / "report.md").read_text()
        who = _section(md, "Who answered")
        for claim in ("differ ", "biased", "no clear difference", "decision rule"):
            assert claim not in who
        assert "bias" not in md.replace("unbiased", "")
        assert "Assumption: answers missing at 30 days are missing at random given the alliance and the covariates" in md
        assert "| multiple imputation |" in md and "| inverse-probability weighting |" in md
        assert "Tipping point" in md and "effective sample size" in md and "stabilised weights" in md


def test_below_the_sample_size_rule_text_and_figures_are_descriptive(tmp_path):
    """The 16-patient study: few answers, and neither the text nor the figures say more than counts."""
    df = cohort(16, 3, base_response=0.6)
    payload = write_report(df, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert payload["too_small"] and payload["figures"] == ["fig1_funnel.png", "fig2_alliance.png"]
    before, rules = md.split("## Decision rules")[0], _section(md, "Decision rules")
    body = md.split("## Methods")[0].replace(rules, "")  # everything but the rules and the methods
    assert before and rules and "## Who answered" in body
    for inferential in ("CI", "Mann-Whitney", "p =", "p <", "weighted", "IPW", "differ", "odds ratio", "rho"):
        assert inferential not in body, inferential
    assert "the sample is too small for stable estimates, so none are shown" in md
    assert {p.name for p in tmp_path.glob("fig*.png")} == {"fig1_funnel.png", "fig2_alliance.png"}


@pytest.mark.parametrize("odds, words", [(2.0, "was associated with higher self-efficacy at 30 days"),
                                         (0.4, "was associated with lower self-efficacy at 30 days"),
                                         (1.0, "the data show no clear association")])
def test_the_primary_result_follows_its_confidence_interval(odds, words, tmp_path):
    payload = write_report(cohort(400, 12, or_efficacy=odds), tmp_path)
    r = next(r for r in payload["estimates"] if r["role"] == "primary")
    md = (tmp_path / "report.md").read_text()
    assert words in md and "effect" not in md.lower().replace("effective sample size", "")
    assert (r["ci_low"] > 0) == (odds == 2.0) and (r["ci_high"] < 0) == (odds == 0.4)


def test_the_mixed_model_says_how_many_participants_answered_twice(tmp_path):
    """The demo's shape: everyone answered at one time point; no random intercept is fitted on that."""
    df = pd.concat([cohort(150, 1, timepoints=(30,)), cohort(150, 2, timepoints=(90,))], ignore_index=True)
    payload = write_report(df, tmp_path)
    across = (tmp_path / "report.md").read_text().split("### Across time points\n\n")[1].split("\n\n")[0]
    assert across.startswith("0 participants answered self-efficacy at two or more of the time points 30 and 90 "
                             "days; the mixed model needs at least 30, so none is fitted")
    assert payload["mixed"]["fitted"] is False and payload["mixed"]["n_repeated"] == 0
    payload = write_report(cohort(200, 11, timepoints=(30, 90)), tmp_path / "twice")
    m = payload["mixed"]
    assert m["fitted"] and f"{m['n_repeated']} of them answering at two or more time points" in \
        (tmp_path / "twice" / "report.md").read_text()


# -- small fixes ------------------------------------------------------------------------------------------------
def test_an_empty_time_point_gives_one_sentence(tmp_path):
    from analysis.dataset import empty

    payload = write_report(empty(), tmp_path, timepoint=365)
    md = (tmp_path / "report.md").read_text()
    assert md.count("\n\n") == 1 and "There are no follow-ups at the 365-day time point in this dataset yet" in md
    assert payload["figures"] == [] and not list(tmp_path.glob("*.png"))
    assert "<h2>" not in (tmp_path / "report.html").read_text()


def test_a_time_point_nobody_answered_says_so_in_one_sentence_per_section(tmp_path):
    df = cohort(40, 2).assign(responded=0, status="no_reply")
    for col in ("self_efficacy", "mental_health", "physical_health", "self_efficacy_high", "mental_health_high",
                "physical_health_high"):
        df[col] = float("nan")
    write_report(df, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert _section(md, "Who answered") == "At 30 days there were 0 responders and 40 non-responders: " \
                                           "nobody answered."
    assert "Only 0 participants answered, fewer than 30" in md


def test_figures_stay_on_their_scales_and_draw_no_individual_answers(tmp_path):
    from analysis.report import build_report

    report = build_report(cohort(400, 1, timepoints=(30, 90)), tmp_path)
    drawn = {f.name: f.drawn for f in report.figures}
    assert all(d["points"] == 0 for d in drawn.values())  # no strip plots, no jitter
    assert drawn["fig3_self_efficacy.png"]["ylim"] == [[0, 10]]
    assert all(0 <= y <= 10 for line in drawn["fig3_self_efficacy.png"]["lines"] for y in line["y"])
    for name in ("fig4_health.png", "fig5_response.png"):
        assert drawn[name]["ylim"] == [[0, 1]]
        assert all(0 <= b["height"] <= 1 for b in drawn[name]["bars"])
        assert all(0 <= y <= 1 for line in drawn[name]["lines"] for y in line["y"])
    bars = drawn["fig2_alliance.png"]["bars"]
    assert all(b["height"] >= 5 for b in bars) and drawn["fig2_alliance.png"]["xticks"][-1] == "6 (ceiling)"
    assert all(int(t) % 5 == 0 for t in drawn["fig2_alliance.png"]["yticks"] if t.lstrip("−-").isdigit())


def test_the_report_names_its_interval_types(tmp_path):
    payload = write_report(cohort(400, 1, timepoints=(30, 90)), tmp_path)
    intervals = {r["interval"] for key in ("spearman", "estimates", "high_vs_other") for r in payload[key]}
    assert intervals == {"Fisher z, Bonett-Wright SE", "Wald", "Wald, robust (HC3) SE",
                         "Woolf (normal on the log odds ratio)"}
    assert payload["missing"]["ipw"]["interval"] == "Wald, robust (HC0) SE"
    assert payload["mixed"]["interval"] == "Wald, cluster-robust (sandwich) SE by participant"
    methods = (tmp_path / "report.md").read_text().split("## Methods")[1]
    assert "Wald 95% CIs" in methods and "No profile-likelihood intervals" in methods
    assert "Mantel's linear-by-linear association test" in methods and "Cochran-Armitage" not in methods


def test_the_report_needs_no_export_key(make_patient, make_followup, engine, tmp_path):
    """The report shows no pseudonyms: it reads the database with a throwaway key."""
    from analysis.report import report_dataset

    for _ in range(3):
        make_followup(make_patient())
    df = report_dataset(engine)
    assert len(df) == 3 and df["participant"].nunique() == 3
    payload = write_report(df, tmp_path)
    text = (tmp_path / "report.md").read_text() + (tmp_path / "stats.json").read_text()
    assert not any(p in text for p in df["participant"])
    assert payload["participants"]["targeted"] == "<5"


def test_a_report_of_another_time_point_calls_the_primary_model_secondary_there(tmp_path):
    df = cohort(400, 3, timepoints=(90,))
    payload = write_report(df, tmp_path, timepoint=90, primary_timepoint=30)
    md = (tmp_path / "report.md").read_text()
    assert payload["analysis_timepoint"] == 90 and payload["analysis_is_primary"] is False
    assert "Primary result" not in md and "not the pre-specified primary time point: a secondary result" in md
    assert "| primary model (secondary time point) |" in md
    assert "this report does not hold the pre-specified primary time point (30 days" in md


def cut_point_cohort(ors=(2.0, 2.1, 2.4, 6.3), seed: int = 3):
    """The 420-participant study with mental health drawn from one binary logistic model per cut point, the alliance
    odds ratios per SD differing as the issue found them (2.0, 2.1, 2.4, 6.3): proportional odds fail.  Physical
    health keeps its proportional odds."""
    import numpy as np

    from .test_report_recompute import study

    df = study(420, seed)
    per = df[df["episode"] == 1].drop_duplicates("participant")["alliance_mean"]
    z = ((df["alliance_mean"] - per.mean()) / per.std()).to_numpy()
    eta = np.array([2.2, 0.9, -0.4, -2.2])[None, :] + np.log(ors)[None, :] * z[:, None]
    above = np.minimum.accumulate(1 / (1 + np.exp(-eta)), axis=1)  # P(rating > k), never rising with k
    rating = 1.0 + (np.random.default_rng(seed).random(len(df))[:, None] < above).sum(axis=1)
    answered = df["mental_health"].notna()
    df.loc[answered, "mental_health"] = rating[answered.to_numpy()]
    df["mental_health_high"] = (df["mental_health"] >= 4).astype(float).where(answered)
    return df


def test_when_proportional_odds_fail_the_report_says_what_it_reports_and_how_to_read_it(tmp_path):
    """Issue 24: test the proportional-odds assumption and say what is done when it fails.  Methods says it (which
    estimate is reported, how to read it, why no partial proportional-odds model is fitted), and the results,
    where Brant's test fails, give the cut-point odds ratios with a reading of the actual numbers."""
    from analysis.report import PO_FAILS, PO_METHOD, _fmt

    stats = write_report(cut_point_cohort(), tmp_path)
    md = (tmp_path / "report.md").read_text()
    results, methods = md.split("\n## Methods\n")
    assert PO_METHOD in methods and "the estimate to read is the set of cut-point odds ratios" in PO_METHOD
    assert "A partial proportional-odds model" in PO_METHOD and "it is not fitted, because" in PO_METHOD
    mental = {r["adjusted"]: r for r in stats["estimates"] if r["outcome"] == "mental_health"}
    physical = {r["adjusted"]: r for r in stats["estimates"] if r["outcome"] == "physical_health"}
    assert all(r["brant"]["p"] < 0.05 for r in mental.values())  # the simulated cut points differ: Brant fails
    assert all(r["brant"]["p"] >= 0.05 for r in physical.values())  # proportional odds hold: it passes
    ors = mental[True]["brant"]["odds_ratios"]
    assert ors[-1] > 2 * max(ors[:-1]) and all(1 < o < 3 for o in ors[:-1])  # as simulated, roughly
    assert PO_FAILS in results
    for k, o in enumerate(ors, 1):  # the cut-point table: the estimate to read
        assert f"| mental health (1-5) | adjusted | better than {k} | {_fmt(o)} |" in results
    assert (f"How to read mental health (1-5) (adjusted): per SD of alliance, the odds of a rating better than very "
            f"good are {_fmt(ors[-1])} times as high, those of a rating better than poor {_fmt(ors[0])} times; every "
            "interval lies above 1") in results
    assert f"the proportional-odds odds ratio, {_fmt(mental[True]['estimate'])}, averages them" in results
    assert "How to read physical health" not in results
    assert "| physical health (1-5) | adjusted | better than" not in results
