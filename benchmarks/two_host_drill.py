"""Two-host drill (issue 27): two "hosts" on this machine against one PostgreSQL, one of them killed whole.

Each host is what the Procfile runs: its own gunicorn (``webhooks.gunicorn_conf``, WEB_CONCURRENCY x WEB_THREADS), its
own ``outreach worker``, its own SPOOL_DIR and port, all its processes in one process group.  Both reach PostgreSQL
through one loopback TCP proxy (tests/db_proxy.py), so that a database outage can be made without stopping the
server; texts go out to a loopback fake Twilio API (tests/fake_twilio.py).  The load generator signs texts as Twilio
does and spreads them over both hosts as a load balancer would (round robin; a host that does not answer is left
out and the text tried on the other, with its MessageSid, as a balancer retries a refused connection).

1. Throughput: texts answered a second with everything sent to one host, then spread over both (same machine: the
   ratio says what a second host adds when they share two cores, not what a second machine would).
2. Kill: a wave's invitations are being sent (SEND_RATE_PER_SECOND shared by both workers) while 500 patients
   answer their survey; host B is killed whole (SIGKILL to its gunicorn master, its workers and its worker).  Host A
   goes on answering; the texts B's worker had claimed are taken over after SEND_CLAIM_TIMEOUT and reconciled with
   the fake API (sent once).  B is restarted.
3. Outage: the database is cut; patients text (spooled on whichever host took the text); B is killed while the
   database is away; the database comes back; the same patients text again (only A answers); B is restarted and
   drains its spool.  A patient whose first text was spooled on B has it applied after the second: the spool's
   ordering limit (docs/operations.md), counted.

Reports: texts answered, lost (answered but not in the database: must be 0), invitations sent twice (must be 0) or
never, throughput with one host and with two (ratio), the shared send rate, the time to take over the dead worker's
claims, and the ordering inversions.

    BENCH_POSTGRES_URL=postgresql+psycopg://…/outreach_drill python benchmarks/two_host_drill.py
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.client
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.outage_drill import answering_patients, get_health  # noqa: E402
from benchmarks.wave_bench import AS_OF, seed  # noqa: E402
from benchmarks.webhook_bench import free_port  # noqa: E402
from outreach.config import load_settings  # noqa: E402
from outreach.db import make_engine, session_factory, unit_of_work, upgrade  # noqa: E402
from outreach.messaging.webhook_client import SignedWebhookClient, http_post  # noqa: E402
from outreach.models import Message  # noqa: E402
from outreach.states import Delivery  # noqa: E402
from outreach.study.waves import launch_wave  # noqa: E402
from tests.db_proxy import TcpProxy  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

BIN = Path(sys.executable).parent
TOKEN = "two-host-token-0123456789"
BASE = "https://drill.example.org"
ANSWERS = ["7", "good", "3", "4 days", "thanks"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Arrivals(list):
    def append(self, message: dict) -> None:
        message["arrived"] = time.monotonic()
        super().append(message)


def prepare(url: str, invitations: int, patients: int) -> list[str]:
    """A clean schema; ``invitations`` patients due a 30-day invitation (launched later); ``patients`` answering
    patients, each with an open 365-day follow-up waiting for its first answer.  Their phones."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    seed(engine, invitations, readmitted=0)
    phones = answering_patients(engine, patients)
    engine.dispose()
    return phones


class Host:
    """One host: gunicorn and a worker as the Procfile runs them, in a process group of their own."""

    def __init__(self, name: str, env: dict[str, str], folder: Path):
        self.name, self.port = name, free_port()
        self.spool = folder / f"spool-{name}"
        self.env = {**env, "PORT": str(self.port), "SPOOL_DIR": str(self.spool), "PYTHONPATH": str(ROOT)}
        self.logs = folder
        self.procs: list[subprocess.Popen] = []
        self.client = SignedWebhookClient(http_post(f"http://127.0.0.1:{self.port}"), BASE, TOKEN)

    def start(self) -> float:
        started = time.monotonic()
        log = open(self.logs / f"{self.name}.log", "ab")
        self.procs = [
            subprocess.Popen([str(BIN / "gunicorn"), "-c", "python:webhooks.gunicorn_conf",
                              "webhooks.app:create_app()"], cwd=ROOT, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True),
            subprocess.Popen([str(BIN / "outreach"), "worker"], cwd=ROOT, env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)]
        while time.monotonic() - started < 60:
            health = get_health(self.port)
            if health and health.get("status") in ("ok", "degraded"):
                return time.monotonic() - started
            time.sleep(0.1)
        sys.exit(f"host {self.name} did not start; see {self.logs}")

    def kill(self) -> None:
        """SIGKILL to every process of the host at once: gunicorn's master, its workers, the worker."""
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def spooled(self) -> int:
        return len(list(self.spool.glob("*.json"))) if self.spool.exists() else 0


class Balancer:
    """Round robin over the hosts that answer; a text a host does not answer is tried on the next one."""

    def __init__(self, hosts: list[Host]):
        self.hosts, self.down = hosts, set()
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.answered: dict[str, tuple[str, str, float]] = {}  # sid -> (phone, host, when)
        self.retried = 0
        self.failed = 0

    def text(self, phone: str, body: str, only: Host | None = None) -> str | None:
        form = self.hosts[0].client.sms_form(phone, body)
        candidates = [only] if only else self.hosts
        start = next(self.turn)
        for attempt in range(len(candidates) * 2):
            host = candidates[(start + attempt) % len(candidates)]
            if host.name in self.down and attempt < len(candidates) * 2 - 1:
                continue
            try:
                status, _ = host.client.signed("/twilio/sms", form)
            except (urllib.error.URLError, OSError, http.client.HTTPException):  # no whole answer: the host died
                with self.lock:
                    self.retried += 1
                continue
            if status == 200:
                with self.lock:
                    self.answered[form["MessageSid"]] = (phone, host.name, time.monotonic())
                return host.name
        with self.lock:
            self.failed += 1
        return None


def throughput(balancer: Balancer, phones: list[str], seconds: float, only: Host | None, threads: int = 16) -> float:
    stop, done = time.monotonic() + seconds, [0]
    lock = threading.Lock()
    bodies = itertools.cycle(ANSWERS)
    queue = itertools.cycle(phones)

    def run() -> None:
        while time.monotonic() < stop:
            with lock:
                phone, body = next(queue), next(bodies)
            if balancer.text(phone, body, only):
                with lock:
                    done[0] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return done[0] / (time.monotonic() - started)


def patients_answer(balancer: Balancer, phones: list[str], spread: float, rng: random.Random) -> list[threading.Thread]:
    def patient(phone: str, at: float) -> None:
        time.sleep(at)
        for body in ANSWERS:
            balancer.text(phone, body)
            time.sleep(rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=patient, args=(ph, rng.uniform(0, spread)), daemon=True) for ph in phones]
    for t in threads:
        t.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--invitations", type=int, default=400)
    parser.add_argument("--rate", type=float, default=10.0, help="SEND_RATE_PER_SECOND, shared by both workers")
    parser.add_argument("--kill-at", type=float, default=15.0, help="seconds into the sending when B is killed")
    parser.add_argument("--outage-patients", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL")
    if not url:
        sys.exit("set BENCH_POSTGRES_URL to a PostgreSQL database the drill may empty")
    rng = random.Random(27)
    phones = prepare(url, args.invitations, args.patients + 400 + args.outage_patients)
    answering, loading, outage = (phones[:args.patients], phones[args.patients:args.patients + 400],
                                  phones[args.patients + 400:])
    u = make_url(url)
    proxy = TcpProxy(u.host or "127.0.0.1", u.port or 5432)
    via_proxy = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(url)
    print(f"two-host drill, {dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, PostgreSQL through a loopback "
          f"proxy; each host: gunicorn {os.environ.get('WEB_CONCURRENCY', '2')} x {os.environ.get('WEB_THREADS', '4')} "
          f"and one worker", flush=True)
    with FakeTwilio() as fake, tempfile.TemporaryDirectory(prefix="outreach-two-hosts-") as tmp:
        fake.messages = Arrivals()
        folder = Path(tmp)
        env = {**os.environ, "DATABASE_URL": via_proxy, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "4" * 32,
               "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_MESSAGING_SERVICE_SID": "MG" + "5" * 32,
               "TWILIO_API_BASE_URL": fake.url, "PUBLIC_BASE_URL": BASE, "HELP_CONTACT": "1-800-555-0199",
               "SEND_WINDOW": "Mon-Sun 00:00-24:00", "SEND_RATE_PER_SECOND": str(args.rate),
               "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
               "WEB_THREADS": os.environ.get("WEB_THREADS", "4")}
        a, b = Host("A", env, folder), Host("B", env, folder)
        a.start(), b.start()
        balancer = Balancer([a, b])
        try:
            # -- 1. throughput, one host then both
            one = throughput(balancer, loading, 10, only=a)
            two = throughput(balancer, loading, 10, only=None)
            print(f"throughput: one host {one:.0f} texts/s, two hosts {two:.0f} texts/s: ratio {two / one:.2f} "
                  f"(both on this machine's {os.cpu_count()} cores)", flush=True)

            # -- 2. kill B while invitations go out and patients answer
            with unit_of_work(session_factory(engine)) as s:
                wave, _ = launch_wave(s, load_settings({"DATABASE_URL": url}), 30, AS_OF, actor="drill")
            sending_from = time.monotonic()
            answered_before = len(balancer.answered)
            threads = patients_answer(balancer, answering, 20.0, rng)
            time.sleep(args.kill_at)
            with engine.connect() as conn:
                claimed = dict(conn.execute(select(Message.id, Message.attempts).where(
                    Message.direction == "out", Message.status == Delivery.CLAIMED)).all())
            b.kill()
            killed_at, killed_utc = time.monotonic(), utcnow()
            balancer.down.add("B")
            with fake.lock:
                before_kill = sorted(m["arrived"] for m in fake.messages)
            print(f"kill: host B killed whole {killed_at - sending_from:.1f} s into the sending; "
                  f"{len(claimed)} invitation(s) claimed at that moment (by either worker)", flush=True)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    pending = conn.scalar(select(text("count(*)")).select_from(Message.__table__).where(
                        Message.direction == "out", Message.kind == "invitation",
                        Message.status.in_([Delivery.PENDING, Delivery.CLAIMED])))
                if not pending and all(not t.is_alive() for t in threads):
                    break
                time.sleep(0.5)
            with engine.connect() as conn:
                after = conn.execute(select(Message.id, Message.attempts, Message.sent_at, Message.status)
                                     .where(Message.id.in_(list(claimed)))).all()
            # B's claims: claimed at the kill and claimed again afterwards (a take-over counts an attempt)
            taken = [r for r in after if r.attempts > claimed[r.id]]
            sent_times = [(r.sent_at - killed_utc).total_seconds() for r in taken if r.sent_at is not None]
            for t in threads:
                t.join(timeout=60)
            b.start()
            balancer.down.discard("B")
            time.sleep(3)
            with fake.lock:
                arrivals = list(fake.messages)
            per_phone = collections.Counter(m["to"] for m in arrivals)
            twice = sum(n - 1 for n in per_phone.values() if n > 1)
            with engine.connect() as conn:
                invited = conn.scalar(select(text("count(*)")).select_from(Message.__table__).where(
                    Message.direction == "out", Message.kind == "invitation"))
                stored = set(conn.execute(select(Message.provider_sid).where(Message.direction == "in")).scalars())
            lost = [sid for sid in balancer.answered if sid not in stored]
            both = [t for t in before_kill if t >= sending_from]
            shared = (len(both) - 1) / (both[-1] - both[0]) if len(both) > 1 else 0.0
            answered_now = len(balancer.answered) - answered_before
            print(f"answered: {answered_now} texts of {args.patients} patients during the kill phase "
                  f"({len(balancer.answered)} in all), {balancer.retried} tried again on the other host, "
                  f"{balancer.failed} unanswered", flush=True)
            print(f"lost: {len(lost)} (answered but not in the database)", flush=True)
            print(f"invitations: {invited} queued, {len(per_phone)} reached the fake API, sent twice: {twice}, "
                  f"never sent: {invited - len(per_phone)}", flush=True)
            print(f"shared send rate with both workers alive: {shared:.2f}/s for {args.rate:.0f}/s configured "
                  f"({shared / args.rate:.3f} x) over {len(both)} texts", flush=True)
            if taken:
                print(f"takeover: {len(taken)} invitation(s) the killed worker had claimed were taken over by host A "
                      f"and sent {min(sent_times):.1f} to {max(sent_times):.1f} s after the kill (SEND_CLAIM_TIMEOUT "
                      f"{load_settings(env).send_claim_timeout:.0f} s from their claim); statuses now: "
                      f"{dict(collections.Counter(r.status for r in taken))}", flush=True)
            else:
                print("takeover: the killed worker held no claim at the kill (nothing to take over)", flush=True)

            # -- 3. an outage, B killed during it
            proxy.cut()
            first: dict[str, tuple[str, str]] = {}
            for phone in outage:
                sid_host = balancer.text(phone, ANSWERS[0])
                first[phone] = (sid_host or "", "")
            on_b = sum(1 for h, _ in first.values() if h == "B")
            spooled = a.spooled() + b.spooled()
            b.kill()
            balancer.down.add("B")
            proxy.restore()
            time.sleep(2)
            for phone in outage:
                balancer.text(phone, ANSWERS[1], only=a)
            b.start()
            balancer.down.discard("B")
            deadline = time.monotonic() + 120
            while (a.spooled() or b.spooled()) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)
            with engine.connect() as conn:
                rows = conn.execute(select(Message.from_number, Message.body, Message.id).where(
                    Message.direction == "in", Message.from_number.in_(outage)).order_by(Message.id)).all()
            order = collections.defaultdict(list)
            for phone, body, _ in rows:
                order[phone].append(body)
            inversions = sum(1 for phone in outage if order[phone][:2] == [ANSWERS[1], ANSWERS[0]])
            missing = sum(1 for phone in outage if len(order[phone]) < 2)
            print(f"outage: {len(outage)} patients texted while the database was away ({spooled} spooled, "
                  f"{on_b} on host B), B killed, the database back, each texted again (host A); B restarted and "
                  f"drained: {inversions} of {len(outage)} patients had their first text applied after their second "
                  f"(ordering inversions), {missing} text(s) missing; spools empty: "
                  f"{a.spooled() == 0 and b.spooled() == 0}", flush=True)
        finally:
            a.stop()
            b.stop()
            proxy.close()
            engine.dispose()


if __name__ == "__main__":
    main()
