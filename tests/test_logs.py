"""No full phone number ever reaches the logs."""
import io
import logging

from outreach.logs import configure_logging, mask_text


def test_log_records_have_phone_numbers_masked():
    stream = io.StringIO()
    handler = configure_logging(stream)
    old_stream = handler.setStream(stream)
    try:
        logging.getLogger("outreach.test").warning("sending to %s and +33612345678 (was 416-555-0199)",
                                                   "+14165550123")
    finally:
        handler.setStream(old_stream)
    out = stream.getvalue()
    assert "+1******0123" in out and "+33*****5678" in out
    assert "4165550123" not in out and "612345678" not in out and "555-0199" not in out


def test_twilio_request_logging_is_quiet():
    configure_logging(io.StringIO())
    assert logging.getLogger("twilio").getEffectiveLevel() >= logging.WARNING


def test_mask_text_leaves_other_numbers_alone():
    assert mask_text("wave 12 sent 300 messages in 4.5 s") == "wave 12 sent 300 messages in 4.5 s"


def test_phone_numbers_are_masked_in_tracebacks_and_exception_messages():
    stream = io.StringIO()
    handler = configure_logging(stream)
    old_stream = handler.setStream(stream)
    try:
        try:
            raise ValueError("cannot text +14165550123 or (416) 555-0124 or +33 6 12 34 56 78")
        except ValueError:
            logging.getLogger("outreach.test").exception("while texting 06 12 34 56 79")
    finally:
        handler.setStream(old_stream)
    out = stream.getvalue()
    assert "Traceback" in out and "ValueError" in out and "+1******0123" in out
    for raw in ("4165550123", "555-0124", "12 34 56 78", "34 56 79"):
        assert raw not in out, raw


def test_national_and_grouped_formats_are_masked():
    for raw in ("+1 416 555 0123", "+1-416-555-0123", "1-416-555-0123", "416.555.0123", "(416)555-0123",
                "4165550123", "+33 6 12 34 56 78", "06 12 34 56 78", "06.12.34.56.78", "07700 900123"):
        masked = mask_text(f"call {raw} now")
        assert raw not in masked and masked.startswith("call ") and masked.endswith(" now"), (raw, masked)


def test_dates_times_ids_and_amounts_are_left_alone():
    for text in ("2026-11-30 12:34:56,789 INFO", "wave 1234 at 09:30", "alert #17 opened at 10:05 (Nov 30)",
                 "SM0123456789abcdef0123456789abcdef", "took 0.0123456 s", "version 1.2.3"):
        assert mask_text(text) == text


def test_database_driver_details_and_quoted_values_never_reach_a_log_line():
    """What a database error copies from the data: PostgreSQL's DETAIL (the failing row), CONTEXT, a quoted
    value, SQLAlchemy's parameter list.  Names of columns and constraints stay."""
    from outreach.logs import error_summary, scrub_exception_text

    text = ('(psycopg.errors.NotNullViolation) null value in column "status" of relation "messages" violates '
            'not-null constraint\nDETAIL:  Failing row contains (1, out, I feel awful, +14165550123).\n'
            '[SQL: INSERT INTO messages (body) VALUES (%(body)s)]\n'
            "[parameters: {'body': 'I feel awful'}]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    clean = scrub_exception_text(text)
    assert "awful" not in clean and "0123" not in clean and "Background" not in clean
    assert 'column "status" of relation "messages"' in clean and "[SQL: INSERT INTO messages" in clean
    assert scrub_exception_text('invalid input syntax for type integer: "I feel awful"') == \
        "invalid input syntax for type integer: '…'"

    class IntegrityError(Exception):
        pass

    assert error_summary(IntegrityError(text)) == (
        'IntegrityError: (psycopg.errors.NotNullViolation) null value in column "status" of relation "messages" '
        'violates not-null constraint')
    assert error_summary(RuntimeError("engine exploded")) == "RuntimeError: engine exploded"
    assert error_summary(KeyError("I feel awful")) == "KeyError: '…'"


def test_a_request_s_path_cannot_forge_a_log_line(app):
    """The one line per request names its path, which the client chose: an encoded newline (%0a) must not start a
    made-up line of its own in the text log, and a very long path is cut short."""
    stream = io.StringIO()
    handler = configure_logging(stream)
    old_stream = handler.setStream(stream)
    try:
        app.test_client().get("/x%0a2026-12-07 03:00:00,000 CRITICAL outreach.console: admin signed in%0d")
        app.test_client().get("/" + "a" * 5000)
    finally:
        handler.setStream(old_stream)
    lines = [line for line in stream.getvalue().splitlines() if "outreach.requests" in line]
    assert len(lines) == 2 and all(" INFO outreach.requests: GET /" in line for line in lines), stream.getvalue()
    assert not any(line.startswith("2026-12-07 03:00:00,000 CRITICAL") for line in stream.getvalue().splitlines())
    assert "\r" not in stream.getvalue()
    assert all(len(line) < 600 for line in lines)
