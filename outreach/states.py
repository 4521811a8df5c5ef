"""The named states of a text and of an alert, each with its meaning; every comparison uses these names.

A text the service sends has a *delivery* state; a text it receives has a *processing* state: two
vocabularies, even where a word is shared (``failed``).  A follow-up's states belong to the conversation's
state machine (:class:`conversations.machine.FollowUpState`).  The strings are what the database stores.
At the top of ``outreach/`` beside the models, not in ``messaging``: the study's and the staff's services and
the console compare these states too.
"""
from __future__ import annotations


class Delivery:
    """Where a text we send stands (``messages.status`` of an outbound row)."""

    PENDING = "pending"  # queued, waiting for its time (send_after) and a worker
    CLAIMED = "claimed"  # a worker has it and is sending it now (claimed_at)
    CANCELLED = "cancelled"  # will not be sent; error_message says why in words
    FAILED = "failed"  # Twilio refused it for good, or it failed after every retry (error_code)
    TWIML = "twiml"  # answered in the webhook's own response to the patient's text
    # What Twilio reports, by its API's answer or a status callback, in the order a text moves through them.
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    READ = "read"
    PARTIALLY_DELIVERED = "partially_delivered"  # some of its segments reached the phone
    # Twilio's "canceled" (a text it was holding was cancelled before it went) is stored as CANCELLED.
    # Twilio's words for a text it receives; a callback may name them.
    RECEIVING = "receiving"
    RECEIVED = "received"

    NOT_DELIVERED = (FAILED, UNDELIVERED)
    REACHED_THE_PHONE = (DELIVERED, READ, PARTIALLY_DELIVERED)


class Processing:
    """Where a text we receive stands (``messages.status`` of an inbound row)."""

    RECEIVED = "received"  # stored, not yet applied to the conversation
    PROCESSED = "processed"  # applied (processed_at)
    FAILED = "failed"  # applying it failed; error_message has the cause, `outreach inbox replay` retries
    REJECTED = "rejected"  # a malformed request: stored, never applied


class AlertState:
    """Where a crisis alert stands, derived from its times: open (nobody has taken it), taken (a coordinator
    handles it), resolved (closed with a note)."""

    OPEN = "open"
    TAKEN = "taken"
    RESOLVED = "resolved"

    @classmethod
    def of(cls, alert) -> str:
        if alert.resolved_at is not None:
            return cls.RESOLVED
        return cls.TAKEN if alert.taken_by else cls.OPEN


class JobState:
    """Where a piece of long console work stands (``jobs.state``, run by the worker: ``outreach.jobs``)."""

    QUEUED = "queued"  # waiting for a worker
    RUNNING = "running"  # a worker has it (claimed_by, heartbeat_at)
    DONE = "done"  # finished; result holds what it made
    FAILED = "failed"  # error says why, in words

    FINISHED = (DONE, FAILED)
