"""``outreach chat``: a coordinator types as the patient; each line is a signed webhook request."""
from __future__ import annotations

from typing import Any, Callable

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conversations.engine import Context, invitation

from .config import Settings
from .db import audit, unit_of_work
from .models import FollowUp, Patient, utcnow
from .phones import mask
from .repository import OPEN_STATES
from .webhook_client import SignedWebhookClient, flask_post, http_post


def run_chat(settings: Settings, sessions: sessionmaker[Session], patient_id: str, *, url: str | None,
             timepoint: int | None, app_factory: Callable[[dict], Any]) -> int:
    token = settings.require("TWILIO_AUTH_TOKEN")
    with unit_of_work(sessions) as s:
        patient = s.scalar(select(Patient).where(Patient.patient_id == patient_id))
        if patient is None:
            click.echo(f"error: no patient {patient_id!r}", err=True)
            return 1
        followup = s.scalar(select(FollowUp).where(FollowUp.patient_id == patient.id,
                                                   FollowUp.state.in_(OPEN_STATES)))
        if followup is None and timepoint:
            followup = FollowUp(patient_id=patient.id, timepoint_days=timepoint, state="invited",
                                invited_at=utcnow())
            s.add(followup)
            audit(s, "chat_preview_followup", patient_id=patient.id, timepoint_days=timepoint)
        phone, language = patient.phone, patient.language
        opening = invitation(followup.timepoint_days, Context(language=language, org=settings.org_name)) \
            if followup is not None and followup.state == "invited" else None
    if url:
        client = SignedWebhookClient(http_post(url), settings.optional("PUBLIC_BASE_URL") or url, token)
        app = None
    else:
        app = app_factory(dict(settings.env))
        base = settings.optional("PUBLIC_BASE_URL") or "http://localhost"
        client = SignedWebhookClient(flask_post(app.test_client()), base, token)
    click.echo(f"chatting as patient {patient_id} ({mask(phone)}); an empty line or Ctrl-D ends")
    if opening:
        click.echo(f"< {opening}")
    try:
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
    finally:
        if app is not None:
            app.extensions["outreach"]["engine"].dispose()
    return 0
