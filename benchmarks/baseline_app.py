"""The baseline for webhook_bench: a Flask endpoint that only checks the Twilio signature
and returns an empty TwiML reply (no database, no conversation)."""
from __future__ import annotations

import os

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator


def create_app() -> Flask:
    app = Flask(__name__)
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    base = os.environ["PUBLIC_BASE_URL"].rstrip("/")

    @app.post("/twilio/sms")
    def sms():
        if not validator.validate(base + request.path, request.form, request.headers.get("X-Twilio-Signature", "")):
            abort(403)
        return Response('<?xml version="1.0" encoding="UTF-8"?><Response />', mimetype="application/xml")

    return app
