"""Sending queued messages: claim, re-check, respect quiet hours and rate, call the gateway, record.

Every text to a patient passes :mod:`outreach.messaging.send_rule` at the moment it is sent: consent now, no
opt-out now, and addressed to the patient's current number; a text that fails is cancelled with the reason.

A text that is not going out now costs nothing: before anything is claimed, one set-based pass cancels
what may no longer be sent (that rule, an invalid phone, a closed follow-up, a reminder the patient has
answered) and holds what quiet hours keep out of the night (one statement per patient time zone), and
for every claimed row those checks come before the rate limiter's wait.  Only a text that really goes
to the API waits its turn, and that turn is shared: SEND_RATE_PER_SECOND is the sender's rate, whatever
the number of workers and hosts (:class:`SharedRate`).

Never twice: a row is marked ``claimed`` (committed) before the API call.
A claim older than SEND_CLAIM_TIMEOUT belongs to a dead worker; before
such a row is sent again the gateway is asked whether the text already went
out since the claim, and it is resent only if it did not.  Claims use
``FOR UPDATE SKIP LOCKED`` so several workers share the queue on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Float, and_, case, cast, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from conversations.machine import ACTIVE

from zoneinfo import ZoneInfo

from ..config import Settings, local_time
from ..db import audit, is_unavailable, unit_of_work
from .gateway import GatewayError, SmsGateway
from ..logs import error_summary
from ..models import Alert, FollowUp, BlockedNumber, Message, Patient, SendRate
from ..clock import utcnow
from ..phones import mask
from .opt_outs import set_opt_out
from ..repository import close, insert_ignore, lock_phone
from .send_rule import NUMBER_CHANGED, STOP, TO_THE_WRITER, WITHDRAWN_REPLY, stop_conditions, stop_reason
from ..states import Delivery
from .status import apply_early_statuses

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
INVALID_NUMBER = {21211, 21614}
OPTED_OUT = 21610
BATCH = 100
# Answers to a patient's own text, queued when no request was waiting for them (outreach.messaging.inbound): the
# conversation already decided to say them, so neither quiet hours nor the follow-up's state hold them.
# A safety reply to a crisis text, and the confirmation of an opt-out the carrier does not confirm, go
# out even to a patient who has opted out, as they do in TwiML (send_rule.TO_THE_WRITER).
ANSWERS = ("reply", WITHDRAWN_REPLY, *TO_THE_WRITER)
# A text a coordinator writes by hand (outreach.staff.texting): a person is writing, so quiet hours and the
# follow-up's state do not hold it (opt-out and an invalid phone still do).
MANUAL = "manual"
NOT_HELD = (*ANSWERS, MANUAL)
# Texts that answer someone now go ahead of any backlog of invitations: those answers, a coordinator's
# crisis alert and a hand-written text.  The alert to the coordinators on call goes first of all: after a
# database outage the replies to every text received in it are queued at once, and a crisis alert opened
# among them must not wait behind them (the outage drill found it waiting 100 s at 1 text a second).
URGENT_KINDS = ("alert", *ANSWERS, MANUAL)
_URGENT_FIRST = case((Message.kind == "alert", 0), (Message.kind.in_(URGENT_KINDS), 1), else_=2)
# A worker claims at most what it can send in this many seconds, so that a text that must go first (an
# alert queued while it works through a batch) waits no longer than that.
CLAIM_SECONDS = 5
# Texts the service sends on its own; none goes to a follow-up a coordinator has paused (held): they
# stay pending, are not claimed while it is held, and go out once it is released.
AUTOMATIC_KINDS = ("invitation", "reminder", "stalled")
_HELD_FOLLOWUP = exists().where(FollowUp.id == Message.followup_id, FollowUp.held_at.is_not(None))
_NOT_HELD_NOW = or_(Message.kind.is_(None), Message.kind.not_in(AUTOMATIC_KINDS), Message.followup_id.is_(None),
                    ~_HELD_FOLLOWUP)


def held_by_coordinator(msg: Message, followup: FollowUp | None) -> bool:
    """An automatic text to a follow-up a coordinator has paused: it waits, pending, until released."""
    return followup is not None and followup.held_at is not None and msg.kind in AUTOMATIC_KINDS


@dataclass
class SendStats:
    sent: int = 0
    held: int = 0  # quiet hours
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    reconciled: int = 0
    paused: int = 0  # left pending: their follow-up is paused by a coordinator
    next_opening: dt.datetime | None = None  # earliest window opening of the texts held in this pass (naive UTC)
    # After the pass (see Sender.waiting): automatic texts queued for a later time, and the first of those times.
    waiting: int | None = None
    next_waiting: dt.datetime | None = None

    def hold(self, count: int, opening: dt.datetime) -> None:
        self.held += count
        if count and (self.next_opening is None or opening < self.next_opening):
            self.next_opening = opening

    def describe(self, zone: ZoneInfo | None = None) -> str:
        """The pass in words; times in ``zone`` (the coordinators' zone) with its abbreviation."""
        zone = zone or ZoneInfo("UTC")
        paused = f", kept for a paused follow-up {self.paused}" if self.paused else ""
        opens = f" (their window opens {local_time(self.next_opening, zone)})" if self.held else ""
        text = (f"sent {self.sent}, held for quiet hours {self.held}{opens}, cancelled {self.cancelled}, "
                f"retry later {self.retried}, failed {self.failed}, found already sent {self.reconciled}{paused}")
        if self.waiting:
            text += (f"; {self.waiting} text(s) wait for a later time (quiet hours or a retry), the first at "
                     f"{local_time(self.next_waiting, zone)}")
        return text

    def __str__(self) -> str:
        return self.describe()


def sender_key(settings: Settings) -> str:
    """Whose send rate a text uses: the messaging service, else the number it is sent from (the
    simulator has one of its own)."""
    if settings.sms_backend != "twilio":
        return "simulator"
    return settings.optional("TWILIO_MESSAGING_SERVICE_SID") or settings.optional("TWILIO_FROM_NUMBER") or "twilio"


class SharedRate:
    """SEND_RATE_PER_SECOND for one sender, shared by every worker on every host through its
    ``send_rates`` row: each send reserves the next free slot with one atomic UPDATE, then sleeps
    until that slot.  Slots are ``interval`` apart whoever takes them, so the sender's texts never go
    out faster than the rate; an idle sender's next slot is now (no burst is saved up).  On PostgreSQL
    the database server's clock decides the slots, so hosts whose clocks disagree still share one rate.
    A rate of 0 is off: no statement at all."""

    def __init__(self, sessions: sessionmaker[Session], per_second: float, sender: str):
        self.sessions, self.sender = sessions, sender
        self.interval = 1.0 / per_second if per_second > 0 else 0.0

    def wait(self) -> float:
        """Wait for this send's turn; the seconds waited."""
        if not self.interval:
            return 0.0
        waited = max(0.0, self.reserve())
        if waited:
            time.sleep(waited)
        return waited

    def reserve(self) -> float:
        """Take the next free slot; how many seconds from now it is (0 or less: now)."""
        with unit_of_work(self.sessions) as s:
            pg = s.get_bind().dialect.name == "postgresql"
            now = (cast(func.extract("epoch", func.clock_timestamp()), Float) if pg
                   else literal(time.time(), Float))
            slot = (func.greatest if pg else func.max)(SendRate.next_at, now)
            reserve = (update(SendRate).where(SendRate.sender == self.sender)
                       .values(next_at=slot + self.interval)
                       .returning(SendRate.next_at - self.interval - now))
            delay = s.scalar(reserve)
            if delay is None:  # this sender's first text: its row, then the slot
                s.execute(insert_ignore(s, SendRate).values(sender=self.sender, next_at=0.0)
                          .on_conflict_do_nothing(index_elements=["sender"]))
                delay = s.scalar(reserve)
        return delay


@dataclass(frozen=True)
class Claim:
    id: int
    at: dt.datetime  # our claim time: if the row no longer shows it, another worker took it over
    abandoned_since: dt.datetime | None  # previous claim time when taken over from a dead worker


class Sender:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, gateway: SmsGateway):
        self.sessions, self.settings, self.gateway = sessions, settings, gateway
        self.window = settings.send_window
        self.rate = SharedRate(sessions, settings.send_rate_per_second, sender_key(settings))
        self.claim_timeout = dt.timedelta(seconds=settings.send_claim_timeout)
        # Claim no more than this worker alone can send in half the timeout, so a live worker never looks
        # dead; when other workers share the rate it is slower, and gives back what it did not reach
        # within half the timeout (send_due).
        per_second = settings.send_rate_per_second
        self.batch = BATCH if per_second <= 0 else max(1, min(BATCH, int(per_second * self.claim_timeout.seconds / 2),
                                                              int(per_second * CLAIM_SECONDS)))
        self._unfinished: list[Claim] = []  # claims an outage interrupted before they were tried
        base = settings.public_base_url
        self.callback = base.rstrip("/") + "/twilio/status" if base else None

    # -- claiming ---------------------------------------------------------
    def claim(self, limit: int | None = None) -> list[Claim]:
        limit = limit or self.batch
        now = utcnow()
        with unit_of_work(self.sessions) as s:
            rows = s.execute(
                select(Message.id, Message.status, Message.claimed_at)
                .where(Message.direction == "out",
                       or_((Message.status == Delivery.PENDING) & (Message.send_after <= now) & _NOT_HELD_NOW,
                           (Message.status == Delivery.CLAIMED) & (Message.claimed_at < now - self.claim_timeout)))
                .order_by(_URGENT_FIRST, Message.send_after, Message.id).limit(limit)
                .with_for_update(skip_locked=True)).all()
            claims = [Claim(r.id, now, r.claimed_at if r.status == Delivery.CLAIMED else None) for r in rows]
            if claims:
                for m in s.scalars(select(Message).where(Message.id.in_([c.id for c in claims]))):
                    m.status, m.claimed_at, m.attempts = Delivery.CLAIMED, now, (m.attempts or 0) + 1
        return claims

    def release(self, claims: list[Claim]) -> None:
        """Give claims of one batch back to the queue, as if never claimed (unless another worker has
        taken them over meanwhile).  Claims taken over from a dead worker are kept: given back, they would
        lose the reconciliation against Twilio that their next try owes them."""
        claims = [c for c in claims if c.abandoned_since is None]
        if not claims:
            return
        with unit_of_work(self.sessions) as s:
            s.execute(update(Message)
                      .where(Message.id.in_([c.id for c in claims]), Message.status == Delivery.CLAIMED,
                             Message.claimed_at == claims[0].at)
                      .values(status=Delivery.PENDING, claimed_at=None, attempts=Message.attempts - 1)
                      .execution_options(synchronize_session=False))

    # -- before claiming: what will not go out now, set-based -------------------------------
    def settle(self, stats: SendStats) -> None:
        """Cancel the due texts that may no longer be sent and hold for quiet hours the ones whose
        patient's window is closed, in a few statements whatever their number (one per time zone), so
        that neither costs a claim, a rate-limit wait or an API call.  The same checks run again for
        every claimed row (:meth:`deliver`): this pass only makes the common case cheap."""
        now = utcnow()
        due = and_(Message.direction == "out", Message.status == Delivery.PENDING, Message.send_after <= now,
                   _NOT_HELD_NOW)
        kind = func.coalesce(Message.kind, "")
        patient = select(Patient.id).where(Patient.id == Message.patient_id)
        followup = select(FollowUp.id).where(FollowUp.id == Message.followup_id)
        state = select(FollowUp.state).where(FollowUp.id == Message.followup_id).scalar_subquery()
        stops = [  # the order of _stop_reason
            *((condition, literal(reason)) for condition, reason in stop_conditions()),
            (patient.where(Patient.phone_valid.is_not(True)).exists(), literal("phone invalid")),
            (kind.not_in(NOT_HELD) & followup.where(FollowUp.state.not_in(ACTIVE)).exists(),
             literal("follow-up is ").concat(state)),
            ((kind == "reminder") & followup.where(FollowUp.last_inbound_at.is_not(None)).exists(),
             literal("patient replied")),
            ((kind == "stalled") & followup.where(FollowUp.last_inbound_at > Message.created_at).exists(),
             literal("patient replied")),
        ]
        with unit_of_work(self.sessions) as s:
            if s.scalar(select(Message.id).where(due).limit(1)) is None:
                return  # nothing due (the idle worker's every round): one cheap statement
            for condition, reason in stops:
                stats.cancelled += s.execute(
                    update(Message).where(due, condition)
                    .values(status=Delivery.CANCELLED, error_message=reason, claimed_at=None, updated_at=now)
                    .execution_options(synchronize_session=False)).rowcount or 0
            quiet = and_(due, Message.patient_id.is_not(None), kind.not_in(NOT_HELD))
            zones = s.scalars(select(Patient.timezone).distinct()
                              .join(Message, Message.patient_id == Patient.id).where(quiet)).all()
            for zone in zones:
                try:
                    opening = self.window.opening(now, zone)
                except Exception:  # an unknown zone: left to deliver(), which logs it for that row
                    continue
                if opening <= now:
                    continue
                in_zone = select(Patient.id).where(Patient.id == Message.patient_id, Patient.timezone == zone)
                held = s.execute(update(Message).where(quiet, in_zone.exists())
                                 .values(send_after=opening, updated_at=now)
                                 .execution_options(synchronize_session=False)).rowcount or 0
                stats.hold(held, opening)

    def waiting(self, stats: SendStats) -> SendStats:
        """Fill in how many automatic texts wait for a later time (quiet hours, a retry) and when the first goes."""
        with unit_of_work(self.sessions) as s:
            count, first = s.execute(
                select(func.count(), func.min(Message.send_after))
                .where(Message.direction == "out", Message.status == Delivery.PENDING, Message.send_after > utcnow(),
                       Message.kind.in_(AUTOMATIC_KINDS))).one()
        stats.waiting, stats.next_waiting = count, first
        return stats

    # -- one message --------------------------------------------------------
    def deliver(self, claim: Claim, stats: SendStats) -> None:
        """Check, then wait for the rate limit, then send: a text that is held or cancelled never waits."""
        ready = self._ready(claim, stats, reconcile=True)
        if ready is None:
            return
        if self.rate.wait():  # the wait may have let an opt-out or a pause arrive: look again
            ready = self._ready(claim, stats, reconcile=False)
            if ready is None:
                return
        to, body = ready
        try:
            result = self.gateway.send(to, body, self.callback)
        except GatewayError as exc:
            self._failed(claim.id, exc, stats)
            return
        with unit_of_work(self.sessions) as s:
            msg = s.get(Message, claim.id)
            followup = s.get(FollowUp, msg.followup_id) if msg.followup_id else None
            self._record_sent(s, msg, followup, result.sid, result.status)
        stats.sent += 1

    def _ready(self, claim: Claim, stats: SendStats, *, reconcile: bool) -> tuple[str, str] | None:
        """(to, body) when the claimed row is to be sent now; else None, the row updated (held, cancelled,
        found already sent, or left to a paused follow-up) and counted in ``stats``."""
        with unit_of_work(self.sessions) as s:
            msg = s.get(Message, claim.id, with_for_update=True)
            if msg.status != Delivery.CLAIMED or msg.claimed_at != claim.at:
                return None  # taken over by another worker after our claim timed out
            patient = s.get(Patient, msg.patient_id) if msg.patient_id else None
            followup = s.get(FollowUp, msg.followup_id) if msg.followup_id else None
            if held_by_coordinator(msg, followup):  # paused after the claim: wait for the release
                msg.status, msg.claimed_at = Delivery.PENDING, None
                msg.attempts = max((msg.attempts or 1) - 1, 0)
                stats.paused += 1
                return None
            reason = self._stop_reason(msg, patient, followup,
                                       blocked=s.get(BlockedNumber, msg.to_number) is not None if msg.to_number else False)
            if reason:
                msg.status, msg.error_message, msg.claimed_at = Delivery.CANCELLED, reason, None
                stats.cancelled += 1
                if reason == NUMBER_CHANGED and msg.kind == "invitation":  # the phone changed while it was claimed
                    self._invite_again(s, msg, patient)
                return None
            if reconcile and claim.abandoned_since is not None:
                sids = self.gateway.sent_since(msg.to_number, claim.abandoned_since - dt.timedelta(seconds=5),
                                               msg.body)
                if sids:
                    self._record_sent(s, msg, followup, sids[0], Delivery.SENT)
                    stats.reconciled += 1
                    log.info("message %s to %s had been sent before a crash; not resent", msg.id,
                             mask(msg.to_number))
                    return None
            now = utcnow()
            # Quiet hours keep unsolicited texts out of the night; a reply to the patient's text is not one,
            # nor is a text a coordinator writes by hand.
            opening = self.window.opening(now, patient.timezone) if patient and msg.kind not in NOT_HELD else now
            if opening > now:
                msg.status, msg.send_after, msg.claimed_at = Delivery.PENDING, opening, None
                msg.attempts = max((msg.attempts or 1) - 1, 0)
                stats.hold(1, opening)
                return None
            return msg.to_number, msg.body

    @staticmethod
    def _invite_again(s: Session, msg: Message, patient: Patient) -> None:
        """An invitation claimed while the patient's phone was corrected: queued again to the new number, as
        the correction does for the ones still queued (an invitation was never seen; the follow-up would
        otherwise wait for ever with no invitation sent)."""
        if stop_reason(msg, patient, blocked=s.get(BlockedNumber, patient.phone) is not None) not in (
                None, NUMBER_CHANGED) or not patient.phone_valid:
            return
        now = utcnow()
        s.add(Message(direction="out", kind=msg.kind, status=Delivery.PENDING, followup_id=msg.followup_id,
                      patient_id=patient.id, from_number=msg.from_number, to_number=patient.phone, body=msg.body,
                      send_after=now, attempts=0, media_count=0, created_at=now, updated_at=now))

    def _stop_reason(self, msg: Message, patient: Patient | None, followup: FollowUp | None, *,
                     blocked: bool = False) -> str | None:
        reason = stop_reason(msg, patient, blocked=blocked)
        if reason:
            return reason
        if patient is not None and not patient.phone_valid:
            return "phone invalid"
        if followup is not None and followup.state not in ACTIVE and msg.kind not in NOT_HELD:
            return f"follow-up is {followup.state}"
        if msg.kind == "reminder" and followup is not None and followup.last_inbound_at is not None:
            return "patient replied"
        if (msg.kind == "stalled" and followup is not None and followup.last_inbound_at is not None
                and followup.last_inbound_at > msg.created_at):  # the question it repeats may be answered
            return "patient replied"
        return None

    def _record_sent(self, s: Session, msg: Message, followup: FollowUp | None, sid: str, status: str) -> None:
        now = utcnow()
        msg.provider_sid, msg.status, msg.sent_at, msg.claimed_at = sid, status, now, None
        if followup is not None and msg.kind == "invitation" and followup.invited_at is None:
            followup.invited_at = now
            followup.expires_at = now + dt.timedelta(days=self.settings.expire_days)
        if followup is not None and msg.kind in ("invitation", "reminder", "stalled"):
            followup.last_prompt_at = now
        if msg.kind == "alert" and msg.alert_id is not None:  # the alert says when the on-call text really went
            s.execute(update(Alert).where(Alert.id == msg.alert_id, Alert.on_call_texted_at.is_(None))
                      .values(on_call_texted_at=now))
        apply_early_statuses(s, self.settings, msg)  # a callback may have come before we knew the sid

    def _failed(self, message_id: int, exc: GatewayError, stats: SendStats) -> None:
        with unit_of_work(self.sessions) as s:
            msg = s.get(Message, message_id)
            # The type and a cleaned summary: Twilio's message may quote the number ("The 'To' number …").
            msg.error_code, msg.error_message, msg.claimed_at = exc.code, error_summary(exc), None
            patient = s.get(Patient, msg.patient_id) if msg.patient_id else None
            followup = s.get(FollowUp, msg.followup_id) if msg.followup_id else None
            if exc.retryable and msg.attempts < MAX_ATTEMPTS:
                delay = min(2 ** msg.attempts, 300) * (0.5 + random.random())  # exponential, with jitter
                msg.status, msg.send_after = Delivery.PENDING, utcnow() + dt.timedelta(seconds=delay)
                stats.retried += 1
                return
            msg.status = Delivery.FAILED
            stats.failed += 1
            log.warning("message %s to %s failed: %s", msg.id, mask(msg.to_number), error_summary(exc))
            if exc.code in INVALID_NUMBER and patient is not None:
                patient.phone_valid = False
                audit(s, "phone_invalid", actor="twilio", patient_id=patient.id, error_code=exc.code)
                if followup is not None and followup.state in ACTIVE:
                    close(followup, "fail_delivery")
            elif exc.code == OPTED_OUT and patient is not None:
                set_opt_out(s, lock_phone(s, patient.phone), True, STOP)
                audit(s, "opted_out", actor="twilio", patient_id=patient.id, error_code=exc.code)
                if followup is not None and followup.state in ACTIVE:
                    close(followup, "opt_out")

    # -- passes -------------------------------------------------------------
    def send_due(self, max_batches: int | None = None, stop: Callable[[], bool] | None = None) -> SendStats:
        """Send everything due now (one pass: what is claimable until the queue is empty).  ``stop``: asked
        before each text (a worker told to stop gives the rest of its batch back and returns).

        When the database goes away mid-batch the outage is raised (the worker waits for it); the claims
        not yet tried are given back once it answers again, and the one in flight, whose sending may not
        have been recorded, is reconciled against Twilio when its claim times out, as for a killed worker."""
        if self._unfinished:
            self.release(self._unfinished)
            self._unfinished = []
        stats = SendStats()
        self.settle(stats)
        batches = 0
        while max_batches is None or batches < max_batches:
            claims = self.claim()
            if not claims:
                break
            batches += 1
            claims.sort(key=lambda c: c.abandoned_since is None)  # a dead worker's texts first: they waited
            for i, claim in enumerate(claims):
                if stop is not None and stop():
                    self.release(claims[i:])
                    return stats
                if claim.abandoned_since is None and utcnow() - claim.at > self.claim_timeout / 2:
                    self.release(claims[i:])  # sharing the rate with others, this worker is slower than
                    break                     # its batch assumed: give the rest back before they look dead
                try:
                    self.deliver(claim, stats)
                except Exception as exc:  # one bad row must not stop the queue; it stays claimed and is retried
                    if is_unavailable(exc):
                        self._unfinished = claims[i + 1:]
                        raise
                    log.exception("sending message %s failed unexpectedly", claim.id)
        return stats
