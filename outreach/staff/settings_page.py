"""What the settings page shows an administrator: the effective settings (secrets masked), the two URLs to paste
into Twilio and whether a request Twilio signs for them would pass the webhook's signature check, and when a
worker last ran."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from ..config import SECRETS, SETTINGS, Settings, hide_password
from ..heartbeat import STALE_AFTER, last_beat
from ..logs import mask_text

SMS_PATH, STATUS_PATH = "/twilio/sms", "/twilio/status"


@dataclass(frozen=True)
class SettingLine:
    name: str
    value: str  # as it may be shown: a secret is "set" or "not set", never its value
    is_default: bool
    meaning: str


@dataclass(frozen=True)
class TwilioCheck:
    sms_url: str | None
    status_url: str | None
    passes: bool
    words: str


@dataclass(frozen=True)
class SettingsPage:
    settings: list[SettingLine]
    twilio: TwilioCheck
    last_heartbeat: dt.datetime | None
    worker_running: bool
    reliable_change: Any = None  # the alliance drop rule's threshold now (outreach.care.rules.ReliableChange)


def effective_settings(settings: Settings) -> list[SettingLine]:
    """Every setting with the value in force: secrets only as set or not set, the database URL without its
    password, phone numbers masked."""
    lines = []
    for name, (default, meaning) in SETTINGS.items():
        raw = settings.env.get(name)
        is_default = raw in (None, "")
        value = default if is_default else raw
        if name in SECRETS:
            shown = "not set" if is_default else "set (hidden)"
        elif value is None:
            shown = "not set"
        elif name == "DATABASE_URL":
            shown = hide_password(value)
        else:
            shown = mask_text(value)
        lines.append(SettingLine(name, shown, is_default, meaning))
    return lines


def twilio_check(settings: Settings) -> TwilioCheck:
    """The URLs to paste into Twilio (incoming messages, status callbacks) and whether a request Twilio signs for
    the incoming-message URL passes the webhook's check: it signs the URL it calls; the webhook checks against
    ``PUBLIC_BASE_URL`` + the path, so the two must be the same string."""
    base = settings.public_base_url
    token = settings.optional("TWILIO_AUTH_TOKEN")
    if not base:
        return TwilioCheck(None, None, False, "PUBLIC_BASE_URL is not set: the webhook checks signatures against the "
                                              "address it sees, which behind an https proxy is not the one Twilio "
                                              "signs; set PUBLIC_BASE_URL to the public https address")
    sms_url, status_url = base.rstrip("/") + SMS_PATH, base.rstrip("/") + STATUS_PATH
    if not token:
        return TwilioCheck(sms_url, status_url, False, "TWILIO_AUTH_TOKEN is not set: no request can be checked")
    form = {"MessageSid": "SM" + "0" * 32, "From": "+15005550006", "Body": "check"}
    validator = RequestValidator(token)
    signature = validator.compute_signature(sms_url, form)
    passes = validator.validate(settings.public_base_url.rstrip("/") + SMS_PATH, form, signature)
    words = ("a request Twilio signs for this URL passes the signature check" if passes else
             "a request Twilio signs for this URL would be refused (403)")
    if not sms_url.startswith("https://"):
        words += "; the URL is not https, which Twilio needs outside testing"
    prefix = urlsplit(base).path.rstrip("/")
    if prefix:
        words += (f"; PUBLIC_BASE_URL has a path ({prefix}): the proxy must strip it before the web app, which "
                  "serves /twilio/sms")
    return TwilioCheck(sms_url, status_url, passes, words)


def settings_page(session: Session, settings: Settings) -> SettingsPage:
    from ..clock import utcnow

    from ..care.rules import reliable_change
    from ..study.instrument import load_instrument

    last = last_beat(session)
    return SettingsPage(effective_settings(settings), twilio_check(settings), last,
                        last is not None and utcnow() - last <= STALE_AFTER,
                        reliable_change(session, load_instrument(settings.get("ALLIANCE_INSTRUMENT"))))
