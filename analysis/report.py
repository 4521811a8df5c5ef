"""The researchers' report: report.md, report.html (figures embedded), stats.json and PNG figures.

Every number comes from one suppressed results model (:mod:`analysis.results`):
counts from 1 to SUPPRESS_BELOW-1 are shown as ``<5``, a count that a total
would give away is hidden as ``x``, and no share, mean, interval or plotted
element is shown for a group whose count is hidden.  Everything but the
readmission sensitivity analysis describes each participant's first treatment
episode in the data (``stats.first_episodes``).  Conclusions follow the
decision rules stated in the report (:mod:`analysis.stats`).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from outreach.study.waves import OUTCOMES

from . import results as rs
from .codebook import suppression_method, suppression_text
from . import stats as st

TERTILES = ["low", "mid", "high"]
TITLE = "Therapeutic alliance at discharge and outcomes after discharge"


def label(code: str) -> str:
    """An outcome code as the table, the figure and the codebook name it."""
    return code.replace("_", " ")


# -- document model: rendered to Markdown and HTML from one source -----------------------------------------------
def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if 0 < abs(x) < 0.5 * 10 ** -digits:  # not 0.00 for a bound that is not 0 (the rules compare with 0)
            return f"{x:.1g}"
        return f"{x:.{digits}f}"
    return str(x)


def _p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _p_eq(p: float | None) -> str:
    """``p = 0.012`` or ``p < 0.001`` for running text."""
    text = _p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _ci(lo: float | None, hi: float | None) -> str:
    return f"{_fmt(lo)} to {_fmt(hi)}" if lo is not None and hi is not None else "–"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _days(points: list[int]) -> str:
    """30 days, 30 and 90 days, 30, 90 and 180 days."""
    words = [str(p) for p in points]
    return (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)) + " days"


def _c(v: Any) -> str:
    """A published count: an int, ``<5`` or ``x``."""
    return "–" if v is None else str(v)


class Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def img(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", (Path(path), alt)))

    def markdown(self) -> str:
        out = []
        for kind, b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + b[1])
            elif kind == "p":
                out.append(b)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in b))
            elif kind == "table":
                header, rows = b
                out.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" +
                           "\n".join("| " + " | ".join(r) + " |" for r in rows))
            elif kind == "img":
                out.append(f"![{b[1]}]({b[0].name})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        """One self-contained file: the figures are embedded as data URIs, so it can be e-mailed alone."""
        out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
               "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
               "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}"
               "</style></head><body>"]
        for kind, b in self.blocks:
            if kind == "h":
                out.append(f"<h{b[0]}>{html.escape(b[1])}</h{b[0]}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(b)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b) + "</ul>")
            elif kind == "table":
                header, rows = b
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" +
                           "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                   for r in rows) + "</table>")
            elif kind == "img":
                data = base64.b64encode(b[0].read_bytes()).decode("ascii")
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b[1])}'>"
                           f"<figcaption>{html.escape(b[1])}</figcaption></figure>")
        return "\n".join(out) + "</body></html>\n"


# -- figures: drawn from the model only -----------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _key(x: Any) -> str:
    return x.key if isinstance(x, rs.Ref) else str(x)


def _gid(kind: str, *refs: Any) -> str:
    """What a drawn element shows, for the suppression tests: ``count:KEY`` (its length is that count),
    ``share:KEYS`` (a share or interval of those counts: drawn only when all are shown) or ``group:KEYS`` (a
    summary of a group: drawn only when none is below the threshold)."""
    return f"{kind}:" + ",".join(_key(r) for r in refs)


def _shown(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count_axis(axis, top: float, below: int) -> None:
    """Ticks of a count axis at multiples of ``below`` (a scale of 1, 2, 3, 4 participants would read as counts)."""
    steps = [s * below for s in (1, 2, 4, 10, 20, 40, 100, 200, 400, 1000, 2000, 4000, 10000, 20000)]
    step = next((s for s in steps if top / s <= 6), steps[-1])
    axis.set_ticks(np.arange(0, top + step, step))


def drawn(fig) -> dict[str, Any]:
    """What a figure shows, read back from its artists: bars, lines, points and every text."""
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Rectangle

    out: dict[str, Any] = {"bars": [], "lines": [], "points": 0, "texts": []}
    for ax in fig.axes:
        for patch in ax.patches:
            if isinstance(patch, Rectangle) and patch.get_gid():
                out["bars"].append({"gid": patch.get_gid(), "height": float(patch.get_height()),
                                    "width": float(patch.get_width()), "x": float(patch.get_x()),
                                    "y": float(patch.get_y())})
        for line in ax.lines:
            if line.get_gid():
                out["lines"].append({"gid": line.get_gid(), "x": [float(v) for v in line.get_xdata()],
                                     "y": [float(v) for v in line.get_ydata()]})
        for coll in ax.collections:
            if isinstance(coll, PathCollection):
                out["points"] += len(coll.get_offsets())
        texts = list(ax.texts) + [ax.title, ax.xaxis.label, ax.yaxis.label]
        out["texts"] += [t.get_text() for t in texts if t.get_text()]
        for name, labels in (("xticks", ax.get_xticklabels()), ("yticks", ax.get_yticklabels())):
            out[name] = out.get(name, []) + [t.get_text() for t in labels if t.get_text()]
        legend = ax.get_legend()
        if legend:
            out["texts"] += [t.get_text() for t in legend.get_texts()]
        out.setdefault("ylim", []).append([float(v) for v in ax.get_ylim()])
        out.setdefault("xlim", []).append([float(v) for v in ax.get_xlim()])
    out["texts"] += [t.get_text() for t in fig.texts]
    if getattr(fig, "_suptitle", None) is not None:
        out["texts"].append(fig._suptitle.get_text())
    return out


@dataclass
class Figure:
    name: str
    caption: str
    path: Path
    drawn: dict[str, Any] = field(default_factory=dict)


def figures(model: rs.Model, out: Path) -> list[Figure]:
    """Only what the text may show: counts and descriptive figures always; outcome figures above the sample-size
    rule.  Nothing is drawn for a hidden count or a group with one: no bar, no box, no point."""
    plt = _plt()
    data, tree, below = model.data, model.tree, model.ledger.below
    made: list[Figure] = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        info = drawn(fig)
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        made.append(Figure(name, caption, out / name, info))

    rows, trows = data["contact"]["rows"], tree["contact"]["rows"]
    if rows:  # 1. contact: every outcome code per time point, as in the table
        codes = ["targeted"] + data["contact"]["columns"]
        fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.35 * len(codes) * len(rows)))
        y = 0.0
        ticks, names = [], []
        top = max([r["targeted"] for r in rows if _shown(r["targeted"])] + [1])
        for r, tr in zip(rows, trows):
            for code in codes:
                v = r[code]
                if _shown(v) and v:
                    ax.barh(y, v, height=0.8, color="#4878a8" if code == "targeted" else "#8fb0d3",
                            gid=_gid("count", tr[code]))
                ax.text(v if _shown(v) else 0, y, f" {_c(v)}", va="center", fontsize=8)
                ticks.append(y)
                names.append(f"{r['timepoint']} days: {label(code)}" if code == "targeted" else label(code))
                y += 1
            y += 0.6
        ax.set_yticks(ticks, names, fontsize=8)
        ax.invert_yaxis()
        _count_axis(ax.xaxis, top, below)
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("participants (one follow-up each)")
        ax.set_title("Contact per time point: research outcome of every follow-up")
        save(fig, "fig1_funnel.png", "Contact per time point: the research outcome of every follow-up "
                                      "(the outcome columns add up to targeted)")

    bins, tbins = data["alliance"].get("histogram") or [], tree["alliance"].get("histogram") or []
    if bins and all(_shown(b["count"]) for b in bins):  # 2. alliance: bins of at least `below` people
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = [("6 (ceiling)" if b["low"] == b["high"] else
                  f"{b['low']:g} to {b['high']:g}" + (" incl. 6" if i == len(bins) - 1 else ""))
                 for i, b in enumerate(bins)]
        for i, (b, tb) in enumerate(zip(bins, tbins)):
            ax.bar(i, b["count"], color="#c44e52" if b["low"] == b["high"] else "#4878a8",
                   gid=_gid("count", tb["count"]))
            ax.text(i, b["count"], str(b["count"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(bins)), names, fontsize=8)
        _count_axis(ax.yaxis, max(b["count"] for b in bins), below)
        ax.set_ylim(0, max(b["count"] for b in bins) * 1.15)
        ax.set_xlabel(f"alliance mean score at discharge (0-6), bins of at least {below} participants")
        ax.set_ylabel("participants")
        ax.set_title("Alliance at discharge (red: the ceiling of 6)")
        save(fig, "fig2_alliance.png", f"Distribution of the alliance score at discharge in bins of at least {below} "
                                       "participants (red: the ceiling)")

    if data["too_small"]:
        return made

    se, tse = data.get("self_efficacy_by_tertile") or {}, tree.get("self_efficacy_by_tertile") or {}
    boxes = [(i, t) for i, t in enumerate(TERTILES, 1) if se.get(t) and se[t]["quantiles_10_25_50_75_90"]]
    if boxes:  # 3. self-efficacy by tertile: percentiles only, no individual points
        fig, ax = plt.subplots(figsize=(6, 4))
        stats = [{"whislo": q[0], "q1": q[1], "med": q[2], "q3": q[3], "whishi": q[4], "label": t}
                 for _, t in boxes for q in [se[t]["quantiles_10_25_50_75_90"]]]
        art = ax.bxp(stats, positions=[i for i, _ in boxes], showfliers=False, widths=0.5)
        for part in art.values():
            for j, artist in enumerate(part):
                artist.set_gid(_gid("group", tse[boxes[j // max(1, len(part) // len(boxes))][1]]["n"]))
        ax.set_xticks([1, 2, 3], [f"{t}\nn={_c(se.get(t, {}).get('n'))}" for t in TERTILES])
        ax.set_xlim(0.4, 3.6)
        ax.set_ylim(0, 10)
        ax.set_ylabel("self-efficacy (0-10)")
        ax.set_xlabel("alliance tertile")
        ax.set_title("Self-efficacy by alliance tertile")
        save(fig, "fig3_self_efficacy.png", "Self-efficacy by alliance tertile: median, quartiles and 10th-90th "
                                            "percentiles (no individual answers)")

    def share_bars(ax, groups, tgroups, xs, color=None, name=None):
        for x, t in zip(xs, TERTILES):
            g, tg = groups[t], tgroups[t]
            if g["share"] is not None:
                ax.bar(x, g["share"], width=0.36, color=color, label=name if t == "low" else None,
                       gid=_gid("share", tg["n"], tg["events"]))
                ax.errorbar(x, g["share"], yerr=[[g["share"] - g["ci_low"]], [g["ci_high"] - g["share"]]],
                            color="black", capsize=4, gid=_gid("share", tg["n"], tg["events"]))
            ax.text(x, 0.02, f"{_c(g['events'])}/{_c(g['n'])}", ha="center", fontsize=7)

    shares, tshares = data.get("shares_by_tertile") or {}, tree.get("shares_by_tertile") or {}
    if "mental_health_high" in shares or "physical_health_high" in shares:  # 4. health by tertile
        fig, ax = plt.subplots(figsize=(7, 4))
        for j, (col, name) in enumerate([("mental_health_high", "mental health"),
                                         ("physical_health_high", "physical health")]):
            if col in shares:
                share_bars(ax, shares[col], tshares[col], np.arange(3) + (j - 0.5) * 0.38, f"C{j}", name)
        ax.set_xticks(np.arange(3), TERTILES)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share very good or excellent")
        ax.set_xlabel("alliance tertile (labels: events/participants)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.set_title("Very good/excellent self-rated health by alliance tertile (95% Wilson CI)")
        save(fig, "fig4_health.png", "Share with very good or excellent mental and physical health by tertile, "
                                     "95% Wilson CI")

    resp, tresp = data["response_by_tertile"], tree["response_by_tertile"]  # 5. response by tertile
    fig, ax = plt.subplots(figsize=(6, 3.6))
    share_bars(ax, resp, tresp, np.arange(3), "#55a868")
    ax.set_xticks(np.arange(3), TERTILES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share who answered (any time point)")
    ax.set_xlabel("alliance tertile (labels: answered/participants)")
    ax.set_title("Who answered, by alliance tertile (95% Wilson CI)")
    save(fig, "fig5_response.png", "Participants who answered at least once, by alliance tertile, 95% Wilson CI")

    groups, tgroups = data.get("timepoint_groups") or {}, tree.get("timepoint_groups") or {}
    if groups:  # 6. across time points
        panels = [("self_efficacy", "mean self-efficacy (0-10)", (0, 10)),
                  ("mental_health_high", "share very good/excellent\nmental health", (0, 1)),
                  ("physical_health_high", "share very good/excellent\nphysical health", (0, 1))]
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
        for ax, (col, ylabel, ylim) in zip(axes, panels):
            by, tby = groups[col], tgroups[col]
            points = sorted(by, key=int)
            for tert in TERTILES:
                ys = [by[t][tert]["mean"] for t in points]
                keys = [k for t in points for k in ([tby[t][tert]["n"]] + ([tby[t][tert]["events"]]
                                                                           if "events" in tby[t][tert] else []))
                        if by[t][tert]["mean"] is not None]
                ax.plot([int(t) for t in points], [np.nan if y is None else y for y in ys], marker="o", label=tert,
                        gid=_gid("group" if col == "self_efficacy" else "share", *keys))
            ax.set_ylim(*ylim)
            ax.set_xticks([int(t) for t in points])
            ax.set_xlabel("days after discharge")
            ax.set_ylabel(ylabel)
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(title="alliance tertile", fontsize=8)
        fig.suptitle("Outcomes across time points by alliance tertile (groups with a hidden count are left out)")
        save(fig, "fig6_timepoints.png", "Outcomes across time points by alliance tertile")
    return made


# -- the text ---------------------------------------------------------------------------------------------------
def _row(r: dict[str, Any], name: str) -> list[str]:
    return [name, r["test"], _c(r["n"]), _fmt(r.get("estimate")), _ci(r.get("ci_low"), r.get("ci_high")),
            _p(r.get("p")), _p(r.get("p_holm"))]


def decision_rules(below: int) -> list[str]:
    return [
        f"Estimates are reported only when at least {st.MIN_RESPONDERS} participants (people, not answers) answered; "
        "below that the report shows counts and descriptive information only, in text and figures alike.",
        "Association: a stronger alliance is said to go with an outcome only when the 95% CI of the estimate "
        "excludes no effect (odds ratio 1); otherwise the data show no clear association.",
        "Non-response: responders and non-responders are said to differ only when the 95% CI of the standardized "
        f"difference excludes 0 and |d| >= {st.NONRESPONSE_MIN_D}; otherwise the data show no clear difference.",
        f"Across time points: the mixed model is fitted only when at least {st.MIN_REPEATED} participants answered "
        "at two or more time points.",
    ]


def people_text(people: dict[str, Any], first: str, points: list[int]) -> str:
    """How many people were contacted and answered (people, not answers), or that the number is hidden."""
    hidden = "their number is hidden: with the counts below it would give a small count away"
    targeted = (f"{people['targeted']} participants{first} were contacted at {_days(points)}"
                if people["targeted"] != "x" else f"Participants{first} were contacted at {_days(points)} ({hidden})")
    if people["answered"] == "x":
        answered = ("the number who answered at least one question is hidden "
                    + ("for the same reason" if people["targeted"] == "x" else f"({hidden.split(': ')[1]})"))
    else:
        answered = f"{people['answered']} of them answered at least one question (counting people, not answers)"
    answers = (f", giving {people['answers']} answers in all (follow-ups with an answer)"
               if len(points) > 1 and people["answers"] is not None else "")
    return f"{targeted}; {answered}{answers}."


def readmissions_text(data: dict[str, Any]) -> str:
    episodes = data["episodes"]
    multi = episodes["n_participants_multi"]
    if multi == 0:
        return ("No participant has more than one treatment episode in this dataset, so the primary analysis "
                "covers every episode.")
    total = episodes["n_episodes"]
    text = (f"{multi} participant{' has' if multi == 1 else 's have'} more than one treatment episode"
            + (f" ({total} episodes in all)" if _shown(total) else "") +
            ". The primary analysis uses each participant's first episode in this dataset, with that episode's "
            "alliance rating, so every participant counts once per time point")
    if data["too_small"]:
        return text + "."
    if episodes.get("sensitivity") is None:
        return (text + "; no answer comes from a later episode, so an analysis of every episode would use the "
                "same answers and none is shown.")
    return (text + "; the sensitivity analysis (the 'all episodes' row of the self-efficacy table below) uses "
            "every episode and every time point, with standard errors clustered by participant.")


def left_out_text(nr: dict[str, Any]) -> str:
    """The people a comparison leaves out (no alliance rating), counted in total and suppressed if small: the groups
    are counted with them, so that a few left out never hide the comparison."""
    u = nr.get("n_unrated", 0)
    return "" if u == 0 else f" ({_c(u)} of them without an alliance rating, left out)"


def nonresponse_text(nr: dict[str, Any], too_small: bool, ipw_shown: bool) -> str:
    t, r, n = nr["timepoint"], nr["n_responders"], nr["n_nonresponders"]
    head = f"At {t} days there were {_c(r)} responders and {_c(n)} non-responders" + left_out_text(nr)
    if nr["mean_responders"] is None or nr["mean_nonresponders"] is None:
        if r == 0 or n == 0:
            return head + (": nobody answered." if r == 0 else ": everyone answered.")
        return head + "; the groups' mean alliance is not shown, as a group is too small or its count is hidden."
    means = (f"; mean alliance {_fmt(nr['mean_responders'])} among responders vs {_fmt(nr['mean_nonresponders'])} "
             "among non-responders")
    if too_small or nr["estimate"] is None:
        return head + means + "."
    stats = (f"; standardized difference {_fmt(nr['estimate'])} (95% CI {_ci(nr['ci_low'], nr['ci_high'])}), "
             f"Mann-Whitney U {_p_eq(nr['p'])}.")
    if nr["differs"]:
        verdict = (" By the decision rule, responders and non-responders differ: estimates based on responders "
                   "alone may be biased" + ("; the inverse-probability-weighted row below is the sensitivity "
                                            "analysis for this." if ipw_shown else "."))
    else:
        verdict = " By the decision rule, the data show no clear difference between responders and non-responders."
    return head + means + stats + verdict


def association_text(r: dict[str, Any]) -> str:
    """The primary result in words, by the stated rule (the 95% CI of the odds ratio excludes 1)."""
    if r.get("estimate") is None or r.get("ci_low") is None:
        return "The primary odds ratio could not be estimated (too few answers in a group, or separation)."
    numbers = (f"odds ratio {_fmt(r['estimate'])} per SD of alliance (95% CI {_ci(r['ci_low'], r['ci_high'])}, "
               f"n = {r['n']})")
    lead = "Primary result: a stronger alliance at discharge went with"
    if r["ci_low"] > 1:
        return f"{lead} higher odds of self-efficacy of 8 or more, {numbers}."
    if r["ci_high"] < 1:
        return f"{lead} lower odds of self-efficacy of 8 or more, {numbers}."
    return (f"Primary result: the data show no clear association between the alliance at discharge and "
            f"self-efficacy of 8 or more, {numbers}; the interval includes 1.")


def mixed_text(m: dict[str, Any] | None, timepoints: list[int]) -> str:
    if len(timepoints) < 2:
        return "One time point in this dataset: no model across time points."
    if not m or len(m.get("timepoints") or []) < 2:
        return (f"{m['n_repeated'] if m else 0} participants answered self-efficacy at two or more time points, but "
                f"fewer than two time points have {st.MIN_RESPONDERS} or more participants answering it: no model "
                "across time points.")
    if not m.get("fitted"):
        return (f"{m['n_repeated']} participants answered self-efficacy at two or more of the time points "
                f"{_days(m['timepoints'])}; the mixed model needs at least {st.MIN_REPEATED}, so "
                "none is fitted (with nobody, or too few, measured twice, a random intercept per participant is not "
                "identified).")
    return (f"{m['test']}: {m['n']} answers of {m['n_participants']} participants at "
            f"{_days(m['timepoints'])}, {m['n_repeated']} of them answering at two or more time "
            f"points. Time points are ordered numerically; {m['reference']} days is the reference. Alliance effect at "
            f"{m['reference']} days: {_fmt(m['estimate'])} {m['scale'].split(' at ')[0]} (95% Wald CI "
            f"{_ci(m['ci_low'], m['ci_high'])}, {_p_eq(m['p'])}).")


METHODS = (
    "Unit of analysis: the participant. Per time point each participant has one row (their first treatment "
    "episode). Across time points, the association analyses use one answer per participant, the earliest answer "
    "to each question (lowest time point); the inverse-probability weights model 'answered at any time point' per "
    "participant; the responder comparison is made within each time point; only the mixed model uses repeated "
    "answers, with a random intercept per participant. "
    "Alliance: mean of the six 0-6 items when at least five are answered; tertiles are cut over the ratings of "
    "every treatment episode in this dataset, each episode counted once whatever its number of time points. Outcomes: self-efficacy 0-10 (high = 8 or more); self-rated mental "
    "and physical health coded 1 = poor to 5 = excellent (high = very good or excellent). Odds ratios are per "
    "standard deviation of the alliance score in the analysed sample. "
    "Intervals: Wald 95% CIs (estimate +- 1.96 SE; for odds ratios on the log-odds scale) for the logistic and "
    "proportional-odds regressions (robust HC0 SE for the IPW estimate, cluster-robust SE by participant for the "
    "all-episodes estimate) and for the mixed model (fitted by REML on every participant, SE from the observed "
    "information); Fisher's z with the Bonett-Wright standard error for Spearman's rho; Woolf's "
    "interval (normal on the log odds ratio) for the 2x2 odds ratio; Wilson intervals for shares; a normal "
    "approximation (Hedges-Olkin SE) for the standardized difference. No profile-likelihood intervals are used. "
    "2x2 tables use Fisher's exact test when an expected count is below 5, else Pearson's chi-square without "
    "continuity correction. The trend test is Mantel's linear-by-linear association test, M2 = (n-1)r2 with "
    "scores 1, 2, 3 for the tertiles (1 df). Holm's method adjusts p-values within each family of outcomes. "
    "Patients readmitted for treatment have several episodes, each with its own discharge alliance rating: "
    "every analysis except one uses each participant's first episode in this dataset (the earliest discharge); the "
    "sensitivity analysis for readmissions repeats the unadjusted logistic regression on every episode (and every "
    "time point) with cluster-robust (sandwich) standard errors by participant.")


@dataclass
class Report:
    model: rs.Model
    doc: Doc
    figures: list[Figure]

    @property
    def data(self) -> dict[str, Any]:
        return self.model.data


def build_report(df: pd.DataFrame, out: Path, *, suppress_below: int = 5, timepoint: int | None = None) -> Report:
    """The model, the figures (written to ``out``) and the document, before report.md/html/stats.json are written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = st.summarise(df) if len(df) else {"too_small": True}
    model = rs.model(df, summary, below=suppress_below, timepoint=timepoint)
    data = model.data
    where = f" for the {timepoint}-day time point" if timepoint else " for all time points"
    doc = Doc()
    doc.h(1, TITLE)
    if not len(df):
        doc.p(f"Generated {dt.date.today():%Y-%m-%d}{where}. There are no follow-ups{where.replace(' for', ' at')} "
              "in this dataset yet, so there is nothing to report.")
        return Report(model, doc, [])
    figs = figures(model, out)
    people = data["participants"]
    first = " (their first treatment episode)" if data["episodes"]["n_participants_multi"] != 0 else ""
    points = data["timepoints"]
    doc.p(f"Generated {dt.date.today():%Y-%m-%d}{where}. " + people_text(people, first, points) + " "
          + suppression_text(suppress_below))
    doc.h(2, "Decision rules")
    doc.ul(decision_rules(suppress_below))

    doc.h(2, "Readmissions")
    doc.p(readmissions_text(data))

    doc.h(2, "Contact")
    columns = data["contact"]["columns"]
    doc.table(["time point", "targeted"] + [label(c) for c in columns],
              [[f"{r['timepoint']} days", _c(r["targeted"])] + [_c(r[c]) for c in columns]
               for r in data["contact"]["rows"]])
    doc.p("Counts of participants, one follow-up each; the outcome columns add up to targeted. Research outcomes "
          "(the export's status codes, also used by `outreach waves status`; the first that applies): "
          + "; ".join(f"{label(c)} = {d}" for c, d in OUTCOMES.items()) + ".")
    ci = [] if data["too_small"] else ["95% CI (Wilson)"]  # below the sample-size rule: descriptive only
    doc.table(["time point", "targeted", "answered (completed + partial)", "response rate"] + ci,
              [[f"{r['timepoint']} days", _c(r["targeted"]), _c(r["answered"]), _pct(r["response_rate"])]
               + ([f"{_pct(r['ci_low'])} to {_pct(r['ci_high'])}" if r["ci_low"] is not None else "–"] if ci else [])
               for r in data["contact"]["rows"]])

    doc.h(2, "Alliance at discharge")
    a = data["alliance"]
    if a["n"] == 0:
        doc.p("No participant has an alliance rating.")
    elif a["mean"] is None:
        doc.p(f"{_c(a['n'])} participants have an alliance rating; too few (or a hidden count) to describe.")
    else:
        ceiling = (f"{_c(a['at_ceiling'])} participants"
                   + (f" ({_pct(a['share_at_ceiling'])})" if a["share_at_ceiling"] is not None else "")
                   + " at the ceiling of 6")
        doc.p(f"Rated for {_c(a['n'])} participants: mean {_fmt(a['mean'])} (SD {_fmt(a['sd'])}), median "
              f"{_fmt(a['median'])}; {ceiling}. Tertile cut points (over every episode's rating): "
              f"{_fmt(a['tertile_cuts'][0])} and {_fmt(a['tertile_cuts'][1])}.")

    doc.h(2, "Who answered")
    ipw_shown = not data["too_small"] and (data.get("ipw") or {}).get("estimate") is not None
    doc.p(" ".join(nonresponse_text(nr, data["too_small"], ipw_shown) for nr in data["nonresponse"])
          or "Nobody was contacted.")

    doc.h(2, "Does a stronger alliance go with better outcomes?")
    header = ["outcome", "test", "n", "estimate", "95% CI", "p", "p (Holm)"]
    if data["too_small"]:
        doc.p(f"Only {_c(people['answered'])} participants answered, fewer than {st.MIN_RESPONDERS}: the sample is too "
              "small for stable estimates, so none are shown (counts and descriptive information only).")
    else:
        doc.p(association_text(data["logistic"][0]))
        doc.h(3, "Rank correlation with the alliance score")
        doc.table(header, [_row(r, st.OUTCOMES[r["outcome"]]) for r in data["spearman"]])
        doc.h(3, "Self-efficacy of 8 or more: odds ratio per SD of alliance")
        sensitivity = data["episodes"]["sensitivity"]
        rows = [_row(r, "self-efficacy 8+") for i, r in enumerate(data["logistic"])
                if i == 0 or "adjusted" in r["test"]]  # no covariates imported: no adjusted row
        if ipw_shown:
            rows.append(_row(data["ipw"], "self-efficacy 8+"))
        if sensitivity:
            rows.append(_row(sensitivity, "self-efficacy 8+, all episodes"))
        doc.table(header, [[c.replace("length_of_stay_days", "length of stay").replace("primary_substance",
                                                                                        "primary substance")
                            for c in r] for r in rows])
        doc.p(("The IPW row weights responders by the inverse of their modelled probability of answering "
               "(response on alliance and covariates, per participant): a sensitivity analysis for non-response."
               if ipw_shown else "")
              + (" The all-episodes row adds the answers from participants' later treatment episodes (and later "
                 "time points), each with that episode's alliance rating, and clusters the standard errors by "
                 "participant: a sensitivity analysis for readmissions." if sensitivity else ""))
        doc.h(3, "Self-rated health: proportional-odds regression, odds ratio per SD of alliance")
        doc.table(header, [_row(r, st.OUTCOMES[r["outcome"]]) for r in data["ordinal"]])
        doc.h(3, "Highest alliance tertile vs the other two")
        doc.table(header + ["high: yes/no", "other: yes/no"], [
            _row(r, st.BINARY[r["outcome"]]) + [f"{_c(r['table'][0][0])}/{_c(r['table'][0][1])}",
                                                f"{_c(r['table'][1][0])}/{_c(r['table'][1][1])}"]
            for r in data["high_vs_other"]])
        doc.table(["outcome", "test", "n", "share low", "share mid", "share high", "p", "p (Holm)"], [
            [st.BINARY[r["outcome"]], r["test"], _c(r["n"])] +
            [_fmt(r["shares"].get(t)) for t in TERTILES] + [_p(r["p"]), _p(r.get("p_holm"))]
            for r in data["trend"]])
        doc.h(3, "Across time points")
        mixed = data.get("mixed")
        doc.p(mixed_text(mixed, data["timepoints"]))
        if mixed and mixed.get("fitted"):
            doc.table(["term", "estimate", "95% CI", "p"], [
                [v["term"], _fmt(v["estimate"]), _ci(v["ci_low"], v["ci_high"]), _p(v["p"])]
                for v in mixed["terms"]])
    doc.h(2, "Figures")
    for f in figs:
        doc.img(f.path, f.caption)
    doc.h(2, "Methods")
    doc.p(METHODS)
    doc.p(suppression_method(suppress_below))
    return Report(model, doc, figs)


def write_report(df: pd.DataFrame, out: Path, *, suppress_below: int = 5, timepoint: int | None = None) -> dict:
    """Write report.md, report.html, stats.json and the figures to ``out``; return the stats.json payload (the
    resolved, suppressed model).

    Patients with several treatment episodes count once: the figures, tables and statistics use each
    participant's first episode in ``df``; only the readmission sensitivity analysis uses every episode.
    """
    return save_report(build_report(df, out, suppress_below=suppress_below, timepoint=timepoint), out)


def save_report(report: Report, out: Path) -> dict:
    """Write a built report's report.md, report.html and stats.json; return the stats.json payload."""
    out = Path(out)
    suppress_below = report.model.ledger.below
    for stale in out.glob("fig*.png"):  # figures of an earlier run that this one did not draw
        if stale not in {f.path for f in report.figures}:
            stale.unlink()
    (out / "report.md").write_text(report.doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(report.doc.html(TITLE), encoding="utf-8")
    payload = {"generated": dt.date.today().isoformat(), "suppression": suppression_text(suppress_below),
               "decision_rules_text": decision_rules(suppress_below), **report.data,
               "figures": [f.name for f in report.figures]}
    (out / "stats.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return payload


def report_dataset(engine, timepoint: int | None = None) -> pd.DataFrame:
    """The linked dataset for a report.  The report shows no pseudonyms, so it needs no ``EXPORT_KEY``: a throwaway
    key pseudonymises the participants in memory (it only has to tell them apart)."""
    from .dataset import linked_dataset

    return linked_dataset(engine, secrets.token_bytes(32), timepoint=timepoint)
