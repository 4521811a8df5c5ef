"""The follow-up's life as ONE shared ``transitions`` state machine.

:func:`transition` fires a trigger the way the machine defines it without
attaching the row (the machine has no callbacks, checked at import); code that
wants the machine's model API attaches a row with :func:`attached`
(``add_model(row, initial=row.state)``), always detached afterwards, so the
machine never holds a reference to a conversation it is not handling.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from transitions import Machine, MachineError

from .surveys import ALL_QUESTIONS, SURVEY_30, SURVEY_CHECKIN, SURVEY_LATER, survey_for

class FollowUpState:
    """A follow-up's states, named once (the strings are what ``followups.state`` stores).  Between
    DECLINED and CRISIS come the question states, one per survey question: :func:`question_state`."""

    INVITED = "invited"  # the invitation is queued or sent; no yes yet
    DECLINED = "declined"  # said not now; a yes later still starts the survey
    CRISIS = "crisis"  # paused by a crisis alert until it is resolved
    COMPLETED = "completed"  # every question answered or skipped
    EXPIRED = "expired"  # EXPIRE_DAYS passed before the end; answers kept
    OPTED_OUT = "opted_out"  # the patient (or their consent) stopped it
    UNDELIVERABLE = "undeliverable"  # texts could not reach the phone


def question_state(key: str) -> str:
    """The state of a follow-up waiting for the answer to question ``key``."""
    return f"q_{key}"


QUESTION_STATES = [question_state(q.key) for q in ALL_QUESTIONS]
WAITING = [FollowUpState.INVITED, FollowUpState.DECLINED]
ACTIVE = WAITING + QUESTION_STATES  # open conversations
TERMINAL = [FollowUpState.COMPLETED, FollowUpState.EXPIRED, FollowUpState.OPTED_OUT, FollowUpState.UNDELIVERABLE]
STATES = [*WAITING, *QUESTION_STATES, FollowUpState.CRISIS, *TERMINAL]


def next_state(model: Any) -> str:
    """Where ``advance``/``consent`` leads for this model: the next question of its survey, or completed."""
    keys = survey_for(model.timepoint_days).keys
    if model.state in WAITING:
        return question_state(keys[0])
    index = keys.index(model.state[2:]) + 1
    return question_state(keys[index]) if index < len(keys) else FollowUpState.COMPLETED


def _leads_to(dest: str):
    return lambda event: next_state(event.model) == dest


def _resumes_to(dest: str):
    return lambda event: event.model.paused_state == dest


def _flow_edges() -> set[tuple[str, str]]:
    edges = set()
    for survey in (SURVEY_30, SURVEY_LATER, SURVEY_CHECKIN):
        chain = [question_state(k) for k in survey.keys] + [FollowUpState.COMPLETED]
        edges.update(zip(chain, chain[1:]))
        edges.update((w, chain[0]) for w in WAITING)
    return edges


def _transitions() -> list[dict[str, Any]]:
    edges = _flow_edges()
    out: list[dict[str, Any]] = []
    for src, dst in sorted(edges):
        trigger = "consent" if src in WAITING else "advance"
        out.append({"trigger": trigger, "source": src, "dest": dst, "conditions": [_leads_to(dst)]})
    out.append({"trigger": "decline", "source": FollowUpState.INVITED, "dest": FollowUpState.DECLINED})
    out.append({"trigger": "opt_out", "source": ACTIVE + [FollowUpState.CRISIS], "dest": FollowUpState.OPTED_OUT})
    out.append({"trigger": "pause", "source": ACTIVE, "dest": FollowUpState.CRISIS})
    for dst in ACTIVE:
        out.append({"trigger": "resume", "source": FollowUpState.CRISIS, "dest": dst, "conditions": [_resumes_to(dst)]})
    out.append({"trigger": "expire", "source": ACTIVE, "dest": FollowUpState.EXPIRED})
    out.append({"trigger": "fail_delivery", "source": ACTIVE, "dest": FollowUpState.UNDELIVERABLE})
    return out


MACHINE = Machine(model=None, states=STATES, transitions=_transitions(), initial=FollowUpState.INVITED,
                  auto_transitions=False, send_event=True, model_attribute="state")


@contextmanager
def attached(model: Any) -> Iterator[Any]:
    """Attach ``model`` to the shared machine in its current state; detach and clean up afterwards."""
    before = set(vars(model))
    MACHINE.add_model(model, initial=model.state)
    try:
        yield model
    finally:
        MACHINE.remove_model(model)
        for name in set(vars(model)) - before:
            if name != "state":
                delattr(model, name)


def _plain(machine: Machine) -> bool:
    """No callback anywhere (machine, states, transitions): firing a trigger only checks conditions and
    sets the state."""
    if any(getattr(machine, name) for name in ("before_state_change", "after_state_change", "prepare_event",
                                                "finalize_event", "on_exception", "on_final")):
        return False
    if any(s.on_enter or s.on_exit for s in machine.states.values()):
        return False
    return all(not (t.prepare or t.before or t.after) for e in machine.events.values()
               for ts in e.transitions.values() for t in ts)


# (trigger, source) -> [(dest, conditions)], in the machine's order: read from the machine, so it stays the
# one definition.
_FIRES = {(trigger, source): [(t.dest, tuple(t.conditions)) for t in ts]
          for trigger, event in MACHINE.events.items() for source, ts in event.transitions.items()}
assert _plain(MACHINE), "the follow-up machine has callbacks now: transition() must attach rows again"


class _EventData:
    """What a condition is given (``send_event=True``): the model."""
    __slots__ = ("model",)

    def __init__(self, model: Any):
        self.model = model


def transition(model: Any, trigger: str) -> None:
    """Fire ``trigger`` on ``model`` as the shared machine defines it: the first transition from the model's
    state whose conditions hold sets its destination.  The machine has no callbacks (checked at import), so
    this is what attach, fire and detach did, without the attaching (0.05 ms a text, a fifth of the webhook's
    conversation work).  A trigger that does not apply is a programming error."""
    options = _FIRES.get((trigger, model.state))
    if options is None:
        if trigger not in MACHINE.events:
            raise AttributeError(f"no trigger {trigger!r}")
        raise MachineError(f"Can't trigger event {trigger} from state {model.state}!")
    event = _EventData(model)
    for dest, conditions in options:
        if all(c.func(event) == c.target for c in conditions):
            model.state = dest
            return
    raise RuntimeError(f"{trigger} is not allowed from {model.state}")


def mermaid() -> str:
    """The state diagram, generated from the machine definition (shown in the README)."""
    labels: dict[tuple[str, str], list[str]] = {}
    for trigger, event in MACHINE.events.items():
        for src, transitions in event.transitions.items():
            for t in transitions:
                labels.setdefault((src, t.dest), [])
                if trigger not in labels[(src, t.dest)]:
                    labels[(src, t.dest)].append(trigger)
    lines = ["stateDiagram-v2", "    [*] --> invited"]
    order = {s: i for i, s in enumerate(STATES)}
    for (src, dst), triggers in sorted(labels.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]])):
        lines.append(f"    {src} --> {dst} : {', '.join(triggers)}")
    lines += [f"    {s} --> [*]" for s in TERMINAL]
    return "\n".join(lines)
