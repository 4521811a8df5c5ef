"""The linked dataset: one row per treatment episode and targeted time point, in the export's contract order.

A readmitted patient has one row per stay: ``participant`` is the same pseudonym,
``episode`` numbers the stays (1, 2, ... in discharge order), and each row carries
the alliance rated at that stay's discharge.

Vectorised throughout: no Python loop over rows (the pseudonym is one HMAC
per distinct patient).  Missing answers stay missing, never zero.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from outreach.study.pseudonyms import pseudonym
from outreach.study.waves import OUTCOME_RULES

from . import queries
from .queries import COVARIATES

ITEMS = [f"alliance_{i}" for i in range(1, 7)]
CONTRACT = (["participant", "episode", "timepoint_days", "status", "responded", "days_to_response",
             "contact_attempts"]
            + ITEMS + ["alliance_mean", "alliance_bond", "alliance_goal_task", "alliance_tertile",
                       "self_efficacy", "self_efficacy_high", "mental_health", "physical_health",
                       "mental_health_high", "physical_health_high", "days_used", "withdrawn", "withdrawn_days"])
TERTILES = ["low", "mid", "high"]


def pseudonyms(ids: pd.Series, key: bytes) -> pd.Series:
    """First 16 hex characters of HMAC-SHA256(key, patient_id), computed once per distinct id."""
    mapping = {pid: pseudonym(key, pid) for pid in ids.unique()}
    return ids.map(mapping)


def tertile_cuts(values: pd.Series) -> tuple[float, float]:
    q = values.dropna().quantile([1 / 3, 2 / 3])
    return float(q.iloc[0]), float(q.iloc[1])


def assign_tertiles(values: pd.Series, cuts: tuple[float, float]) -> pd.Series:
    low, high = cuts
    above = values > high
    if not above.any():  # a ceiling at the upper cut: take the ties into the top third
        above = values >= high
    out = np.select([values.isna(), values <= low, above], [None, "low", "high"], default="mid")
    return pd.Series(pd.Categorical(out, categories=TERTILES, ordered=True), index=values.index)


def _nullable_int(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("Int64")


def _flag(condition: pd.Series, source: pd.Series) -> pd.Series:
    return condition.astype("boolean").mask(source.isna()).astype("Int8")


def outcome_codes(state: pd.Series, answered: pd.Series, replied: pd.Series) -> np.ndarray:
    """The research outcome of every follow-up, by the rules ``waves status`` counts with
    (:data:`outreach.study.waves.OUTCOME_RULES`)."""
    facts = {"state": state.astype("object"), "answered": answered.astype(bool), "replied": replied.astype(bool)}
    conditions = []
    for _, when in OUTCOME_RULES[:-1]:
        cond = pd.Series(True, index=state.index)
        for k, v in when.items():
            cond &= (facts[k] == v)
        conditions.append(cond.to_numpy())
    return np.select(conditions, [code for code, _ in OUTCOME_RULES[:-1]], default=OUTCOME_RULES[-1][0])


def alliance(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per rated stay (``episode_id``): the rating's items, mean and subscales in the contract's columns.  Decoded
    once per stay, before the stay's rating is joined to each of its follow-ups."""
    out = pd.DataFrame({"episode_id": ratings["episode_id"]})
    rated = ratings["items"].notna()
    item_frame = pd.DataFrame(ratings.loc[rated, "items"].tolist(), index=ratings.index[rated]).reindex(
        index=ratings.index, columns=range(6))
    for i, col in enumerate(ITEMS):
        out[col] = _nullable_int(item_frame[i])
    rated = ratings["subscale_scores"].notna()
    subs = pd.DataFrame(ratings.loc[rated, "subscale_scores"].tolist(), index=ratings.index[rated]).reindex(
        index=ratings.index, columns=["bond", "goal_task"])  # both columns, even when no rating has subscales
    out["alliance_mean"] = pd.to_numeric(ratings["mean_score"], errors="coerce").astype("Float64")
    out["alliance_bond"] = pd.to_numeric(subs["bond"], errors="coerce").astype("Float64")
    out["alliance_goal_task"] = pd.to_numeric(subs["goal_task"], errors="coerce").astype("Float64")
    return out


def columns(identified: bool = False, covariates: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The export's header: the same with 0 rows as with many."""
    head = ["participant", "episode"] + (["patient_id", "discharge_date"] if identified else [])
    return head + CONTRACT[2:] + [c for c in COVARIATES if c in covariates]


def empty(identified: bool = False, covariates: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns(identified, covariates)})


def build(raw: pd.DataFrame, key: bytes, identified: bool = False,
          covariates: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """Turn the merged query results into the contract's columns.  ``covariates``: the covariate columns to
    write (default: those with a value in ``raw``); missing values stay missing."""
    df = pd.DataFrame(index=raw.index)
    df["participant"] = pseudonyms(raw["patient_id"], key)
    if identified:
        df["patient_id"] = raw["patient_id"].astype(str)
        df["discharge_date"] = pd.to_datetime(raw["discharge_date"]).dt.strftime("%Y-%m-%d")
    df.insert(1, "episode", raw["episode"].astype("Int64"))
    df["timepoint_days"] = raw["timepoint_days"].astype("Int64")
    values = {k: _nullable_int(raw[k]) if k in raw else pd.Series(pd.NA, index=raw.index, dtype="Int64")
              for k in queries.QUESTION_KEYS}
    responded = pd.concat(values.values(), axis=1).notna().any(axis=1)
    df["status"] = outcome_codes(raw["state"], responded, raw["last_inbound_at"].notna())
    df["responded"] = responded.astype("Int8")
    first = pd.to_datetime(raw.get("first_answer_at"))
    df["days_to_response"] = ((first.dt.normalize() - pd.to_datetime(raw["discharge_date"])).dt.days
                              .astype("Int64"))
    df["contact_attempts"] = raw.get("contact_attempts", pd.Series(0, index=raw.index)).fillna(0).astype("Int64")
    for col in ITEMS + ["alliance_mean", "alliance_bond", "alliance_goal_task"]:
        df[col] = raw[col]
    per_stay = df.drop_duplicates(["participant", "episode"])["alliance_mean"].astype("float64")
    df["alliance_tertile"] = assign_tertiles(df["alliance_mean"].astype("float64"), tertile_cuts(per_stay))
    df["self_efficacy"] = values["self_efficacy"]
    df["self_efficacy_high"] = _flag(values["self_efficacy"] >= 8, values["self_efficacy"])
    df["mental_health"] = values["mental_health"]
    df["physical_health"] = values["physical_health"]
    df["mental_health_high"] = _flag(values["mental_health"] >= 4, values["mental_health"])
    df["physical_health_high"] = _flag(values["physical_health"] >= 4, values["physical_health"])
    df["days_used"] = values["days_used"]
    # Withdrew from the study, keeping their answers (those who asked for removal are no longer in the database).
    withdrawn_at = pd.to_datetime(raw["withdrawn_at"]) if "withdrawn_at" in raw else pd.Series(pd.NaT, index=raw.index)
    df["withdrawn"] = withdrawn_at.notna().astype("Int8")
    df["withdrawn_days"] = ((withdrawn_at.dt.normalize() - pd.to_datetime(raw["discharge_date"])).dt.days
                            .astype("Int64"))
    if covariates is None:
        covariates = [c for c in COVARIATES if c in raw and raw[c].notna().any()]
    for c in COVARIATES:
        if c in covariates:
            values = raw[c] if c in raw else pd.Series(pd.NA, index=raw.index)
            df[c] = _nullable_int(values) if c in ("age", "length_of_stay_days") else values.astype("string")
    return df.reset_index(drop=True)


def linked_dataset(engine: Engine, key: bytes, timepoint: int | None = None, identified: bool = False) -> pd.DataFrame:
    """The linked dataset.  Its header does not depend on the rows selected: a covariate column is written when
    any stay or patient in the database has a value for it, so a time point without follow-ups gives the same
    header with 0 rows.

    One state of the database: the queries read one snapshot (:func:`queries.snapshot`), so that nothing written
    meanwhile shows in one query's answer and not in another's."""
    with queries.snapshot(engine) as conn:
        covariates = queries.covariates_present(conn)
        raw = queries.followups(conn, timepoint)
        if raw.empty:
            return empty(identified, covariates)
        ratings = queries.ratings(conn, timepoint)
        answers = queries.answers_wide(conn, timepoint)
        contacts = queries.contact_attempts(conn)
    raw = raw.sort_values(["patient_pk", "episode", "timepoint_days"], kind="stable", ignore_index=True)
    raw = (raw.merge(alliance(ratings), on="episode_id", how="left")
           .merge(answers, on="followup_id", how="left")
           .merge(contacts, on="followup_id", how="left"))
    return build(raw, key, identified, covariates)
