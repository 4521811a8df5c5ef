"""The study dashboard (issue 22): the service on SQLite and PostgreSQL (its counts, rates and reply times against
the study that was seeded, the report's contact table and a fixed number of statements), the suppressed model on
hundreds of small studies (no count from 1 to 4, none that can be worked out), and the page as each role sees it,
with a scan of a researcher's pages for small counts, identifiers and message bodies."""
from __future__ import annotations

import datetime as dt
import html as htmlmod
import random
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event

from analysis import dashboard as dash
from benchmarks.dashboard_bench import PROFILES, delay_minutes, seed
from outreach.db import unit_of_work
from outreach.models import Job
from outreach.repository import OPEN_STATES
from outreach.states import JobState
from outreach.study.waves import ANSWERED, OUTCOMES

from .test_report_suppression import ledger_problems, small_counts_in_text

K = 5
OUTCOME_OF = {"completed": "completed", "partial_open": "partial", "partial_closed": "partial", "crisis": "crisis",
              "opted_out": "opted_out", "declined": "declined", "undeliverable": "undeliverable",
              "replied_no_answer": "replied_no_answer", "no_reply_open": "no_reply", "no_reply_closed": "no_reply",
              "not_sent": "no_reply"}
COUNTS = ["targeted", "sent", "delivered", "replied", *OUTCOMES, "open", "answered"]


def expected(counts: dict[tuple[int, str], int]) -> dict[int, dict[str, int]]:
    """What the dashboard should count, from the profiles the study was seeded with."""
    out: dict[int, dict[str, int]] = {}
    for (t, profile), n in counts.items():
        state, _, replied, invitation = PROFILES[profile]
        row = out.setdefault(t, {k: 0 for k in COUNTS})
        row["targeted"] += n
        row[OUTCOME_OF[profile]] += n
        row["sent"] += n * (invitation != "pending")
        row["delivered"] += n * (invitation == "delivered")
        row["replied"] += n * replied
        row["open"] += n * (state in OPEN_STATES)
        row["answered"] += n * (OUTCOME_OF[profile] in ANSWERED)
    return out


def reply_delays_of(counts: dict[tuple[int, str], int], t: int) -> list[int]:
    """The minutes to first reply that ``seed`` gives the follow-ups of time point ``t``."""
    delays, k = [], 0
    for (tp, profile), n in counts.items():
        if tp != t:
            continue
        for _ in range(n):
            if PROFILES[profile][2]:
                delays.append(delay_minutes(k))
            k += 1
    return delays


STUDY = {(30, "completed"): 23, (30, "partial_open"): 2, (30, "partial_closed"): 6, (30, "crisis"): 3,
         (30, "opted_out"): 5, (30, "declined"): 1, (30, "undeliverable"): 4, (30, "replied_no_answer"): 7,
         (30, "no_reply_open"): 9, (30, "no_reply_closed"): 11, (30, "not_sent"): 2,
         (90, "completed"): 12, (90, "partial_closed"): 8, (90, "no_reply_closed"): 14, (90, "opted_out"): 6}


# -- the service, on both databases ---------------------------------------------------------------------------------
def test_exact_counts_rates_and_reply_times_are_those_of_the_study(engine, session):
    seed(engine, STUDY)
    board = dash.study_dashboard(session, below=K, exact=True, timepoints=[30, 90, 180])
    want = expected(STUDY)
    rows = {r["timepoint"]: r for r in board.data["rows"]}
    assert sorted(rows) == [30, 90, 180]  # every configured time point, one without follow-ups yet
    for t, counts in want.items():
        assert {k: rows[t][k] for k in COUNTS} == counts, t
        assert sum(rows[t][c] for c in OUTCOMES) == rows[t]["targeted"]
        rate = counts["answered"] / counts["targeted"]
        assert rows[t]["response_rate"] == pytest.approx(rate)
        assert rows[t]["ci_low"] < rate < rows[t]["ci_high"]
        q = np.quantile(reply_delays_of(STUDY, t), [0.25, 0.5, 0.75], method="inverted_cdf")
        assert [rows[t]["reply_minutes"][k] for k in ("q1", "median", "q3")] == [float(x) for x in q]
    assert rows[180]["targeted"] == 0 and rows[180]["response_rate"] is None and rows[180]["reply_minutes"] is None


def test_the_outcomes_are_the_reports_contact_table(engine, session):
    """The dashboard and the report count the same research outcomes (one stay each: every follow-up is in the
    report's primary data)."""
    from analysis import results as rs
    from analysis.report import report_dataset

    seed(engine, STUDY)
    df = report_dataset(engine)
    report = rs.build(df, {"too_small": True}, below=K).ledger  # the report's counts, before suppression
    board = dash.study_dashboard(session, below=K, exact=True)
    for r in board.data["rows"]:
        for code in ["targeted", *OUTCOMES]:
            assert r[code] == report.cells[f"contact.{r['timepoint']}.{code}"].value, (r["timepoint"], code)


def test_the_number_of_statements_does_not_grow_with_the_study(engine, session):
    def statements(**kw) -> int:
        seen = []
        listener = lambda *a, **k: seen.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            from outreach.db import session_factory

            with session_factory(engine)() as s:
                dash.study_dashboard(s, below=K, **kw)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(seen)

    seed(engine, {(30, "completed"): 3, (30, "no_reply_open"): 2})
    small = [statements(exact=e, results=r) for e in (False, True) for r in (False, True)]
    seed(engine, {(t, p): 40 for t in (30, 90, 180) for p in PROFILES}, start=1000)
    assert [statements(exact=e, results=r) for e in (False, True) for r in (False, True)] == small


# -- the suppressed model on many small studies -------------------------------------------------------------------
def frames(counts: dict[tuple[int, str], int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three query results for a study of these profiles (as the queries return them on a seeded database)."""
    atoms: dict[tuple, int] = {}
    sends: dict[int, list[int]] = {}
    for (t, profile), n in counts.items():
        state, _, replied, invitation = PROFILES[profile]
        key = (t, OUTCOME_OF[profile], int(replied), int(state in OPEN_STATES))
        atoms[key] = atoms.get(key, 0) + n
        s = sends.setdefault(t, [0, 0])
        s[0] += n * (invitation != "pending")
        s[1] += n * (invitation == "delivered")
    a = pd.DataFrame([(*k, n) for k, n in atoms.items()], columns=["timepoint", "outcome", "replied", "open", "n"])
    d = pd.DataFrame([(t, *s) for t, s in sends.items()], columns=["timepoint", "sent", "delivered"])
    delays = [(t, m, 1) for t in {t for t, _ in counts} for m in reply_delays_of(counts, t)]
    h = pd.DataFrame(delays, columns=["timepoint", "minutes", "n"]).groupby(["timepoint", "minutes"],
                                                                           as_index=False)["n"].sum()
    return a, d, h


def published_problems(data: dict) -> list[str]:
    """What a reader of the published rows could see or work out: a count from 1 to 4, or a total minus the
    counts shown beside it from 1 to 4; a rate or interval of a hidden count; reply times of a small group."""
    problems = []
    small = lambda v: isinstance(v, int) and 0 < v < K  # noqa: E731
    for r in data["rows"]:
        t = r["timepoint"]
        problems += [f"{t} {k} = {r[k]}" for k in COUNTS if small(r[k])]
        for total, parts in (("targeted", list(OUTCOMES)), ("answered", list(ANSWERED)), ("targeted", ["sent"]),
                             ("sent", ["delivered"]), ("targeted", ["replied"]), ("targeted", ["open"]),
                             ("targeted", ["answered"])):
            if isinstance(r[total], int):
                rest = r[total] - sum(r[p] for p in parts if isinstance(r[p], int))
                hidden = [p for p in parts if not isinstance(r[p], int)]
                if 0 < rest < K and (hidden or len(parts) == 1):
                    problems.append(f"{t}: {total} minus {parts} = {rest}")
        if not (isinstance(r["targeted"], int) and isinstance(r["answered"], int)):
            if r["response_rate"] is not None or r["ci_low"] is not None:
                problems.append(f"{t}: a rate of a hidden count")
        if r["reply_minutes"] is not None and r["replied"] == f"<{K}":
            problems.append(f"{t}: reply times of fewer than {K}")
    return problems


def test_no_small_count_is_shown_or_can_be_worked_out_in_400_small_studies():
    rng = random.Random(22)
    profiles = list(PROFILES)
    suppressed_something = 0
    for i in range(400):
        size = rng.randint(1, 45)
        counts: dict[tuple[int, str], int] = {}
        for t in rng.sample([30, 90, 180], rng.randint(1, 3)):
            weights = [rng.random() ** 3 for _ in profiles]
            for p in rng.choices(profiles, weights, k=size):
                counts[(t, p)] = counts.get((t, p), 0) + 1
        m = dash.model(*frames(counts), below=K)
        found = published_problems(m.data) + ledger_problems(SimpleNamespace(model=m))
        assert not found, (counts, found[:5])
        exact = dash.model(*frames(counts), below=K, exact=True).data
        for r in exact["rows"]:
            assert {k: r[k] for k in COUNTS} == expected(counts)[r["timepoint"]]
        suppressed_something += any(not isinstance(r[k], int) for r in m.data["rows"] for k in COUNTS)
    assert suppressed_something > 100  # the cohorts were small enough to need it


def test_the_scan_finds_small_counts_when_nothing_is_suppressed():
    counts = {(30, "completed"): 20, (30, "crisis"): 2, (30, "no_reply_closed"): 9}
    assert published_problems(dash.model(*frames(counts), below=K, exact=True).data)
    assert not published_problems(dash.model(*frames(counts), below=K).data)


# -- charts ---------------------------------------------------------------------------------------------------------
def test_every_chart_has_a_text_alternative_with_what_it_draws():
    counts = {(30, "completed"): 30, (30, "no_reply_closed"): 20, (90, "completed"): 2, (90, "no_reply_open"): 30}
    m = dash.model(*frames(counts), below=K)
    charts = {c.id: c for c in [dash.funnel_chart(m.data, K), dash.response_chart(m.data),
                                dash.reply_time_chart(m.data)]}
    for c in charts.values():
        assert c.svg.startswith("<svg") and 'role="img"' in c.svg
        assert f'aria-labelledby="{c.id}-title {c.id}-desc"' in c.svg and f'<desc id="{c.id}-desc">' in c.svg
        assert "style=" not in c.svg and "<script" not in c.svg and "http" not in c.svg.replace(
            "http://www.w3.org/2000/svg", "")
    funnel = charts["funnel-chart"]
    assert "At 30 days: targeted 50, invitation sent 50" in funnel.description
    assert "answered <5" in funnel.description  # 90 days: two answered
    widths = [float(w) for w in re.findall(r'<rect[^>]* width="([\d.]+)"', funnel.svg)]
    assert max(widths) == pytest.approx(380) and len(widths) == 5 + 3  # no bar for the two hidden counts
    assert "At 30 days 60% answered (95% CI" in charts["response-chart"].description
    assert "At 90 days the rate is not shown" in charts["response-chart"].description
    assert "median time to the first reply" in charts["reply-time-chart"].description


# -- the page -------------------------------------------------------------------------------------------------------
SECRETS = ("D0000000", "D0000003", "4163000000", "3000003", "private reply words", "Hello from the study")


def visible_counts(page: str) -> list[int]:
    """Every whole number a reader sees in a table cell or drawn in a chart, and every count in running text."""
    cells = [c for c in re.findall(r"<t[dh][^>]*>\s*([^<]*?)\s*</t[dh]>", page)]
    drawn = re.findall(r"<text[^>]*>([^<]*)</text>", page)
    numbers = [int(c) for c in cells + drawn if re.fullmatch(r"\d+", c.strip())]
    text = htmlmod.unescape(re.sub(r"<[^>]+>", " ", page))
    return numbers + [int(m.split()[0]) for m in small_counts_in_text(text, K)]


def test_a_researchers_pages_hold_no_small_count_and_no_identifier(console_client, engine):
    seed(engine, STUDY)
    client = console_client("researcher")
    for path in ("/console/dashboard", "/console/", "/console/progress", "/console/account/two-factor"):
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        for secret in SECRETS:
            assert secret not in page, (path, secret)
        assert [n for n in visible_counts(page) if 0 < n < K] == [], path
    page = client.get("/console/dashboard").get_data(as_text=True)
    assert "&lt;5" in page and "Counts from 1 to 4 are shown as &lt;5" in page  # 30 days had small groups
    assert page.count('role="img"') == 3 and "/console/waves/" not in page


def test_a_coordinator_sees_exact_counts_and_the_waves(console_client, engine, sessions):
    from outreach.models import Wave

    seed(engine, STUDY)
    with unit_of_work(sessions) as s:
        s.add(Wave(timepoint_days=30, as_of=dt.date(2026, 7, 1), created_by="c@study.example.org"))
    page = console_client("coordinator").get("/console/dashboard").get_data(as_text=True)
    want = expected(STUDY)[30]
    row = re.search(r"<th scope=\"row\">30 days</th>(.*?)</tr>", page).group(1)
    shown = [int(x) for x in re.findall(r'<td class="count">(\d+)</td>', row)]
    assert shown == [want[k] for k in ["targeted", "sent", "delivered", "replied", *OUTCOMES, "open"]]
    assert "Exact counts" in page and 'href="/console/waves/' in page
    assert "Headline results" not in page  # the report's results are for the research roles


def test_the_old_progress_address_shows_the_dashboard_and_the_navigation_offers_only_the_dashboard(console_client):
    client = console_client("researcher")
    progress = client.get("/console/progress").get_data(as_text=True)
    assert "<h1>Study dashboard</h1>" in progress
    home = client.get("/console/").get_data(as_text=True)
    assert ">Dashboard</a>" in home and "Study progress" not in home
    assert "Latest waves" not in home and "Latest waves" in console_client("coordinator").get(
        "/console/").get_data(as_text=True)


def _report_job(sessions, jobs_path, df, **result) -> Job:
    from analysis.report import write_report

    with unit_of_work(sessions) as s:
        job = Job(kind="report", state=JobState.DONE, owner="r@study.example.org", owner_role="researcher",
                  params={}, progress=1.0, finished_at=dt.datetime(2026, 12, 1, 10, 0),
                  result={"files": {"report.zip": "report.zip"}, "timepoint": None, **result})  # as run_report
        s.add(job)
        s.flush()
        write_report(df, jobs_path / str(job.id) / "report", suppress_below=K)  # outreach.jobs.reports' folder
        return job


def test_researchers_and_admins_see_the_latest_reports_headline_results(console_client, sessions, jobs_path):
    from analysis.simulate import cohort

    for role in ("researcher", "admin"):
        none_yet = console_client(role).get("/console/dashboard").get_data(as_text=True)
        assert "No report has been generated in the console yet" in none_yet
    small = cohort(12, seed=4).assign(episode=1)
    _report_job(sessions, jobs_path, small)
    page = console_client("researcher").get("/console/dashboard").get_data(as_text=True)
    assert "too few for estimates" in page and "Spearman" not in page
    big = cohort(150, seed=5).assign(episode=1)
    _report_job(sessions, jobs_path, big)
    for role in ("researcher", "admin"):
        page = console_client(role).get("/console/dashboard").get_data(as_text=True)
        results = re.search(r'<section aria-labelledby="results-heading".*?</section>', page, re.S).group(0)
        assert "Spearman rho, alliance vs self efficacy" in results and "odds ratio per SD of alliance" in results
        assert "From the report generated 2026-12-01" in results
        assert [n for n in visible_counts(page) if 0 < n < K] == []


def test_counts_are_kept_for_a_while_and_made_again_in_the_background(engine, sessions):
    """A large study takes seconds to count: a request within ``max_age`` gets the counts already made (and when
    they were made); an older one is served them while a thread counts again, and the next request gets the new
    ones."""
    import time

    def board(max_age: float):
        with unit_of_work(sessions) as s:
            return dash.study_dashboard(s, below=K, exact=True, max_age=max_age)

    seed(engine, {(30, "completed"): 6})
    first = board(60)
    assert first.data["rows"][0]["targeted"] == 6 and first.counted_at is not None
    seed(engine, {(30, "completed"): 4}, start=1000)
    again = board(60)
    assert again.data == first.data and again.counted_at == first.counted_at
    stale = board(0.001)  # older than asked: served as they were, counted again meanwhile
    assert stale.data == first.data
    for _ in range(100):
        if engine not in dash._COUNTING:
            break
        time.sleep(0.1)
    fresh = board(60)
    assert fresh.data["rows"][0]["targeted"] == 10 and fresh.counted_at > first.counted_at
