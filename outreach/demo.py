"""``outreach demo``: a fresh database under ./demo/ and a synthetic cohort run through the service."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import load_settings
from .db import make_engine, session_factory, unit_of_work, upgrade
from .importer import import_discharges
from .models import AllianceRating
from .synthetic import discharge_rows, write_discharges


def alliance_distribution(session: Session) -> list[str]:
    scores = sorted(s for s in session.scalars(select(AllianceRating.mean_score)) if s is not None)
    missing = session.scalar(select(AllianceRating.id).where(AllianceRating.mean_score.is_(None)).limit(1))
    if not scores:
        return ["no alliance scores"]
    n = len(scores)
    bins = [(lo, lo + 1) for lo in range(6)]
    counts = [sum(1 for s in scores if lo <= s < hi or (hi == 6 and s == 6)) for lo, hi in bins]
    at_ceiling = sum(1 for s in scores if s == 6)
    lines = [f"alliance mean score (0-6), n={n}: mean {sum(scores) / n:.2f}, "
             f"median {scores[n // 2]:.2f}, at the ceiling (6.0) {at_ceiling} ({100 * at_ceiling / n:.0f}%)"
             + ("" if missing is None else "; some patients have too few items for a score")]
    width = max(counts)
    for (lo, hi), c in zip(bins, counts):
        label = f"{lo}-{hi}" + ("]" if hi == 6 else ")")
        lines.append(f"  [{label:<4} {c:5d} {'#' * round(40 * c / width)}")
    return lines


def run_demo(directory: Path, *, patients: int = 300, seed: int = 7, echo: Callable[[str], None] = print) -> None:
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    db_path = directory / "outreach.db"
    settings = load_settings({"DATABASE_URL": f"sqlite:///{db_path}"})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)

    csv_path = write_discharges(directory / "discharges.csv", discharge_rows(patients, seed=seed, invalid=6))
    echo(f"generated {csv_path} ({patients} synthetic discharges and 6 broken rows)")
    with unit_of_work(sessions) as session:
        result = import_discharges(session, csv_path, settings, skip_invalid=True)
    for error in result.errors:
        echo(f"  {error}")
    echo(result.summary)
    with unit_of_work(sessions) as session:
        for line in alliance_distribution(session):
            echo(line)
    echo(f"files are in {directory}/: outreach.db, discharges.csv, discharges.rejected.csv")
    engine.dispose()
