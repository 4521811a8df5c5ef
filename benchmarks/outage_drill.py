"""Outage drill (issue 15): stop PostgreSQL for 15 s while 200 patients are answering, and count what was lost.

Done as a new user would, with the real processes of the Procfile: gunicorn (``webhooks.gunicorn_conf``,
2 workers x 4 threads) and ``outreach worker`` (SMS simulator), sharing one ``SPOOL_DIR``, on a PostgreSQL
cluster of the drill's own (``15 drill``, port 5433) so that stopping it disturbs nobody.  Run as root
(it creates the cluster if missing, and starts and stops it with ``pg_ctlcluster``):

    .venv/bin/python benchmarks/outage_drill.py                      # stop -m fast
    .venv/bin/python benchmarks/outage_drill.py --modes fast,immediate

Each patient has an open 365-day follow-up waiting for its first question and sends its four answers
then "thanks", one every 1-2 s, the patients' starts spread over the drill; one patient sends a crisis text
and one a HELP during the outage; a few spooled texts are delivered again (same MessageSid) after the
recovery.  The database is stopped at ``--outage-at`` seconds for ``--outage`` seconds.  Afterwards the
drill waits for ``GET /healthz`` to show ``"spooled": 0`` and compares what the database holds with what
was sent.  Nothing is papered over: every figure is printed, and the exit status is 1 when a check fails.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from benchmarks.webhook_bench import free_port  # noqa: E402
from outreach.messaging.webhook_client import SignedWebhookClient, http_post, parse_twiml  # noqa: E402

BIN = Path(sys.executable).parent
PG_VERSION, CLUSTER, ROLE, DB, PASSWORD = "15", "drill", "outreach_drill", "outreach_drill", "drill"
TOKEN = "drill-token-0123456789"
BASE = "https://drill.example.org"
HELP_CONTACT = "1-800-555-0199"
ON_CALL = "+16475550100"
CRISIS = "i want to die tonight"
SAFETY_MARK = "If you are thinking about suicide"  # the English safety reply's opening words
MOOD = ["excellent", "very good", "good", "fair", "poor"]
SURVEY_KEYS = ["self_efficacy", "mental_health", "physical_health", "days_used"]  # the 365-day survey


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def as_postgres(sql: str, port: int, db: str = "postgres") -> str:
    out = run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-d", db, "-XtAc", sql])
    if out.returncode:
        sys.exit(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def pg_ctl(action: str, mode: str | None = None) -> float:
    """Start or stop the drill's cluster; seconds it took."""
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, CLUSTER, action]
    if mode:
        cmd += ["-m", mode]
    t0 = time.monotonic()
    out = run(cmd)
    if out.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return time.monotonic() - t0


def cluster_status(port: int) -> str | None:
    for line in run(["pg_lsclusters", "-h"]).stdout.splitlines():
        ver, name, cport, status, *_ = line.split()
        if ver == PG_VERSION and name == CLUSTER:
            if int(cport) != port:
                sys.exit(f"cluster {ver} {name} exists on port {cport}, not {port}")
            return status
    return None


def ensure_cluster(port: int) -> str:
    """The drill's own cluster, running, with its role and database; its SQLAlchemy URL."""
    if os.geteuid() != 0:
        sys.exit("run as root: the drill creates, starts and stops its own PostgreSQL cluster")
    status = cluster_status(port)
    if status is None:
        print(f"cluster {PG_VERSION} {CLUSTER} missing: creating it on port {port} (pg_createcluster)", flush=True)
        out = run(["pg_createcluster", PG_VERSION, CLUSTER, "--port", str(port)])
        if out.returncode:
            sys.exit(f"pg_createcluster failed: {out.stderr.strip()}")
        status = cluster_status(port)
    if status != "online":
        pg_ctl("start")
    if as_postgres(f"select 1 from pg_roles where rolname = '{ROLE}'", port) != "1":
        as_postgres(f"create role {ROLE} login superuser password '{PASSWORD}'", port)
        print(f"created role {ROLE}", flush=True)
    if as_postgres(f"select 1 from pg_database where datname = '{DB}'", port) != "1":
        as_postgres(f"create database {DB} owner {ROLE}", port)
        print(f"created database {DB}", flush=True)
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{DB}"


def prepare_database(url: str, patients: int, env: dict[str, str]) -> list[str]:
    """An empty schema, ``outreach db upgrade`` as the Procfile's release step runs it, then the patients:
    each with an open 365-day follow-up whose first question was sent (as ``webhook_bench.seed`` builds
    them).  Their phone numbers."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    out = run([str(BIN / "outreach"), "db", "upgrade"], cwd=ROOT, env=env)
    if out.returncode:
        sys.exit(f"outreach db upgrade failed:\n{out.stdout}{out.stderr}")
    phones = answering_patients(engine, patients)
    engine.dispose()
    return phones


def answering_patients(engine, patients: int) -> list[str]:
    """``patients`` patients, each with an open 365-day follow-up whose first question was sent; their phones."""
    from outreach.models import Episode, FollowUp, Patient

    phones = [f"+1647{3000000 + i:07d}" for i in range(patients)]
    now = utcnow()
    with engine.begin() as conn:
        ids = conn.execute(insert(Patient).returning(Patient.id, sort_by_parameter_order=True), [
            dict(patient_id=f"D{i}", phone=ph, timezone="America/Toronto", language="en", sms_consent=True,
                 phone_valid=True) for i, ph in enumerate(phones)]).scalars().all()
        episodes = conn.execute(insert(Episode).returning(Episode.id, sort_by_parameter_order=True), [
            dict(patient_id=pid, discharge_date=(now - dt.timedelta(days=365)).date()) for pid in ids]).scalars().all()
        conn.execute(insert(FollowUp), [dict(patient_id=pid, episode_id=ep, timepoint_days=365, state="q_self_efficacy",
                                             invited_at=now - dt.timedelta(minutes=5),
                                             started_at=now - dt.timedelta(minutes=5),
                                             last_prompt_at=now - dt.timedelta(minutes=5))
                                        for pid, ep in zip(ids, episodes)])
    return phones


# -- the patients ------------------------------------------------------------------------------------------
@dataclass
class Text:
    patient: int
    phone: str
    body: str
    kind: str  # answer | help | crisis | thanks | redelivery
    due: float  # seconds after the drive starts
    sid: str = ""
    form: dict[str, str] = field(default_factory=dict)
    sent_at: float | None = None  # monotonic
    sent_utc: dt.datetime | None = None
    latency: float | None = None
    status: int | str | None = None
    replies: list[str] = field(default_factory=list)


def plan(phones: list[str], outage_at: float, outage: float, tail: float, rng: random.Random) -> list[list[Text]]:
    """Each patient's texts in the order they send them."""
    end = outage_at + outage + tail
    scripts = []
    for i, phone in enumerate(phones):
        if i == 0:  # the crisis text, in the middle of the outage
            scripts.append([Text(i, phone, "7", "answer", outage_at - 6),
                            Text(i, phone, CRISIS, "crisis", outage_at + outage / 2)])
            continue
        if i == 1:  # HELP in the middle of the survey, during the outage
            t = outage_at + 2
            bodies = [("6", "answer"), ("HELP", "help"), ("good", "answer"), ("3", "answer"), ("12", "answer"),
                      ("thanks", "thanks")]
            gaps = [0, 2, 2, 2, outage + 2, 2]
            texts = []
            for (body, kind), gap in zip(bodies, gaps):
                t += gap
                texts.append(Text(i, phone, body, kind, t))
            scripts.append(texts)
            continue
        answers = [str(rng.randint(0, 10)), rng.choice(MOOD), str(rng.randint(1, 5)),
                   f"{rng.randint(0, 30)} days"]
        t = rng.uniform(0, end - 9)
        texts = []
        for body in answers + ["thanks"]:
            texts.append(Text(i, phone, body, "thanks" if body == "thanks" else "answer", t))
            t += rng.uniform(1.0, 2.0)
        scripts.append(texts)
    return scripts


class Driver:
    """One thread per patient: each text at its due time, or right after the patient's previous one was
    answered (a phone's texts arrive one after the other), signed as Twilio signs them."""

    def __init__(self, port: int):
        self.client = SignedWebhookClient(http_post(f"http://127.0.0.1:{port}"), BASE, TOKEN)
        self.sent: list[Text] = []
        self.lock = threading.Lock()
        self.start = 0.0

    def send(self, t: Text, form: dict[str, str] | None = None) -> None:
        t.form = form or self.client.sms_form(t.phone, t.body)
        t.sid = t.form["MessageSid"]
        t.sent_at, t.sent_utc = time.monotonic(), utcnow()
        try:
            status, xml = self.client.signed("/twilio/sms", t.form)
            t.status, t.replies = status, (parse_twiml(xml) if status == 200 else [])
        except (urllib.error.URLError, OSError) as exc:  # no HTTP answer at all
            t.status = f"no answer ({type(exc).__name__})"
        t.latency = time.monotonic() - t.sent_at
        with self.lock:
            self.sent.append(t)

    def patient(self, texts: list[Text]) -> None:
        for t in texts:
            delay = self.start + t.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.send(t)

    def run(self, scripts: list[list[Text]]) -> list[threading.Thread]:
        self.start = time.monotonic()
        threads = [threading.Thread(target=self.patient, args=(s,), daemon=True) for s in scripts]
        for th in threads:
            th.start()
        return threads


# -- the processes ----------------------------------------------------------------------------------------
def get_health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def start_processes(env: dict[str, str], logs: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    """As the Procfile runs them: ``web`` (gunicorn, PORT) and ``worker``."""
    web = subprocess.Popen([str(BIN / "gunicorn"), "-c", "python:webhooks.gunicorn_conf", "webhooks.app:create_app()"],
                           cwd=ROOT, env=env, stdout=open(logs / "web.log", "wb"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen([str(BIN / "outreach"), "worker"], cwd=ROOT, env=env,
                              stdout=open(logs / "worker.log", "wb"), stderr=subprocess.STDOUT)
    port = int(env["PORT"])
    for _ in range(300):
        health = get_health(port)
        if health and health.get("database") == "ok":
            return web, worker
        if web.poll() is not None or worker.poll() is not None:
            break
        time.sleep(0.1)
    stop_processes(web, worker)
    sys.exit(f"the web app or the worker did not start; see {logs}")


def stop_processes(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class SpoolWatch(threading.Thread):
    """The spool folder's depth every 50 ms: its peak, and when it was last seen non-empty."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.peak, self.stopping = folder, 0, False
        self.last_nonempty: float | None = None

    def depth(self) -> int:
        try:
            return sum(1 for e in os.scandir(self.folder) if e.name.endswith(".json"))
        except OSError:
            return 0

    def run(self) -> None:
        while not self.stopping:
            n = self.depth()
            self.peak = max(self.peak, n)
            if n:
                self.last_nonempty = time.monotonic()
            time.sleep(0.05)


class AcceptProbe(threading.Thread):
    """When the restarted database first accepts a connection (pg_ctlcluster returns later than that)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://")
        self.accepted_at: float | None = None

    def run(self) -> None:
        import psycopg

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.dsn, connect_timeout=1).close()
                self.accepted_at = time.monotonic()
                return
            except psycopg.Error:
                time.sleep(0.02)


def wait_for_on_call_text(url: str, limit: float, up_at: float) -> float | None:
    """Keep the worker running until the crisis alert's on-call text is sent (at most ``limit`` seconds
    after the database came back); when it was, in seconds after the database came back."""
    from outreach.models import Message

    engine = create_engine(url)
    # the database's clock for "came back": the text's sent_at is stamped in UTC by the worker
    up_utc = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=time.monotonic() - up_at)
    try:
        while True:
            with engine.connect() as conn:
                sent = conn.scalar(select(func.min(Message.sent_at)).where(
                    Message.kind == "alert", Message.to_number == ON_CALL, Message.status.in_(("sent", "delivered"))))
            if sent:
                return (sent - up_utc).total_seconds()
            if time.monotonic() - up_at > limit:
                return None
            time.sleep(0.2)
    finally:
        engine.dispose()


# -- one drill --------------------------------------------------------------------------------------------
def drill(args, url: str, mode: str) -> bool:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix=f"outage-drill-{mode}-"))
    spool = work / "spool"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "TWILIO_AUTH_TOKEN": TOKEN, "HELP_CONTACT": HELP_CONTACT,
           "PUBLIC_BASE_URL": BASE, "SPOOL_DIR": str(spool), "PORT": str(port), "WEB_CONCURRENCY": "2",
           "WEB_THREADS": "4", "SMS_BACKEND": "simulator", "ALERT_SMS_TO": ON_CALL, "PYTHONPATH": str(ROOT),
           "PYTHONUNBUFFERED": "1"}
    phones = prepare_database(url, args.patients, env)
    scripts = plan(phones, args.outage_at, args.outage, args.tail, rng)
    print(f"\n=== drill: stop -m {mode}, {args.outage:.0f} s outage at t={args.outage_at:.0f} s, "
          f"{args.patients} patients, {sum(map(len, scripts))} texts planned; logs in {work}", flush=True)
    print(f"uptime before: {run(['uptime']).stdout.strip()}", flush=True)
    web, worker = start_processes(env, work)
    watch = SpoolWatch(spool)
    watch.start()
    driver = Driver(port)
    threads = driver.run(scripts)
    # the outage
    time.sleep(max(0.0, driver.start + args.outage_at - time.monotonic()))
    down_at = time.monotonic()
    stop_took = pg_ctl("stop", mode)
    time.sleep(max(0.0, args.outage - (time.monotonic() - down_at)))
    start_began = time.monotonic()
    probe = AcceptProbe(url)
    probe.start()
    pg_ctl("start")
    returned_at = time.monotonic()
    probe.join()
    up_at = probe.accepted_at or returned_at
    print(f"database stopped at t={down_at - driver.start:.1f} s (stop took {stop_took:.1f} s), started again "
          f"at t={start_began - driver.start:.1f} s, first connection accepted at t={up_at - driver.start:.1f} s "
          f"(pg_ctlcluster start returned at t={returned_at - driver.start:.1f} s)", flush=True)
    # the spool empty again (healthz), and a few spooled texts delivered again by "Twilio"
    emptied_at = None
    health_after = None
    redeliver_at = up_at + args.redeliver_after
    redelivered: list[Text] = []
    while time.monotonic() - up_at < 120:
        health = get_health(port)
        if health and health.get("database") == "ok" and health.get("spooled") == 0:
            emptied_at, health_after = time.monotonic(), health
            break
        time.sleep(0.1)
    time.sleep(max(0.0, redeliver_at - time.monotonic()))
    with driver.lock:
        outage_texts = [t for t in driver.sent if down_at <= t.sent_at <= up_at]
    picks = [t for t in outage_texts if t.kind in ("crisis", "help")]
    answered = [t for t in outage_texts if t.kind == "answer"]
    picks += rng.sample(answered, min(3, len(answered)))
    for original in picks:
        again = Text(original.patient, original.phone, original.body, "redelivery", 0.0)
        driver.send(again, dict(original.form))
        redelivered.append(again)
    for th in threads:
        th.join()
    driver_done = time.monotonic()
    # quiet again: nothing spooled, then the worker's round of sends
    final_health = None
    while time.monotonic() - driver_done < 60:
        final_health = get_health(port)
        if final_health and final_health.get("spooled") == 0 and final_health.get("database") == "ok":
            break
        time.sleep(0.2)
    time.sleep(args.settle)
    alert_sent = wait_for_on_call_text(url, args.alert_wait, up_at)
    watch.stopping = True
    worker_alive = worker.poll() is None
    web_alive = web.poll() is None
    stop_processes(web, worker)
    print(f"uptime after: {run(['uptime']).stdout.strip()}", flush=True)
    return report(url, driver, scripts, redelivered, down_at, up_at, emptied_at, health_after, final_health,
                  watch, worker_alive, web_alive, work, alert_sent, args.alert_wait)


def report(url, driver: Driver, scripts, redelivered, down_at, up_at, emptied_at, health_after, final_health,
           watch: SpoolWatch, worker_alive: bool, web_alive: bool, work: Path, alert_sent: float | None,
           alert_wait: float) -> bool:
    from outreach.models import Alert, Answer, FollowUp, Message, Patient

    ok = True
    sent = driver.sent
    originals = [t for t in sent if t.kind != "redelivery"]
    statuses = collections.Counter(str(t.status) for t in sent)
    during = [t for t in originals if down_at <= t.sent_at <= up_at]
    print(f"texts sent: {len(sent)} ({len(originals)} distinct MessageSids + {len(redelivered)} redeliveries)")
    print(f"HTTP statuses: {dict(sorted(statuses.items()))}")
    if set(statuses) != {"200"}:
        ok = False
        print("  FAIL: not every text was answered 200")
        for t in sent:
            if t.status != 200:
                print(f"    t={t.sent_at - driver.start:.2f} s {t.kind} -> {t.status}")
    lat_in = sorted(t.latency for t in during)
    print(f"texts sent during the outage (database stop issued .. accepting again): {len(during)}; "
          f"their latency p50 {lat_in[len(lat_in) // 2] * 1000:.0f} ms, max {lat_in[-1] * 1000:.0f} ms"
          if lat_in else "texts sent during the outage: 0")
    late = [t for t in originals if t.sent_at > up_at]
    if late:
        lat = sorted(t.latency for t in late)
        print(f"texts sent after the database was back: {len(late)}; latency p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms")
    print(f"spooled peak (files in SPOOL_DIR, sampled every 50 ms): {watch.peak}")
    if emptied_at is None:
        ok = False
        print("FAIL: GET /healthz never showed \"spooled\": 0 within 120 s of the database coming back")
    else:
        print(f"database back -> healthz \"spooled\": 0 in {emptied_at - up_at:.2f} s "
              f"(spool folder last seen non-empty {((watch.last_nonempty or up_at) - up_at):+.2f} s after); "
              f"healthz then: {json.dumps(health_after)}")
    print(f"healthz at the end: {json.dumps(final_health)}")

    engine = create_engine(url)
    with engine.connect() as conn:
        by_sid = {r.provider_sid: r for r in conn.execute(
            select(Message.id, Message.provider_sid, Message.status, Message.created_at, Message.processed_at)
            .where(Message.direction == "in"))}
        answers = conn.execute(select(Answer.id, Answer.followup_id, Answer.question_key, Answer.raw_text,
                                      Answer.message_id, Patient.phone)
                               .join(FollowUp, FollowUp.id == Answer.followup_id)
                               .join(Patient, Patient.id == FollowUp.patient_id).order_by(Answer.id)).all()
        dup_answers = conn.execute(select(Answer.message_id, func.count()).group_by(Answer.message_id)
                                   .having(func.count() > 1)).all()
        dup_alerts = conn.execute(select(Alert.message_id, func.count()).group_by(Alert.message_id)
                                  .having(func.count() > 1)).all()
        crisis = next((t for t in originals if t.kind == "crisis"), None)
        crisis_row = by_sid.get(crisis.sid) if crisis else None
        alerts = conn.execute(select(Alert.id, Alert.opened_at, Alert.on_call_texted_at)
                              .where(Alert.message_id == crisis_row.id)).all() if crisis_row else []
        crisis_out = conn.execute(select(Message.kind, Message.status, Message.to_number, func.count())
                                  .where((Message.in_reply_to_id == crisis_row.id) |
                                         ((Message.kind == "alert") & (Message.to_number == ON_CALL)))
                                  .group_by(Message.kind, Message.status, Message.to_number)).all() if crisis_row else []
        alert_queue = None
        if crisis_row and alert_sent is None:  # what stood before the on-call text in the worker's queue
            alert_after = conn.scalar(select(Message.send_after).where(Message.kind == "alert",
                                                                       Message.to_number == ON_CALL))
            alert_queue = dict(conn.execute(
                select(Message.kind, func.count()).where(Message.direction == "out", Message.status == "pending",
                                                         Message.send_after < alert_after)
                .group_by(Message.kind)).all())
            alert_queue = f"pending texts with an earlier send_after than the on-call text: {alert_queue}"
        states = dict(conn.execute(select(FollowUp.state, func.count()).group_by(FollowUp.state)).all())
        inbound_status = dict(conn.execute(select(Message.status, func.count()).where(Message.direction == "in")
                                           .group_by(Message.status)).all())
        outbound_status = dict(conn.execute(select(Message.status, func.count()).where(Message.direction == "out")
                                            .group_by(Message.status)).all())
    engine.dispose()

    # every text stored, and processed
    missing = [t for t in originals if t.sid not in by_sid]
    print(f"inbound texts stored: {sum(1 for t in originals if t.sid in by_sid)} of {len(originals)} sent "
          f"(missing {len(missing)}); inbound rows by status: {inbound_status}")
    if missing:
        ok = False
        for t in missing[:10]:
            print(f"  FAIL: lost: patient {t.patient} {t.kind} sent at t={t.sent_at - driver.start:.2f} s, "
                  f"status {t.status}")
    # answers per patient, and their order
    sid_of_message = {r.id: sid for sid, r in by_sid.items()}
    stored = collections.defaultdict(list)
    for a in answers:
        stored[a.phone].append(a)
    expected_total = stored_total = complete = 0
    violations, lost_answers, extra = [], [], []
    for texts in scripts:
        phone = texts[0].phone
        expect = [t for t in texts if t.kind == "answer"]
        if texts[0].patient == 0:  # the crisis patient: the answer before, then the survey pauses
            expect = expect[:1]
        got = stored[phone]
        expected_total += len(expect)
        stored_total += len(got)
        order = {t.sid: n for n, t in enumerate(texts)}
        got_sids = [sid_of_message.get(a.message_id) for a in got]
        positions = [order.get(s, -1) for s in got_sids]
        if positions != sorted(positions) or [a.question_key for a in got] != SURVEY_KEYS[:len(got)]:
            violations.append((texts[0].patient, [t.body for t in expect], [(a.question_key, a.raw_text) for a in got]))
        if [a.raw_text for a in got] == [t.body for t in expect]:
            complete += 1
        elif len(got) < len(expect):
            lost_answers.append((texts[0].patient, [t.body for t in expect], [a.raw_text for a in got]))
        else:
            extra.append((texts[0].patient, [t.body for t in expect], [a.raw_text for a in got]))
    print(f"answers stored: {stored_total} of {expected_total} sent; patients whose stored answers are exactly "
          f"the answers they sent, in order: {complete} of {len(scripts)}")
    print(f"per-phone order violations: {len(violations)}")
    for p, want, got in violations[:10]:
        print(f"  FAIL: patient {p}: sent {want}, stored {got}")
    for label, rows in (("answers missing", lost_answers), ("answers not as sent", extra)):
        if rows:
            print(f"{label}: {len(rows)} patient(s)")
            for p, want, got in rows[:10]:
                print(f"  FAIL: patient {p}: sent {want}, stored {got}")
    ok = ok and not violations and not lost_answers and not extra
    print(f"follow-up states: {states}")
    # duplicates
    print(f"redelivered MessageSids (after recovery): {len(redelivered)}, answered "
          f"{dict(collections.Counter(str(t.status) for t in redelivered))}; messages with answers applied more "
          f"than once: {len(dup_answers)}; alerts opened more than once for one message: {len(dup_alerts)}")
    ok = ok and not dup_answers and not dup_alerts
    # the crisis text and HELP
    if crisis is None:
        ok = False
        print("FAIL: no crisis text was sent")
    else:
        safe = any(SAFETY_MARK in r for r in crisis.replies)
        in_outage = down_at <= crisis.sent_at <= up_at
        print(f"crisis text ({'during' if in_outage else 'NOT during'} the outage, t={crisis.sent_at - driver.start:.2f} s): "
              f"HTTP {crisis.status} in {crisis.latency * 1000:.0f} ms, safety reply: {'yes' if safe else 'NO'}; "
              f"response: {crisis.replies}")
        again = [t for t in redelivered if t.sid == crisis.sid]
        if again:
            print(f"  its redelivery: HTTP {again[0].status}, {len(again[0].replies)} message(s) in the response, "
                  f"safety reply {'yes' if any(SAFETY_MARK in r for r in again[0].replies) else 'no'}")
        if not alerts:
            ok = False
            print("  FAIL: no alert for the crisis text after recovery")
        for a in alerts:
            skew = (a.opened_at - crisis.sent_utc).total_seconds()
            stored_at = crisis_row.created_at
            print(f"  alert {a.id}: opened_at {a.opened_at.isoformat(timespec='milliseconds')} UTC, text sent "
                  f"{crisis.sent_utc.isoformat(timespec='milliseconds')}, message created_at "
                  f"{stored_at.isoformat(timespec='milliseconds')} (opened_at - sent = {skew:+.3f} s, "
                  f"opened_at == created_at: {a.opened_at == stored_at}); on-call texted at "
                  f"{a.on_call_texted_at.isoformat(timespec='milliseconds') if a.on_call_texted_at else None}")
            if abs(skew) > 2 or a.opened_at != stored_at:
                ok = False
                print("  FAIL: the alert's opened_at is not the time the text was received")
        print(f"  replies and on-call texts: {[tuple(r) for r in crisis_out]}")
        if alert_sent is None:
            ok = False
            print(f"  FAIL: the on-call text for the alert was not sent within {alert_wait:.0f} s of the database "
                  f"coming back")
        else:
            print(f"  the on-call text for the alert was sent {alert_sent:.1f} s after the database came back")
        if alert_queue:
            print(f"  the outbound queue once the worker had stopped: {alert_queue}")
        ok = ok and safe and crisis.status == 200
    help_text = next((t for t in originals if t.kind == "help"), None)
    if help_text:
        has = any(HELP_CONTACT in r for r in help_text.replies)
        in_outage = down_at <= help_text.sent_at <= up_at
        print(f"HELP ({'during' if in_outage else 'NOT during'} the outage): HTTP {help_text.status}, "
              f"contact in the reply: {'yes' if has else 'NO'}; response: {help_text.replies}")
        ok = ok and has
    print(f"outbound messages by status: {outbound_status}")
    # the processes and their logs
    print(f"worker process alive at the end: {worker_alive}; web (gunicorn master) alive: {web_alive}")
    ok = ok and worker_alive and web_alive
    for name in ("web", "worker"):
        lines = (work / f"{name}.log").read_text(errors="replace").splitlines()
        db_warnings = [ln for ln in lines if " WARNING " in ln and "database" in ln.lower()]
        tracebacks = sum(1 for ln in lines if ln.startswith("Traceback"))
        errors = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln]
        print(f"{name}.log: {len(lines)} lines, {len(db_warnings)} WARNING lines about the database, "
              f"{tracebacks} Traceback, {len(errors)} ERROR lines")
        for ln in db_warnings[:12]:
            print(f"    {ln}")
        for ln in errors[:5]:
            print(f"    {ln}")
        ok = ok and tracebacks == 0
    print(f"RESULT: {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--outage", type=float, default=15.0, help="seconds the database is stopped")
    parser.add_argument("--outage-at", type=float, default=20.0, help="seconds into the drive")
    parser.add_argument("--tail", type=float, default=15.0, help="seconds of texting after the database is back")
    parser.add_argument("--redeliver-after", type=float, default=3.0,
                        help="seconds after the recovery when a few spooled texts are delivered again")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds for the worker to send before counting")
    parser.add_argument("--alert-wait", type=float, default=60.0, help="seconds after the database is back "
                        "within which the crisis alert's on-call text must have been sent")
    parser.add_argument("--modes", default="fast", help="pg_ctlcluster stop modes to drill, comma-separated "
                        "(fast: a restart; immediate: a crash)")
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep-running", action="store_true", help="leave the drill's cluster running at the end")
    args = parser.parse_args()
    url = ensure_cluster(args.port)
    results = {}
    try:
        for mode in args.modes.split(","):
            if cluster_status(args.port) != "online":
                pg_ctl("start")
            results[mode] = drill(args, url, mode)
    finally:
        if not args.keep_running and cluster_status(args.port) == "online":
            pg_ctl("stop", "fast")
            print(f"cluster {PG_VERSION} {CLUSTER} stopped", flush=True)
    print("\nsummary: " + ", ".join(f"stop -m {m}: {'PASS' if r else 'FAIL'}" for m, r in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
