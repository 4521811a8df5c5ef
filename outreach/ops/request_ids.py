"""One request id per web request, in every log line it writes (``LOG_FORMAT=json`` shows it) and in the
response's ``X-Request-Id``: a text's Twilio MessageSid (the worker applying the same text from the spool logs
under it too), else the proxy's ``X-Request-Id``, else a new one.  One line per answered request at INFO: method,
path (never the query string), status and time; nothing of the patient."""
from __future__ import annotations

import logging
import time

from ..logs import bind_request_id, new_request_id, unbind_request_id, valid_request_id

log = logging.getLogger("outreach.requests")


PATH_LIMIT = 200


def shown_path(path: str) -> str:
    """A request's path as a log line shows it: the client chose it (decoded, ``%0a`` is a newline), so control
    characters are escaped (none starts a made-up line of its own) and a long one is cut short."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in path)
    return shown if len(shown) <= PATH_LIMIT else shown[:PATH_LIMIT] + "…"


def distrust_request_id() -> None:
    """The request's id came from a form nobody vouched for (a webhook whose signature failed): a new one instead,
    so that a stranger's request never logs under the MessageSid of a real text."""
    from flask import g

    started = g.get("outreach_request")
    if started is not None:
        unbind_request_id(started[0])
        rid = new_request_id()
        g.outreach_request = (bind_request_id(rid), rid, started[2])


def init_request_ids(app) -> None:
    from flask import g, request

    @app.before_request
    def _request_id() -> None:
        sid = request.form.get("MessageSid") if request.blueprint == "twilio" and request.method == "POST" else None
        rid = valid_request_id(sid) or valid_request_id(request.headers.get("X-Request-Id")) or new_request_id()
        g.outreach_request = (bind_request_id(rid), rid, time.perf_counter())

    @app.after_request
    def _answered(response):
        started = g.get("outreach_request")
        if started is not None:
            response.headers["X-Request-Id"] = started[1]
            log.info("%s %s %s in %.0f ms", request.method, shown_path(request.path), response.status_code,
                     (time.perf_counter() - started[2]) * 1000)
        return response

    @app.teardown_request
    def _forget(_exc) -> None:
        started = g.pop("outreach_request", None)
        if started is not None:
            unbind_request_id(started[0])
