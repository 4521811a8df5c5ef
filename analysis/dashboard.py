"""The study dashboard: per time point, the contact funnel with the research outcomes, the response rate with its
95% CI and the time from invitation to first reply, as one suppressed results model (:mod:`analysis.results`),
with server-drawn SVG charts that carry their own text alternative; and, for the research roles, the headline
results of the latest report (its own suppressed model, once its sample-size rule is met).

A fixed number of statements whatever the study's size: the follow-ups are counted in SQL, grouped by time
point, research outcome, "texted back" and "still open" (:func:`contact_atoms`); the invitations' delivery by time
point (:func:`deliveries`); the delay to the first reply in whole minutes (:func:`reply_delays`, a histogram: its
quartiles are read from it to the minute).

Suppression (``exact=False``, what a researcher sees): every published count is a cell of one ledger, tied to
the others by the arithmetic a reader could do.  The outcome columns add up to ``targeted``; ``replied`` and
``open`` are sums of cells of the (outcome × replied × open) table, which is never published (each of its
non-empty cells is an internal count; an empty one is treated as known to be empty, which can only hide more);
``sent`` is part of ``targeted`` and ``delivered`` part of ``sent``.  :meth:`Ledger.protect` then shows a count
from 1 to ``below - 1`` as ``<5`` and hides as ``x`` whatever would give one away.  The response rate and its
interval are published only when the counts they are made of are shown; the reply times only for a group of
``below`` or more whose count is not below the threshold.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Integer, and_, cast, distinct, func, select, text
from sqlalchemy.orm import Session

from outreach.clock import utcnow
from outreach.models import FollowUp, Job, Message, Wave
from outreach.repository import OPEN_STATES, research_followups
from outreach.states import Delivery, JobState
from outreach.study.waves import ANSWERED, OUTCOMES, funnels, outcome_case, usable_answers

from . import results as rs
from . import stats as st

FUNNEL = ["targeted", "sent", "delivered", "replied"]  # then every outcome, then open
log = logging.getLogger("outreach.dashboard")
LABELS = {"targeted": "targeted", "sent": "invitation sent", "delivered": "invitation delivered",
          "replied": "replied", "answered": "answered", "open": "open",
          **{code: code.replace("_", " ") for code in OUTCOMES}}


# -- query functions: the database in, one DataFrame per question out (aggregated in SQL) -----------------------
def _frame(session: Session, stmt) -> pd.DataFrame:
    result = session.execute(stmt)
    keys = list(result.keys())
    rows = result.fetchall()
    return pd.DataFrame(rows, columns=keys) if rows else pd.DataFrame({k: [] for k in keys})


def contact_atoms(session: Session) -> pd.DataFrame:
    """Follow-ups per (time point, research outcome, texted back, still open): columns timepoint, outcome, replied
    (0/1), open (0/1), n.  One statement."""
    answered = usable_answers().subquery()
    per_followup = (select(FollowUp.timepoint_days.label("timepoint"),
                           outcome_case(FollowUp.state, answered.c.followup_id.is_not(None),
                                        FollowUp.last_inbound_at.is_not(None)).label("outcome"),
                           FollowUp.last_inbound_at.is_not(None).label("replied"),
                           FollowUp.state.in_(OPEN_STATES).label("open"))
                    .outerjoin(answered, answered.c.followup_id == FollowUp.id)
                    .where(research_followups()).subquery())  # not the alliance check-ins during a stay
    c = per_followup.c
    df = _frame(session, select(c.timepoint, c.outcome, c.replied, c.open, func.count().label("n"))
                .group_by(c.timepoint, c.outcome, c.replied, c.open))
    return df.astype({"timepoint": "int64", "replied": "int64", "open": "int64", "n": "int64"})


def deliveries(session: Session) -> pd.DataFrame:
    """Per time point: follow-ups whose invitation went out (``sent``) and reached the phone (``delivered``).
    One statement."""
    stmt = (select(FollowUp.timepoint_days.label("timepoint"),
                   func.count(distinct(Message.followup_id)).filter(Message.provider_sid.is_not(None)).label("sent"),
                   func.count(distinct(Message.followup_id)).filter(
                       Message.status.in_(Delivery.REACHED_THE_PHONE)).label("delivered"))
            .join(Message, and_(Message.followup_id == FollowUp.id, Message.kind == "invitation"))
            .where(research_followups())
            .group_by(FollowUp.timepoint_days))
    return _frame(session, stmt).astype("int64")


def _minutes_between(session: Session, later, earlier):
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", later - earlier) / 60), Integer)
    # truncated (>= 0 here), after a few milliseconds' allowance for julianday's floating point
    return cast((func.julianday(later) - func.julianday(earlier)) * 1440 + 0.0001, Integer)


def reply_delays(session: Session) -> pd.DataFrame:
    """How long after its invitation each follow-up got its first text back, as a histogram in whole minutes:
    columns timepoint, minutes, n.  A coordinator's preview is not a patient's reply.  One statement."""
    first = (select(Message.followup_id, func.min(Message.created_at).label("first_in"))
             .where(Message.direction == "in", Message.followup_id.is_not(None), Message.preview.is_(False))
             .group_by(Message.followup_id).subquery())
    per = (select(FollowUp.timepoint_days.label("timepoint"),
                  _minutes_between(session, first.c.first_in, FollowUp.invited_at).label("minutes"))
           .join(first, first.c.followup_id == FollowUp.id)
           .where(FollowUp.invited_at.is_not(None), first.c.first_in >= FollowUp.invited_at, research_followups())
           .subquery())
    df = _frame(session, select(per.c.timepoint, per.c.minutes, func.count().label("n"))
                .group_by(per.c.timepoint, per.c.minutes))
    return df.astype("int64")


def latest_report(session: Session, jobs_dir: Path | None = None) -> tuple[dict[str, Any] | None, Job | None]:
    """The stats.json payload of the newest report generated in the console for every time point (a finished
    ``report`` job whose files are still kept), and its job; (None, None) when there is none.  The payload is the
    report's own resolved, suppressed model.  One statement (and one file read)."""
    job = session.scalars(select(Job).where(Job.kind == "report", Job.state == JobState.DONE,
                                            Job.files_deleted_at.is_(None))
                          .order_by(Job.finished_at.desc(), Job.id.desc()).limit(5)).all()
    for j in job:
        if (j.params or {}).get("timepoint") not in (None, "", "all"):
            continue
        payload = report_payload(j.result, jobs_dir, j.id)
        if payload is not None and payload.get("timepoint") is None:
            return payload, j
    return None, None


def report_payload(result: Any, jobs_dir: Path | None = None, job_id: int | None = None) -> dict[str, Any] | None:
    """A report job's stats.json payload, wherever its result keeps it: the payload itself, under a key, or the
    path of ``stats.json`` or of the folder holding it (absolute, or under ``jobs_dir``)."""
    def is_payload(x: Any) -> bool:
        return isinstance(x, dict) and "participants" in x and "too_small" in x

    if is_payload(result):
        return result
    candidates: list[Path] = []
    values = list(result.values()) if isinstance(result, dict) else [result]
    if isinstance(result, dict) and isinstance(result.get("files"), dict):  # outreach.jobs: name -> path in its folder
        values += [str(Path(str(job_id)) / v) for v in result["files"].values() if isinstance(v, str)]
    for v in values:
        if is_payload(v):
            return v
        if isinstance(v, str) and v and len(v) < 1000:
            p = Path(v)
            candidates += [p] if p.is_absolute() else ([jobs_dir / p] if jobs_dir else [])
    if jobs_dir is not None and job_id is not None:
        candidates += [jobs_dir / str(job_id), jobs_dir / f"job-{job_id}", jobs_dir / f"job_{job_id}"]
    for p in candidates:
        for f in ([p] if p.name == "stats.json" else [p / "stats.json", p / "report" / "stats.json",
                                                      p.with_suffix("") / "stats.json"]):
            try:
                if f.is_file():
                    data = json.loads(f.read_text(encoding="utf-8"))
                    if is_payload(data):
                        return data
            except (OSError, ValueError):
                continue
    return None


def count_all(session: Session) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[int, dict[str, float]]]:
    """The three query results the model is built from, and every wave's funnel (``waves status``)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))  # compiling these short plans costs more than it saves
    return contact_atoms(session), deliveries(session), reply_delays(session), funnels(session)


# Counting a large study takes seconds (every follow-up, answer and text is read), so the counts are kept per
# database engine and counted again in a thread of their own when older than ``max_age``: the request that finds
# them old is served the previous counts, and says when they were made.  Only a process's first request waits
# (at most ``wait`` seconds; the page then says the counts are being made and reloads itself).
_LOCK = threading.Lock()
_COUNTED: "weakref.WeakKeyDictionary[Any, tuple[float, dt.datetime, tuple]]" = weakref.WeakKeyDictionary()
_COUNTING: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _count_in_thread(engine) -> None:
    try:
        with Session(engine) as s, s.begin():
            frames = count_all(s)
        with _LOCK:
            _COUNTED[engine] = (time.monotonic(), utcnow(), frames)
    except Exception:  # logged; the next request tries again
        log.exception("counting the study for the dashboard failed")
    finally:
        with _LOCK:
            _COUNTING.discard(engine)


def counts(session: Session, max_age: float = 0, wait: float = 1.5) -> tuple[tuple | None, dt.datetime | None]:
    """The query results and when they were made: now (``max_age`` 0), or at most ``max_age`` seconds ago (then
    counted again in a thread); (None, None) while a first count takes longer than ``wait`` seconds."""
    if max_age <= 0:
        return count_all(session), utcnow()
    engine = session.get_bind().engine
    with _LOCK:
        hit = _COUNTED.get(engine)
        start = (hit is None or time.monotonic() - hit[0] >= max_age) and engine not in _COUNTING
        if start:
            _COUNTING.add(engine)
    if start:
        thread = threading.Thread(target=_count_in_thread, args=(engine,), name="dashboard-count", daemon=True)
        thread.start()
        if hit is None:
            thread.join(wait)
    with _LOCK:
        hit = _COUNTED.get(engine)
    return (hit[2], hit[1]) if hit else (None, None)


# -- the model -------------------------------------------------------------------------------------------------
def quartiles(hist: pd.DataFrame) -> tuple[int, float | None, float | None, float | None]:
    """(n, Q1, median, Q3) of a histogram with columns minutes, n (each quantile: the smallest value with at least
    that share of the group at or below it)."""
    if hist.empty or int(hist["n"].sum()) == 0:
        return 0, None, None, None
    h = hist.sort_values("minutes")
    total = int(h["n"].sum())
    cum = h["n"].cumsum().to_numpy()
    values = h["minutes"].to_numpy()

    def q(p: float) -> float:
        return float(values[int((cum >= p * total).argmax())])

    return total, q(0.25), q(0.5), q(0.75)


def build(atoms: pd.DataFrame, delivered: pd.DataFrame, delays: pd.DataFrame, *, below: int = 5,
          timepoints: list[int] | None = None) -> rs.Model:
    """Every count of the dashboard in one ledger (protected by the caller for the research roles)."""
    ledger = rs.Ledger(below)
    by_tp: dict[int, dict[str, list[tuple[int, int, int]]]] = {}  # time point -> outcome -> [(replied, open, n)]
    for t, code, r, o, n in atoms[["timepoint", "outcome", "replied", "open", "n"]].itertuples(index=False):
        if n:
            by_tp.setdefault(int(t), {}).setdefault(code, []).append((int(r), int(o), int(n)))
    sends = {int(t): (int(a), int(b)) for t, a, b in delivered[["timepoint", "sent", "delivered"]]
             .itertuples(index=False)}
    hist = {int(t): h[["minutes", "n"]] for t, h in delays.groupby("timepoint")} if len(delays) else {}
    points = sorted(set(by_tp) | set(timepoints or []))
    rows = []
    for t in points:
        split = by_tp.get(t, {})
        key = f"tp{t}"
        targeted = ledger.count(f"{key}.targeted", sum(n for parts in split.values() for _, _, n in parts), cost=8)
        cells = {code: ledger.count(f"{key}.{code}", sum(n for _, _, n in split.get(code, [])), cost=2)
                 for code in OUTCOMES}
        ledger.line(targeted, cells.values())
        atom = {}  # (outcome, replied, open) -> the cell that counts it
        for code, parts in split.items():
            if len(parts) == 1:  # one kind of follow-up: the outcome's count itself
                atom[(code, *parts[0][:2])] = cells[code].key
            else:  # its follow-ups differ in replied/open: its parts, never published
                refs = [ledger.count(f"{key}.{code}.r{r}.o{o}", n, internal=True) for r, o, n in parts]
                ledger.line(cells[code], refs)
                atom.update({(code, r, o): ref.key for (r, o, _), ref in zip(parts, refs)})
        flags = {}
        for i, flag in ((0, "replied"), (1, "open")):
            parts = [k for (code, *ro), k in atom.items() if ro[i] == 1]
            flags[flag] = ledger.count(f"{key}.{flag}", sum(ledger.cells[k].value for k in parts), cost=3)
            if parts:
                ledger.line(flags[flag], parts)
            ledger.related(targeted, flags[flag])
        answered = ledger.count(f"{key}.answered", sum(ledger.cells[cells[c].key].value for c in ANSWERED), cost=3)
        ledger.line(answered, [cells[c] for c in ANSWERED])
        # targeted minus answered: the follow-ups without an answer, never published but easily worked out
        unanswered = ledger.count(f"{key}.unanswered", sum(ledger.cells[cells[c].key].value for c in OUTCOMES
                                                           if c not in ANSWERED), internal=True)
        ledger.line(targeted, [answered, unanswered])
        ledger.line(unanswered, [cells[c] for c in OUTCOMES if c not in ANSWERED])
        n_sent, n_delivered = sends.get(t, (0, 0))
        sent = ledger.count(f"{key}.sent", n_sent, cost=3)
        reached = ledger.count(f"{key}.delivered", n_delivered, cost=3)
        ledger.related(targeted, sent)
        ledger.related(sent, reached)
        n_t, answered_n = ledger.cells[targeted.key].value, ledger.cells[answered.key].value
        rate, lo, hi = st.wilson(answered_n, n_t)
        timed, q1, med, q3 = quartiles(hist.get(t, pd.DataFrame({"minutes": [], "n": []})))
        rows.append({"timepoint": t, "targeted": targeted, "sent": sent, "delivered": reached,
                     "replied": flags["replied"], **cells, "open": flags["open"], "answered": answered,
                     "response_rate": rs.derived(rate, targeted, answered),
                     "ci_low": rs.derived(lo, targeted, answered), "ci_high": rs.derived(hi, targeted, answered),
                     "reply_minutes": rs.derived({"q1": q1, "median": med, "q3": q3} if timed >= below else None,
                                                 flags["replied"], strict=False)})
    return rs.Model(ledger, {"suppress_below": below, "timepoints": points, "outcomes": list(OUTCOMES),
                             "rows": rows})


def model(atoms: pd.DataFrame, delivered: pd.DataFrame, delays: pd.DataFrame, *, below: int = 5, exact: bool = False,
          timepoints: list[int] | None = None) -> rs.Model:
    """Build, protect (unless ``exact``) and resolve."""
    m = build(atoms, delivered, delays, below=below, timepoints=timepoints)
    if not exact:
        for key, n in rs._uses(m.tree).items():  # hiding a count also hides the rates made from it
            m.ledger.cells[key].cost += n
        m.ledger.protect()
    m.resolve()
    return m


# -- charts: hand-drawn SVG, each with a title and a description (its text alternative) -------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _shown(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def duration(minutes: float | None) -> str:
    """Minutes in words a reader takes in at a glance: 45 min, 3.5 h, 2.1 days."""
    if minutes is None:
        return "–"
    if minutes < 60:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


@dataclass
class Chart:
    id: str
    title: str
    description: str  # the text alternative: every number the chart draws, in words
    svg: str


def _svg(cid: str, title: str, desc: str, width: int, height: int, body: list[str]) -> Chart:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'aria-labelledby="{cid}-title {cid}-desc" font-family="sans-serif" font-size="13">'
           f'<title id="{cid}-title">{_e(title)}</title><desc id="{cid}-desc">{_e(desc)}</desc>'
           + "".join(body) + "</svg>")
    return Chart(cid, title, desc, svg)


COLORS = {"targeted": "#5d6b7a", "sent": "#1d70b8", "delivered": "#0b5394", "replied": "#2e7d32",
          "answered": "#1b5e20"}


def funnel_chart(data: dict[str, Any], below: int) -> Chart:
    """Horizontal bars per time point: targeted, sent, delivered, replied, answered.  A hidden count has no bar,
    only its mark (<5 or x)."""
    stages = ["targeted", "sent", "delivered", "replied", "answered"]
    rows = data["rows"]
    top = max([r["targeted"] for r in rows if _shown(r["targeted"])] + [1])
    label_w, bar_w, line_h = 170, 380, 20
    height = 20 + sum(len(stages) * line_h + 30 for _ in rows)
    body, words, y = [], [], 10
    for r in rows:
        body.append(f'<text x="0" y="{y + 14}" font-weight="bold" fill="#0b0c0c">{r["timepoint"]} days</text>')
        y += 22
        parts = []
        for s in stages:
            v = r[s]
            body.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" fill="#0b0c0c">{_e(LABELS[s])}</text>')
            if _shown(v):
                w = round(bar_w * v / top, 1)
                body.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{line_h - 6}" fill="{COLORS[s]}">'
                            f'<title>{_e(LABELS[s])}: {v}</title></rect>')
                body.append(f'<text x="{label_w + w + 6}" y="{y + 14}" fill="#0b0c0c">{v}</text>')
            else:
                body.append(f'<text x="{label_w + 6}" y="{y + 14}" fill="#0b0c0c">{_e(v)} (hidden)</text>')
            parts.append(f"{LABELS[s]} {v}")
            y += line_h
        y += 8
        words.append(f"At {r['timepoint']} days: " + ", ".join(parts) + ".")
    hidden = f" Counts from 1 to {below - 1} are shown as <{below}; x is a count hidden so that none can be worked out."
    desc = (" ".join(words) or "No follow-ups yet.") + (hidden if any(not _shown(r[s]) for r in rows for s in stages)
                                                        else "")
    return _svg("funnel-chart", "Contact funnel per time point (follow-ups)", desc, label_w + bar_w + 80, max(height, 40),
                body)


def response_chart(data: dict[str, Any]) -> Chart:
    """The response rate of each time point as a point with its 95% Wilson interval, on a 0-100% axis."""
    rows = data["rows"]
    left, width, line_h = 90, 400, 34
    height = 40 + line_h * max(len(rows), 1)
    body = []
    for tick in (0, 25, 50, 75, 100):
        x = left + width * tick / 100
        body.append(f'<line x1="{x}" y1="10" x2="{x}" y2="{height - 24}" stroke="#d0d5da"/>')
        body.append(f'<text x="{x}" y="{height - 8}" text-anchor="middle" fill="#0b0c0c">{tick}%</text>')
    words = []
    for i, r in enumerate(rows):
        y = 28 + i * line_h
        body.append(f'<text x="{left - 10}" y="{y + 5}" text-anchor="end" fill="#0b0c0c">{r["timepoint"]} days</text>')
        if r["response_rate"] is None:
            body.append(f'<text x="{left + 6}" y="{y + 5}" fill="#0b0c0c">not shown</text>')
            words.append(f"At {r['timepoint']} days the rate is not shown"
                         + (" (nobody was targeted)." if r["targeted"] == 0 else " (a count it is made of is hidden)."))
            continue
        x = left + width * r["response_rate"]
        x0, x1 = left + width * r["ci_low"], left + width * r["ci_high"]
        body.append(f'<line x1="{x0:.1f}" y1="{y}" x2="{x1:.1f}" y2="{y}" stroke="#0b5394" stroke-width="2"/>')
        for xe in (x0, x1):
            body.append(f'<line x1="{xe:.1f}" y1="{y - 6}" x2="{xe:.1f}" y2="{y + 6}" stroke="#0b5394" '
                        'stroke-width="2"/>')
        body.append(f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="#0b5394"/>')
        words.append(f"At {r['timepoint']} days {pct(r['response_rate'])} answered "
                     f"(95% CI {pct(r['ci_low'])} to {pct(r['ci_high'])}).")
    return _svg("response-chart", "Response rate per time point, with its 95% confidence interval",
                " ".join(words) or "No follow-ups yet.", left + width + 30, height, body)


def reply_time_chart(data: dict[str, Any]) -> Chart:
    """Time from invitation to first reply per time point: a box from the first to the third quartile with the
    median, on an axis in hours."""
    rows = data["rows"]
    left, width, line_h = 90, 400, 34
    height = 40 + line_h * max(len(rows), 1)
    shown = [r["reply_minutes"] for r in rows if r["reply_minutes"]]
    top_h = max([q["q3"] / 60 for q in shown] + [1.0]) * 1.1
    step = next(s for s in (1, 2, 6, 12, 24, 48, 72, 168, 336, 720, 10 ** 6) if top_h / s <= 5)
    top_h = step * (int(top_h / step) + 1)
    body = []
    for k in range(int(top_h / step) + 1):
        hours = k * step
        x = left + width * hours / top_h
        body.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 24}" stroke="#d0d5da"/>')
        body.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" fill="#0b0c0c">'
                    f'{hours if hours < 48 else hours // 24}{" h" if hours < 48 else " d"}</text>')
    words = []
    for i, r in enumerate(rows):
        y = 28 + i * line_h
        body.append(f'<text x="{left - 10}" y="{y + 5}" text-anchor="end" fill="#0b0c0c">{r["timepoint"]} days</text>')
        q = r["reply_minutes"]
        if not q:
            body.append(f'<text x="{left + 6}" y="{y + 5}" fill="#0b0c0c">not shown</text>')
            words.append(f"At {r['timepoint']} days the reply times are not shown (too few replies).")
            continue
        x = {k: left + width * q[k] / 60 / top_h for k in ("q1", "median", "q3")}
        body.append(f'<rect x="{x["q1"]:.1f}" y="{y - 9}" width="{max(x["q3"] - x["q1"], 1):.1f}" height="18" '
                    'fill="#cfe3f5" stroke="#0b5394"/>')
        body.append(f'<line x1="{x["median"]:.1f}" y1="{y - 11}" x2="{x["median"]:.1f}" y2="{y + 11}" '
                    'stroke="#0b0c0c" stroke-width="3"/>')
        words.append(f"At {r['timepoint']} days the median time to the first reply is {duration(q['median'])} "
                     f"(quartiles {duration(q['q1'])} and {duration(q['q3'])}).")
    return _svg("reply-time-chart", "Time from invitation to first reply: median and quartiles",
                " ".join(words) or "No follow-ups yet.", left + width + 30, height, body)


# -- the service -----------------------------------------------------------------------------------------------
@dataclass
class Dashboard:
    exact: bool  # counts as they are (coordinators, admins) or suppressed (researchers)
    below: int
    data: dict[str, Any] | None  # the resolved model (every count an int or "<5"/"x", every rate a float or None);
    charts: list[Chart]  # None while a first count is still being made
    counted_at: dt.datetime | None = None
    results: list[str] | None = None  # the latest report's headline results, when asked for and the rule is met
    results_status: str | None = None  # why there are none, in words
    report_generated: dt.datetime | None = None
    report_people: dict[str, Any] | None = None  # participants targeted / answered, as that report publishes them
    waves: list[Wave] = field(default_factory=list)  # exact roles: the waves with their funnels
    wave_funnels: dict[int, dict[str, float]] = field(default_factory=dict)


def headline(payload: dict[str, Any]) -> list[str]:
    """The report's headline results, as its summary prints them (from its suppressed model)."""
    from .summary import summary_lines

    return summary_lines(payload)


def study_dashboard(session: Session, *, below: int = 5, exact: bool = False, results: bool = False,
                    timepoints: list[int] | None = None, jobs_dir: Path | None = None, max_age: float = 0,
                    wait: float = 1.5) -> Dashboard:
    """What the dashboard shows: counts exact (``exact``) or suppressed at ``below``, made now or at most
    ``max_age`` seconds ago (:func:`counts`); with ``results``, the latest report's headline results; with
    ``exact``, the waves and their funnels.  A fixed number of statements: five to count (none when the counts are
    recent), one more for ``results``, one more for ``exact``."""
    frames, counted_at = counts(session, max_age, wait)
    if frames is None:
        board = Dashboard(exact, below, None, [])
    else:
        data = model(*frames[:3], below=below, exact=exact, timepoints=timepoints).data
        board = Dashboard(exact, below, data, [funnel_chart(data, below), response_chart(data),
                                               reply_time_chart(data)], counted_at)
    if results:
        payload, job = latest_report(session, jobs_dir)
        if payload is None:
            board.results_status = ("No report has been generated in the console yet (or its files were deleted "
                                    "after the days they are kept): generate one on the Report page.")
        else:
            board.report_generated = job.finished_at
            board.report_people = payload.get("participants")
            if payload.get("too_small"):
                board.results_status = (f"Fewer than {payload.get('min_responders', st.MIN_RESPONDERS)} participants "
                                        "had answered when the report was generated: too few for estimates, so "
                                        "there are no headline results yet.")
            else:
                board.results = headline(payload)
    if exact:
        board.waves = list(session.scalars(select(Wave).order_by(Wave.id.desc())))
        board.wave_funnels = frames[3] if frames is not None else {}
    return board
