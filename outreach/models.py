"""Database schema (SQLAlchemy 2 typed models).

Times are stored as naive UTC on every database (``utcnow``); conversion to a
patient's zone happens at the edges.  No names are stored anywhere: a patient
is known by the site's ``patient_id`` and a phone number.

A patient (identity, phone, consent) has one or more treatment **episodes**
(stays); each episode has its discharge date, the alliance rated at that
discharge and its own follow-ups, so an answer is always linked to the
alliance of the discharge it follows.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conversations.machine import FollowUpState

from .clock import utcnow  # noqa: F401 - the column defaults' clock; services import it from here or .clock


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # E.164
    phone_valid: Mapped[bool] = mapped_column(Boolean, default=True)
    timezone: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2), default="en")
    sms_consent: Mapped[bool] = mapped_column(Boolean)
    opted_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Why the patient is opted out (outreach.messaging.send_rule): "stop", the patient's own STOP (a
    # START or YES lifts it), or "wrong_number", someone else has the number (only a phone correction or a
    # coordinator's opt-in lifts it).  NULL while opted in.
    opt_out_reason: Mapped[str | None] = mapped_column(String(16))
    age: Mapped[int | None] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(String(32))
    # Withdrawn from the study (outreach.study.withdrawal): nothing is sent to them again but the answer to their
    # own texts (a neutral acknowledgement, or the safety reply to a crisis text).  ``withdrawal_data`` is their
    # choice about what they gave: "keep" (flagged in the export) or "remove" (deleted; this row stays, without
    # phone, so that no later import enrols them again).  No keyword lifts it.
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(254))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    withdrawal_data: Mapped[str | None] = mapped_column(String(8))
    # The phone number was erased (outreach.study.retention: "withdrawal", "retention" or "study_close"); ``phone``
    # then holds "" and ``phone_valid`` is false, and the console says when and why instead of a blank.
    phone_erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    phone_erased_under: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Episode(Base):
    """One treatment stay of a patient: its discharge, the covariates of that stay, and (in
    ``alliance_ratings``) the alliance rated at that discharge.  Its follow-ups are timed from its
    discharge date.  ``site_episode_id`` is the site's own stay number, when the file gives one."""

    __tablename__ = "episodes"
    __table_args__ = (
        UniqueConstraint("patient_id", "discharge_date", name="uq_episodes_patient_discharge"),
        UniqueConstraint("patient_id", "site_episode_id", name="uq_episodes_patient_site_episode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: uq_episodes_patient_discharge starts with it (one index write less per stay).
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    site_episode_id: Mapped[str | None] = mapped_column(String(64))
    admission_date: Mapped[dt.date | None] = mapped_column(Date)
    # NULL while the patient is in treatment (an admission, outreach.care.admissions); a discharge row for the
    # stay fills it in (outreach.study.importer), and only then is it followed up.
    discharge_date: Mapped[dt.date | None] = mapped_column(Date)
    # The care team treating the stay, and how its alliance check-ins are taken (sms | tablet | none;
    # outreach.care.checkins.METHODS); both NULL for a stay known only from its discharge.
    care_team_id: Mapped[int | None] = mapped_column(ForeignKey("care_teams.id", ondelete="SET NULL"), index=True)
    alliance_checkins: Mapped[str | None] = mapped_column(String(8))
    length_of_stay_days: Mapped[int | None] = mapped_column(Integer)
    primary_substance: Mapped[str | None] = mapped_column(String(64))
    program: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class AllianceRating(Base):
    """The alliance rated at one discharge: raw items and scores, per instrument."""

    __tablename__ = "alliance_ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), unique=True)
    instrument: Mapped[str] = mapped_column(String(64))
    items: Mapped[list[Any]] = mapped_column(JSON)  # raw item values, None when not answered
    mean_score: Mapped[float | None] = mapped_column(Float)
    subscale_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The in-treatment check-in that became this discharge rating (the stay's last one); NULL: imported with the
    # discharge (method "import").
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("alliance_checkins.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class CareTeam(Base):
    """A ward's or a program's clinicians: each stay in treatment has one; its clinicians see only its patients."""

    __tablename__ = "care_teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CareTeamMember(Base):
    __tablename__ = "care_team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("care_teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class AllianceCheckin(Base):
    """The alliance rated once during a stay (weekly, or at discharge): the six ratings scored by the instrument's
    rules, when, how (tablet | sms | import) and, for the tablet, the staff member who handed it over."""

    __tablename__ = "alliance_checkins"
    __table_args__ = (Index("ix_alliance_checkins_episode_taken", "episode_id", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    instrument: Mapped[str] = mapped_column(String(64))
    items: Mapped[list[Any]] = mapped_column(JSON)
    mean_score: Mapped[float | None] = mapped_column(Float)
    subscale_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime)
    method: Mapped[str] = mapped_column(String(8))
    treatment_week: Mapped[int] = mapped_column(Integer)  # 1 = the first seven days from admission
    days_since_admission: Mapped[int] = mapped_column(Integer)
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The id the tablet's page was given when it opened: a submit retried after a dropped connection is saved once.
    client_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The SMS conversation it was answered in (a follow-up row with timepoint_days below zero; outreach.care.sms).
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id", ondelete="SET NULL"), unique=True)
    # The rules of outreach/care/alliance_rules.toml this check-in met: [{"rule", "level", ...}], [] when none.
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AllianceAlert(Base):
    """A weakening alliance, raised for the stay's care team by a rule (at most one per patient per 7 days);
    acknowledged with a note on what was done."""

    __tablename__ = "alliance_alerts"
    __table_args__ = (Index("ix_alliance_alerts_team_open", "care_team_id", "acknowledged_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    # The team it was raised for (a record); it is listed for its stay's team now (outreach.care.alerts.list_alerts).
    care_team_id: Mapped[int | None] = mapped_column(ForeignKey("care_teams.id", ondelete="SET NULL"))
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("alliance_checkins.id", ondelete="SET NULL"))
    rule: Mapped[str] = mapped_column(String(32))
    statements: Mapped[list[Any]] = mapped_column(JSON, default=list)  # item numbers that fell most
    subscale: Mapped[str | None] = mapped_column(String(16))  # the subscale they belong to: what to talk about
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raised_at: Mapped[dt.datetime] = mapped_column(DateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(254))
    note: Mapped[str | None] = mapped_column(Text)


class Wave(Base):
    __tablename__ = "waves"

    id: Mapped[int] = mapped_column(primary_key=True)
    timepoint_days: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[dt.date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    # Paused: its open follow-ups are held (FollowUp.held_at = paused_at) until it is resumed.  Cancelled: its
    # unsent invitations and reminders were cancelled; conversations under way went on.
    paused_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    paused_by: Mapped[str | None] = mapped_column(String(254))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(254))


class FollowUp(Base):
    """One episode at one time point: the conversation's state lives here.  ``patient_id`` repeats
    the episode's patient, because every conversation lookup starts from the patient's phone."""

    __tablename__ = "followups"
    __table_args__ = (UniqueConstraint("episode_id", "timepoint_days", name="uq_followups_episode_timepoint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    wave_id: Mapped[int | None] = mapped_column(ForeignKey("waves.id"), index=True)
    timepoint_days: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), default=FollowUpState.INVITED, index=True)
    paused_state: Mapped[str | None] = mapped_column(String(32))  # state to return to after a crisis
    retries: Mapped[int] = mapped_column(Integer, default=0)  # unusable replies to the current question
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    invited_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_prompt_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_ack_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    stall_reminded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    held_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # paused by a coordinator: no automatic texts
    held_by: Mapped[str | None] = mapped_column(String(254))
    # When the patient was told, once in the conversation, that texts are not read around the clock and where
    # to get help at any hour (after a personal message that was not an answer).
    crisis_line_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Message(Base):
    """Every SMS in either direction.  Inbound rows are committed before processing."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_due", "direction", "status", "send_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"), index=True)
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id", ondelete="SET NULL"), index=True)
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    from_number: Mapped[str | None] = mapped_column(String(32))
    to_number: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text, default="")
    media_count: Mapped[int] = mapped_column(Integer, default=0)
    # An incoming text Twilio marked with OptOutType (its Advanced Opt-Out): "opt_out", "opt_in" or "help".
    # Twilio has acted on it already, whatever the body says; the conversation records the same.
    carrier_keyword: Mapped[str | None] = mapped_column(String(8))
    kind: Mapped[str | None] = mapped_column(String(32))  # invitation, reminder, reply, ...
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_after: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    author: Mapped[str | None] = mapped_column(String(254))  # the coordinator who wrote a text by hand
    # Why a patient's text needs a person to read it (the inbox; outreach.staff.inbox.INBOX_REASONS): set when it
    # is applied, NULL for an answer, a keyword, an acknowledgement or a crisis text (an alert).
    inbox_reason: Mapped[str | None] = mapped_column(String(24))
    handled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # an inbound text a person dealt with
    handled_by: Mapped[str | None] = mapped_column(String(254))
    # Its words (``body``, then "") and numbers (then NULL) were erased, and under what: "retention",
    # "withdrawal" or "study_close" (outreach.study.retention).
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    erased_under: Mapped[str | None] = mapped_column(String(16))
    # Sent by a coordinator through ``outreach chat --url`` (a field only a request signed with the auth
    # token can set), and the service's replies to it: never a patient's answer, left out of the export.
    preview: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # An on-call or escalation text about this alert; or a patient's text that arrived while it was open (shown
    # on the alert's card until it is resolved).
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL", use_alter=True),
                                                 index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("followup_id", "question_key", name="uq_answers_followup_question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    followup_id: Mapped[int] = mapped_column(ForeignKey("followups.id", ondelete="CASCADE"))
    question_key: Mapped[str] = mapped_column(String(32))
    raw_text: Mapped[str | None] = mapped_column(Text)
    value: Mapped[int | None] = mapped_column(Integer)
    missing_reason: Mapped[str | None] = mapped_column(String(32))  # skipped | unparsed
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    answered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The patient's words (``raw_text``, then NULL) were erased; the coded value stays.
    raw_text_erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    raw_text_erased_under: Mapped[str | None] = mapped_column(String(16))


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="crisis")
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"), index=True)
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # When texts to the coordinators on call were queued; NULL: none (no ALERT_SMS_TO, a coordinator's preview,
    # or an unknown number over the limit of outreach.messaging.inbound.UNKNOWN_SENDER_LIMITS).
    on_call_queued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When the first of them was sent (Twilio took it); its delivery is on the message (messages.alert_id).
    on_call_texted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When it was texted to ALERT_ESCALATE_TO: nobody took it in ALERT_ESCALATE_MINUTES, or an on-call text failed.
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    escalation_reason: Mapped[str | None] = mapped_column(String(32))  # not_taken | on_call_failed
    # Opened by a coordinator's preview (outreach chat --url): shown as such, texts nobody on call.
    preview: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    taken_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    taken_by: Mapped[str | None] = mapped_column(String(254))  # the coordinator handling it
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolution_note: Mapped[str | None] = mapped_column(Text)


class AuditEvent(Base):
    """Who did or saw what, when, from where.  Only ever inserted by the application."""

    __tablename__ = "audit_events"
    # The study's closing is looked up before every import and phone correction (a closed study takes none): a
    # partial index finds it, or finds that there is none, without reading the whole audit (migration 0020).
    __table_args__ = (Index("ix_audit_events_study_closed", "action",
                            postgresql_where=text("action = 'study_closed'"),
                            sqlite_where=text("action = 'study_closed'")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    # indexed: a patient's contact history, and the retention pass's phone corrections (migration 0019)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"), index=True)
    address: Mapped[str | None] = mapped_column(String(64))  # the client's IP address, for console actions
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class User(Base):
    """A member of the study team who signs in to the console.  No password until they set one."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | coordinator | researcher | clinician
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_pending: Mapped[str | None] = mapped_column(String(64))  # being set up; kept here, not in a cookie
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)  # the 30-s step of the last code used: once each
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # sign-out ends every session
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_sign_in_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class PasswordToken(Base):
    """A one-time link to set a password; only its SHA-256 is stored."""

    __tablename__ = "password_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SignInAttempt(Base):
    """Every sign-in attempt, for the per-account and per-address limits."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_attempts_email_at", "email", "at"),
                      Index("ix_sign_in_attempts_address_at", "address", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class SendRate(Base):
    """The shared send rate of one sender (a messaging service or a number): the next free sending slot,
    in seconds since the epoch.  Every worker on every host reserves its slot here (outreach.messaging.sender)."""

    __tablename__ = "send_rates"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)


class EarlyStatus(Base):
    """A delivery status callback that arrived before the worker recorded its message's sid: kept, and
    applied when the sid is recorded (outreach.messaging.status); purged after a week if it never matches."""

    __tablename__ = "early_statuses"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    error_code: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Heartbeat(Base):
    """The last time each worker process did its minute duties (``outreach.heartbeat``): when the newest is old,
    nothing is being sent, and the console says so."""

    __tablename__ = "heartbeats"

    worker: Mapped[str] = mapped_column(String(128), primary_key=True)  # host:pid
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class BlockedNumber(Base):
    """A number whose holder replied "wrong number": nothing is sent to it again, whoever it belongs to in the
    records (a later import or correction may give it back to a patient), and no keyword texted from it lifts an
    opt-out.  Only a coordinator who confirmed the number with the patient lifts it (``patients opt-in``)."""

    __tablename__ = "blocked_numbers"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)  # E.164
    reason: Mapped[str] = mapped_column(String(32))
    blocked_at: Mapped[dt.datetime] = mapped_column(DateTime)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))


class Job(Base):
    """A piece of long work the console asked for (an import, a wave launch, an export, a report), run by the
    worker (``outreach.jobs``): who asked, its state, its progress and, when done, its result.  The history of
    imports and exports is the list of their jobs."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created", "state", "created_at"), Index("ix_jobs_kind_created", "kind", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # import | launch | export | report
    state: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed (outreach.states.JobState)
    owner: Mapped[str] = mapped_column(String(254))  # the signed-in user's e-mail, as in the audit log
    owner_role: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    file_name: Mapped[str | None] = mapped_column(String(255))  # an upload's name, as the user's browser gave it
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0 to 1
    message: Mapped[str | None] = mapped_column(Text)  # where it stands, in words (never patient data)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, in words, masked
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))  # host:pid of the worker running it
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # the running worker's last sign of life
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    files_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # result files removed (JOB_RESULT_DAYS)


class AccessToken(Base):
    """A researcher's personal access token for the data API: only its SHA-256 is stored; shown once."""

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
