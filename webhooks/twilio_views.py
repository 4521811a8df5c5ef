"""``POST /twilio/sms`` and ``POST /twilio/status``: check the signature, call the service, answer TwiML."""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from outreach.inbound import InboundSMS
from outreach.status import update_status

bp = Blueprint("twilio", __name__, url_prefix="/twilio")


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
        abort(403)


def twiml(replies: list[str]) -> Response:
    response = MessagingResponse()
    for body in replies:
        response.message(body)
    return Response(str(response), mimetype="application/xml")


@bp.post("/sms")
def sms():
    received = _services()["inbox"].receive(InboundSMS.from_form(request.form))
    if received.rejected:
        return Response(received.rejected, status=400, mimetype="text/plain")
    return twiml(received.replies)


@bp.post("/status")
def status():
    sid = request.form.get("MessageSid", "")
    try:
        error_code = int(request.form.get("ErrorCode") or 0) or None
    except ValueError:
        error_code = None
    services = _services()
    update_status(services["sessions"], services["settings"], sid, request.form.get("MessageStatus", ""), error_code)
    return Response(status=204)
