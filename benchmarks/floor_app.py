"""A second reference point for webhook_bench: the same database I/O as the real webhook, nothing else.

Raw psycopg, no SQLAlchemy and no conversation logic: check the signature;
store the inbound message in one autocommit INSERT; then, in one transaction,
lock the phone's patient, read the follow-up, update it, store one reply,
mark the message processed, commit.  (The real webhook also stores an answer
for about half the messages.)  Whatever the real webhook does costs at least
this much on the same machine.
"""
from __future__ import annotations

import os
import threading

import psycopg
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

REPLY = '<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


def create_app() -> Flask:
    app = Flask(__name__)
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    base = os.environ["PUBLIC_BASE_URL"].rstrip("/")
    dsn = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    local = threading.local()

    def conn() -> psycopg.Connection:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(dsn, autocommit=True)
        return local.conn

    @app.post("/twilio/sms")
    def sms():
        if not validator.validate(base + request.path, request.form, request.headers.get("X-Twilio-Signature", "")):
            abort(403)
        c, form = conn(), request.form
        row = c.execute(
            "INSERT INTO messages (direction, provider_sid, from_number, to_number, body, media_count, status,"
            " attempts, created_at, updated_at) VALUES ('in', %s, %s, %s, %s, 0, 'received', 0, now(), now())"
            " ON CONFLICT (provider_sid) DO NOTHING RETURNING id",
            (form["MessageSid"], form["From"], form["To"], form["Body"])).fetchone()
        if row is None:
            return Response(REPLY, mimetype="application/xml")
        with c.transaction():
            patient = c.execute("SELECT id FROM patients WHERE phone = %s FOR UPDATE", (form["From"],)).fetchone()
            followup = c.execute("SELECT id, state FROM followups WHERE patient_id = %s", (patient[0],)).fetchone()
            c.execute("UPDATE followups SET last_inbound_at = now() WHERE id = %s", (followup[0],))
            c.execute("INSERT INTO messages (direction, body, status, media_count, attempts, in_reply_to_id,"
                      " created_at, updated_at) VALUES ('out', 'ok', 'twiml', 0, 0, %s, now(), now())", (row[0],))
            c.execute("UPDATE messages SET processed_at = now(), status = 'processed' WHERE id = %s", (row[0],))
        return Response(REPLY, mimetype="application/xml")

    return app
