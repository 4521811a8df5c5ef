"""A wave launched from the console, as a job: the plan is made again when the job runs, and the wave is
launched only if it still invites exactly the number the coordinator typed (the CLI's `waves launch` asks the
same question before it writes anything)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy.orm import Session

from ..config import Settings
from ..db import unit_of_work
from ..models import Job
from ..study.waves import WaveError, check_timepoint, launch_wave, plan_wave
from .queue import JobContext, JobError, handler, submit


def start_launch(session: Session, settings: Settings, *, timepoint: int, as_of: dt.date, limit: int | None,
                 typed: str, shown: int, owner: str, owner_role: str, address: str | None) -> Job:
    """Queue a wave's launch.  ``typed`` is the number of patients to invite as the coordinator typed it, which
    must be the ``shown`` plan's number (and is checked against a fresh plan when the job runs)."""
    try:
        check_timepoint(settings, timepoint)
    except ValueError as exc:
        raise WaveError(str(exc)) from None
    if limit is not None and limit < 1:
        raise WaveError("the limit must be a whole number of at least 1")
    typed = (typed or "").strip().replace(",", "")
    if not re.fullmatch(r"[0-9]+", typed) or int(typed) < 1:
        raise WaveError("type the number of patients to invite, as the plan shows it, to confirm the launch")
    if int(typed) != shown:
        raise WaveError(f"the plan invites {shown:,} patient(s) and {int(typed):,} was typed; type the plan's "
                        "number to confirm")
    return submit(session, "launch", owner=owner, owner_role=owner_role,
                  params={"timepoint": timepoint, "as_of": as_of.isoformat(), "limit": limit, "expected": int(typed),
                          "address": address})


@handler("launch")
def run_launch(ctx: JobContext) -> dict[str, Any]:
    timepoint, limit, expected = ctx.params["timepoint"], ctx.params.get("limit"), ctx.params["expected"]
    as_of = dt.date.fromisoformat(ctx.params["as_of"])
    ctx.progress(0.05, "planning: who is eligible")
    with unit_of_work(ctx.sessions) as session:
        plan = plan_wave(session, ctx.settings, timepoint, as_of)
        count = min(len(plan.eligible), limit) if limit is not None else len(plan.eligible)
        if count != expected:
            raise JobError(f"nothing was launched: the plan now invites {count:,} patient(s), not the {expected:,} "
                           "typed (patients were imported, invited or opted out meanwhile); plan again")
        if count == 0:
            raise JobError("nothing was launched: no patient is eligible at this time point on this date")
        ctx.progress(0.2, f"creating {count:,} follow-up(s) and their invitations")

        def progress(done: int, total: int) -> None:
            ctx.progress(0.2 + 0.75 * done / max(total, 1), f"created {done:,} of {total:,}")

        wave, _ = launch_wave(session, ctx.settings, timepoint, as_of, actor=ctx.owner, limit=limit, plan=plan,
                              progress=progress)
        return ctx.done_with(session, {  # with the wave: a worker dying after the commit cannot launch it again
            "wave_id": wave.id, "targeted": wave.targeted, "timepoint": timepoint, "as_of": as_of.isoformat(),
            "summary": f"wave {wave.id} launched: {wave.targeted:,} invitation(s) queued for the {timepoint}-day "
                       "follow-up; the worker sends them within the sending hours"})
