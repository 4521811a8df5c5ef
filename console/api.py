"""The data API for researchers (``/api/v1``, issue 22): the de-identified export for a script, as REDCap's API
is used, with a personal access token made in the console (``Authorization: Bearer TOKEN``).

Outside the console's blueprint: no session, no cookie, no CSRF; every answer is the token's business alone.
Errors are JSON with words (401 no working token, 403 a role without access, 400 a bad question).  A token never
reaches identified data: there is no route for it.  Each export answered is audited as a download
(``api_export_downloaded``), by :func:`outreach.jobs.exports.api_export`, which writes the same file as the
console's export zips."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from outreach.db import unit_of_work
from outreach.jobs.exports import ExportRequestError, api_codebook, api_export
from outreach.staff.tokens import Caller, TokenError, authenticate

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="outreach"'
    return response


def _caller() -> Caller:
    sessions = current_app.extensions["outreach"]["sessions"]
    with unit_of_work(sessions) as s:  # records the token's last use
        return authenticate(s, request.headers.get("Authorization"))


def _address() -> str:
    return (request.remote_addr or "unknown")[:64]


@api.after_request
def _headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@api.errorhandler(TokenError)
def _token_error(exc: TokenError):
    return _error(exc.status, str(exc))


@api.errorhandler(ExportRequestError)
def _request_error(exc: ExportRequestError):
    return _error(400, str(exc))


@api.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@api.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def _not_found(rest: str):
    """Any other address or method under /api/v1, answered in JSON too (a blueprint's error handlers never see a
    URL no route matched)."""
    if rest.strip("/") in ("export", "codebook"):
        return _error(405, "the data API only answers GET")
    return _error(404, "there is no such address in the data API: GET /api/v1/export?format=csv|parquet"
                       "&timepoint=N, or /api/v1/codebook")


@api.get("/export")
def export():
    """``?format=csv|parquet&timepoint=N``: the de-identified linked dataset (every time point without
    ``timepoint``)."""
    caller = _caller()
    settings = current_app.extensions["outreach"]["settings"]
    fmt = (request.args.get("format") or "csv").strip().lower()
    unknown = sorted(set(request.args) - {"format", "timepoint"})
    if unknown:
        raise ExportRequestError(f"unknown parameter(s) {', '.join(unknown)}: only format and timepoint "
                                 "are understood (identified data are never given to a token)")
    result = api_export(current_app.extensions["outreach"]["engine"], current_app.extensions["outreach"]["sessions"],
                        settings, fmt=fmt, timepoint=request.args.get("timepoint"), actor=caller.email,
                        role=caller.role, token_id=caller.token_id, address=_address())
    return Response(result.content, mimetype=result.media_type.split(";")[0], headers={
        "Content-Type": result.media_type, "Content-Disposition": f'attachment; filename="{result.file_name}"',
        "X-Content-SHA256": result.sha256, "Cache-Control": "no-store"})


@api.get("/codebook")
def codebook():
    """The codebook of the export (variables, labels, codes, the publication rule) as CSV."""
    _caller()
    settings = current_app.extensions["outreach"]["settings"]
    return Response(api_codebook(settings), headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": 'attachment; filename="codebook.csv"',
        "Cache-Control": "no-store"})
