"""The researchers' report: report.md, report.html (figures embedded), stats.json and PNG figures.

Every number comes from one suppressed results model (:mod:`analysis.results`):
counts from 1 to SUPPRESS_BELOW-1 are shown as ``<5``, a count that a total
would give away is hidden as ``x``, no share, interval or plotted element is
shown for a group whose count is hidden, and no mean for a group below the
threshold (:class:`analysis.results.Derived`).  Everything but the
readmission sensitivity analysis describes each participant's first treatment
episode in the data (``stats.first_episodes``).  Conclusions follow the
decision rules stated in the report (:mod:`analysis.stats`).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
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
        top = max([r[c] for r in rows for c in codes if _shown(r[c])] + [1])  # targeted may be hidden, not its cells
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
    if any(_shown(b["count"]) for b in bins):  # 2. alliance: bins of at least `below` people
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = [("6 (ceiling)" if b["low"] == b["high"] else
                  f"{b['low']:g} to {b['high']:g}" + (" incl. 6" if i == len(bins) - 1 else ""))
                 for i, b in enumerate(bins)]
        top = max(b["count"] for b in bins if _shown(b["count"]))
        for i, (b, tb) in enumerate(zip(bins, tbins)):
            if _shown(b["count"]):  # a bin whose count is hidden (a descriptive breakdown) gets no bar, only its x
                ax.bar(i, b["count"], color="#c44e52" if b["low"] == b["high"] else "#4878a8",
                       gid=_gid("count", tb["count"]))
            ax.text(i, b["count"] if _shown(b["count"]) else 0, str(b["count"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(bins)), names, fontsize=8)
        _count_axis(ax.yaxis, top, below)
        ax.set_ylim(0, top * 1.15)
        ax.set_xlabel(f"alliance mean score at discharge (0-6), bins of at least {below} participants")
        ax.set_ylabel("participants")
        ax.set_title("Alliance at discharge (red: the ceiling of 6)")
        hidden = any(not _shown(b["count"]) for b in bins)
        save(fig, "fig2_alliance.png", f"Distribution of the alliance score at discharge in bins of at least {below} "
                                       "participants (red: the ceiling" + ("; x: a bin whose count is hidden, so that "
                                                                          "the number rated gives no small count away"
                                                                          if hidden else "") + ")")

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
        f"Each model needs at least {st.EPP} participants per estimated parameter (linear and proportional-odds "
        f"models, the cut points counted) or {st.EPP} events of the rarer outcome per parameter (logistic "
        "regression), a minimum in the spirit of Riley et al. (BMJ 2020;368:m441), whose full criteria need an "
        "anticipated R-squared this study does not pre-specify (Methods says why the simpler rule is used); a model "
        "that breaks it is kept out and the table says which rule did.",
        "Association: the alliance is said to be associated with an outcome only when the 95% CI of the estimate "
        "excludes no association (a difference of 0, an odds ratio of 1); otherwise the data show no clear "
        "association. An association does not show that the alliance causes the outcome: the design cannot rule "
        "out confounding or reverse causation.",
        "Missing answers: assumed missing at random given the alliance and the covariates (an assumption the data "
        "cannot test); the sensitivity analyses below are always shown, whatever the responders look like.",
        f"Across time points: the mixed model is fitted only when at least {st.MIN_REPEATED} participants answered "
        f"at two or more time points, each with {st.MIN_RESPONDERS} or more participants answering.",
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


def withdrawn_text(people: dict[str, Any]) -> str:
    """How many withdrew from the study keeping their answers (a count like any other: suppressed); '' for none."""
    n = people.get("withdrawn", 0)
    if n in (0, None):
        return ""
    return (f"{n} of the participants withdrew from the study and kept the answers they had given (flagged "
            "'withdrawn' in the export); those who asked for their answers to be removed are in no count. ")


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
    return (text + "; the sensitivity analysis for readmissions (below) repeats the primary model on every episode "
            "at the primary time point, with standard errors clustered by participant.")


def alliance_text(a: dict[str, Any]) -> str:
    """The alliance at discharge, described with everyone counted: the participants without a rating are counted
    apart (suppressed if small), and when the number rated would give them away it is not shown exactly, rather than
    the participants or the description."""
    n, unrated = a["n"], a.get("unrated", 0)
    if n == 0:
        return "No participant has an alliance rating."
    if unrated == 0:
        who = f"Rated for all {_c(n)} participants"
    else:
        who = (f"Of {_c(a.get('participants'))} participants, {_c(unrated)} had no alliance rating and are left out "
               "of this description" + (f"; {n} were rated" if _shown(n) else
                                        " (the number rated is not shown exactly, as it would give that count away)"))
    if a["mean"] is None:
        return who + ": too few rated (or a hidden count) to describe."
    ceiling = (f"{_c(a['at_ceiling'])} participants"
               + (f" ({_pct(a['share_at_ceiling'])})" if a["share_at_ceiling"] is not None else "")
               + " at the ceiling of 6")
    return (f"{who}: mean {_fmt(a['mean'])} (SD {_fmt(a['sd'])}), median {_fmt(a['median'])}; {ceiling}. Tertile "
            f"cut points (over every episode's rating): {_fmt(a['tertile_cuts'][0])} and "
            f"{_fmt(a['tertile_cuts'][1])}." + (f" Scores prorated from five of the six items: {_c(a['prorated'])}."
                                                if "prorated" in a else ""))


def left_out_text(nr: dict[str, Any]) -> str:
    """The people a comparison leaves out (no alliance rating), counted in total and suppressed if small: the groups
    are counted with them, so that a few left out never hide the comparison."""
    u = nr.get("n_unrated", 0)
    return "" if u == 0 else f" ({_c(u)} of them without an alliance rating, left out)"


def nonresponse_text(nr: dict[str, Any], too_small: bool, ipw_shown: bool = False) -> str:
    """Who answered at one time point, described: no verdict (whether the responders differ says nothing about
    whether the missing answers are missing at random; the assumption is stated instead)."""
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
    return head + means + (f" (standardized difference {_fmt(nr['estimate'])}, 95% CI "
                           f"{_ci(nr['ci_low'], nr['ci_high'])}).")


def _num_text(r: dict[str, Any]) -> str:
    if r.get("model") in ("logistic", "ordinal") or "odds ratio" in (r.get("scale") or ""):
        return f"odds ratio {_fmt(r['estimate'])} per SD of alliance"
    return f"{_fmt(r['estimate'])} points per SD of alliance"


def _excludes_null(r: dict[str, Any]) -> int:
    """1 when the 95% CI lies above no association, -1 below, 0 when it includes it."""
    null = 1.0 if "odds ratio" in (r.get("scale") or "") else 0.0
    return 1 if r["ci_low"] > null else -1 if r["ci_high"] < null else 0


def association_text(r: dict[str, Any] | None, tp: int | None = None, is_primary: bool = True,
                     descriptive: dict[str, Any] | None = None) -> str:
    """The primary result in words, by the stated rule (the 95% CI excludes no association).  At a time point other
    than the pre-specified one (a report restricted to it) the same model is a secondary result, and says so.  When
    a rule keeps the primary model out, the primary analysis was not estimable, and ``descriptive`` (the unadjusted
    model of the same outcome) is named as a description, not a result."""
    lead = ("Primary result" if is_primary else
            f"Result of the primary model at {tp} days (not the pre-specified primary time point: a secondary result)")
    if not r or r.get("estimate") is None or r.get("ci_low") is None:
        why = f" ({r['rule']})" if r and r.get("rule") else " (too few answers, or the model could not be fitted)"
        text = (f"{lead}: the primary analysis was not estimable{why}; no covariate was dropped to make it fit, as "
                "Methods states.")
        if descriptive and descriptive.get("estimate") is not None and descriptive.get("ci_low") is not None:
            text += (f" The unadjusted estimate, {_num_text(descriptive)} (95% CI "
                     f"{_ci(descriptive['ci_low'], descriptive['ci_high'])}, n = {_c(descriptive['n'])}), is "
                     "descriptive only: it is not adjusted for the pre-specified confounders and is no answer to the "
                     "primary question.")
        return text
    numbers = (f"{_num_text(r)} (95% CI {_ci(r['ci_low'], r['ci_high'])}, {_p_eq(r['p'])}, n = {_c(r['n'])})")
    at = f" at {tp} days" if tp else ""
    side = _excludes_null(r)
    if side:
        return (f"{lead}: a stronger alliance at discharge was associated with {'higher' if side > 0 else 'lower'}"
                f" self-efficacy{at}, {numbers}.")
    return (f"{lead}: the data show no clear association between the alliance at discharge and "
            f"self-efficacy{at}, {numbers}; the interval includes no association.")


def mixed_text(m: dict[str, Any] | None, timepoints: list[int]) -> str:
    if len(timepoints) < 2:
        return "One time point in this dataset: no model across time points."
    dropped = (f" {_days(m['dropped'])} had fewer than {st.MIN_RESPONDERS} participants answering and "
               f"{'was' if len(m['dropped']) == 1 else 'were'} left out of the model." if m and m.get("dropped") else "")
    if not m or len(m.get("timepoints") or []) < 2:
        return (f"{m['n_repeated'] if m else 0} participants answered self-efficacy at two or more time points, but "
                f"fewer than two time points have {st.MIN_RESPONDERS} or more participants answering it: no model "
                "across time points.")
    if not m.get("fitted"):
        return (f"{m['n_repeated']} participants answered self-efficacy at two or more of the time points "
                f"{_days(m['timepoints'])}; the mixed model needs at least {st.MIN_REPEATED}, so "
                "none is fitted (with nobody, or too few, measured twice, a random intercept per participant is not "
                "identified)." + dropped)
    covs = (", adjusted for " + ", ".join(label(c) for c in m["covariates"])) if m.get("covariates") else ""
    why = "no alliance rating, no self-efficacy answer at these time points, or a covariate missing"
    if m.get("left_out") in (None, 0):
        people = f"{m['n_participants']} participants"
    elif _shown(m["n_participants"]):
        people = (f"{m['n_participants']} participants (of the {m['answered']} who answered, {m['left_out']} left "
                  f"out: {why})")
    else:
        people = (f"the {m['answered']} participants who answered less {m['left_out']} left out ({why}; the exact "
                  "number in the model is not shown, as it would give that count away)")
    return (f"{m['test']}{covs}: {_c(m['n'])} answers of {people} at "
            f"{_days(m['timepoints'])}, {m['n_repeated']} of them answering at two or more time "
            f"points. Time points are ordered numerically; {m['reference']} days is the reference." + dropped +
            f" Association of the alliance with self-efficacy at {m['reference']} days: {_fmt(m['estimate'])} "
            f"{m['scale'].split(' at ')[0]} (95% CI {_ci(m['ci_low'], m['ci_high'])}, {_p_eq(m['p'])}; robust "
            "standard errors by participant). The interaction terms (the association at later time points minus "
            "the reference) belong to the secondary family (Holm). The model is valid when answers are missing at "
            "random given the earlier answers, the alliance and the covariates." + covariance_text(m))


def covariance_text(m: dict[str, Any]) -> str:
    """How the model's answers of one participant go together, and why (the random slope, or the fallback)."""
    if m.get("random_effects") == "random intercept and slope":
        return (" Its covariance: a random intercept and a random slope on time (years since the reference time "
                "point) per participant, with their covariance unstructured (variances: intercept "
                f"{_fmt(m['variance_participant'])}, slope {_fmt(m['variance_slope'])} per year squared, residual "
                f"{_fmt(m['variance_residual'])}); the cluster-robust errors keep the intervals valid if this "
                "covariance is still not the true one.")
    why = f" ({m['fallback']})" if m.get("fallback") else ""
    return (" Its covariance is a random intercept per participant (the same correlation between any two time "
            f"points): the pre-specified random slope on time was not used{why}, and the model falls back to the "
            "random intercept as stated in Methods; the cluster-robust errors keep the intervals valid when the "
            "true covariance differs, though under missing at random a wrong covariance can still move the "
            "estimates.")


MODEL_WORDS = {"linear": "linear regression (robust HC3 SE)", "logistic": "logistic regression",
               "ordinal": "proportional-odds regression"}


PO_FAILS = ("When Brant's test finds the odds not proportional (p < 0.05), the proportional-odds odds ratio is "
            "kept as a summary over the cut points, and the cut-point-specific odds ratios (a binary logistic "
            "regression of 'better than the cut point' for each cut, with the same covariates; Wald 95% CI) are "
            "shown beside it and are the result to read (Methods, 'Proportional odds', says how, and why no partial "
            "proportional-odds model is fitted).")

PO_METHOD = (
    "Proportional odds: every proportional-odds model (mental and physical health, and self-efficacy as ordered "
    "categories) is checked by Brant's test for the alliance: a binary logistic regression of 'better than' each "
    "cut point, with the model's covariates, and a Wald chi-square (with the regressions' joint covariance) that "
    "their alliance odds ratios are equal; p < 0.05 fails. When it fails, the proportional-odds odds ratio and its "
    "p-value are still reported, as fixed before the data (the p-value is the one in the secondary family, a test "
    "of an association averaged over the scale), but the estimate to read is the set of cut-point odds ratios, each "
    "with its Wald 95% CI: the odds ratio, per SD of alliance, of a rating better than that cut point against one "
    "at or below it. Odds ratios that differ mean that the alliance goes with the ratings unevenly along the scale, "
    "most where the odds ratio is largest (cut-point odds ratios of 2.0, 2.1, 2.4 and 6.3 mean a similar "
    "association at the lower cut points and a much stronger one with rating one's health excellent), and no "
    "single odds ratio describes it: the summary lies between them and stands for none. A cut point with few "
    "ratings on one side has a wide interval and is read with care. A partial proportional-odds model "
    "(proportional odds for the covariates, one alliance coefficient per cut point; Peterson and Harrell, Appl "
    "Stat 1990;39:205) would estimate the same cut-point odds ratios in one model; it is not fitted, because "
    "statsmodels, which fits every model in this report, has no such model, and a likelihood written for this "
    "report alone would be an estimator nobody has validated (it can also give negative probabilities for some "
    "covariate values). The separate regressions estimate the same odds ratios with the covariates' coefficients "
    "free at each cut point rather than shared (so a little less precisely), are exactly the estimates Brant's test "
    "compares, and anyone can reproduce them with an ordinary logistic regression.")

CUT_WORDS = {"mental_health": {1: "poor", 2: "fair", 3: "good", 4: "very good"},
             "physical_health": {1: "poor", 2: "fair", 3: "good", 4: "very good"}}


def cut_words(outcome: str, cut: str) -> str:
    """'mental_health > 4' as 'better than very good'; self-efficacy's 'self_efficacy > 7' as 'above 7'."""
    k = int(float(cut.split(" > ")[1]))
    word = CUT_WORDS.get(outcome, {}).get(k)
    return f"better than {word}" if word else f"above {k}"


def cut_point_reading(r: dict[str, Any]) -> str:
    """How to read the cut-point odds ratios of a model whose proportional odds failed: where along the scale the
    alliance goes with the ratings, which intervals exclude no association, and what the summary is."""
    b = r["brant"]
    names = [cut_words(r["outcome"], c) for c in b["cuts"]]
    ors, cis = b["odds_ratios"], b["ci"]
    hi, lo = max(range(len(ors)), key=ors.__getitem__), min(range(len(ors)), key=ors.__getitem__)
    above = [n for n, (a, _) in zip(names, cis) if a > 1]
    below = [n for n, (_, z) in zip(names, cis) if z < 1]
    if len(above) == len(names):
        where = ("every interval lies above 1, so a stronger alliance goes with better ratings at every cut point, "
                 f"most with a rating {names[hi]}")
    elif len(below) == len(names):
        where = ("every interval lies below 1, so a stronger alliance goes with worse ratings at every cut point, "
                 f"most with a rating {names[lo]}")
    elif not above and not below:
        where = "no cut point's interval excludes no association"
    else:
        where = "the intervals exclude no association only for " + ", ".join(above + below)
    model = "adjusted" if r["adjusted"] else "unadjusted"
    summary = (f"; the proportional-odds odds ratio, {_fmt(r['estimate'])}, averages them and stands for none"
               if r.get("estimate") is not None else "")
    return (f"How to read {OUTCOME_WORDS[r['outcome']]} ({model}): per SD of alliance, the odds of a rating "
            f"{names[hi]} are {_fmt(ors[hi])} times as high, those of a rating {names[lo]} {_fmt(ors[lo])} times; "
            f"{where}{summary}.")


def ordinal_primary_text(o: dict[str, Any] | None, primary: dict[str, Any] | None) -> str:
    """The sensitivity analysis of the primary model's scale: self-efficacy's 0-10 answers as ordered categories."""
    if primary is None or primary.get("estimate") is None:
        return ""
    lead = ("Sensitivity analysis, self-efficacy as ordered categories: the primary model treats the 0-10 answers "
            "as an interval scale; a proportional-odds model of the ordered answers, with the same rows and "
            "covariates")
    if not o or o.get("rule") or o.get("estimate") is None:
        why = (o or {}).get("rule") or (o or {}).get("error") or "not estimable"
        return f"{lead}, is kept out ({why})."
    b = o.get("brant")
    check = ("" if not b else f" Brant test: chi-square {_fmt(b['chi2'])} on {b['df']:.0f} df, {_p_eq(b['p'])}" +
             (": the odds are not proportional, so this odds ratio is a summary over cut points that differ "
              f"(cut-point odds ratios from {_fmt(min(b['odds_ratios']))} to {_fmt(max(b['odds_ratios']))})."
              if b["p"] < 0.05 else ": no evidence against proportional odds."))
    words = {1: "a higher answer with a stronger alliance", -1: "a lower answer with a stronger alliance",
             0: "no clear association"}
    same, mine = _excludes_null(primary), _excludes_null(o)
    verdict = (f"it reaches the primary analysis's conclusion ({words[mine]})" if same == mine else
               f"it does not reach the primary analysis's conclusion (ordinal: {words[mine]}; linear: {words[same]})")
    return (f"{lead}, gives an odds ratio per SD of {_fmt(o['estimate'])} for a higher answer (95% CI "
            f"{_ci(o['ci_low'], o['ci_high'])}, {_p_eq(o['p'])}, n = {_c(o['n'])}); {verdict}." + check)


def primary_paragraph(data: dict[str, Any]) -> str:
    """Methods: the primary analysis, declared."""
    tp, ptp = data.get("analysis_timepoint"), data.get("primary_timepoint")
    covs = data.get("adjustment") or []
    adjust = ("; ".join(f"{label(c['covariate'])}: {c['reason']}" + (
        f" (levels {', '.join(c['collapsed'])} held by fewer than {st.RARE_LEVEL:.0%} each and joined as "
        f"'{st.OTHER}')" if c.get("collapsed") else "") for c in covs) if covs else
              "no covariate is present in this dataset, so the primary model is unadjusted")
    size = data.get("planned_parameters")
    adjust += (". The adjustment set is fixed before any outcome is used: the covariates listed, each category "
               "with its levels; a level held by fewer than "
               f"{st.RARE_LEVEL:.0%} of the participants targeted at the time point with an alliance rating "
               f"(answering or not: the covariate distribution alone, never an outcome) joins one level "
               f"'{st.OTHER}' when two or more such levels exist" +
               (f"; the adjusted model then has {size} parameters besides the intercept (the alliance, one per "
                "numeric covariate, one per non-reference level)" if size else "") +
               f". When the events-per-parameter rule ({st.EPP} per parameter) still fails, no covariate is dropped "
               "to make the model fit: the report says the primary analysis was not estimable and shows the "
               "unadjusted estimate as descriptive only (role 'descriptive')")
    where = (f"at the pre-specified time point of {ptp} days (setting PRIMARY_TIMEPOINT)" if tp == ptp else
             f"at {tp} days: this report does not hold the pre-specified primary time point ({ptp} days, setting "
             "PRIMARY_TIMEPOINT), so its analyses are secondary")
    sd = data.get("alliance_sd")
    return ("Primary analysis (pre-specified: the time point is the setting PRIMARY_TIMEPOINT, the rest fixed in "
            "the code before any report): "
            f"the outcome is self-efficacy on its 0-10 scale {where}, one answer per participant (first treatment "
            "episode), never a mixture of time points. The model is a linear regression of self-efficacy on the "
            "alliance mean score per SD, adjusted for the covariates present, with heteroskedasticity-robust (HC3) "
            f"standard errors; one SD of the alliance = {_fmt(sd)} points, the SD over the participants described "
            "under 'Alliance at discharge', for every 'per SD' in this report. Adjustment set, each with its reason: "
            f"{adjust}. Length of stay may be a mediator (a good alliance keeps patients in treatment), so adjusting "
            "for it may remove part of the association; the primary model without it is shown as a sensitivity "
            "analysis when the column exists. The primary model treats the 0-10 answers as an interval scale; a "
            "proportional-odds model of the same answers as 11 ordered categories, with the same rows and "
            "covariates (its cut points counted in the events-per-parameter rule), is a sensitivity analysis of "
            "that choice. The unadjusted model is shown beside the adjusted one. Secondary "
            "analyses (one per outcome, adjusted, at the same time point; Holm's adjustment within this one family, "
            "which also holds the mixed model's interaction terms): self-efficacy of 8 or more (logistic; a "
            "clinically motivated cut-off, with the risk difference per SD beside the odds ratio), mental and "
            "physical health (proportional odds, checked by Brant's test; when it fails, p < 0.05, the "
            "cut-point-specific odds ratios of a binary logistic regression per cut point, same covariates, are "
            "shown in a table beside the summary odds ratio and are the result to read, as 'Proportional odds' "
            "below says) and days of use where asked. Everything "
            "else (unadjusted models, rank correlations, tertile comparisons, trend tests) is exploratory, with "
            "unadjusted p-values. The alliance is analysed as a linear term per SD; its ceiling of 6 is described "
            "(the share at 6) and the tertiles are descriptive, with the cut points printed.")


LIMITATIONS = [
    "Observational design: the alliance was not assigned, so the associations may reflect confounding by "
    "unmeasured factors (motivation, severity, social support) or reverse causation (patients doing well rate "
    "the relationship better); none of the estimates shows that the alliance causes an outcome.",
    "Missing answers: the primary analysis assumes that answering depends only on the alliance and the covariates "
    "in the model; the multiple imputation makes the same assumption with more information, and the tipping-point "
    "analysis shows how far it must fail to change the conclusion.",
    "Clustering: patients of one therapist or site may resemble each other; the dataset names neither, so the "
    "standard errors do not allow for it and may be too small.",
    "Measurement: self-reported outcomes by text message, the alliance rated at discharge by the patient (with a "
    "ceiling at 6), and a single item for each health rating.",
    "Study size: every discharge with a follow-up in the dataset is included; no sample size was calculated for "
    "this report, so the intervals, not the p-values, show the precision reached.",
]


RILEY_R2, RILEY_SHRINKAGE = 0.15, 0.9  # the illustration's anticipated R-squared and Riley's target shrinkage
RILEY = (
    f"Sample-size rule: each model needs {st.EPP} participants (logistic: {st.EPP} events of the rarer outcome) per "
    "parameter, "
    "not the criteria of Riley et al. (Stat Med 2019;38:1262 and 1276; BMJ 2020;368:m441), for two reasons. Those "
    "criteria size the development of a prediction model (little overfitting, a precise intercept and residual "
    "SD), while these models estimate one adjusted association, whose precision the 95% CI reports. And they need "
    "an anticipated R-squared fixed before the data: the protocol states none; the conservative default of 15% of "
    "the largest possible Cox-Snell R-squared exists for binary outcomes only and itself needs the outcome's "
    "anticipated prevalence, which the protocol does not state either; taking either from this study's own data "
    "(its observed share, or the R-squared of its unadjusted model) would make the rule depend on the outcomes it "
    "is meant to be blind to. The simpler rule is fixed before any outcome is seen; it is lenient beside Riley's "
    f"shrinkage criterion (with an anticipated R-squared of {RILEY_R2} a linear model would need about "
    f"{1 / ((RILEY_SHRINKAGE - 1) * math.log(1 - RILEY_R2 / RILEY_SHRINKAGE)):.0f} participants per parameter), "
    "so a model it lets in may still be overfitted, and the intervals are the guide to precision.")


METHODS = (
    "Unit of analysis: the participant. Per time point each participant has one row (their first treatment "
    "episode). Every association analysis uses the answers of one time point (the primary time point), one per "
    "participant; the responder comparison is made within each time point; only the mixed model uses the answers "
    "of several time points. The mixed model (self-efficacy on the alliance per SD, the time point as categories, "
    "their interaction and the covariates of the primary model) is a likelihood model, valid when answers are "
    "missing at random, which is this report's assumption; it is preferred to generalized estimating equations, "
    "whose unweighted estimates need answers missing completely at random. Pre-specified covariance: a random "
    "intercept and a random slope on time (years since the earliest time point) per participant, their 2x2 "
    "covariance unstructured, fitted by REML (statsmodels MixedLM's likelihood and standard errors) when three or "
    "more time points have 30 or more participants answering; the model falls back to a random intercept alone, "
    "and says so, with two time "
    "points (a random slope cannot be told apart from the residual variance) or when the random-slope fit does "
    "not converge or puts a variance or the correlation on its boundary. Either way the standard errors are "
    "cluster-robust (sandwich) by participant, and a time point with fewer than 30 participants answering is "
    "left out of the model and named. "
    "Alliance: mean of the six 0-6 items, prorated (the mean of the five answered) when one item is missing, "
    "as the instrument scores it; the number of prorated scores is reported. Tertiles are cut over the ratings of "
    "every treatment episode in this dataset, each episode counted once whatever its number of time points; "
    "they are descriptive. Outcomes: self-efficacy 0-10 (analysed on its scale; high = 8 or more as a secondary, "
    "clinically motivated view); self-rated mental and physical health coded 1 = poor to 5 = excellent (high = "
    "very good or excellent); days of use in the past 30 (asked from 90 days on). "
    "Intervals: Wald 95% CIs (estimate +- 1.96 SE; for odds ratios on the log-odds scale) for the linear "
    "(robust HC3 SE), logistic and proportional-odds regressions (robust HC0 SE for the weighted estimate, "
    "cluster-robust SE by participant for the all-episodes estimate) and for the mixed model (fitted by REML on "
    "every participant, cluster-robust SE by participant); t intervals with Barnard-Rubin degrees of freedom for "
    "multiple imputation; Fisher's z with the Bonett-Wright standard error for Spearman's rho; Woolf's "
    "interval (normal on the log odds ratio) for the 2x2 odds ratio and Newcombe's for its risk difference; "
    "Wilson intervals for shares; a normal approximation (Hedges-Olkin SE) for the standardized difference. No "
    "profile-likelihood intervals are used. 2x2 tables use Fisher's exact test when an expected count is below 5, "
    "else Pearson's chi-square without continuity correction. The trend test is Mantel's linear-by-linear "
    "association test, M2 = (n-1)r2 with scores 1, 2, 3 for the tertiles (1 df). Holm's method adjusts p-values "
    "within the one secondary family; other p-values are unadjusted and exploratory. "
    "Patients readmitted for treatment have several episodes, each with its own discharge alliance rating: "
    "every analysis except one uses each participant's first episode in this dataset (the earliest discharge); the "
    "sensitivity analysis for readmissions repeats the primary model on every episode at the primary time point "
    "with cluster-robust (sandwich) standard errors by participant. " + RILEY)



OUTCOME_WORDS = {"self_efficacy": "self-efficacy (0-10)", "self_efficacy_high": "self-efficacy 8+",
                 "mental_health": "mental health (1-5)", "physical_health": "physical health (1-5)",
                 "days_used": "days of use (0-30)"}


def _estimate_row(r: dict[str, Any], is_primary: bool = True) -> list[str]:
    rd = r.get("rd") or {}
    est = "–" if r.get("rule") else _fmt(r.get("estimate"))
    role = r["role"] if is_primary or r["role"] != "primary" else "primary model (secondary time point)"
    return [OUTCOME_WORDS.get(r["outcome"], label(r["outcome"])), role, "adjusted" if r["adjusted"] else
            "unadjusted", _c(r["n"]), (r.get("scale") or "").replace(" of alliance", ""), est,
            _ci(r.get("ci_low"), r.get("ci_high")), _p(r.get("p")), _p(r.get("p_holm")),
            f"{_fmt(rd['estimate'])} ({_ci(rd['ci_low'], rd['ci_high'])})" if rd.get("estimate") is not None else "–",
            r.get("rule") or ""]


def results_section(doc: Doc, data: dict[str, Any]) -> None:
    """Primary, secondary and exploratory estimates, the sensitivity analyses for missing answers and readmissions,
    and the model across time points."""
    tp = data.get("analysis_timepoint")
    estimates = data.get("estimates") or []
    primary = next((r for r in estimates if r["role"] == "primary"), None)
    doc.p(association_text(primary, tp, data.get("analysis_is_primary", True) is not False,
                           next((r for r in estimates if r["role"] == "descriptive"), None)))
    doc.h(3, f"Every outcome at {tp} days: unadjusted and adjusted, per SD of alliance")
    doc.table(["outcome", "role", "model", "n", "scale", "estimate", "95% CI", "p", "p (Holm)",
               "risk difference per SD (95% CI)", "rule"],
              [_estimate_row(r, data.get("analysis_is_primary", True) is not False) for r in estimates])
    tests = sorted({r["test"] for r in estimates if r["adjusted"]})
    doc.p("Models: " + "; ".join(tests) + ". Linear models give points of the outcome's scale per SD of alliance "
          "(robust HC3 SE); logistic and proportional-odds models an odds ratio per SD (Wald CI); the risk "
          "difference is the logistic model's average marginal change in probability per SD (delta-method CI). Holm's p-values "
          "are within the secondary family only.")
    checks = []
    for r in estimates:
        b = r.get("brant")
        if r["model"] == "ordinal" and b:
            verdict = ("the assumption is in doubt (p < 0.05): the odds ratio is a summary over cut points that "
                       "differ, and the cut-point odds ratios are the result to read" if b["p"] < 0.05 else
                       "no evidence against proportional odds")
            checks.append(f"{OUTCOME_WORDS[r['outcome']]} ({'adjusted' if r['adjusted'] else 'unadjusted'}): "
                          f"cut-point odds ratios {', '.join(_fmt(x) for x in b['odds_ratios'])}; Brant chi-square "
                          f"{_fmt(b['chi2'])} on {b['df']:.0f} df, {_p_eq(b['p'])}: {verdict}")
    if checks:
        doc.h(3, "Self-rated health: proportional-odds check (Brant test)")
        doc.ul(checks)
    ordered = data.get("ordinal_primary")  # self-efficacy as ordered categories (a sensitivity analysis)
    failed = [r for r in estimates + ([{**ordered, "model": "ordinal"}] if ordered else [])
              if r.get("model") == "ordinal" and r.get("brant") and r["brant"]["p"] < 0.05]
    if failed:
        doc.p(PO_FAILS)
        doc.table(["outcome", "model", "cut point", "odds ratio per SD", "95% CI"], [
            [OUTCOME_WORDS[r["outcome"]], "adjusted" if r["adjusted"] else "unadjusted", cut.split(" > ")[1].join(
                ["better than ", ""]), _fmt(o), _ci(*ci)]
            for r in failed for cut, o, ci in zip(r["brant"]["cuts"], r["brant"]["odds_ratios"], r["brant"]["ci"])])
        doc.ul([cut_point_reading(r) for r in failed])
    lin = data.get("linearity")
    if lin:
        bent = ("the association bends (p < 0.05): the per-SD estimate is an average over a curve, flatter or "
                "steeper near the ceiling" if lin["p"] < 0.05 else "no evidence that the association bends")
        doc.p(f"Ceiling and linearity: the primary model with a restricted cubic spline of the alliance (knots at "
              f"{', '.join(_fmt(k) for k in lin['knots'])}, its 10th, 50th and 90th percentiles) instead of a straight "
              f"line; robust Wald test of the non-linear term {_p_eq(lin['p'])}: {bent}.")
    elif primary is not None and primary.get("estimate") is not None:
        doc.p("Ceiling and linearity: the alliance's percentiles do not give three distinct knots (a ceiling "
              "holding a tenth of the participants or more), so no spline check is made.")
    if ordinal_primary_text(data.get("ordinal_primary"), primary):
        doc.p(ordinal_primary_text(data.get("ordinal_primary"), primary))
    los = data.get("without_length_of_stay")
    if los and los.get("rule"):
        doc.p(f"Sensitivity analysis, length of stay as a possible mediator: kept out ({los['rule']}).")
    elif los and los.get("estimate") is not None:
        doc.p(f"Sensitivity analysis, length of stay as a possible mediator: the primary model without it gives "
              f"{_fmt(los['estimate'])} points per SD (95% CI {_ci(los['ci_low'], los['ci_high'])}, n = {_c(los['n'])}).")
    missing_section(doc, data)
    doc.h(3, "Readmissions: every episode")
    sens = data["episodes"]["sensitivity"]
    if sens:
        doc.table(["analysis", "test", "n", "estimate", "95% CI", "p"],
                  [["self-efficacy, all episodes", sens["test"], _c(sens["n"]), _fmt(sens["estimate"]),
                    _ci(sens["ci_low"], sens["ci_high"]), _p(sens["p"])]])
    else:
        doc.p("No answer at this time point comes from a later episode: nothing to add.")
    doc.h(3, f"Exploratory: rank correlation with the alliance score at {tp} days")
    header = ["outcome", "test", "n", "estimate", "95% CI", "p"]
    doc.table(header, [_row(r, st.OUTCOMES[r["outcome"]])[:6] for r in data["spearman"]])
    doc.h(3, "Exploratory: highest alliance tertile vs the other two (descriptive tertiles)")
    doc.table(header + ["risk difference (95% CI)", "high: yes/no", "other: yes/no"], [
        _row(r, st.BINARY[r["outcome"]])[:6] + [
            f"{_fmt(r['rd'])} ({_ci(r['rd_low'], r['rd_high'])})" if r.get("rd") is not None else "–",
            f"{_c(r['table'][0][0])}/{_c(r['table'][0][1])}", f"{_c(r['table'][1][0])}/{_c(r['table'][1][1])}"]
        for r in data["high_vs_other"]])
    doc.table(["outcome", "test", "n", "share low", "share mid", "share high", "p"], [
        [st.BINARY[r["outcome"]], r["test"], _c(r["n"])] +
        [_fmt(r["shares"].get(t)) for t in TERTILES] + [_p(r["p"])]
        for r in data["trend"]])
    doc.h(3, "Across time points")
    mixed = data.get("mixed")
    doc.p(mixed_text(mixed, data["timepoints"]))
    if mixed and mixed.get("fitted"):
        doc.table(["term", "estimate", "95% CI", "p", "p (Holm)"], [
            [v["term"], _fmt(v["estimate"]), _ci(v["ci_low"], v["ci_high"]), _p(v["p"]), _p(v.get("p_holm"))]
            for v in mixed["terms"]])


def missing_section(doc: Doc, data: dict[str, Any]) -> None:
    miss = data.get("missing") or {}
    doc.h(3, "Missing answers: the assumption and its sensitivity analyses")
    tp = data.get("analysis_timepoint")
    doc.p(f"Assumption: answers missing at {tp} days are missing at random given the alliance and the covariates "
          "(whether a participant answered may depend on them, not on the unobserved answer itself). Under it the "
          "complete-case primary estimate is unbiased even when responders and non-responders differ in alliance. "
          "The assumption cannot be tested from the data; the analyses below show how much the conclusion leans on "
          "it, and are shown whatever the responders look like.")
    rows = []
    mi, ipw = miss.get("mice"), miss.get("ipw")
    if mi:
        rows.append(["multiple imputation", mi["test"], _c(mi["n"]), _fmt(mi.get("estimate")),
                     _ci(mi.get("ci_low"), mi.get("ci_high")), _p(mi.get("p"))])
    if ipw:
        rows.append(["inverse-probability weighting", ipw["test"], _c(ipw["n"]), _fmt(ipw.get("estimate")),
                     _ci(ipw.get("ci_low"), ipw.get("ci_high")), _p(ipw.get("p"))])
    if rows:
        doc.table(["analysis", "method", "n", "points per SD", "95% CI", "p"], rows)
    else:
        doc.p("No sensitivity analysis is computed: the primary estimate itself is not shown (see its rule above).")
    if mi and mi.get("estimate") is not None:
        share = f" ({_pct(mi['share_imputed'])})" if mi.get("share_imputed") is not None else ""
        tip = mi.get("tipping_point") or {}
        if tip.get("reached"):
            tip_text = (f"The conclusion would change if non-responders' self-efficacy were associated with the "
                        f"alliance by {_fmt(abs(tip['delta']))} points per SD {'less' if tip['direction'] == 'weaker' else 'more'}"
                        f" than among responders with the same covariates (pooled estimate then {_fmt(tip['estimate'])}, "
                        f"95% CI {_ci(tip['ci_low'], tip['ci_high'])}); compare with the primary estimate itself.")
        elif tip:
            tip_text = (f"No shift up to {_fmt(tip['searched_up_to'])} points per SD (half the scale) changes the "
                        "conclusion.")
        else:
            tip_text = ""
        who = (f"{_c(mi['n'])} participants with an alliance rating" if _shown(mi["n"]) or "targeted" not in mi else
               f"the {_c(mi['targeted'])} participants targeted at {tp} days less the {_c(mi['unrated'])} without an "
               "alliance rating (the exact numbers are not shown, as they would give that count away)")
        doc.p(f"Multiple imputation: {_c(mi['n_imputed'])} missing answers{share} of {who}, "
              f"imputed {mi['imputations']} times by chained equations (predictive mean matching, "
              "from the alliance, the covariates and the answers at the other time points), the primary model "
              "fitted on each completed set and pooled by Rubin's rules (Barnard-Rubin degrees of freedom). "
              "Tipping point (delta adjustment): every imputed answer shifted by delta points per SD of its "
              "alliance, the shift searched to 0.01. " + tip_text)
    if ipw and ipw.get("weights"):
        w = ipw["weights"]
        fallback = (f" Fallback: the response model with covariates could not be fitted ({w['fallback']}), so it "
                    "uses the alliance alone, and the weights correct for nothing else." if w.get("fallback") else "")
        balance = "; ".join(f"{label(b['variable'])} {_fmt(b['before'])} before, {_fmt(b['after'])} after"
                            for b in w.get("balance") or [])
        doc.p(f"Inverse-probability weighting: response model '{w['response_model']}' (a participant who answered "
              f"only at another time point counts as not answering here), stabilised weights (the share who "
              f"answered over each responder's modelled probability), truncated at the "
              f"{100 * w['truncated_at_quantile']:.0f}th percentile ({_fmt(w['truncated_at'])}; {_c(w['n_truncated'])} "
              f"weights truncated). Largest weight {_fmt(w['largest'])}, mean {_fmt(w['mean'])}, effective sample "
              f"size {_fmt(w['ess'], 1)}. Balance (standardized difference between responders and everyone modelled, "
              f"in SDs): {balance or '–'}." + fallback)


def strobe_section(doc: Doc, data: dict[str, Any]) -> None:
    """The participant flow, Table 1 by alliance tertile and the follow-up timing (STROBE items 13, 14, 6)."""
    tp = data.get("analysis_timepoint")
    doc.h(2, "Participant flow")
    doc.table(["step", "participants"], [[f["step"], _c(f["n"])] for f in data.get("flow") or []])
    doc.p("Each step is a part of the one above it (treatment episodes count stays; the others count people); a "
          "'left out' row counts the people of the step above who are not in the step below. "
          "Discharges without a follow-up are not in the dataset.")
    t1 = data.get("table1")
    if t1:
        doc.h(2, f"Table 1: participants targeted at {tp} days with an alliance rating, by alliance tertile")
        cuts = data["alliance"].get("tertile_cuts")
        doc.p("Tertiles are descriptive" + (f", cut at {_fmt(cuts[0])} and {_fmt(cuts[1])}" if cuts else "") +
              " (low: up to the first cut; high: above the second).")
        rows = [["participants"] + [_c(t1["n"][t]) for t in TERTILES]]
        for r in t1["rows"]:
            if r["kind"] == "count":
                rows.append([label(r["variable"])] + [
                    _c(r["cells"][t]["n"]) + (f" ({_pct(r['cells'][t]['share'])})"
                                              if r["cells"][t]["share"] is not None else "") for t in TERTILES])
            else:
                rows.append([f"{label(r['variable'])}: mean (SD); median [IQR]"] + [
                    f"{_fmt(c['mean'], 1)} ({_fmt(c['sd'], 1)}); {_fmt(c['median'], 1)} [{_fmt(c['q1'], 1)}-"
                    f"{_fmt(c['q3'], 1)}]" if c["mean"] is not None else "–"
                    for c in (r["cells"][t] for t in TERTILES)])
        doc.table(["characteristic"] + TERTILES, rows)
    timing = data.get("timing")
    if timing and timing.get("median") is not None:
        doc.p(f"Follow-up timing at {tp} days: {timing['what']}, median {_fmt(timing['median'], 0)} (quartiles "
              f"{_fmt(timing['q1'], 0)} and {_fmt(timing['q3'], 0)}; range {_fmt(timing['min'], 0)} to "
              f"{_fmt(timing['max'], 0)}).")


def _estimate_text(r: dict[str, Any]) -> str:
    return f"{_fmt(r['estimate'], 3)} (95% CI {_ci(r['ci_low'], r['ci_high'])}, {_p_eq(r['p'])})"


def checkins_section(doc: Doc, c: dict[str, Any]) -> None:
    """The alliance during treatment (issue 26): the check-ins' counts, the course over treatment weeks, the slope's
    link to self-efficacy beyond the discharge rating, and within- versus between-person effects."""
    doc.h(2, "The alliance during treatment")
    rule = (f"at least {c['min_participants']} participants with {c['min_checkins']} or more check-ins during "
            "treatment")
    doc.p(f"Check-ins during treatment (tablet or text; a discharge file's own rating is not one): {_c(c['n'])} from "
          f"{_c(c['participants'])} participants (their first stay with check-ins); {_c(c['participants_course'])} "
          f"participants have {c['min_checkins']} or more ({_c(c['n_course'])} check-ins), the course's data. "
          f"Sample-size rule: a model is fitted with {rule}.")
    course = c["course"]
    if not course.get("fitted"):
        doc.p(f"Fewer than {c['min_participants']} participants have {c['min_checkins']} or more check-ins: no model "
              "is fitted (counts only).")
        return
    if c["weeks"]:
        doc.table(["treatment week", "check-ins", "mean (0-6)"],
                  [[str(w["week"]), _c(w["n"]), _fmt(w["mean"])] for w in c["weeks"]])
    doc.p(f"Course: a mixed model of the check-in mean on treatment week, random intercept and slope per participant "
          f"(REML, Wald interval): the alliance changes by {_estimate_text(course)} points a week "
          f"({_c(course['n'])} check-ins of {_c(course['n_participants'])} participants)."
          + (f" The fit warned: {'; '.join(course['warnings'])}." if course.get("warnings") else ""))
    wb = c["within_between"]
    if wb.get("fitted"):
        doc.p(f"Within- versus between-person (person-mean centring of the week): within a participant, "
              f"{_estimate_text(wb['within'])} points a week; between participants, per week of a participant's "
              f"mean treatment week, {_estimate_text(wb['between'])}. A between effect unlike the within one means "
              "the average course mixes who is checked in later in a stay (longer stays) with how the alliance "
              "changes; the within effect is the change itself.")
    s = c["slope_effect"]
    tp = c["outcome_timepoint"]
    if s.get("fitted"):
        doc.p(f"Does the in-treatment slope predict self-efficacy at {tp} days beyond the discharge rating? Ordinary "
              f"least squares of self-efficacy on the discharge alliance and each participant's own least-squares "
              f"slope ({_c(s['n'])} participants): {_estimate_text(s)} points of self-efficacy per point a week of "
              f"slope (discharge alliance {_fmt(s.get('discharge_estimate'))} points per point). A slope from few or "
              "noisy check-ins is measured with error, which draws its coefficient towards zero.")
    else:
        doc.p(f"The slope's link to self-efficacy at {tp} days: {_c(s['n'])} participants with a course and an "
              f"answer, fewer than {c['min_participants']}: not fitted.")


@dataclass
class Report:
    model: rs.Model
    doc: Doc
    figures: list[Figure]

    @property
    def data(self) -> dict[str, Any]:
        return self.model.data


def build_report(df: pd.DataFrame, out: Path, *, suppress_below: int = 5, timepoint: int | None = None,
                 primary_timepoint: int = 30, checkins: pd.DataFrame | None = None) -> Report:
    """The model, the figures (written to ``out``) and the document, before report.md/html/stats.json are written.
    ``primary_timepoint``: the setting PRIMARY_TIMEPOINT.  ``checkins``: the check-in companion
    (:func:`report_checkins`); none or empty leaves its section out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = (st.summarise(df, primary_timepoint=primary_timepoint) if len(df)
               else {"too_small": True, "primary_timepoint": primary_timepoint})
    model = rs.model(df, summary, below=suppress_below, timepoint=timepoint)
    if checkins is not None and len(checkins):  # the alliance during treatment (issue 26)
        model.data["checkins"] = rs.checkins_model(checkins, df, below=suppress_below,
                                                   outcome_timepoint=primary_timepoint)
    data = model.data
    where = f" for the {timepoint}-day time point" if timepoint else " for all time points"
    doc = Doc()
    doc.h(1, TITLE)
    if not len(df):
        doc.p(f"Generated {dt.date.today():%Y-%m-%d}{where}. There are no follow-ups{where.replace(' for', ' at')} "
              "in this dataset yet, so there is nothing to report" + (" but the alliance during treatment."
                                                                       if data.get("checkins") else "."))
        if data.get("checkins"):
            checkins_section(doc, data["checkins"])
        return Report(model, doc, [])
    figs = figures(model, out)
    people = data["participants"]
    first = " (their first treatment episode)" if data["episodes"]["n_participants_multi"] != 0 else ""
    points = data["timepoints"]
    doc.p(f"Generated {dt.date.today():%Y-%m-%d}{where}. " + people_text(people, first, points) + " "
          + withdrawn_text(people) + suppression_text(suppress_below))
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
    doc.p(alliance_text(data["alliance"]))
    if not data["too_small"]:
        strobe_section(doc, data)

    doc.h(2, "Who answered")
    doc.p(" ".join(nonresponse_text(nr, data["too_small"]) for nr in data["nonresponse"])
          or "Nobody was contacted.")

    doc.h(2, "Does a stronger alliance go with better outcomes?")
    if data["too_small"]:
        doc.p(f"Only {_c(people['answered'])} participants answered, fewer than {st.MIN_RESPONDERS}: the sample is too "
              "small for stable estimates, so none are shown (counts and descriptive information only).")
    else:
        results_section(doc, data)
    if data.get("checkins"):
        checkins_section(doc, data["checkins"])
    doc.h(2, "Limitations")
    doc.ul(LIMITATIONS)
    doc.h(2, "Figures")
    for f in figs:
        doc.img(f.path, f.caption)
    doc.h(2, "Methods")
    if not data["too_small"]:
        doc.p(primary_paragraph(data))
        doc.p(PO_METHOD)
    doc.p(METHODS)
    doc.p(suppression_method(suppress_below))
    if not model.ledger.least_costly_proven:
        doc.p("In this report the integer program ran out of its time budget before it proved its choice the least "
              "costly: the counts hidden are a safe choice (every equation checked as above) but may be more than "
              "were needed.")
    return Report(model, doc, figs)


def write_report(df: pd.DataFrame, out: Path, *, suppress_below: int = 5, timepoint: int | None = None,
                 primary_timepoint: int = 30, checkins: pd.DataFrame | None = None) -> dict:
    """Write report.md, report.html, stats.json and the figures to ``out``; return the stats.json payload (the
    resolved, suppressed model).

    Patients with several treatment episodes count once: the figures, tables and statistics use each
    participant's first episode in ``df``; only the readmission sensitivity analysis uses every episode.
    """
    return save_report(build_report(df, out, suppress_below=suppress_below, timepoint=timepoint,
                                    primary_timepoint=primary_timepoint, checkins=checkins), out)


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


def report_data(engine, timepoint: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The linked dataset and the check-in companion for a report, pseudonymised with one throwaway key (the
    check-ins' slopes are joined to the same participants' outcomes)."""
    from .checkins import checkins_dataset
    from .dataset import linked_dataset

    key = secrets.token_bytes(32)
    return linked_dataset(engine, key, timepoint=timepoint), checkins_dataset(engine, key)


def report_dataset(engine, timepoint: int | None = None) -> pd.DataFrame:
    """The linked dataset for a report.  The report shows no pseudonyms, so it needs no ``EXPORT_KEY``: a throwaway
    key pseudonymises the participants in memory (it only has to tell them apart)."""
    from .dataset import linked_dataset

    return linked_dataset(engine, secrets.token_bytes(32), timepoint=timepoint)
