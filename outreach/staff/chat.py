"""``outreach chat``: a coordinator types as the patient; each line is a signed webhook request.

By default this is a preview: the real app (signature check, inbox, state
machine) runs in this process against a throw-away SQLite database holding
a copy of the patient and of where their open follow-up stands, so nothing
typed here becomes the patient's data, changes their follow-up, or keeps a
wave from inviting them.  ``--url`` talks to a running server instead, whose
database records every line from the patient's number, marked as a preview
(a signed form field, see :data:`outreach.messaging.webhook_client.PREVIEW_FIELD`): the
export leaves out answers given in a preview and the console's transcript
labels those texts, so a preview is never taken for the patient's answer.

The preview needs no secret: its throw-away app gets a one-off auth token (and a placeholder help
contact when ``HELP_CONTACT`` is not set), the log lines of its copy (migrations, "alert opened") are not
shown, and a crisis alert opened in the copy is labelled as the preview's own.  ``--url`` signs with the
real ``TWILIO_AUTH_TOKEN`` and first checks that the server answers.
"""
from __future__ import annotations

import logging
import secrets
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from conversations.engine import Context, current_prompt, invitation
from conversations.machine import WAITING, FollowUpState

from ..config import Settings
from ..db import audit, make_engine, session_factory, unit_of_work, upgrade
from ..errors import ServerNotAnswering
from ..models import Alert, Episode, FollowUp, Patient
from ..clock import utcnow
from ..phones import mask
from ..repository import OPEN_STATES
from ..study.waves import check_timepoint
from ..messaging.webhook_client import SignedWebhookClient, flask_post, http_post

_PATIENT_COPY = ("patient_id", "phone", "phone_valid", "timezone", "language", "sms_consent")
_FOLLOWUP_COPY = ("timepoint_days", "state", "paused_state", "retries", "invited_at", "started_at")


@dataclass
class _Conversation:
    patient: dict[str, Any]
    followup: dict[str, Any] | None
    discharge_date: Any = None  # of the stay the follow-up belongs to


# What a preview's throw-away app is given for the settings it cannot start without (nothing is sent).
PREVIEW_HELP_CONTACT = "[HELP_CONTACT]"


def check_server(url: str, timeout: float = 10.0) -> None:
    """The server at ``url`` answers (``GET /healthz``, any HTTP status), or :class:`ServerNotAnswering`."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered (503: its database is down, which its own replies will show)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServerNotAnswering(f"the server at {url} does not answer ({_reason(exc)}); start it, or check "
                                 "--url") from None


def _reason(exc: BaseException) -> str:
    """``connection refused``, ``timed out``: the reason of a failed request, in words."""
    reason = getattr(exc, "reason", exc)
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text[:1].lower() + text[1:]


@contextmanager
def _quiet_logs():
    """The copy's own log lines (migrations, an alert opened in the copy) are not the coordinator's business;
    errors still show."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def run_chat(settings: Settings, sessions: sessionmaker[Session], patient_id: str, *, url: str | None,
             timepoint: int | None, app_factory: Callable[[dict], Any]) -> int:
    # A live server checks signatures with the real token; a preview's throw-away app gets a one-off one.
    token = settings.require("TWILIO_AUTH_TOKEN") if url else secrets.token_hex(16)
    if timepoint is not None:
        check_timepoint(settings, timepoint)
    if url:
        check_server(url)
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
                                state=FollowUpState.INVITED, invited_at=utcnow())
            s.add(followup)
            audit(s, "chat_followup_created", patient_id=patient.id, timepoint_days=timepoint, url=url)
        if not url and (followup is None or timepoint is not None):  # preview this time point from its start
            followup = FollowUp(timepoint_days=timepoint or settings.followup_days[0], state=FollowUpState.INVITED,
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
        return _converse(client, phone, url=url)
    with tempfile.TemporaryDirectory(prefix="outreach-chat-") as tmp, _quiet_logs():
        env = {k: v for k, v in settings.env.items() if k != "SECRET_KEY"}  # no console in the copy
        env.update({"DATABASE_URL": f"sqlite:///{Path(tmp) / 'preview.db'}", "TWILIO_AUTH_TOKEN": token,
                    "HELP_CONTACT": settings.optional("HELP_CONTACT") or PREVIEW_HELP_CONTACT})
        _copy_into(env["DATABASE_URL"], conversation)
        app = app_factory(env)
        try:
            base = settings.optional("PUBLIC_BASE_URL") or "http://localhost"
            client = SignedWebhookClient(flask_post(app.test_client()), base, token, preview=True)
            click.echo(f"preview as patient {patient_id} ({mask(phone)}) in a throw-away copy: nothing is stored "
                       f"or sent; an empty line or Ctrl-D ends")
            _show_opening(settings, conversation)
            return _converse(client, phone, alerts=app.extensions["outreach"]["sessions"])
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
    elif fu["state"] == FollowUpState.CRISIS:
        click.echo("(the survey is paused after a crisis message until a coordinator resolves the alert)")
    else:
        click.echo(f"< {current_prompt(SimpleNamespace(state=fu['state']), ctx)}")


def _converse(client: SignedWebhookClient, phone: str, *, url: str | None = None,
              alerts: sessionmaker[Session] | None = None) -> int:
    """Each line typed is a signed text from the patient's number; the replies are shown.  ``alerts``: the
    preview copy's sessions, to label an alert the copy opens as the preview's own."""
    seen = 0
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        try:
            status, replies = client.text(phone, line)
        except (urllib.error.URLError, OSError) as exc:
            raise ServerNotAnswering(f"the server at {url} stopped answering ({_reason(exc)})") from None
        if status != 200:
            click.echo(f"! webhook answered HTTP {status}")
        for reply in replies:
            click.echo(f"< {reply}")
        if not replies:
            click.echo("< (no reply)")
        if alerts is not None:
            with unit_of_work(alerts) as s:
                opened = s.scalar(select(func.count()).select_from(Alert)) or 0
            if opened > seen:
                click.echo("! preview: this text opened a crisis alert in the throw-away copy only; no coordinator "
                           "was alerted and nothing was sent")
                seen = opened
    return 0
