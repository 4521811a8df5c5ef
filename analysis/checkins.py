"""The companion file of alliance check-ins during treatment (issue 26): ``outreach export --out FILE`` also writes
``FILE``'s ``*.alliance_checkins.*`` in the same format, with its codebook, de-identified like the main file (the
same participant pseudonym, the stay's episode number, no date: days from admission and to discharge only), with the
main file's ``withdrawn`` flag, so a researcher reading the check-ins alone knows who withdrew."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, func, select

from outreach.models import AllianceCheckin, Episode, Patient

from .dataset import pseudonyms

ITEMS = [f"checkin_{i}" for i in range(1, 7)]
CONTRACT = ["participant", "episode", "treatment_week", "days_since_admission", "days_before_discharge", "method",
            *ITEMS, "checkin_mean", "checkin_bond", "checkin_goal_task", "withdrawn"]
UNIT = ("One row per alliance check-in during a treatment stay (weekly on the tablet or by text, and the "
        "discharge file's own rating, method 'import'); count people with 'participant', not rows")


def companion_path(path: Path) -> Path:
    """``FILE.alliance_checkins.EXT`` beside ``FILE.EXT``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.alliance_checkins{path.suffix}")


def checkins_dataset(engine: Engine, key: bytes) -> pd.DataFrame:
    """One row per check-in, oldest first within each participant and stay.  One query."""
    numbered = select(Episode.id, func.row_number().over(
        partition_by=Episode.patient_id, order_by=(Episode.discharge_date.asc().nulls_last(), Episode.id)
    ).label("episode")).subquery()
    stmt = (select(Patient.patient_id, numbered.c.episode, AllianceCheckin.treatment_week,
                   AllianceCheckin.days_since_admission, AllianceCheckin.taken_at, Episode.discharge_date,
                   AllianceCheckin.method, AllianceCheckin.items, AllianceCheckin.mean_score,
                   AllianceCheckin.subscale_scores, Patient.withdrawn_at)
            .join(Episode, Episode.id == AllianceCheckin.episode_id)
            .join(numbered, numbered.c.id == Episode.id)
            .join(Patient, Patient.id == AllianceCheckin.patient_id)
            .order_by(Patient.patient_id, numbered.c.episode, AllianceCheckin.taken_at, AllianceCheckin.id))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    if not rows:
        return pd.DataFrame({c: [] for c in CONTRACT})
    raw = pd.DataFrame(rows, columns=["patient_id", "episode", "treatment_week", "days_since_admission", "taken_at",
                                      "discharge_date", "method", "items", "mean", "subscales", "withdrawn_at"])
    df = pd.DataFrame({"participant": pseudonyms(raw["patient_id"], key),
                       "episode": raw["episode"].astype("Int64"),
                       "treatment_week": raw["treatment_week"].astype("Int64"),
                       "days_since_admission": raw["days_since_admission"].astype("Int64")})
    taken = pd.to_datetime(raw["taken_at"]).dt.normalize()
    df["days_before_discharge"] = (pd.to_datetime(raw["discharge_date"]) - taken).dt.days.astype("Int64")
    df["method"] = pd.Categorical(raw["method"], categories=["tablet", "sms", "import"])
    items = pd.DataFrame(raw["items"].tolist(), columns=ITEMS)
    for c in ITEMS:
        df[c] = pd.to_numeric(items[c], errors="coerce").astype("Int64")
    df["checkin_mean"] = pd.to_numeric(raw["mean"], errors="coerce")
    df["checkin_bond"] = pd.to_numeric(raw["subscales"].map(lambda s: (s or {}).get("bond")), errors="coerce")
    df["checkin_goal_task"] = pd.to_numeric(raw["subscales"].map(lambda s: (s or {}).get("goal_task")), errors="coerce")
    # As the main file: withdrew, keeping what was given (those who asked for removal are no longer in the database).
    df["withdrawn"] = pd.to_datetime(raw["withdrawn_at"]).notna().astype("Int8")
    return df[CONTRACT]


def write_companion(engine: Engine, key: bytes, path: Path, fmt: str, *, suppress_below: int = 5,
                    private: bool = False) -> tuple[Path, int]:
    """Write the check-ins beside ``path`` (same format, its own codebook); (its path, its rows)."""
    from .export import write

    df = checkins_dataset(engine, key)
    out = companion_path(path)
    write(df, out, fmt, private=private, suppress_below=suppress_below, unit=UNIT)
    return out, len(df)
