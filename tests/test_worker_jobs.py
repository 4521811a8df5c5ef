"""The real `outreach worker` process runs the console's jobs beside its sending: an upload's check and a wave's
launch queued as the console queues them are done by the worker, whose simulator then sends the invitations."""
from __future__ import annotations

import datetime as dt
import io
import os
import signal

from sqlalchemy import func, select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.jobs.imports import start_check
from outreach.jobs.launches import start_launch
from outreach.models import Job, Message
from outreach.states import JobState

from .test_worker_crash import start_worker, wait_for

AS_OF = dt.date(2026, 11, 20)


def _state(session, job_id):
    session.rollback()
    return session.get(Job, job_id).state


def test_the_worker_runs_queued_jobs_and_sends_what_a_launch_queued(make_patient, sessions, session, env, tmp_path):
    for i in range(6):
        make_patient(discharge_date=AS_OF - dt.timedelta(days=31 + i))
    settings = load_settings(env)
    csv = (b"patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,"
           b"alliance_6\nW1,416-555-0199,2026-01-15,yes,6,6,5,6,6,6\n")
    with unit_of_work(sessions) as s:
        check = start_check(s, settings, io.BytesIO(csv), "w.csv", owner="c@x.org", owner_role="coordinator",
                            address=None).id
        launch = start_launch(s, settings, timepoint=30, as_of=AS_OF, limit=None, typed="6", shown=6,
                              owner="c@x.org", owner_role="coordinator", address=None).id
    worker = start_worker({**os.environ, **env, "SMS_BACKEND": "simulator", "SEND_RATE_PER_SECOND": "0",
                           "SEND_WINDOW": "Mon-Sun 00:00-24:00"}, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: _state(session, launch) in JobState.FINISHED, 60), (tmp_path / "worker.log").read_text()
        assert _state(session, check) == JobState.DONE and _state(session, launch) == JobState.DONE
        sent = lambda: session.scalar(select(func.count()).select_from(Message).where(  # noqa: E731
            Message.kind == "invitation", Message.sent_at.is_not(None)))
        assert wait_for(lambda: (session.rollback(), sent())[1] == 6, 60), (tmp_path / "worker.log").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    log = (tmp_path / "worker.log").read_text()
    assert "worker: stopped" in log and "5550199" not in log
