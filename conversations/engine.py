"""The conversation engine: one inbound text in, what to say and record out.

Pure: it changes the follow-up model it is given (state and a few
timestamps) through the shared machine and returns an :class:`Outcome`
listing replies, answers and events; the service layer persists them.
Precedence for every message: crisis, then STOP, then opted-out handling,
then HELP, then the conversation itself.

A text Twilio marked with ``OptOutType`` (``carrier_keyword``: opt_out, opt_in or help) is read as that
keyword whatever its words: Twilio has already opted the number out or back in at its end.  A START or YES
lifts only the patient's own STOP (``Context.opt_out_lifted_by_keyword``); after a "wrong number" reply the
number stays opted out and is answered with a line that says nothing about the study.
"""
from __future__ import annotations

import dataclasses
import re
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .lexicon import is_acknowledgement, is_crisis, keyword, opts_back_in
from .machine import ACTIVE, QUESTION_STATES, WAITING, FollowUpState, transition
from .surveys import QUESTIONS, Question, is_checkin, survey_for
from .texts import render

ACK_EVERY = dt.timedelta(hours=24)
MAX_UNUSABLE = 2


@dataclass(frozen=True)
class Context:
    language: str = "en"
    org: str = "Outreach Study"
    help_contact: str = ""
    crisis_line: str = "988"
    emergency: str = "911"
    opted_out: bool = False
    # False when the opt-out is not the patient's own STOP (someone replied "wrong number"): no keyword lifts it.
    opt_out_lifted_by_keyword: bool = True
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))

    def text(self, name: str, **values: Any) -> str:
        return render(name, self.language, org=self.org, contact=self.help_contact,
                      crisis_line=self.crisis_line, emergency=self.emergency, **values)


@dataclass(frozen=True)
class RecordedAnswer:
    key: str
    raw_text: str
    value: int | None
    missing_reason: str | None = None


@dataclass
class Outcome:
    replies: list[str] = field(default_factory=list)
    answers: list[RecordedAnswer] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    # Why a person must read this text (it is not an answer, a keyword, an acknowledgement or a crisis text): a
    # key of PERSONAL, or None.  The inbox lists every such text until someone marks it handled.
    personal: str | None = None


PERSONAL = {
    "not_an_answer": "not an answer to the survey's question",
    "after_survey": "written after the survey ended",
    "no_survey": "written when no survey was under way",
    "media": "a picture or other media",
}
_WORDS = re.compile(r"[^\W\d_]{2,}")


def reads_as_personal(text: str) -> bool:
    """Several words, not a number and not a keyword: what a person writes to a person."""
    return len(_WORDS.findall(text or "")) >= 3 and keyword(text) is None


def _crisis_line_once(model: Any, text: str, ctx: Context, out: Outcome) -> None:
    """Once in a conversation, a personal message that is not an answer gets a short line on where to get help at
    any hour (texts are not read around the clock), after the question asked again."""
    if model is not None and getattr(model, "crisis_line_at", None) is None and reads_as_personal(text):
        model.crisis_line_at = ctx.now
        out.replies.append(ctx.text("crisis_line_note"))


def current_question(model: Any) -> Question | None:
    if model is not None and model.state in QUESTION_STATES:
        return QUESTIONS[model.state[2:]]
    return None


def current_prompt(model: Any, ctx: Context) -> str | None:
    """What the patient is being asked right now (None outside an open conversation)."""
    if model is None:
        return None
    if model.state in WAITING:
        return ctx.text("consent_again")
    q = current_question(model)
    return q.prompt.get(ctx.language, q.prompt["en"]) if q else None


def invitation(timepoint_days: int, ctx: Context, reminder: bool = False, first: bool = False) -> str:
    """The invitation (or its reminder); ``first``: the first a patient ever receives, which also says that texts
    are not read around the clock and where to get help at any hour."""
    n = len(survey_for(timepoint_days).questions)
    name = "reminder" if reminder else "invitation_first" if first else "invitation"
    if is_checkin(timepoint_days):  # an alliance check-in during the stay
        name = f"checkin_{name}"
    return ctx.text(name, days=timepoint_days, n=n)


CARRIER_KEYWORDS = ("opt_out", "opt_in", "help")  # what Twilio's OptOutType STOP, START, HELP stand for


def respond(model: Any, text: str, ctx: Context, media_count: int = 0,
            carrier_keyword: str | None = None) -> Outcome:
    """Handle one inbound message.  ``model`` is the patient's follow-up (or None); ``carrier_keyword``:
    the keyword Twilio read in it (:data:`CARRIER_KEYWORDS`), which wins over the words."""
    out = Outcome()
    kw = carrier_keyword if carrier_keyword in CARRIER_KEYWORDS else keyword(text)
    if is_crisis(text):
        out.replies.append(ctx.text("safety"))
        out.events.append("crisis")
        if model is not None and model.state in ACTIVE:
            model.paused_state = model.state
            transition(model, "pause")
        if carrier_keyword == "opt_out":  # Twilio has opted the number out: the safety reply above still goes
            out.events.append("opted_out")
            if model is not None and model.state in ACTIVE + [FollowUpState.CRISIS]:
                transition(model, "opt_out")
        return out
    if kw in ("opt_out", "opt_out_request", "wrong_number"):
        out.events.append("opted_out")
        if model is not None and model.state in ACTIVE + [FollowUpState.CRISIS]:
            transition(model, "opt_out")
        if kw == "wrong_number":
            out.events.append("wrong_number")
        if kw != "opt_out" and not ctx.opted_out:  # the carrier confirms only its own keywords
            out.replies.append(ctx.text("wrong_number" if kw == "wrong_number" else "opted_out"))
        return out
    if ctx.opted_out:
        asks_back_in = kw == "opt_in" or opts_back_in(text)
        if (asks_back_in or kw == "help") and not ctx.opt_out_lifted_by_keyword:
            out.events.append("opt_in_refused")  # whoever holds the number now: not a word about the study
            out.replies.append(ctx.text("stays_stopped"))
        elif asks_back_in:
            out.events.append("opted_in")
            out.replies.append(ctx.text("opted_in"))
        elif kw == "help":
            out.replies.append(ctx.text("help"))
        return out
    if kw == "help":
        out.events.append("help")
        out.replies.append(ctx.text("help"))
        prompt = current_prompt(model, ctx)
        if prompt:
            out.replies.append(prompt)
        return out
    if model is None:
        if (text.strip() and not is_acknowledgement(text) and kw is None) or media_count:
            out.personal = "media" if media_count else "no_survey"
        return out
    if model.state in WAITING:
        _waiting(model, text, kw, ctx, out, media_count)
    elif model.state in QUESTION_STATES:
        _answering(model, text, kw, ctx, out, media_count)
    elif model.state != FollowUpState.CRISIS and not is_acknowledgement(text):  # a closed follow-up: at most once a day
        out.personal = "after_survey" if kw is None or media_count else None
        if model.last_ack_at is None or ctx.now - model.last_ack_at >= ACK_EVERY:
            model.last_ack_at = ctx.now
            out.replies.append(ctx.text("already_done" if model.state == FollowUpState.COMPLETED else "closed"))
            out.events.append("acknowledged")
    # (a text while the survey is paused for a crisis is shown on the alert's card, not in the inbox)
    if media_count and out.personal is None and model.state != FollowUpState.CRISIS:
        out.personal = "media"  # an answer with a picture: the picture is for a person to look at
    return out


def respond_withdrawn(text: str, ctx: Context, media_count: int = 0, carrier_keyword: str | None = None) -> Outcome:
    """A text from a participant who withdrew from the study: no conversation any more.  A crisis text gets the
    safety reply (safety does not depend on study status); a STOP is recorded as their opt-out; anything else gets
    the neutral acknowledgement, unless they are opted out (then nothing).  No keyword undoes the withdrawal."""
    out = Outcome()
    kw = carrier_keyword if carrier_keyword in CARRIER_KEYWORDS else keyword(text)
    if is_crisis(text):
        out.replies.append(ctx.text("safety"))
        out.events.append("crisis")
        return out
    if kw in ("opt_out", "opt_out_request", "wrong_number"):
        out.events.append("opted_out")
        if kw == "wrong_number":
            out.events.append("wrong_number")
    if (text.strip() and not is_acknowledgement(text) and kw is None) or media_count:
        out.personal = "media" if media_count else "no_survey"
    if not ctx.opted_out and "opted_out" not in out.events:
        out.replies.append(ctx.text("withdrawn_ack"))
        out.events.append("acknowledged")
    return out


def answer_unread(text: str, ctx: Context) -> list[str]:
    """What to answer at once when the sender's records cannot be read (the database is unreachable): the
    safety reply to a crisis message and the HELP text, each in English and French (the patient's language
    is not known), else nothing: the survey's next question waits until the text is applied."""
    if is_crisis(text):
        name = "safety"
    elif keyword(text) == "help":
        name = "help"
    else:
        return []
    return [dataclasses.replace(ctx, language=language).text(name) for language in ("en", "fr")]


def _media_only(text: str, media_count: int) -> bool:
    return media_count > 0 and not text.strip()


def _waiting(model: Any, text: str, kw: str | None, ctx: Context, out: Outcome, media_count: int) -> None:
    if model.state == FollowUpState.DECLINED and is_acknowledgement(text):  # "ok" to "OK, no problem": leave them be
        return
    if kw in ("yes", "opt_in"):
        transition(model, "consent")
        model.started_at = model.started_at or ctx.now
        model.retries = 0
        out.events.append("consented")
        out.replies.append(current_prompt(model, ctx))
    elif kw == "no":
        if model.state == FollowUpState.INVITED:
            transition(model, "decline")
            out.events.append("declined")
            out.replies.append(ctx.text("declined"))
    elif _media_only(text, media_count):
        out.personal = "media"
        out.replies += [ctx.text("media_only"), ctx.text("consent_again")]
    else:
        out.personal = "not_an_answer"
        out.replies.append(ctx.text("consent_again"))
        _crisis_line_once(model, text, ctx, out)


def _answering(model: Any, text: str, kw: str | None, ctx: Context, out: Outcome, media_count: int) -> None:
    q = current_question(model)
    if _media_only(text, media_count):
        out.personal = "media"
        out.replies += [ctx.text("media_only"), current_prompt(model, ctx)]
        return
    if kw == "skip":
        out.answers.append(RecordedAnswer(q.key, text, None, "skipped"))
    else:
        parsed = q.parse(text)
        if parsed.ok:
            out.answers.append(RecordedAnswer(q.key, text, parsed.value))
        else:
            out.personal = "not_an_answer"  # a person reads it, whether or not it is asked again
            model.retries = (model.retries or 0) + 1
            if model.retries < MAX_UNUSABLE:
                lo, hi = q.allowed
                out.replies.append(ctx.text("retry", lo=lo, hi=hi))
                _crisis_line_once(model, text, ctx, out)
                return
            out.answers.append(RecordedAnswer(q.key, text, None, "unparsed"))
    model.retries = 0
    transition(model, "advance")
    if model.state == FollowUpState.COMPLETED:
        model.completed_at = ctx.now
        out.events.append("completed")
        out.replies.append(ctx.text("completed"))
    else:
        out.replies.append(current_prompt(model, ctx))
    if out.personal == "not_an_answer":  # the second unusable answer: after the next question
        _crisis_line_once(model, text, ctx, out)
