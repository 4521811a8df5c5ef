"""A second reference point for webhook_bench: the same database I/O as the real webhook, nothing else.

Raw psycopg, no SQLAlchemy and no conversation logic, exactly the I/O of the contract
(issue 15): check the signature; store the inbound message and commit, in one
autocommitted INSERT that first takes the phone's lock (one phone's ids are given
in commit order, as the webhook does); then, in one transaction, lock the phone's
patient rows, read the follow-up (and whether an earlier text waits), update it, store an answer and a reply, mark
the message processed (linked to its patient and follow-up), commit.  Nine round
trips, as the webhook's usual path.  (The real webhook stores an answer only when
the text answers a question, about half of the benchmark's texts: the floor
stores one for every text, so it does a little more than the webhook, never less.)
Whatever the real webhook does costs at least this much on the same machine.
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
            "WITH phone_lock AS (SELECT pg_advisory_xact_lock(1869968244, hashtext(%(from)s)))"
            " INSERT INTO messages (direction, provider_sid, from_number, to_number, body, media_count, status,"
            " attempts, preview, created_at, updated_at) SELECT 'in', %(sid)s, %(from)s, %(to)s, %(body)s, 0,"
            " 'received', 0, false, now(), now() FROM phone_lock ON CONFLICT (provider_sid) DO NOTHING RETURNING id",
            {"sid": form["MessageSid"], "from": form["From"], "to": form["To"], "body": form["Body"]}).fetchone()
        if row is None:
            return Response(REPLY, mimetype="application/xml")
        with c.transaction():
            patient = c.execute("SELECT id FROM patients WHERE phone = %s ORDER BY id FOR UPDATE",
                                (form["From"],)).fetchone()
            # the follow-up, and whether an earlier text from this phone waits (arrival order), in one read
            followup = c.execute(
                "SELECT id, state, (SELECT count(*) FROM messages WHERE direction = 'in' AND from_number = %s"
                " AND processed_at IS NULL AND status = 'received' AND id < %s) FROM followups"
                " WHERE patient_id = %s", (form["From"], row[0], patient[0])).fetchone()
            c.execute("UPDATE followups SET last_inbound_at = now(), last_prompt_at = now(), updated_at = now()"
                      " WHERE id = %s", (followup[0],))
            c.execute("INSERT INTO answers (followup_id, question_key, raw_text, message_id, answered_at)"
                      " VALUES (%s, %s, %s, %s, now())", (followup[0], f"q{row[0]}", form["Body"], row[0]))
            c.execute("INSERT INTO messages (direction, kind, body, status, media_count, attempts, patient_id,"
                      " followup_id, in_reply_to_id, from_number, to_number, preview, sent_at, created_at,"
                      " updated_at) VALUES ('out', 'reply', 'ok', 'twiml', 0, 0, %s, %s, %s, %s, %s, false, now(),"
                      " now(), now())", (patient[0], followup[0], row[0], form["To"], form["From"]))
            c.execute("UPDATE messages SET processed_at = now(), status = 'processed', patient_id = %s,"
                      " followup_id = %s, updated_at = now() WHERE id = %s", (patient[0], followup[0], row[0]))
        return Response(REPLY, mimetype="application/xml")

    return app
