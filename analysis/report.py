"""The researchers' report: report.md, report.html, stats.json and PNG figures.

Counts from 1 to SUPPRESS_BELOW-1 are shown as ``<5`` in tables, figure labels
and stats.json, so the report can be shared.  Everything but the readmission
sensitivity analysis describes each participant's first treatment episode in
the data (``stats.first_episodes``).
"""
from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats as st

FUNNEL_STAGES = [("targeted", "Targeted"), ("replied", "Replied"), ("responded", "Answered"),
                 ("completed", "Completed")]
TERTILES = ["low", "mid", "high"]


@dataclass
class Suppressor:
    below: int = 5

    def __call__(self, count: int | float | None) -> str:
        if count is None or (isinstance(count, float) and np.isnan(count)):
            return "–"
        count = int(count)
        return f"<{self.below}" if 0 < count < self.below else str(count)

    def value(self, count: int) -> int | str:
        return self(count) if 0 < count < self.below else int(count)


# -- document model: rendered to Markdown and HTML from one source -----------------------------------------------
def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) < 0.001 and x != 0:
            return "<0.001"
        return f"{x:.{digits}f}"
    return str(x)


def _p(p: float | None) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _p_eq(p: float | None) -> str:
    """``p = 0.012`` or ``p < 0.001`` for running text."""
    text = _p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


class Doc:
    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def img(self, file: str, alt: str) -> None:
        self.blocks.append(("img", (file, alt)))

    def markdown(self) -> str:
        out = []
        for kind, b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + b[1])
            elif kind == "p":
                out.append(b)
            elif kind == "table":
                header, rows = b
                out.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" +
                           "\n".join("| " + " | ".join(r) + " |" for r in rows))
            elif kind == "img":
                out.append(f"![{b[1]}]({b[0]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
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
            elif kind == "table":
                header, rows = b
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" +
                           "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                   for r in rows) + "</table>")
            elif kind == "img":
                out.append(f"<figure><img src='{html.escape(b[0])}' alt='{html.escape(b[1])}'>"
                           f"<figcaption>{html.escape(b[1])}</figcaption></figure>")
        return "\n".join(out) + "</body></html>\n"


# -- descriptive pieces ---------------------------------------------------------------------------------------
def funnel_table(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("timepoint_days")
    table = pd.DataFrame({
        "targeted": g.size(),
        "replied": g["status"].apply(lambda s: int((~s.isin(["no_reply", "undeliverable"])).sum())),
        "responded": g["responded"].sum().astype(int),
        "completed": g["status"].apply(lambda s: int((s == "completed").sum())),
        "partial": g["status"].apply(lambda s: int((s == "partial").sum())),
        "opted_out": g["status"].apply(lambda s: int((s == "opted_out").sum())),
        "no_reply": g["status"].apply(lambda s: int((s == "no_reply").sum())),
    })
    return table


def alliance_summary(df: pd.DataFrame, stays: pd.DataFrame | None = None) -> dict[str, Any]:
    """One rating per participant in ``df``; tertile cut points over ``stays`` (default ``df``), one per episode.

    The linked dataset cuts its tertiles over every episode's rating, so pass the whole dataset as ``stays``
    when ``df`` holds first episodes only.
    """
    per = df.drop_duplicates("participant")["alliance_mean"].astype("float64").dropna()
    stays = df if stays is None else stays
    rated = stays.drop_duplicates(["participant", "episode"] if "episode" in stays else ["participant"])
    rated = rated["alliance_mean"].astype("float64").dropna()
    cuts = rated.quantile([1 / 3, 2 / 3]) if len(rated) else pd.Series([np.nan, np.nan])
    return {"n": int(len(per)), "mean": float(per.mean()) if len(per) else None,
            "sd": float(per.std()) if len(per) > 1 else None, "median": float(per.median()) if len(per) else None,
            "at_ceiling": int((per == 6).sum()), "share_at_ceiling": float((per == 6).mean()) if len(per) else None,
            "tertile_cuts": [float(cuts.iloc[0]), float(cuts.iloc[1])] if len(per) else None}


def share_by_tertile(df: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    out = {}
    for t in TERTILES:
        values = pd.to_numeric(df.loc[df["alliance_tertile"] == t, column], errors="coerce").dropna()
        share, lo, hi = st.wilson(int(values.sum()), int(len(values)))
        out[t] = {"n": int(len(values)), "events": int(values.sum()), "share": share, "ci_low": lo, "ci_high": hi}
    return out


# -- figures --------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figures(df: pd.DataFrame, out: Path, sup: Suppressor, funnel: pd.DataFrame) -> list[tuple[str, str]]:
    plt = _plt()
    made: list[tuple[str, str]] = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append((name, caption))

    # 1. contact funnel per time point
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.9 * max(len(funnel), 1)))
    height = 0.8 / len(FUNNEL_STAGES)
    for i, (key, label) in enumerate(FUNNEL_STAGES):
        ys = np.arange(len(funnel)) + i * height
        ax.barh(ys, funnel[key], height=height, label=label)
        for y, v in zip(ys, funnel[key]):
            ax.text(v, y, " " + sup(v), va="center", fontsize=8)
    ax.set_yticks(np.arange(len(funnel)) + 0.4 - height / 2, [f"{t} days" for t in funnel.index])
    ax.invert_yaxis()
    ax.set_xlabel("patients")
    ax.set_xlim(0, max(float(funnel["targeted"].max()) if len(funnel) else 1, 1) * 1.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("Contact funnel per time point")
    save(fig, "fig1_funnel.png", "Contact funnel per time point")

    # 2. alliance distribution with the ceiling visible
    per = df.drop_duplicates("participant")["alliance_mean"].astype("float64").dropna()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bins = np.arange(0, 6.26, 0.25)
    counts, edges, bars = ax.hist(per, bins=bins, color="#4878a8", edgecolor="white")
    if len(bars):
        bars[-1].set_color("#c44e52")
    ceiling = int((per == 6).sum())
    ax.annotate(f"ceiling (6.0): {sup(ceiling)}", xy=(6.125, counts[-1] if len(counts) else 0), xytext=(3.2, max(
        counts.max() if len(counts) else 1, 1) * 0.85), arrowprops={"arrowstyle": "->"})
    ax.set_xlabel("alliance mean score at discharge (0-6)")
    ax.set_ylabel("participants")
    ax.set_title("Alliance at discharge")
    save(fig, "fig2_alliance.png", "Distribution of the alliance score at discharge (red: ceiling)")

    # 3. self-efficacy by tertile: box and points
    groups = [pd.to_numeric(df.loc[df["alliance_tertile"] == t, "self_efficacy"], errors="coerce").dropna()
              for t in TERTILES]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot([g.values for g in groups], tick_labels=[f"{t}\nn={sup(len(g))}" for t, g in zip(TERTILES, groups)],
               showfliers=False)
    rng = np.random.default_rng(0)
    for i, g in enumerate(groups, 1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(g)), g + rng.uniform(-0.15, 0.15, len(g)), s=8, alpha=0.4)
    ax.set_ylabel("self-efficacy (0-10)")
    ax.set_xlabel("alliance tertile")
    ax.set_title("Self-efficacy by alliance tertile")
    save(fig, "fig3_self_efficacy.png", "Self-efficacy by alliance tertile (box and points)")

    # 4. share very good/excellent health by tertile, with 95% CIs
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, (col, label) in enumerate([("mental_health_high", "mental health"),
                                      ("physical_health_high", "physical health")]):
        shares = share_by_tertile(df, col)
        xs = np.arange(3) + (j - 0.5) * 0.38
        ys = [shares[t]["share"] or 0 for t in TERTILES]
        err = [[(shares[t]["share"] or 0) - (shares[t]["ci_low"] or 0) for t in TERTILES],
               [(shares[t]["ci_high"] or 0) - (shares[t]["share"] or 0) for t in TERTILES]]
        ax.bar(xs, ys, width=0.36, yerr=err, capsize=4, label=label)
        for x, t in zip(xs, TERTILES):
            ax.text(x, 0.02, f"{sup(shares[t]['events'])}/{sup(shares[t]['n'])}", ha="center", fontsize=7,
                    color="white")
    ax.set_xticks(np.arange(3), TERTILES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share very good or excellent")
    ax.set_xlabel("alliance tertile")
    ax.legend(fontsize=8)
    ax.set_title("Very good/excellent self-rated health by alliance tertile (95% CI)")
    save(fig, "fig4_health.png", "Share with very good or excellent mental and physical health by tertile, 95% CI")

    # 5. response rate by tertile
    shares = share_by_tertile(df, "responded")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ys = [shares[t]["share"] or 0 for t in TERTILES]
    err = [[ys[i] - (shares[t]["ci_low"] or 0) for i, t in enumerate(TERTILES)],
           [(shares[t]["ci_high"] or 0) - ys[i] for i, t in enumerate(TERTILES)]]
    ax.bar(TERTILES, ys, yerr=err, capsize=4, color="#55a868")
    for i, t in enumerate(TERTILES):
        ax.text(i, 0.02, f"{sup(shares[t]['events'])}/{sup(shares[t]['n'])}", ha="center", fontsize=8, color="white")
    ax.set_ylim(0, 1)
    ax.set_ylabel("response rate")
    ax.set_xlabel("alliance tertile")
    ax.set_title("Response rate by alliance tertile (non-response bias)")
    save(fig, "fig5_response.png", "Response rate by alliance tertile, 95% CI")

    # 6. outcomes across time points by tertile
    answered = df[pd.to_numeric(df["self_efficacy"], errors="coerce").notna()]
    if answered["timepoint_days"].nunique() > 1:
        panels = [("self_efficacy", "mean self-efficacy (0-10)"),
                  ("mental_health_high", "share very good/excellent\nmental health"),
                  ("physical_health_high", "share very good/excellent\nphysical health")]
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
        for ax, (col, label) in zip(axes, panels):
            values = df.assign(v=pd.to_numeric(df[col], errors="coerce").astype("float64")).dropna(subset=["v"])
            for t in TERTILES:
                g = values[values["alliance_tertile"] == t].groupby("timepoint_days")["v"].mean()
                ax.plot(g.index.astype(int), g.values, marker="o", label=t)
            ax.set_xlabel("days after discharge")
            ax.set_ylabel(label)
        axes[0].legend(title="alliance tertile", fontsize=8)
        fig.suptitle("Outcomes across time points by alliance tertile")
        save(fig, "fig6_timepoints.png", "Outcomes across time points by alliance tertile")
    return made


# -- the report -----------------------------------------------------------------------------------------------
def _row(r: dict[str, Any], label: str) -> list[str]:
    return [label, r["test"], str(r["n"]), _fmt(r["estimate"]),
            f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}" if r["ci_low"] is not None else "–", _p(r["p"]),
            _p(r.get("p_holm"))]


def _suppress_tables(results: list[dict[str, Any]], sup: Suppressor) -> None:
    for r in results:  # every high_vs_other result carries its 2x2 table
        r["table"] = [[sup.value(c) for c in row] for row in r["table"]]


def _episodes_shown(episodes: dict[str, Any], n_participants: int, sup: Suppressor) -> int | None:
    """The number of episodes, or None when it would give away a suppressed count (the readmissions)."""
    extra = episodes["n_episodes"] - n_participants
    return episodes["n_episodes"] if isinstance(sup.value(extra), int) else None


def _sensitivity_n(sensitivity: dict[str, Any], primary_n: int, sup: Suppressor) -> int | str:
    """The all-episodes n, as ``primary n+<5`` when the answers it adds to the primary analysis are that few."""
    added = sensitivity["n"] - primary_n
    return sensitivity["n"] if isinstance(sup.value(added), int) else f"{primary_n}+{sup(added)}"


def readmissions_text(summary: dict[str, Any], sup: Suppressor) -> str:
    """How many participants have several episodes, which episode the analysis uses, and the sensitivity row."""
    episodes = summary["episodes"]
    multi = episodes["n_participants_multi"]
    if not multi:
        return ("No participant has more than one treatment episode in this dataset, so the primary analysis "
                "covers every episode.")
    total = _episodes_shown(episodes, summary["n_participants"], sup)
    text = (f"{sup(multi)} participant{' has' if sup(multi) == '1' else 's have'} more than one treatment episode"
            + (f" ({total} episodes in all)" if total is not None else "") +
            ". The primary analysis uses each participant's first episode in this dataset, with that episode's "
            "alliance rating, so every participant counts once per time point")
    if summary.get("too_small"):
        return text + "."
    if episodes.get("sensitivity") is None:
        return (text + "; no answer comes from a later episode, so an analysis of every episode would use the "
                "same answers and none is shown.")
    return (text + "; the sensitivity analysis (the 'all episodes' row of the self-efficacy table below) uses "
            "every episode, with standard errors clustered by participant.")


def write_report(df: pd.DataFrame, out: Path, *, suppress_below: int = 5, timepoint: int | None = None) -> dict:
    """Write report.md, report.html, stats.json and the figures to ``out``; return the stats.json payload.

    Patients with several treatment episodes count once: the figures, tables and statistics use each
    participant's first episode in ``df``; only the readmission sensitivity analysis uses every episode.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sup = Suppressor(suppress_below)
    summary = st.summarise(df) if len(df) else {"n_rows": 0, "n_responders": 0, "too_small": True}
    every_episode, df = df, st.first_episodes(df)  # the primary data, from here on
    funnel = funnel_table(df) if len(df) else pd.DataFrame(columns=[k for k, _ in FUNNEL_STAGES])
    alliance = alliance_summary(df, stays=every_episode) if len(df) else {}
    doc = Doc()
    title = "Therapeutic alliance at discharge and outcomes after discharge"
    doc.h(1, title)
    first = " at their first treatment episode" if summary.get("episodes", {}).get("n_participants_multi") else ""
    doc.p(f"Generated {dt.date.today():%Y-%m-%d}"
          + (f" for the {timepoint}-day time point" if timepoint else " for all time points") +
          f". {summary['n_rows']} follow-ups of {df['participant'].nunique() if len(df) else 0} participants{first}; "
          f"{summary['n_responders']} gave at least one answer. Counts from 1 to {suppress_below - 1} are shown as "
          f"<{suppress_below}.")
    figs = figures(df, out, sup, funnel) if len(df) else []
    if len(df):
        doc.h(2, "Readmissions")
        doc.p(readmissions_text(summary, sup))
    doc.h(2, "Contact")
    doc.table(["time point"] + [c.replace("_", " ") for c in funnel.columns],
              [[f"{t} days"] + [sup(v) for v in row] for t, row in funnel.iterrows()])
    doc.h(2, "Alliance at discharge")
    if alliance.get("n"):
        doc.p(f"n = {alliance['n']}, mean {_fmt(alliance['mean'])} (SD {_fmt(alliance['sd'])}), median "
              f"{_fmt(alliance['median'])}; {sup(alliance['at_ceiling'])} participants "
              f"({100 * alliance['share_at_ceiling']:.0f}%) at the ceiling of 6. Tertile cut points: "
              f"{_fmt(alliance['tertile_cuts'][0])} and {_fmt(alliance['tertile_cuts'][1])}.")
    nr = summary.get("nonresponse")
    doc.h(2, "Who answered")
    if nr and nr.get("estimate") is not None:
        verdict = ("Responders rated the alliance differently from non-responders, so estimates based on "
                   "responders alone may be biased; see the weighted sensitivity estimate below."
                   if nr["differs"] else "Responders and non-responders rated the alliance similarly.")
        doc.p(f"Mean alliance {_fmt(nr['mean_responders'])} among {sup(nr['n_responders'])} responders vs "
              f"{_fmt(nr['mean_nonresponders'])} among {sup(nr['n_nonresponders'])} non-responders; standardized "
              f"difference {_fmt(nr['estimate'])} (95% CI {_fmt(nr['ci_low'])} to {_fmt(nr['ci_high'])}), "
              f"Mann-Whitney U {_p_eq(nr['p'])}. {verdict}")
    doc.h(2, "Does a stronger alliance go with better outcomes?")
    header = ["outcome", "test", "n", "estimate", "95% CI", "p", "p (Holm)"]
    if summary.get("too_small"):
        doc.p(f"Only {summary['n_responders']} people answered, fewer than {st.MIN_RESPONDERS}: the sample is too "
              "small for stable estimates, so none are shown.")
    else:
        doc.h(3, "Rank correlation with the alliance score")
        doc.table(header, [_row(r, st.OUTCOMES[r["outcome"]]) for r in summary["spearman"]])
        doc.h(3, "Self-efficacy of 8 or more: odds ratio per SD of alliance")
        sensitivity = summary["episodes"]["sensitivity"]
        if sensitivity:  # its n would give away a suppressed number of later-episode answers
            sensitivity["n"] = _sensitivity_n(sensitivity, summary["logistic"][0]["n"], sup)
        doc.table(header, [_row(r, "self-efficacy 8+") for r in summary["logistic"] + [summary["ipw"]]]
                  + ([_row(sensitivity, "self-efficacy 8+, all episodes")] if sensitivity else []))
        doc.p("The IPW row weights responders by the inverse of their modelled probability of answering "
              "(response on alliance and covariates): a sensitivity analysis for non-response."
              + (" The all-episodes row adds the answers from participants' later treatment episodes, each with "
                 "that episode's alliance rating, and clusters the standard errors by participant: a "
                 "sensitivity analysis for readmissions." if sensitivity else ""))
        doc.h(3, "Self-rated health: proportional-odds regression, odds ratio per SD of alliance")
        doc.table(header, [_row(r, st.OUTCOMES[r["outcome"]]) for r in summary["ordinal"]])
        doc.h(3, "Highest alliance tertile vs the other two")
        _suppress_tables(summary["high_vs_other"], sup)
        doc.table(header + ["high: yes/no", "other: yes/no"], [
            _row(r, st.BINARY[r["outcome"]]) + [f"{r['table'][0][0]}/{r['table'][0][1]}",  # suppressed above
                                                f"{r['table'][1][0]}/{r['table'][1][1]}"]
            for r in summary["high_vs_other"]])
        doc.table(["outcome", "test", "n", "share low", "share mid", "share high", "p", "p (Holm)"], [
            [st.BINARY[r["outcome"]], r["test"], str(r["n"])] +
            [_fmt((r.get("shares") or {}).get(t)) for t in TERTILES] + [_p(r["p"]), _p(r.get("p_holm"))]
            for r in summary["trend"]])
        mixed = summary.get("mixed")
        doc.h(3, "Across time points")
        if mixed:
            sample = (f" (a random sample of the {mixed['sampled_from']} participants, for speed)"
                      if mixed.get("sampled_from", 0) > mixed["n_participants"] else "")
            doc.p(f"{mixed['test']}, n = {mixed['n']} answers of {mixed['n_participants']} participants{sample} at "
                  f"{', '.join(map(str, mixed['timepoints']))} days. Alliance effect {_fmt(mixed['estimate'])} "
                  f"{mixed['scale']} (95% CI {_fmt(mixed['ci_low'])} to {_fmt(mixed['ci_high'])}, "
                  f"{_p_eq(mixed['p'])}).")
            doc.table(["term", "estimate", "95% CI", "p"], [
                [k, _fmt(v["estimate"]), f"{_fmt(v['ci_low'])} to {_fmt(v['ci_high'])}", _p(v["p"])]
                for k, v in mixed["terms"].items()])
        else:
            doc.p(f"Fewer than two time points have {st.MIN_RESPONDERS} or more answers: no model across time.")
    doc.h(2, "Figures")
    for name, caption in figs:
        doc.img(name, caption)
    doc.h(2, "Methods")
    doc.p("Alliance: mean of the six 0-6 items when at least five are answered; tertiles are cut over the "
          "ratings of every treatment episode in this dataset. Outcomes: self-efficacy 0-10 (high = 8 or more); "
          "self-rated mental and physical health coded 1 = poor to 5 = excellent (high = very good or "
          "excellent). Odds ratios are per standard deviation of the alliance score in the analysed sample. "
          "Spearman confidence intervals use Fisher's z with the Bonett-Wright standard error. 2x2 tables use "
          "Fisher's exact test when an expected count is below 5, else Pearson's chi-square. Holm's method "
          "adjusts p-values within each family of outcomes. "
          "Patients readmitted for treatment have several episodes, each with its own discharge alliance rating: "
          "every analysis except one uses each participant's first episode in this dataset (the earliest "
          "discharge), so the mixed model's random intercept per participant sees one episode each; the "
          "sensitivity analysis for readmissions repeats the unadjusted logistic regression on every episode "
          "with cluster-robust (sandwich) standard errors by participant.")
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(title), encoding="utf-8")
    payload = {"generated": dt.date.today().isoformat(), "timepoint": timepoint, "suppress_below": suppress_below,
               "funnel": {str(t): {k: sup.value(int(v)) for k, v in row.items()} for t, row in funnel.iterrows()},
               "alliance": {**alliance, "at_ceiling": sup.value(alliance.get("at_ceiling", 0))} if alliance else {},
               "figures": [name for name, _ in figs], **summary}
    if "episodes" in summary:
        episodes = summary["episodes"]
        payload["episodes"] = {**episodes, "n_participants_multi": sup.value(episodes["n_participants_multi"]),
                               "n_episodes": _episodes_shown(episodes, summary["n_participants"], sup)}
    if len(df) and not summary.get("too_small"):
        payload["shares_by_tertile"] = {c: {t: {**v, "n": sup.value(v["n"]), "events": sup.value(v["events"])}
                                            for t, v in share_by_tertile(df, c).items()}
                                        for c in ("responded", "self_efficacy_high", "mental_health_high",
                                                  "physical_health_high")}
    (out / "stats.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return payload
