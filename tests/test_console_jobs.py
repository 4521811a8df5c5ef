"""The console's long work as jobs, on both databases, through the real Flask app and the real queue the worker
runs (``run_pending``): uploading a discharge file, reading its problems, importing it; planning and launching a
wave; a job's page, its files and who may see them; workers that die; result files that expire."""
from __future__ import annotations

import datetime as dt
import io
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from outreach.config import load_settings
from outreach.db import audit, unit_of_work
from outreach.jobs import queue
from outreach.jobs.queue import MAX_ATTEMPTS, STALE_AFTER, claim, delete_old_files, recover, run_pending, submit
from outreach.models import AuditEvent, Episode, FollowUp, Job, Message, Patient, Wave
from outreach.states import JobState

HEADER = "patient_id,phone,discharge_date,sms_consent,alliance_1,alliance_2,alliance_3,alliance_4,alliance_5,alliance_6"
GOOD = ["J1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6", "J2,416-555-0102,2026-01-20,yes,4,5,3,5,4,4"]
BAD = ["J3,555-12,2026-02-30,maybe,7,x,5,6,6,6"]


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _upload(client, data: bytes, name: str = "discharges.csv", **form):
    return client.post("/console/imports", data={"csrf_token": client.csrf, "file": (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data")


def _job_id(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert "/console/jobs/" in location, location
    return int(location.rstrip("/").split("/")[-1])


def _work(console_env):
    settings = load_settings(console_env)
    from outreach.db import make_engine, session_factory

    engine = make_engine(settings.database_url)
    try:
        return run_pending(session_factory(engine), settings, "test-worker")
    finally:
        engine.dispose()


def test_an_upload_with_problems_is_checked_listed_line_by_line_then_only_its_valid_rows_imported(
        console_client, console_env, session, jobs_path):
    client = console_client("coordinator")
    check = _job_id(_upload(client, _csv(*GOOD, *BAD), name="march discharges.csv"))
    waiting = client.get(f"/console/jobs/{check}").get_data(as_text=True)
    assert "Waiting for the worker" in waiting and 'hx-trigger="every 1s"' in waiting
    assert _work(console_env) == 1
    page = client.get(f"/console/jobs/{check}").get_data(as_text=True)
    assert 'hx-trigger' not in page  # finished: the page stops asking
    assert "<td>4</td><td>phone</td>" in page  # line 4 of the file (the header is line 1)
    assert "<td>4</td><td>discharge_date</td>" in page
    assert "checked 3 row(s)" in page and "Import only the 2 valid rows" in page
    assert session.scalar(select(func.count()).select_from(Patient)) == 0  # a check writes nothing
    upload = next((jobs_path / str(check) / "upload").iterdir())
    assert stat.S_IMODE(upload.stat().st_mode) == 0o600
    token = client.csrf
    response = client.post(f"/console/imports/{check}/import", data={"csrf_token": token, "rows": "all"})
    assert "Nothing was imported" in client.get(response.headers["Location"]).get_data(as_text=True)
    imported = _job_id(client.post(f"/console/imports/{check}/import", data={"csrf_token": token, "rows": "valid"}))
    assert _work(console_env) == 1
    page = client.get(f"/console/jobs/{imported}").get_data(as_text=True)
    assert "imported 2 new patients, 2 new episodes, updated 0, unchanged 0, rejected 1" in page
    session.rollback()  # a fresh read
    assert {p.patient_id for p in session.scalars(select(Patient))} == {"J1", "J2"}
    assert not any(p.name == "march discharges.csv" for p in (jobs_path / str(imported)).rglob("*"))  # deleted
    rejected = client.get(f"/console/jobs/{imported}/files/rejected")
    assert rejected.status_code == 200
    text = rejected.get_data().decode("utf-8-sig")
    rejected.close()
    assert "J3" in text and "555-12" not in text and "phone" in text  # masked as the CLI writes it
    history = client.get("/console/imports").get_data(as_text=True)
    assert "march discharges.csv" in history and "rejected 1" in history
    session.rollback()
    sha = session.scalar(select(Job.params).where(Job.id == imported))["sha256"]
    assert sha[:12] in history
    actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert {"import_uploaded", "import_discharges", "job_file_downloaded"} <= set(actions)
    # a second import of the same check is refused
    again = client.post(f"/console/imports/{check}/import", data={"csrf_token": token, "rows": "valid"})
    assert "already sent to import" in client.get(again.headers["Location"]).get_data(as_text=True)


def test_a_clean_file_imports_all_or_nothing_and_warnings_are_shown(console_client, console_env, session):
    client = console_client("admin")
    check = _job_id(_upload(client, _csv(*GOOD, "J9,416-555-0101,2026-01-22,yes,5,5,5,5,5,5")))
    _work(console_env)
    page = client.get(f"/console/jobs/{check}").get_data(as_text=True)
    assert "Import all 3 rows" in page and "Warnings (" in page  # J9 shares J1's phone
    job = _job_id(client.post(f"/console/imports/{check}/import", data={"csrf_token": client.csrf, "rows": "all"}))
    _work(console_env)
    assert "imported 3 new patients" in client.get(f"/console/jobs/{job}").get_data(as_text=True)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Patient)) == 3


def test_uploads_are_refused_in_words(console_client, console_env, make_user):
    client = console_client("coordinator")
    empty = _upload(client, b"")
    assert "The file was not taken: the file is empty" in client.get(empty.headers["Location"]).get_data(as_text=True)
    unreadable = _job_id(_upload(client, b"patient_id;phone\n\xff\xfe\xff"))
    _work(console_env)
    page = client.get(f"/console/jobs/{unreadable}").get_data(as_text=True)
    assert "It did not work" in page and "nothing was imported" in page and "Traceback" not in page

    from webhooks.app import create_app

    from .conftest import CONSOLE_PASSWORD, csrf_token_of

    app = create_app({**console_env, "MAX_UPLOAD_MB": "0.01"})  # 10 kB
    try:
        make_user("small@study.example.org", "coordinator")
        small = app.test_client()
        token = csrf_token_of(small.get("/console/sign-in").get_data(as_text=True))
        small.post("/console/sign-in", data={"email": "small@study.example.org", "password": CONSOLE_PASSWORD,
                                             "csrf_token": token})
        small.csrf = csrf_token_of(small.get("/console/imports").get_data(as_text=True))
        response = _upload(small, _csv(*GOOD * 2000))  # 80 kB: refused before the form is read
        assert response.status_code == 413
        assert "larger than 0.01 MB (MAX_UPLOAD_MB)" in response.get_data(as_text=True)
        assert _job_id(_upload(small, _csv(*GOOD)))  # a small one passes
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_an_import_is_the_coordinators_work_and_leaves_whoever_loses_the_role(console_client, console_env,
                                                                                 console_app, session):
    from outreach.models import User

    owner = console_client("coordinator", email="owner@study.example.org")
    colleague, admin = console_client("coordinator"), console_client("admin")
    job = _job_id(_upload(owner, _csv(*GOOD, *BAD)))
    _work(console_env)
    assert owner.get(f"/console/jobs/{job}").status_code == 200
    assert colleague.get(f"/console/jobs/{job}").status_code == 200  # the study team's shared work
    assert admin.get(f"/console/jobs/{job}").status_code == 200
    assert console_client("researcher").get(f"/console/jobs/{job}").status_code == 404
    assert console_client("researcher").get("/console/imports").status_code == 403
    rejected = owner.get(f"/console/jobs/{job}/files/rejected")
    assert rejected.status_code == 200
    rejected.close()
    session.execute(update(User).where(User.email == "owner@study.example.org").values(role="researcher"))
    session.commit()  # the owner is now a researcher: the rejected rows (patient ids) are out of reach
    from .conftest import CONSOLE_PASSWORD, csrf_token_of

    again = console_app.test_client()
    token = csrf_token_of(again.get("/console/sign-in").get_data(as_text=True))
    again.post("/console/sign-in", data={"email": "owner@study.example.org", "password": CONSOLE_PASSWORD,
                                         "csrf_token": token})
    assert again.get("/console/").status_code == 200
    assert again.get(f"/console/jobs/{job}/files/rejected").status_code == 404


def _stays(session, n: int, discharged: dt.date) -> None:
    for i in range(n):
        p = Patient(patient_id=f"L{i}", phone=f"+1416555{1000 + i:04d}", timezone="America/Toronto", language="en",
                    sms_consent=True)
        session.add(p)
        session.flush()
        session.add(Episode(patient_id=p.id, discharge_date=discharged))
    session.commit()


def test_a_wave_is_planned_then_launched_as_a_job_only_for_the_number_typed(console_client, console_env, session):
    as_of = dt.date(2026, 3, 1)
    _stays(session, 7, as_of - dt.timedelta(days=30))
    client = console_client("coordinator")
    page = client.get(f"/console/waves?timepoint=30&as_of={as_of}&limit=5").get_data(as_text=True)
    assert "this invites <strong>5</strong> patient(s)" in page and "the first 5 of 7 eligible" in page
    form = {"csrf_token": client.csrf, "timepoint": "30", "as_of": as_of.isoformat(), "limit": "5", "shown": "5"}
    wrong = client.post("/console/waves/launch", data={**form, "confirm": "7"})
    assert "The wave was not launched: The plan invites 5 patient(s) and 7 was typed" in \
        client.get(wrong.headers["Location"]).get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Job)) == 0
    job = _job_id(client.post("/console/waves/launch", data={**form, "confirm": "5"}))
    _work(console_env)
    page = client.get(f"/console/jobs/{job}").get_data(as_text=True)
    session.rollback()
    wave_id = session.scalar(select(Wave.id))
    assert f"wave {wave_id} launched: 5 invitation(s) queued" in page
    assert f'href="/console/waves/{wave_id}"' in page
    assert session.scalar(select(func.count()).select_from(Message).where(Message.kind == "invitation")) == 5
    launched = session.scalars(select(AuditEvent).where(AuditEvent.action == "wave_launched")).one()
    assert launched.actor.startswith("coordinator")


def test_a_launch_whose_plan_changed_meanwhile_launches_nothing(console_client, console_env, session):
    as_of = dt.date(2026, 3, 1)
    _stays(session, 3, as_of - dt.timedelta(days=30))
    client = console_client("coordinator")
    job = _job_id(client.post("/console/waves/launch", data={
        "csrf_token": client.csrf, "timepoint": "30", "as_of": as_of.isoformat(), "limit": "", "shown": "3",
        "confirm": "3"}))
    session.execute(update(Patient).where(Patient.patient_id == "L0").values(sms_consent=False))
    session.commit()
    _work(console_env)
    page = client.get(f"/console/jobs/{job}").get_data(as_text=True)
    assert "nothing was launched: the plan now invites 2 patient(s), not the 3 typed" in page
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 0


# -- the queue itself ---------------------------------------------------------------------------------------------

@queue.handler("test_sleep")
def _sleep(ctx):
    for i in range(3):
        ctx.progress(i / 3, f"step {i}")
    if ctx.params.get("fail") == "words":
        raise queue.JobError("the file has no header")
    if ctx.params.get("fail") == "bug":
        raise RuntimeError("could not reach +14165550101 for 'I feel awful'")
    return {"summary": f"slept for {ctx.owner}"}


def test_two_workers_never_run_the_same_job(sessions):
    with unit_of_work(sessions) as s:
        ids = [submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator").id for _ in range(20)]
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name):
        while (job_id := claim(sessions, name)) is not None:
            with lock:
                taken.append(job_id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(ids)


def test_a_failed_job_says_why_in_words_and_keeps_patient_data_out(sessions, settings, caplog):
    with unit_of_work(sessions) as s:
        words = submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator", params={"fail": "words"}).id
        bug = submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator", params={"fail": "bug"}).id
        fine = submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator").id
    assert run_pending(sessions, settings, "w") == 3
    with unit_of_work(sessions) as s:
        jobs = {j.id: j for j in s.scalars(select(Job))}
        assert (jobs[words].state, jobs[words].error) == (JobState.FAILED, "the file has no header")
        assert jobs[bug].state == JobState.FAILED and "unexpected error (RuntimeError" in jobs[bug].error
        assert "5550101" not in jobs[bug].error and "awful" not in jobs[bug].error
        assert (jobs[fine].state, jobs[fine].progress, jobs[fine].result["summary"]) == (JobState.DONE, 1.0,
                                                                                        "slept for a@x.org")
    assert "5550101" not in caplog.text and "awful" not in caplog.text


def test_a_job_whose_worker_died_is_taken_up_again_once_then_failed(sessions, settings):
    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator").id
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert claim(sessions, "dead-worker") == job_id  # claimed, then the worker dies without a heartbeat
        later = queue.utcnow() + STALE_AFTER + dt.timedelta(seconds=1)
        assert recover(sessions, now=later) == [job_id]
        with unit_of_work(sessions) as s:
            job = s.get(Job, job_id)
            expected = JobState.QUEUED if attempt < MAX_ATTEMPTS else JobState.FAILED
            assert job.state == expected, attempt
    assert "the worker running it stopped 2 times" in job.error


class _WorkerKilled(BaseException):
    """The worker process dies (SIGKILL, a lost host) at that point: nothing after it runs, not even a finally."""


@pytest.mark.parametrize("kind", ["launch", "import"])
def test_a_job_whose_worker_died_after_its_work_was_committed_is_done_and_never_run_again(
        kind, make_patient, sessions, session, settings, jobs_path, monkeypatch):
    """The worker dies between the commit of the job's work and the job's being marked done.  A launch with a
    limit run again would have planned afresh and invited that many more patients (a second wave the
    coordinator never asked for); an import run again failed with "the uploaded file is no longer kept"."""
    from outreach.jobs.imports import start_check, start_import
    from outreach.jobs.launches import start_launch

    as_of = dt.date(2026, 11, 20)
    for i in range(5):
        make_patient(discharge_date=as_of - dt.timedelta(days=31 + i))
    with unit_of_work(sessions) as s:
        if kind == "launch":
            job_id = start_launch(s, settings, timepoint=30, as_of=as_of, limit=2, typed="2", shown=2,
                                  owner="c@x.org", owner_role="coordinator", address=None).id
        else:
            check_id = start_check(s, settings, io.BytesIO(_csv(*GOOD)), "d.csv", owner="c@x.org",
                                   owner_role="coordinator", address=None).id
    if kind == "import":
        assert run_pending(sessions, settings, "w") == 1
        with unit_of_work(sessions) as s:
            job_id = start_import(s, settings, s.get(Job, check_id), only_valid=False, owner="c@x.org",
                                  owner_role="coordinator", address=None).id

    def killed(_folder):
        raise _WorkerKilled

    monkeypatch.setattr(queue, "make_private", killed)  # right after the handler's transaction committed
    with pytest.raises(_WorkerKilled):
        run_pending(sessions, settings, "dying-worker")
    monkeypatch.undo()
    later = queue.utcnow() + STALE_AFTER + dt.timedelta(seconds=1)
    assert recover(sessions, now=later, settings=settings) == []  # nothing to take up again
    assert run_pending(sessions, settings, "second-worker") == 0
    session.rollback()
    job = session.get(Job, job_id)
    assert job.state == JobState.DONE and job.error is None
    if kind == "launch":
        wave = session.scalars(select(Wave)).one()  # one wave, of the 2 patients typed
        assert job.result["wave_id"] == wave.id and job.result["summary"].startswith(f"wave {wave.id} launched: 2 ")
        assert session.scalar(select(func.count()).select_from(FollowUp)) == 2
    else:
        assert job.result["summary"].startswith("imported 2 new patients")
        assert session.scalar(select(func.count()).select_from(Patient).where(Patient.patient_id.in_(["J1", "J2"]))) == 2


@queue.handler("test_marked")
def _marked(ctx):
    """Work that marks itself done in its own transaction, as a launch does; ``params`` choose what goes wrong."""
    if ctx.params.get("taken_over"):  # meanwhile the job was taken for abandoned and given to another worker
        with unit_of_work(ctx.sessions) as s:
            s.execute(update(Job).where(Job.id == ctx.job_id).values(claimed_by="other-worker"))
    with unit_of_work(ctx.sessions) as s:
        audit(s, "test_work_done", actor=ctx.owner)
        result = ctx.done_with(s, {"summary": "the work is in"})
        if ctx.params.get("report_after"):  # a progress report once the row is the transaction's: dropped
            ctx.progress(0.99, "after the end")
            queue.time.sleep(3 * queue.BEAT_EVERY)  # heartbeats fall due meanwhile
    return result


def test_a_job_taken_over_by_another_worker_keeps_nothing_of_the_first_try(sessions, session, settings):
    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_marked", owner="a@x.org", owner_role="coordinator", params={"taken_over": True}).id
    run_pending(sessions, settings, "slow-worker")
    session.rollback()
    job = session.get(Job, job_id)
    assert (job.state, job.claimed_by) == (JobState.RUNNING, "other-worker")  # the other worker's to finish
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test_work_done")) == 0


def test_a_job_marked_done_stays_done_when_a_later_step_fails_and_drops_reports_after_it(
        sessions, session, settings, monkeypatch):
    """After the commit that holds the work and its being done, a failing step (its folder made private) does not
    turn the job failed (the coordinator would launch again), and a progress report between done_with and the
    commit neither hangs on the job's own row lock nor replaces its summary."""
    monkeypatch.setattr(queue, "BEAT_EVERY", 0.05)

    def unreadable(_folder):
        raise PermissionError("the jobs folder cannot be changed")

    monkeypatch.setattr(queue, "make_private", unreadable)
    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_marked", owner="a@x.org", owner_role="coordinator", params={"report_after": True}).id
    worker = threading.Thread(target=run_pending, args=(sessions, settings, "w"), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()  # not stuck behind its own transaction
    session.rollback()
    job = session.get(Job, job_id)
    assert (job.state, job.message, job.error) == (JobState.DONE, "the work is in", None)
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "test_work_done")) == 1


def test_result_files_are_private_and_deleted_after_job_result_days(sessions, console_env, jobs_path):
    settings = load_settings({**console_env, "JOB_RESULT_DAYS": "3"})

    @queue.handler("test_file")
    def _file(ctx):
        (ctx.folder / "out.csv").write_text("x\n")
        return {"summary": "wrote", "files": {"data": "out.csv"}}

    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_file", owner="a@x.org", owner_role="researcher").id
    run_pending(sessions, settings, "w")
    path = jobs_path / str(job_id) / "out.csv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((jobs_path / str(job_id)).stat().st_mode) == 0o700
    assert delete_old_files(sessions, settings, now=queue.utcnow() + dt.timedelta(days=2)) == 0
    assert path.exists()
    assert delete_old_files(sessions, settings, now=queue.utcnow() + dt.timedelta(days=3, minutes=1)) == 1
    assert not path.exists()
    with unit_of_work(sessions) as s:
        job = s.get(Job, job_id)
        assert job.files_deleted_at is not None and queue.result_file(settings, job, "data") is None


def test_a_file_that_goes_while_the_job_ends_does_not_fail_the_job(sessions, console_env, jobs_path, monkeypatch):
    """The job's heartbeat renames its progress file into place while the job's files are made private: a path
    listed a moment before is gone.  That failed a report in CI ('unexpected error (FileNotFoundError …)')."""
    settings = load_settings(console_env)

    @queue.handler("test_files")
    def _files(ctx):
        for name in ("a.csv", "b.csv", "c.csv"):
            (ctx.folder / name).write_text("x\n")
        return {"summary": "wrote three"}

    chmod = os.chmod

    def chmod_while_files_go(path, mode, **kw):  # as the heartbeat's rename does, between listing and chmod
        for other in Path(path).parent.glob("*.csv"):
            if other != Path(path):
                other.unlink()
        return chmod(path, mode, **kw)

    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_files", owner="a@x.org", owner_role="researcher").id
    monkeypatch.setattr(queue.os, "chmod", chmod_while_files_go)
    run_pending(sessions, settings, "w")
    monkeypatch.undo()
    with unit_of_work(sessions) as s:
        job = s.get(Job, job_id)
        assert (job.state, job.error, job.result["summary"]) == (JobState.DONE, None, "wrote three")


def test_a_long_job_on_sqlite_still_shows_progress_and_is_not_taken_for_dead(sessions, console_env, jobs_path):
    """While a job's own transaction holds the database (SQLite: one writer), its worker keeps its heartbeat and
    progress in the job's folder: the page shows them, and no other worker takes the job for abandoned."""
    settings = load_settings(console_env)
    seen = {}

    @queue.handler("test_hold")
    def _hold(ctx):
        from types import SimpleNamespace

        with unit_of_work(ctx.sessions) as s:  # a long write transaction, as an import's
            audit(s, "test_hold", actor="t")  # a write: on SQLite the one write lock is held from here
            ctx.progress(0.5, "half way")
            # what the page reads meanwhile (the row, as it was before this transaction, and the folder)
            row = SimpleNamespace(id=ctx.job_id, state=JobState.RUNNING, progress=0.0, message="started")
            seen["live"] = queue.live_progress(settings, row)
        return {"summary": "held"}

    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_hold", owner="a@x.org", owner_role="coordinator").id
    run_pending(sessions, settings, "w")
    assert seen["live"] == (0.5, "half way")
    with unit_of_work(sessions) as s:
        assert s.get(Job, job_id).state == JobState.DONE
    assert not (jobs_path / str(job_id) / queue.PROGRESS_FILE).exists()


def test_a_report_that_comes_too_soon_is_written_when_its_time_comes(sessions, console_env, jobs_path):
    """Progress is written at most every PROGRESS_EVERY seconds; a report that comes sooner is not dropped: the
    newest is written when that time is up, so a step that then works on for long shows itself, not the step
    before it."""
    import time
    from types import SimpleNamespace

    settings = load_settings(console_env)
    seen = {}

    @queue.handler("test_late")
    def _quick_then_long(ctx):
        ctx.progress(0.2, "reading")
        ctx.progress(0.3, "matching")  # too soon after the first to be written at once
        time.sleep(queue.PROGRESS_EVERY * 3)  # a long step with no report
        row = SimpleNamespace(id=ctx.job_id, state=JobState.RUNNING, progress=0.0, message="started")
        seen["live"] = queue.live_progress(settings, row)
        return {"summary": "done"}

    with unit_of_work(sessions) as s:
        submit(s, "test_late", owner="a@x.org", owner_role="coordinator")
    run_pending(sessions, settings, "w")
    assert seen["live"] == (0.3, "matching")


def test_recover_spares_a_job_whose_worker_writes_its_folder(sessions, settings, jobs_path):
    import json

    with unit_of_work(sessions) as s:
        job_id = submit(s, "test_sleep", owner="a@x.org", owner_role="coordinator").id
    assert claim(sessions, "busy-worker") == job_id
    later = queue.utcnow() + STALE_AFTER + dt.timedelta(seconds=5)
    folder = queue.job_folder(settings, job_id)
    (folder / queue.PROGRESS_FILE).write_text(json.dumps({"progress": 0.4, "message": "x",
                                                          "at": (later - dt.timedelta(seconds=3)).isoformat()}))
    assert recover(sessions, now=later, settings=settings) == []  # alive: it wrote its folder 3 s ago
    (folder / queue.PROGRESS_FILE).unlink()
    assert recover(sessions, now=later, settings=settings) == [job_id]


def test_what_is_not_a_csv_is_refused_in_words_and_nothing_of_it_is_kept(console_client, console_env, jobs_path):
    client = console_client("coordinator")
    workbook = b"PK\x03\x04" + b"\x14\x00\x06\x00xl/workbook.xml" + bytes(200)
    page = client.get(_upload(client, workbook, name="discharges.xlsx").headers["Location"]).get_data(as_text=True)
    assert "this is an Excel workbook (.xlsx)" in page and "CSV UTF-8" in page and "workbook.xml" not in page
    assert not any(jobs_path.rglob("discharges.xlsx"))  # nothing of a refused upload is kept
    headless = _job_id(_upload(client, b"J1,416-555-0101,2026-01-15,yes,6,6,5,6,6,6\n"))  # no header row
    _work(console_env)
    page = client.get(f"/console/jobs/{headless}").get_data(as_text=True)
    assert "It did not work" in page and "nothing was imported" in page
    assert "416-555-0101" not in page and "5550101" not in page  # the importer quotes the cell: masked
    assert not list((jobs_path / str(headless) / "upload").iterdir())  # a failed check deletes its upload
    later = client.post(f"/console/imports/{headless}/import", data={"csrf_token": client.csrf, "rows": "all"})
    assert "the check of this file failed" in client.get(later.headers["Location"]).get_data(as_text=True)


def test_the_fixed_rejected_rows_file_can_be_uploaded_again(console_client, console_env, session):
    client = console_client("coordinator")
    check = _job_id(_upload(client, _csv(*GOOD), name="march.rejected.csv"))  # its name from the download
    _work(console_env)
    page = client.get(f"/console/jobs/{check}").get_data(as_text=True)
    assert "Import all 2 rows" in page
    job = _job_id(client.post(f"/console/imports/{check}/import", data={"csrf_token": client.csrf, "rows": "all"}))
    _work(console_env)
    assert "imported 2 new patients" in client.get(f"/console/jobs/{job}").get_data(as_text=True)


def test_a_number_that_is_not_plain_digits_is_refused_in_words(console_client):
    client = console_client("coordinator")
    response = client.get("/console/waves?timepoint=30&limit=%C2%B2")  # "²" counts as a digit to Python
    assert response.status_code == 400 and "The limit must be a whole number" in response.get_data(as_text=True)
