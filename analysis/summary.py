"""The demo's analysis step: export the de-identified results and write the report, return a summary."""
from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import Engine

from .dataset import linked_dataset
from .export import write
from .report import write_report


def analyse_demo(engine: Engine, directory: Path) -> list[str]:
    key = secrets.token_bytes(32)  # the demo's own pseudonym key; a real study sets EXPORT_KEY
    df = linked_dataset(engine, key)
    write(df, Path(directory) / "results.csv", "csv")
    return summary_lines(write_report(df, Path(directory) / "report"))


def summary_lines(payload: dict) -> list[str]:
    if payload.get("too_small"):
        return [f"only {payload['n_responders']} responders: too few for estimates"]
    fmt = lambda r: (f"{r['estimate']:.2f} (95% CI {r['ci_low']:.2f} to {r['ci_high']:.2f}), "  # noqa: E731
                     f"p {'< 0.001' if r['p'] < 0.001 else '= ' + format(r['p'], '.3f')}, n = {r['n']}")
    lines = [f"{payload['n_responders']} of {payload['n_rows']} follow-ups answered"]
    for r in payload["spearman"]:
        lines.append(f"Spearman rho, alliance vs {r['outcome'].replace('_', ' ')}: {fmt(r)}")
    for r in payload["logistic"][:1] + payload["ordinal"]:
        lines.append(f"odds ratio per SD of alliance, {r['outcome'].replace('_', ' ')}: {fmt(r)}")
    nr = payload["nonresponse"]
    lines.append(f"non-response: responders' mean alliance {nr['mean_responders']:.2f} vs "
                 f"{nr['mean_nonresponders']:.2f}" + (" (they differ: see the weighted estimate in the report)"
                                                     if nr["differs"] else ""))
    return lines
