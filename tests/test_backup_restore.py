"""The backup drill (issue 27), on both databases: a study filled the way coordinators fill one, backed up with
`outreach backup` while patients' texts arrive, restored with `outreach restore` into a fresh database; the export,
the report's stats.json, the audit log and the console's users are those of the source at the backup's moment, and
`outreach db upgrade` on the copy changes nothing."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url

from outreach.cli import cli
from outreach.db import make_engine
from outreach.messaging.webhook_client import SignedWebhookClient, flask_post, new_sid
from outreach.models import AuditEvent, FollowUp, Message, Patient, User
from outreach.states import Processing
from outreach.synthetic import discharge_rows, write_discharges

from .conftest import AUTH_TOKEN, PUBLIC_BASE

EXPORT_KEY = "k" * 40
COPY_ACTIONS = ("database_backup", "database_restore")  # the audit rows a backup and a restore write


def run(env: dict, *args: str):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class Moment:
    """What a researcher and an auditor see of a database: the export, the report's data, the audit log, the users."""
    export: bytes
    dataset: pd.DataFrame
    audit: list
    users: list


def moment(engine, folder: Path) -> Moment:
    from analysis.dataset import linked_dataset
    from analysis.export import write

    df = linked_dataset(engine, EXPORT_KEY.encode())
    folder.mkdir(parents=True, exist_ok=True)
    path = write(df, folder / "export.csv", "csv")
    with engine.connect() as conn:
        audit = [tuple(r) for r in conn.execute(select(AuditEvent.__table__).where(  # the copy's own rows aside
            AuditEvent.action.not_in(COPY_ACTIONS)).order_by(AuditEvent.id))]
        users = [tuple(r) for r in conn.execute(select(User.__table__).order_by(User.id))]
    return Moment(path.read_bytes(), df, audit, users)


def stats_json(df: pd.DataFrame, folder: Path) -> dict:
    from analysis.report import write_report

    write_report(df, folder)
    return json.loads((folder / "stats.json").read_text())


def schema(url: str) -> tuple:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            return tuple(version), tuple((t, tuple(c["name"] for c in found.get_columns(t)))
                                         for t in sorted(found.get_table_names()))
    finally:
        engine.dispose()


@pytest.fixture
def restored_url(empty_db_url, tmp_path):
    """A fresh database beside the source: a new SQLite file, or a new PostgreSQL database on the same server."""
    if empty_db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    source = make_url(empty_db_url)
    name = f"{source.database}_restored"
    admin = make_engine(empty_db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield source.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_backup_taken_while_texts_arrive_restores_the_study_as_it_was(empty_db_url, restored_url, tmp_path,
                                                                        spool_path, jobs_path):
    from webhooks.app import create_app

    env = {"DATABASE_URL": empty_db_url, "DEFAULT_REGION": "CA", "DEFAULT_TIMEZONE": "America/Toronto",
           "SPOOL_DIR": str(spool_path), "JOBS_DIR": str(jobs_path), "EXPORT_KEY": EXPORT_KEY,
           "SMS_BACKEND": "simulator", "SEND_RATE_PER_SECOND": "0", "SEND_WINDOW": "Mon-Sun 00:00-24:00",
           "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "HELP_CONTACT": "1-800-555-0199", "PUBLIC_BASE_URL": PUBLIC_BASE}
    # -- a study: an import, two waves, invitations sent, answers, a crisis alert, console users, their audit
    run(env, "db", "upgrade")
    run(env, "import-discharges", str(write_discharges(tmp_path / "discharges.csv",
                                                       discharge_rows(40, seed=3, day_ranges=[(31, 38), (91, 98)]))))
    run(env, "waves", "launch", "--timepoint", "30", "--yes")
    run(env, "waves", "launch", "--timepoint", "90", "--yes")
    run(env, "send-due")
    run(env, "users", "add", "admin@study.example.org", "--role", "admin")
    run(env, "users", "add", "coord@study.example.org", "--role", "coordinator")
    source = make_engine(empty_db_url, immediate=False)
    with source.connect() as conn:
        phones = conn.execute(select(Patient.phone).join(FollowUp, FollowUp.patient_id == Patient.id)
                              .where(FollowUp.invited_at.is_not(None)).order_by(Patient.id)).scalars().all()
    assert len(phones) >= 20
    app = create_app(env)
    twilio = SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)
    for phone in phones[:8]:
        for answer in ("4", "3", "5"):
            assert twilio.text(phone, answer)[0] == 200
    assert twilio.text(phones[8], "some days I want to end my life")[0] == 200
    run(env, "alerts", "list")

    # -- texts keep arriving while the backup is taken; each state between two texts is recorded
    moments = [moment(source, tmp_path / "m0")]
    sids: list[str] = []
    stop, texted = threading.Event(), threading.Condition()

    def patients_text() -> None:
        for n, phone in enumerate(phones[9:] * 3):
            if stop.is_set():
                return
            sid = new_sid()
            assert twilio.text(phone, "2", sid=sid)[0] == 200
            sids.append(sid)
            moments.append(moment(source, tmp_path / f"m{n + 1}"))
            with texted:
                texted.notify_all()

    arriving = threading.Thread(target=patients_text)
    arriving.start()
    with texted:
        texted.wait_for(lambda: len(sids) >= 2, timeout=60)
    backup_file = tmp_path / "study.backup"
    said = run(env, "backup", "--out", str(backup_file))
    texts_before_it_ended = len(sids)
    with texted:
        texted.wait_for(lambda: len(sids) >= texts_before_it_ended + 2, timeout=60)
    stop.set()
    arriving.join(timeout=60)
    app.extensions["outreach"]["engine"].dispose()
    assert f"to {backup_file}" in said and "backed up" in said
    assert backup_file.stat().st_mode & 0o777 == 0o600  # every patient's data: the owner only

    # -- restored into a fresh database: the source as it was at one moment between two texts
    restored_env = {**env, "DATABASE_URL": restored_url}
    assert "restored" in run(restored_env, "restore", str(backup_file))
    if restored_url.startswith("sqlite"):
        assert Path(make_url(restored_url).database).stat().st_mode & 0o777 == 0o600
    copy = make_engine(restored_url, immediate=False)
    with copy.connect() as conn:
        applied = set(conn.execute(select(Message.provider_sid).where(
            Message.provider_sid.in_(sids), Message.status == Processing.PROCESSED)).scalars())
    k = len(applied)
    assert applied == set(sids[:k])  # the texts it holds are the first ones, none skipped
    assert 2 <= k <= texts_before_it_ended < len(sids)  # taken while they arrived, not before nor after
    expected, got = moments[k], moment(copy, tmp_path / "restored")
    assert got.export == expected.export
    assert got.audit == expected.audit and len(got.audit) > 5
    assert got.users == expected.users and len(got.users) == 2
    assert stats_json(got.dataset, tmp_path / "report-restored") == stats_json(expected.dataset, tmp_path / "report")
    # -- `outreach db upgrade` on the copy: already at this version's schema, nothing changes
    before = schema(restored_url)
    run(restored_env, "db", "upgrade")
    assert schema(restored_url) == before
    assert moment(copy, tmp_path / "upgraded").export == expected.export
    copy.dispose()
    source.dispose()

    # -- a restore never mixes a backup with data already there
    refused = CliRunner().invoke(cli, ["restore", str(backup_file)], env=restored_env)
    assert refused.exit_code == 1 and "is not empty" in refused.output
    password = make_url(restored_url).password
    assert not password or password not in refused.output


def test_a_file_that_is_not_a_backup_is_refused_in_words(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    (tmp_path / "notes.txt").write_text("not a backup")
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "notes.txt")], env=env)
    assert result.exit_code == 1 and "is not a backup made by `outreach backup`" in result.output
    assert not (tmp_path / "new.db").exists()


def test_a_restore_into_an_existing_empty_sqlite_file_leaves_it_the_owner_s_only(tmp_path):
    """An administrator who made the empty file first (touch, or a tool) gets every patient's data 0600 all the same."""
    source = {"DATABASE_URL": f"sqlite:///{tmp_path / 'source.db'}"}
    run(source, "db", "upgrade")
    run(source, "backup", "--out", str(tmp_path / "study.backup"))
    target = tmp_path / "restored.db"
    target.touch(mode=0o644)
    target.chmod(0o644)
    run({"DATABASE_URL": f"sqlite:///{target}"}, "restore", str(tmp_path / "study.backup"))
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_backup_and_a_restore_are_audited_with_the_os_user_and_the_file_s_sha256(tmp_path):
    """Copying every patient's data is a look: who ran it (the operating-system account, the CLI knows no other) and
    which file (its SHA-256), in the source's audit log for a backup and in the copy's for a restore."""
    import hashlib

    from outreach.db import current_actor

    source = {"DATABASE_URL": f"sqlite:///{tmp_path / 'source.db'}"}
    run(source, "db", "upgrade")
    backup_file = tmp_path / "study.backup"
    run(source, "backup", "--out", str(backup_file))
    digest = hashlib.sha256(backup_file.read_bytes()).hexdigest()
    target = {"DATABASE_URL": f"sqlite:///{tmp_path / 'restored.db'}"}
    run(target, "restore", str(backup_file))
    for env, action in ((source, "database_backup"), (target, "database_restore")):
        engine = make_engine(env["DATABASE_URL"], immediate=False)
        with engine.connect() as conn:
            rows = conn.execute(select(AuditEvent).where(AuditEvent.action.in_(COPY_ACTIONS))).all()
        engine.dispose()
        assert [(r.action, r.actor) for r in rows] == [(action, current_actor())]
        assert current_actor().startswith("cli:") and len(current_actor()) > 4
        assert rows[0].details["sha256"] == digest and rows[0].details["bytes"] == backup_file.stat().st_size
        assert rows[0].details["file"] == str(backup_file.resolve())


def test_a_backup_whose_audit_row_cannot_be_written_is_deleted(tmp_path, monkeypatch):
    from outreach import db
    from outreach.ops.backup import BackupError, backup

    url = f"sqlite:///{tmp_path / 'source.db'}"
    run({"DATABASE_URL": url}, "db", "upgrade")

    def refused(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(db, "audit", refused)
    with pytest.raises(BackupError, match="was deleted"):
        backup(url, tmp_path / "study.backup")
    assert list(tmp_path.glob("*study.backup*")) == []
