"""The SMS gateway: one small interface, a real Twilio implementation and a simulator.

Credentials stay in this module.  ``send`` returns the provider's sid and
status or raises :class:`GatewayError` saying whether a retry can help.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Callable, Protocol

from ..config import ConfigError, Settings
from ..phones import mask
from ..states import Delivery

RETRYABLE_HTTP = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class SendResult:
    sid: str
    status: str


class GatewayError(Exception):
    def __init__(self, message: str, *, retryable: bool, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.retryable, self.code, self.http_status = retryable, code, http_status


class SmsGateway(Protocol):
    def send(self, to: str, body: str, status_callback: str | None) -> SendResult: ...

    def sent_since(self, to: str, since: dt.datetime, body: str) -> list[str]:
        """Sids of messages with this body sent to ``to`` since ``since`` (naive UTC): crash reconciliation."""
        ...


class TwilioGateway:
    def __init__(self, settings: Settings):
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        account = settings.require("TWILIO_ACCOUNT_SID")
        token = settings.require("TWILIO_AUTH_TOKEN")
        self.service_sid = settings.optional("TWILIO_MESSAGING_SERVICE_SID")
        self.from_number = settings.optional("TWILIO_FROM_NUMBER")
        if not (self.service_sid or self.from_number):
            raise ConfigError("TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER is not set")
        base = settings.twilio_api_base_url  # https, or http to a loopback address only (ConfigError otherwise)
        self.client = Client(account, token, http_client=TwilioHttpClient(timeout=30))
        if base:
            self.client.api.base_url = base

    def send(self, to: str, body: str, status_callback: str | None) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        sender = {"messaging_service_sid": self.service_sid} if self.service_sid else {"from_": self.from_number}
        extra = {"status_callback": status_callback} if status_callback else {}
        try:
            msg = self.client.messages.create(to=to, body=body, **sender, **extra)
        except TwilioRestException as exc:
            retryable = exc.status in RETRYABLE_HTTP
            raise GatewayError(f"Twilio {exc.status} error {exc.code}: {exc.msg}", retryable=retryable,
                               code=exc.code, http_status=exc.status) from None
        except Exception as exc:  # network: connection refused, reset, timeout
            raise GatewayError(f"network error: {type(exc).__name__}", retryable=True) from None
        return SendResult(sid=msg.sid, status=str(msg.status or Delivery.QUEUED))

    def sent_since(self, to: str, since: dt.datetime, body: str) -> list[str]:
        found = self.client.messages.list(to=to, date_sent_after=since.replace(tzinfo=dt.UTC), limit=100)
        return [m.sid for m in found if (m.body or "") == body and m.to == to]


class SimulatorGateway:
    """Sends nothing: gives each message a sid and shows it (masked) through ``echo``."""

    def __init__(self, echo: Callable[[str], None] | None = print):
        self.echo = echo
        self.sent: list[tuple[str, str, str]] = []

    def send(self, to: str, body: str, status_callback: str | None) -> SendResult:
        sid = "SM" + secrets.token_hex(16)
        self.sent.append((sid, to, body))
        if self.echo:
            self.echo(f"[simulator] to {mask(to)}: {body}")
        return SendResult(sid=sid, status=Delivery.DELIVERED)  # a simulated phone always receives

    def sent_since(self, to: str, since: dt.datetime, body: str) -> list[str]:
        return [sid for sid, t, b in self.sent if t == to and b == body]


def make_gateway(settings: Settings, echo: Callable[[str], None] | None = print) -> SmsGateway:
    backend = settings.sms_backend
    if backend == "twilio":
        return TwilioGateway(settings)
    if backend == "simulator":
        return SimulatorGateway(echo)
    raise ConfigError(f"SMS_BACKEND must be 'twilio' or 'simulator', not {backend!r}")
