"""Plain query functions: the database in, one DataFrame per question out (aggregated in SQL).

Each takes an engine (a connection of its own per query) or a connection; :func:`snapshot` gives connections
that all read one and the same state of the database, so that the answers of several queries fit together."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Date, DateTime, Dialect, Engine, Text, case, cast, exists, func, select
from sqlalchemy.types import TypeEngine

from outreach.models import AllianceRating, Answer, Episode, FollowUp, Message, Patient
from outreach.repository import research_followups

QUESTION_KEYS = ["self_efficacy", "mental_health", "physical_health", "days_used"]
COVARIATES = ["age", "sex", "length_of_stay_days", "primary_substance", "program"]
PATIENT_COVARIATES = ["age", "sex"]
EPISODE_COVARIATES = ["length_of_stay_days", "primary_substance", "program"]


Bind = Engine | Connection


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection in one read-only transaction that sees one committed state of the database however long its
    queries take and whatever is written meanwhile: REPEATABLE READ on PostgreSQL; on SQLite (WAL) a read
    transaction, which sees the database as it was at its first read, begun plainly (a deferred BEGIN, not the
    engine's BEGIN IMMEDIATE: a reader takes no write lock, so the webhook's writes go on while the queries run).

    One connection, the queries one after another.  Read in two threads on two connections (a snapshot exported and
    shared on PostgreSQL), the load took as long or longer on a 2-core machine: the work is the driver's and pandas'
    conversion of the rows, which holds the interpreter.  A forked process reading half of the queries in the same
    snapshot saved 1.6-1.8 s of 6.6 s, but on SQLite it must hold the write lock while the two transactions begin
    (texts then wait); it is measured in docs/benchmarks.md and left out."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        elif engine.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")  # the read transaction starts here
                if not conn.connection.dbapi_connection.in_transaction:
                    raise RuntimeError("the SQLite engine must come from outreach.db.make_engine "
                                       "(which begins its transactions itself)")
            yield conn


@contextlib.contextmanager
def _connection(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _frame(engine: Bind, stmt) -> pd.DataFrame:
    """Run ``stmt`` and build the DataFrame column by column from the driver's own rows.

    SQLAlchemy's conversion of each value of each row (dates SQLite keeps as text, JSON) cost more than the
    queries themselves, so the rows are read from the DBAPI cursor and converted a column at a time: dates and
    times by :func:`pandas.to_datetime` (SQLite's text and PostgreSQL's date objects alike), a type with a
    conversion of its own by SQLAlchemy's converter for the dialect; pandas infers the rest's dtype.  JSON is
    selected as text and decoded by :func:`_json_values`."""
    with _connection(engine) as conn:
        result = conn.execute(stmt)
        keys = list(result.keys())
        type_codes = [d[1] for d in result.cursor.description]
        rows = result.cursor.fetchall()
        result.close()
        dialect = conn.dialect
    values = pd.DataFrame(rows, columns=keys, dtype=object)
    return pd.DataFrame({key: _column(values[key], selected.type, dialect, type_code)
                         for key, selected, type_code in zip(keys, stmt.selected_columns, type_codes)})


def _column(values: pd.Series, type_: TypeEngine, dialect: Dialect, type_code: object) -> pd.Series:
    """One column of driver values as SQLAlchemy would return them, in pandas' dtype for them."""
    if isinstance(type_, (Date, DateTime)):
        return pd.Series(pd.to_datetime(values.to_numpy(), format="ISO8601"))
    convert = type_.dialect_impl(dialect).result_processor(dialect, type_code)
    if convert is not None:
        values = pd.Series(np.fromiter(map(convert, values), dtype=object, count=len(values)))
    return values.infer_objects()


def followups(engine: Bind, timepoint: int | None = None) -> pd.DataFrame:
    """One row per targeted follow-up with its episode's discharge data and the episode's number
    (1, 2, ... in discharge order among all of the patient's stays).

    Three queries, joined here: the follow-ups, then once per patient and once per stay their columns, which
    one query would send again with each of a stay's follow-ups."""
    targeted = select(FollowUp.id).where(research_followups())  # not the alliance check-ins during a stay
    if timepoint is not None:
        targeted = targeted.where(FollowUp.timepoint_days == timepoint)
    rows = _frame(engine, select(FollowUp.id.label("followup_id"), FollowUp.timepoint_days, FollowUp.state,
                                 FollowUp.last_inbound_at, FollowUp.patient_id.label("patient_pk"), FollowUp.episode_id)
                  .where(FollowUp.id.in_(targeted)))
    patients = _frame(engine, select(Patient.id.label("patient_pk"), Patient.patient_id, Patient.withdrawn_at,
                                     *[getattr(Patient, c) for c in PATIENT_COVARIATES])
                      .where(Patient.id.in_(targeted.with_only_columns(FollowUp.patient_id).distinct())))
    numbered = select(Episode.id, func.row_number().over(
        partition_by=Episode.patient_id, order_by=(Episode.discharge_date.asc().nulls_last(), Episode.id)
    ).label("episode")).subquery()  # a stay still in treatment (no discharge yet) is the latest
    stays = _frame(engine, select(Episode.id.label("episode_id"), numbered.c.episode, Episode.discharge_date,
                                  *[getattr(Episode, c) for c in EPISODE_COVARIATES])
                   .join(numbered, numbered.c.id == Episode.id)
                   .where(Episode.id.in_(targeted.with_only_columns(FollowUp.episode_id).distinct())))
    return (rows.merge(patients, on="patient_pk", validate="many_to_one")
            .merge(stays, on="episode_id", validate="many_to_one")
            [["followup_id", "timepoint_days", "state", "last_inbound_at", "patient_pk", "patient_id", "withdrawn_at",
              "episode_id", "episode", "discharge_date", *PATIENT_COVARIATES, *EPISODE_COVARIATES]])


def covariates_present(engine: Bind) -> list[str]:
    """The covariates with a value for at least one patient or stay in the database (the export's columns)."""
    stmt = select(*[select(func.count(getattr(Patient, c))).scalar_subquery().label(c) for c in PATIENT_COVARIATES],
                  *[select(func.count(getattr(Episode, c))).scalar_subquery().label(c) for c in EPISODE_COVARIATES])
    with _connection(engine) as conn:
        row = conn.execute(stmt).mappings().one()
    return [c for c in COVARIATES if row[c]]


def ratings(engine: Bind, timepoint: int | None = None) -> pd.DataFrame:
    """The alliance rated at the discharge of every episode with a follow-up (one row per episode)."""
    targeted = select(FollowUp.episode_id).where(research_followups())
    if timepoint is not None:
        targeted = targeted.where(FollowUp.timepoint_days == timepoint)
    stmt = (select(AllianceRating.episode_id, cast(AllianceRating.items, Text).label("items"),
                   AllianceRating.mean_score, cast(AllianceRating.subscale_scores, Text).label("subscale_scores"))
            .where(AllianceRating.episode_id.in_(targeted.distinct())))
    frame = _frame(engine, stmt)
    for col in ("items", "subscale_scores"):
        frame[col] = _json_values(frame[col])
    return frame


def _json_values(text: pd.Series) -> pd.Series:
    """JSON read as its text and decoded once per distinct text, as SQLAlchemy and psycopg decode it (``json.loads``)
    but not once per row: 100k ratings hold a few thousand distinct lists of items."""
    codes, distinct = pd.factorize(text)  # a missing value's code is -1: the None put last
    decoded = np.fromiter([*map(json.loads, distinct), None], dtype=object, count=len(distinct) + 1)
    return pd.Series(decoded[codes], index=text.index)


def answers_wide(engine: Bind, timepoint: int | None = None) -> pd.DataFrame:
    """Per follow-up: each question's coded value and the time of the first usable answer.  Answers given
    in a coordinator's preview (``outreach chat --url``: ``messages.preview``) are not the patient's and
    are left out."""
    preview = exists().where(Message.id == Answer.message_id, Message.preview.is_(True))
    stmt = (select(Answer.followup_id,
                   *[func.max(case((Answer.question_key == k, Answer.value))).label(k) for k in QUESTION_KEYS],
                   func.min(case((Answer.value.is_not(None), Answer.answered_at))).label("first_answer_at"))
            .where(~preview)
            .group_by(Answer.followup_id))
    if timepoint is not None:
        stmt = stmt.join(FollowUp, FollowUp.id == Answer.followup_id).where(FollowUp.timepoint_days == timepoint)
    return _frame(engine, stmt)


def contact_attempts(engine: Bind) -> pd.DataFrame:
    """Per follow-up: invitations and reminders that actually went out."""
    stmt = (select(Message.followup_id, func.count().label("contact_attempts"))
            .where(Message.direction == "out", Message.kind.in_(["invitation", "reminder", "stalled"]),
                   Message.provider_sid.is_not(None))
            .group_by(Message.followup_id))
    return _frame(engine, stmt)
