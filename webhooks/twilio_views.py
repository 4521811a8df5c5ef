"""``POST /twilio/sms`` and ``POST /twilio/status``: check the signature, call the service, answer TwiML."""
from __future__ import annotations

from xml.sax.saxutils import escape

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator

from outreach.messaging.inbound import InboundSMS, error_code_of
from outreach.ops.metrics import INBOUND, count_inbound
from outreach.ops.request_ids import distrust_request_id

bp = Blueprint("twilio", __name__, url_prefix="/twilio")


@bp.record_once
def _warm_up(_state) -> None:
    """Compile the crisis detector's rules and load its learned model when the app is built, not in the first
    texts' requests (a tenth of a second of regex compilation and JSON reading, once per process; several
    threads would each pay it at once)."""
    from conversations.crisis import rules
    from conversations.crisis_model import model

    rules()
    model()


def _services():
    return current_app.extensions["outreach"]


def _signed_url() -> str:
    base = _services()["public_base_url"]
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base.rstrip("/") + request.path + (f"?{query}" if query else "")


@bp.before_request
def check_signature():
    validator: RequestValidator = _services()["validator"]
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not validator.validate(_signed_url(), request.form, signature):
        if request.endpoint == "twilio.sms":
            INBOUND.labels("refused").inc()
        distrust_request_id()
        abort(403)


_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def twiml(replies: list[str]) -> Response:
    """``<Response>`` with one ``<Message>`` per reply: the bytes twilio's MessagingResponse writes (a test
    compares them), built as a string (its ElementTree cost 20 µs a request)."""
    if not replies:
        return Response(_XML + "<Response />", mimetype="application/xml")
    body = "".join(f"<Message>{escape(r)}</Message>" if r else "<Message />" for r in replies)
    return Response(f"{_XML}<Response>{body}</Response>", mimetype="application/xml")


UNAVAILABLE = "the database and the spool are both unavailable"


@bp.post("/sms")
def sms():
    received = _services()["inbox"].receive(InboundSMS.from_form(request.form), request.form)
    count_inbound(received)
    if received.rejected:
        return Response(received.rejected, status=400, mimetype="text/plain")
    if received.unavailable:  # Twilio then calls the number's fallback URL, if one is set
        return Response(UNAVAILABLE, status=503, mimetype="text/plain")
    return twiml(received.replies)


@bp.post("/status")
def status():
    form = request.form
    done = _services()["inbox"].status_callback(form.get("MessageSid", ""), form.get("MessageStatus", ""),
                                                error_code_of(form), form)
    if done == "unavailable":
        return Response(UNAVAILABLE, status=503, mimetype="text/plain")
    return Response(status=204)
