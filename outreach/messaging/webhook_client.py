"""A client that talks to our Twilio webhook exactly as Twilio does (signed form posts).

Used by ``outreach chat``, the demo's simulated patients, the tests and the
benchmark; ``post`` is any callable (Flask test client or HTTP).
"""
from __future__ import annotations

import secrets
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable
from xml.etree import ElementTree

from twilio.request_validator import RequestValidator

PostFn = Callable[[str, dict[str, str], dict[str, str]], tuple[int, str]]
# The form field that marks a text as a coordinator's preview (``outreach chat``).  Twilio never sends it
# and the whole form is covered by the signature, so only a holder of the auth token can set it.
PREVIEW_FIELD = "OutreachPreview"


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def parse_twiml(xml: str) -> list[str]:
    if not xml.strip():
        return []
    return [m.text or "" for m in ElementTree.fromstring(xml).iter("Message")]


def http_post(base_url: str) -> PostFn:
    """Post to a running server at ``base_url``."""
    def post(path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(base_url.rstrip("/") + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
    return post


def flask_post(client) -> PostFn:
    """Post through a Flask test client."""
    def post(path: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        resp = client.post(path, data=form, headers=headers)
        return resp.status_code, resp.get_data(as_text=True)
    return post


@dataclass
class SignedWebhookClient:
    post: PostFn
    signed_base_url: str  # the URL Twilio would call (PUBLIC_BASE_URL, or the server's own)
    auth_token: str
    service_number: str = "+15005550006"
    account_sid: str = "AC" + "0" * 32
    preview: bool = False  # mark every text as a coordinator's preview (PREVIEW_FIELD), as `outreach chat` does

    def signed(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        signature = RequestValidator(self.auth_token).compute_signature(self.signed_base_url.rstrip("/") + path, form)
        return self.post(path, form, {"X-Twilio-Signature": signature})

    def sms_form(self, from_number: str, body: str, sid: str | None = None, media: int = 0) -> dict[str, str]:
        form = {"MessageSid": sid or new_sid(), "AccountSid": self.account_sid, "From": from_number,
                "To": self.service_number, "Body": body, "NumMedia": str(media)}
        for i in range(media):
            form[f"MediaUrl{i}"] = f"https://api.twilio.com/media/{i}"
        if self.preview:
            form[PREVIEW_FIELD] = "1"
        return form

    def text(self, from_number: str, body: str, sid: str | None = None, media: int = 0,
             opt_out_type: str | None = None) -> tuple[int, list[str]]:
        """Text the webhook; ``opt_out_type``: the OptOutType Twilio's Advanced Opt-Out adds (STOP, START, HELP)."""
        form = self.sms_form(from_number, body, sid, media)
        if opt_out_type:
            form["OptOutType"] = opt_out_type
        status, xml = self.signed("/twilio/sms", form)
        return status, parse_twiml(xml) if status == 200 else []

    def status(self, sid: str, status: str, error_code: int | None = None) -> int:
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account_sid}
        if error_code:
            form["ErrorCode"] = str(error_code)
        return self.signed("/twilio/status", form)[0]
