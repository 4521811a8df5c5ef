"""``outreach chat``: a coordinator types as the patient; each line is a signed webhook request.

By default this is a preview: the real app (signature check, inbox, state
machine) runs in this process against a throw-away SQLite database holding
a copy of the patient and of where their open follow-up stands, so nothing
typed here becomes the patient's data, changes their follow-up, or keeps a
wave from inviting them.  ``--url`` talks to a running server instead, whose
database records every line from the patient's number, marked as a preview
(a signed form field, see :data:`outreach.webhook_client.PREVIEW_FIELD`): the
export leaves out answers given in a preview and the console's transcript
labels those texts, so a preview is never taken for the patient's answer.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conversations.engine import Context, current_prompt, invitation
from conversations.machine import WAITING

from .config import Settings, int_list
from .db import audit, make_engine, session_factory, unit_of_work, upgrade
from .models import Episode, FollowUp, Patient, utcnow
from .phones import mask
from .repository import OPEN_STATES
from .waves import check_timepoint
from .webhook_client import SignedWebhookClient, flask_post, http_post

_PATIENT_COPY = ("patient_id", "phone", "phone_valid", "timezone", "language", "sms_consent")
_FOLLOWUP_COPY = ("timepoint_days", "state", "paused_state", "retries", "invited_at", "started_at")


@dataclass
class _Conversation:
    patient: dict[str, Any]
    followup: dict[str, Any] | None
    discharge_date: Any = None  # of the stay the follow-up belongs to


def run_chat(settings: Settings, sessions: sessionmaker[Session], patient_id: str, *, url: str | None,
             timepoint: int | None, app_factory: Callable[[dict], Any]) -> int:
    token = settings.require("TWILIO_AUTH_TOKEN")
    if timepoint is not None:
        check_timepoint(settings, timepoint)
    with unit_of_work(sessions) as s:  # writes only with --url --timepoint (a follow-up to talk in)
        patient = s.scalar(select(Patient).where(Patient.patient_id == patient_id))
        if patient is None:
            click.echo(f"error: no patient {patient_id!r}", err=True)
            return 1
        followup = s.scalar(select(FollowUp).where(FollowUp.patient_id == patient.id,
                                                   FollowUp.state.in_(OPEN_STATES)))
        latest = s.scalar(select(Episode).where(Episode.patient_id == patient.id)
                          .order_by(Episode.discharge_date.desc()).limit(1))
        stay = s.get(Episode, followup.episode_id) if followup is not None else latest
        if url and followup is None and timepoint:
            followup = FollowUp(patient_id=patient.id, episode_id=latest.id, timepoint_days=timepoint,
                                state="invited", invited_at=utcnow())
            s.add(followup)
            audit(s, "chat_followup_created", patient_id=patient.id, timepoint_days=timepoint, url=url)
        if not url and (followup is None or timepoint is not None):  # preview this time point from its start
            followup = FollowUp(timepoint_days=timepoint or int_list(settings, "FOLLOWUP_DAYS")[0], state="invited",
                                invited_at=utcnow())
        conversation = _Conversation(_columns(patient, _PATIENT_COPY),
                                     _columns(followup, _FOLLOWUP_COPY) if followup else None,
                                     stay.discharge_date if stay is not None else None)
    phone = conversation.patient["phone"]
    if url:
        client = SignedWebhookClient(http_post(url), settings.optional("PUBLIC_BASE_URL") or url, token, preview=True)
        click.echo(f"LIVE as patient {patient_id} ({mask(phone)}) on {url}: every line is stored there, marked as "
                   f"a preview (kept out of the export); an empty line or Ctrl-D ends")
        _show_opening(settings, conversation)
        return _converse(client, phone)
    with tempfile.TemporaryDirectory(prefix="outreach-chat-") as tmp:
        env = {**settings.env, "DATABASE_URL": f"sqlite:///{Path(tmp) / 'preview.db'}"}
        _copy_into(env["DATABASE_URL"], conversation)
        app = app_factory(env)
        try:
            base = settings.optional("PUBLIC_BASE_URL") or "http://localhost"
            client = SignedWebhookClient(flask_post(app.test_client()), base, token, preview=True)
            click.echo(f"preview as patient {patient_id} ({mask(phone)}) in a throw-away copy: nothing is stored "
                       f"or sent; an empty line or Ctrl-D ends")
            _show_opening(settings, conversation)
            return _converse(client, phone)
        finally:
            app.extensions["outreach"]["engine"].dispose()


def _columns(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {c: getattr(row, c) for c in names if getattr(row, c) is not None}


def _copy_into(database_url: str, conversation: _Conversation) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with unit_of_work(session_factory(engine)) as s:
            patient = Patient(**conversation.patient)
            s.add(patient)
            s.flush()
            stay = Episode(patient_id=patient.id, discharge_date=conversation.discharge_date or utcnow().date())
            s.add(stay)
            s.flush()
            s.add(FollowUp(patient_id=patient.id, episode_id=stay.id, **conversation.followup))
    finally:
        engine.dispose()


def _show_opening(settings: Settings, conversation: _Conversation) -> None:
    """What the patient was last asked, so the conversation starts where it stands."""
    fu = conversation.followup
    if fu is None:
        return
    ctx = Context(language=conversation.patient["language"], org=settings.org_name)
    if fu["state"] in WAITING:
        click.echo(f"< {invitation(fu['timepoint_days'], ctx)}")
    elif fu["state"] == "crisis":
        click.echo("(the survey is paused after a crisis message until a coordinator resolves the alert)")
    else:
        click.echo(f"< {current_prompt(SimpleNamespace(state=fu['state']), ctx)}")


def _converse(client: SignedWebhookClient, phone: str) -> int:
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        status, replies = client.text(phone, line)
        if status != 200:
            click.echo(f"! webhook answered HTTP {status}")
        for reply in replies:
            click.echo(f"< {reply}")
        if not replies:
            click.echo("< (no reply)")
    return 0
