"""The follow-up's life as ONE shared ``transitions`` state machine.

Rows are attached for the length of one message with :func:`attached`
(``add_model(row, initial=row.state)``) and always detached afterwards, so
the machine never holds a reference to a conversation it is not handling.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from transitions import Machine

from .surveys import ALL_QUESTIONS, SURVEY_30, SURVEY_LATER, survey_for

QUESTION_STATES = [f"q_{q.key}" for q in ALL_QUESTIONS]
WAITING = ["invited", "declined"]
ACTIVE = WAITING + QUESTION_STATES  # open conversations
TERMINAL = ["completed", "expired", "opted_out", "undeliverable"]
STATES = ["invited", "declined", *QUESTION_STATES, "crisis", *TERMINAL]


def next_state(model: Any) -> str:
    """Where ``advance``/``consent`` leads for this model: the next question of its survey, or completed."""
    keys = survey_for(model.timepoint_days).keys
    if model.state in WAITING:
        return f"q_{keys[0]}"
    index = keys.index(model.state[2:]) + 1
    return f"q_{keys[index]}" if index < len(keys) else "completed"


def _leads_to(dest: str):
    return lambda event: next_state(event.model) == dest


def _resumes_to(dest: str):
    return lambda event: event.model.paused_state == dest


def _flow_edges() -> set[tuple[str, str]]:
    edges = set()
    for survey in (SURVEY_30, SURVEY_LATER):
        chain = [f"q_{k}" for k in survey.keys] + ["completed"]
        edges.update(zip(chain, chain[1:]))
        edges.update((w, chain[0]) for w in WAITING)
    return edges


def _transitions() -> list[dict[str, Any]]:
    edges = _flow_edges()
    out: list[dict[str, Any]] = []
    for src, dst in sorted(edges):
        trigger = "consent" if src in WAITING else "advance"
        out.append({"trigger": trigger, "source": src, "dest": dst, "conditions": [_leads_to(dst)]})
    out.append({"trigger": "decline", "source": "invited", "dest": "declined"})
    out.append({"trigger": "opt_out", "source": ACTIVE + ["crisis"], "dest": "opted_out"})
    out.append({"trigger": "pause", "source": ACTIVE, "dest": "crisis"})
    for dst in ACTIVE:
        out.append({"trigger": "resume", "source": "crisis", "dest": dst, "conditions": [_resumes_to(dst)]})
    out.append({"trigger": "expire", "source": ACTIVE, "dest": "expired"})
    out.append({"trigger": "fail_delivery", "source": ACTIVE, "dest": "undeliverable"})
    return out


MACHINE = Machine(model=None, states=STATES, transitions=_transitions(), initial="invited",
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


def transition(model: Any, trigger: str) -> None:
    """Attach ``model``, fire ``trigger``, detach.  A trigger that does not apply is a programming error."""
    with attached(model):
        if not MACHINE.events[trigger].trigger(model):
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
