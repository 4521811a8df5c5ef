"""The demo's analysis step: export the de-identified results and write the report, return a summary."""
from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import Engine

from .dataset import linked_dataset
from .export import write
from .report import association_text, nonresponse_text, write_report


def analyse_demo(engine: Engine, directory: Path) -> list[str]:
    key = secrets.token_bytes(32)  # the demo's own pseudonym key; a real study sets EXPORT_KEY
    df = linked_dataset(engine, key)
    write(df, Path(directory) / "results.csv", "csv")
    return summary_lines(write_report(df, Path(directory) / "report"))


def summary_lines(payload: dict) -> list[str]:
    """The report's headline numbers, as published (suppressed) in stats.json."""
    people = payload["participants"]
    hidden = "x" in (people["answered"], people["targeted"])
    lines = ["participants who answered: hidden in the report (it would give a small count away)" if hidden else
             f"{people['answered']} of {people['targeted']} participants answered at least one question"]
    if payload.get("too_small"):
        return lines + [f"fewer than {payload['min_responders']} participants answered: too few for estimates"]
    fmt = lambda r, n=None: (f"{r['estimate']:.2f} (95% CI {r['ci_low']:.2f} to {r['ci_high']:.2f}), "  # noqa: E731
                             f"p {'< 0.001' if r['p'] < 0.001 else '= ' + format(r['p'], '.3f')}, "
                             f"n = {r['n'] if n is None else n}")
    for r in payload["spearman"]:
        if r["estimate"] is not None:
            lines.append(f"Spearman rho, alliance vs {r['outcome'].replace('_', ' ')}: {fmt(r)}")
    estimates = payload.get("estimates") or []
    for r in estimates:
        if r["role"] in ("primary", "secondary") and r["estimate"] is not None:
            scale = "odds ratio per SD of alliance" if "odds ratio" in r["scale"] else "points per SD of alliance"
            lines.append(f"{r['role']}, {scale}, {r['outcome'].replace('_', ' ')} at {r['timepoint']} days "
                         f"(adjusted): {fmt(r)}")
    lines.append(association_text(next((r for r in estimates if r["role"] == "primary"), None),
                                  payload.get("analysis_timepoint"), payload.get("analysis_is_primary") is not False,
                                  next((r for r in estimates if r["role"] == "descriptive"), None)))
    lines += ["non-response: " + nonresponse_text(nr, False) for nr in payload["nonresponse"]]
    mi = (payload.get("missing") or {}).get("mice")
    if mi and mi.get("estimate") is not None:
        n = (f"the {mi['targeted']} targeted at {payload.get('analysis_timepoint')} days less {mi['unrated']} without "
             "an alliance rating" if mi["n"] == "x" and mi.get("targeted") is not None else None)  # as the report says
        lines.append(f"multiple imputation ({mi['imputations']} imputations), points per SD of alliance: {fmt(mi, n)}")
    return lines
