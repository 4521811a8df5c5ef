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
