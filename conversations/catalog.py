"""Every outbound text rendered in each language, for length checks and the README table."""
from __future__ import annotations

from typing import Iterator

from .engine import Context, invitation
from .sms import encoding, segments
from .surveys import ALL_QUESTIONS, LANGUAGES
from .texts import TEXTS


def rendered_texts(org: str = "Recovery Study", contact: str = "1-800-555-0199") -> Iterator[tuple[str, str, str]]:
    """(name, language, text) for every text the service can send."""
    for lang in LANGUAGES:
        ctx = Context(language=lang, org=org, help_contact=contact)
        for name in TEXTS:
            if name in ("invitation", "reminder", "invitation_first"):
                for days in (30, 365):
                    yield f"{name} ({days} d)", lang, invitation(days, ctx, reminder=name == "reminder",
                                                                 first=name == "invitation_first")
            elif name.startswith("checkin_"):  # the weekly alliance check-in during a stay
                yield name, lang, invitation(-1, ctx, reminder=name.endswith("reminder"), first=name.endswith("first"))
            elif name == "stalled":
                for q in ALL_QUESTIONS:
                    yield f"stalled + {q.key}", lang, ctx.text(name, question=q.prompt[lang])
            elif name == "retry":
                yield name, lang, ctx.text(name, lo=0, hi=30)
            else:
                yield name, lang, ctx.text(name)
        for q in ALL_QUESTIONS:
            yield f"question {q.key}", lang, q.prompt[lang]


def markdown_table() -> str:
    lines = ["| text | lang | chars | encoding | segments |", "|---|---|---|---|---|"]
    for name, lang, text in rendered_texts():
        lines.append(f"| {name} | {lang} | {len(text)} | {encoding(text)} | {segments(text)} |")
    return "\n".join(lines)
