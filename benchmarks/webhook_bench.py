"""Webhook benchmark: gunicorn + PostgreSQL on loopback, 1,000 patients in conversation,
signed inbound messages at 50 concurrent connections, against a signature-only baseline
measured in the same run, and against a floor (``floor_app.py``: the least a
store-then-process webhook must do, in raw SQL).  Also: the state machine alone, and
web-worker memory.

Two loads, on the three endpoints in the same run:
* closed loop: 50 connections, each sending its next text as soon as the last is answered
  (throughput; targets: the webhook at least 0.8 x the floor's);
* open loop: a fixed rate (default 200 texts a second for 25 s), each text due at its
  scheduled time and its latency measured from then, so a slow answer delays the texts
  behind it and counts for them too (no coordinated omission; target: p99 < 100 ms).

    BENCH_POSTGRES_URL=postgresql+psycopg://… python benchmarks/webhook_bench.py
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from sqlalchemy import insert, text
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
BASE = "https://bench.example.org"
CONNECTIONS = 50
SCRIPT = ["help", "3", "7 or 8", "4", "help", "2", "SKIP", "thanks", "help", "ok"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, patients: int) -> list[str]:
    from outreach.db import make_engine, upgrade
    from outreach.models import Episode, FollowUp, Patient

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    phones = [f"+1647{2000000 + i:07d}" for i in range(patients)]
    with engine.begin() as conn:
        ids = conn.execute(insert(Patient).returning(Patient.id, sort_by_parameter_order=True), [
            dict(patient_id=f"B{i}", phone=ph, timezone="America/Toronto", language="en", sms_consent=True,
                 phone_valid=True) for i, ph in enumerate(phones)]).scalars().all()
        episodes = conn.execute(insert(Episode).returning(Episode.id, sort_by_parameter_order=True), [
            dict(patient_id=pid, discharge_date=dt.date(2025, 11, 1)) for pid in ids]).scalars().all()
        conn.execute(insert(FollowUp), [dict(patient_id=pid, episode_id=ep, timepoint_days=365, state="q_self_efficacy",
                                             invited_at=dt.datetime(2026, 11, 1)) for pid, ep in zip(ids, episodes)])
    engine.dispose()
    return phones


def start_gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn as the Procfile runs it (webhooks/gunicorn_conf.py), on a loopback port."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen([gunicorn, "-c", "python:webhooks.gunicorn_conf", "-b", f"127.0.0.1:{port}",
                             "--log-level", "warning", app], cwd=ROOT, env=env)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"gunicorn did not start for {app}")


def cpu_seconds() -> dict[str, float]:
    """CPU time used so far by gunicorn, PostgreSQL and this process (the load generator)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"gunicorn": 0.0, "postgres": 0.0, "load": 0.0}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if "postgres" in name:
            out["postgres"] += used
        elif b"gunicorn" in cmdline:
            out["gunicorn"] += used
        elif int(proc.name) == os.getpid():
            out["load"] += used
    return out


def worker_rss_mb(master: subprocess.Popen) -> list[float]:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    out = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]) / 1024)
    return out


def build_sequence(phones: list[str], rounds: int, run: str) -> list[tuple[bytes, str]]:
    """The bodies and signatures of ``rounds`` texts from every phone, round by round.  ``run`` makes the
    MessageSids of each measured app distinct."""
    validator = RequestValidator(TOKEN)
    out = []
    n = 0
    for r in range(rounds):
        for phone in phones:
            n += 1
            form = {"MessageSid": f"SM{run}{n:028x}", "AccountSid": "AC" + "0" * 32, "From": phone,
                    "To": "+15005550006", "Body": SCRIPT[r % len(SCRIPT)], "NumMedia": "0"}
            sig = validator.compute_signature(BASE + "/twilio/sms", form)
            out.append((urllib.parse.urlencode(form).encode(), sig))
    return out


def build_requests(phones: list[str], rounds: int, run: str) -> list[list[tuple[bytes, str]]]:
    """Per connection: the texts it sends, in order (a phone always uses the same connection, so its texts
    stay ordered)."""
    per_conn: list[list[tuple[bytes, str]]] = [[] for _ in range(CONNECTIONS)]
    for n, request in enumerate(build_sequence(phones, rounds, run)):
        per_conn[(n % len(phones)) % CONNECTIONS].append(request)
    return per_conn


def load(port: int, per_conn: list[list[tuple[bytes, str]]]) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(len(per_conn) + 1)

    def run(reqs: list[tuple[bytes, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        barrier.wait()
        for body, sig in reqs:
            t0 = time.perf_counter()
            status = post_text(conn, body, sig)
            mine.append(time.perf_counter() - t0)
            if status != 200:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(r,)) for r in per_conn]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, errors[0]


def post_text(conn: http.client.HTTPConnection, body: bytes, signature: str) -> int:
    """One signed text on a keep-alive connection; the HTTP status."""
    conn.request("POST", "/twilio/sms", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def pct(values: list[float], p: float) -> float:
    """The p-th percentile in ms (p may be 99.9)."""
    if len(values) < 2:
        return values[0] * 1000
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000


def open_load(port: int, requests: list[tuple[bytes, str]], rate: float, senders: int = CONNECTIONS
              ) -> tuple[float, list[float], int, float]:
    """Send ``requests`` at a fixed ``rate``: text i is due at start + i / rate.  ``senders`` keep-alive
    connections take the texts in order; each waits until its text is due, and its latency runs from the due
    time to the answer (a text that could not go out on time because every connection was busy counts its
    wait).  Returns (elapsed, latencies, errors, the worst lateness of a send)."""
    latencies: list[float] = []
    errors = [0]
    late = [0.0]
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    barrier = threading.Barrier(senders + 1)
    start = [0.0]

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, worst = [], 0.0
        barrier.wait()
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            due = start[0] + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                worst = max(worst, -wait)
            body, sig = requests[i]
            status = post_text(conn, body, sig)
            mine.append(time.perf_counter() - due)
            if status != 200:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            late[0] = max(late[0], worst)

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter() + 0.05
    barrier.wait()
    for t in threads:
        t.join()
    return time.perf_counter() - start[0], latencies, errors[0], late[0]


def machine_alone(n: int = 20000) -> tuple[float, float]:
    from conversations.engine import Context, respond
    from conversations.machine import MACHINE, transition

    class FU:
        def __init__(self):
            self.state, self.timepoint_days, self.retries, self.paused_state = "q_self_efficacy", 365, 0, None
            self.started_at = self.completed_at = self.last_ack_at = None

    models = [FU() for _ in range(n)]
    t0 = time.perf_counter()
    for m in models:
        transition(m, "advance")
    per_fire = (time.perf_counter() - t0) / n * 1000
    ctx = Context(org="Recovery Study", help_contact="1")
    models = [FU() for _ in range(n)]
    answers = [("q_self_efficacy", "seven"), ("q_mental_health", "very good"), ("q_physical_health", "3"),
               ("q_days_used", "none")]  # each question once: scale and choice parsing
    for i, m in enumerate(models):
        m.state = answers[i % 4][0]
    t0 = time.perf_counter()
    for i, m in enumerate(models):
        respond(m, answers[i % 4][1], ctx)
    per_respond = (time.perf_counter() - t0) / n * 1000
    assert MACHINE.models == []
    return per_fire, per_respond



def measure(label: str, app: str, phones: list[str], rounds: int, run: str, env: dict[str, str]) -> dict:
    warm_up = build_requests(phones[:50], 1, f"w{run}")
    per_conn = build_requests(phones, rounds, run)
    total = sum(len(r) for r in per_conn)
    port = free_port()
    proc = start_gunicorn(app, port, env)
    try:
        load(port, warm_up)  # imports, pools (not counted)
        rss_before, cpu_before = worker_rss_mb(proc), cpu_seconds()
        elapsed, lat, errors = load(port, per_conn)
        rss_after, cpu_after = worker_rss_mb(proc), cpu_seconds()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    cpu = {k: (cpu_after[k] - cpu_before[k]) / total * 1000 for k in cpu_after}
    print(f"{label:28s} {total} msgs in {elapsed:6.1f} s = {total / elapsed:7.0f} msg/s, "
          f"p50 {pct(lat, 50):6.1f} ms, p99 {pct(lat, 99):6.1f} ms, errors {errors}; CPU ms/msg: "
          f"{', '.join(f'{k} {v:.2f}' for k, v in cpu.items())}; worker RSS "
          f"{'/'.join(f'{r:.0f}' for r in rss_before)} -> {'/'.join(f'{r:.0f}' for r in rss_after)} MB", flush=True)
    return {"rate": total / elapsed, "p50": pct(lat, 50), "p99": pct(lat, 99), "errors": errors,
            "cpu": cpu["gunicorn"] + cpu["postgres"]}


def measure_open(label: str, app: str, phones: list[str], rate: float, seconds: float, run: str,
                 env: dict[str, str]) -> dict:
    rounds = max(1, round(rate * seconds / len(phones)))
    warm_up = build_requests(phones[:50], 1, f"w{run}")
    # round by round, every phone once a round: one phone's texts are len(phones) / rate seconds apart
    requests = build_sequence(phones, rounds, run)
    port = free_port()
    proc = start_gunicorn(app, port, env)
    try:
        load(port, warm_up)
        cpu_before = cpu_seconds()
        elapsed, lat, errors, late = open_load(port, requests, rate)
        cpu_after = cpu_seconds()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    total = len(requests)
    cpu = {k: (cpu_after[k] - cpu_before[k]) / total * 1000 for k in cpu_after}
    out = {"p50": pct(lat, 50), "p99": pct(lat, 99), "p99.9": pct(lat, 99.9), "max": max(lat) * 1000,
           "errors": errors}
    print(f"{label:28s} {total} msgs at {rate:.0f}/s in {elapsed:5.1f} s: latency from due time p50 "
          f"{out['p50']:6.1f} ms, p99 {out['p99']:6.1f} ms, p99.9 {out['p99.9']:6.1f} ms, max {out['max']:6.1f} ms, "
          f"errors {errors}, latest send {late * 1000:.0f} ms after due; CPU ms/msg: "
          f"{', '.join(f'{k} {v:.2f}' for k, v in cpu.items())}", flush=True)
    return out


APPS = [("baseline (signature only)", "benchmarks.baseline_app:create_app()"),
        ("floor (raw SQL, same I/O)", "benchmarks.floor_app:create_app()"),
        ("outreach webhook", "webhooks.app:create_app()")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="measure the three endpoints this many times, "
                        "interleaved; the summary gives medians (runs on a shared machine vary)")
    parser.add_argument("--open-rate", type=float, default=200, help="open loop: texts a second (0: skip it)")
    parser.add_argument("--open-seconds", type=float, default=25, help="open loop: how long (at least 20)")
    parser.add_argument("--open-repeat", type=int, default=1, help="open loop: rounds over the three endpoints")
    parser.add_argument("--only", choices=["closed", "open"], help="run one of the two loads")
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("TEST_POSTGRES_URL")
    if not url:
        sys.exit("set BENCH_POSTGRES_URL to a PostgreSQL database the benchmark may wipe")

    per_fire, per_respond = machine_alone()
    print(f"state machine alone: attach+fire+detach {per_fire:.3f} ms/message; "
          f"full respond() incl. parsing {per_respond:.3f} ms/message (target < 0.2 ms)")

    phones = seed(url, args.patients)
    env = {**os.environ, "DATABASE_URL": url, "TWILIO_AUTH_TOKEN": TOKEN, "HELP_CONTACT": "1-800-555-0199",
           "PUBLIC_BASE_URL": BASE, "PYTHONPATH": str(ROOT)}
    from outreach.config import load_settings

    settings = load_settings(env)
    print(f"gunicorn: {settings.web_concurrency} gthread workers x "
          f"{settings.web_threads} threads (WEB_CONCURRENCY, WEB_THREADS)", flush=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores shared with the load "
          f"generator and PostgreSQL)", flush=True)
    if args.only != "open":
        closed_loop(args, phones, env)
    if args.only != "closed" and args.open_rate:
        open_loop(args, phones, env)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


def closed_loop(args, phones: list[str], env: dict[str, str]) -> None:
    print(f"closed loop: {CONNECTIONS} connections, {len(phones) * args.rounds} texts per endpoint", flush=True)
    runs: dict[str, list[dict]] = {label: [] for label, _ in APPS}
    for rep in range(args.repeat):
        for i, (label, app) in enumerate(APPS):
            runs[label].append(measure(label, app, phones, args.rounds, f"r{rep}x{i}", env))
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("rate", "p50", "p99", "cpu")}
           for label, rs in runs.items()}
    base, floor, ours = (runs[label] for label, _ in APPS)
    ratio = statistics.median(o["rate"] / b["rate"] for o, b in zip(ours, base))
    floor_ratio = statistics.median(f["rate"] / b["rate"] for f, b in zip(floor, base))
    of_floor = [o["rate"] / f["rate"] for o, f in zip(ours, floor)]
    print(f"closed loop, median of {args.repeat}:")
    for label, m in med.items():
        print(f"  {label:28s} {m['rate']:7.0f} msg/s, p50 {m['p50']:6.1f} ms, p99 {m['p99']:6.1f} ms, "
              f"CPU {m['cpu']:.2f} ms/msg (gunicorn + PostgreSQL)")
    print(f"closed loop: the webhook is {statistics.median(of_floor):.2f} x the floor's throughput (target >= 0.8; "
          f"rounds {', '.join(f'{r:.2f}' for r in of_floor)}), {ratio:.2f} x the bare endpoint's (the floor "
          f"{floor_ratio:.2f} x); CPU per text {med['outreach webhook']['cpu'] / med[APPS[1][0]]['cpu']:.2f} x "
          f"the floor's", flush=True)
    if sum(r["errors"] for rs in runs.values() for r in rs):
        print("non-200 answers seen: see the gunicorn output above")


def open_loop(args, phones: list[str], env: dict[str, str]) -> None:
    print(f"open loop: {args.open_rate:.0f} texts a second for {args.open_seconds:.0f} s per endpoint, latency "
          f"from each text's due time", flush=True)
    runs: dict[str, list[dict]] = {label: [] for label, _ in APPS}
    for rep in range(args.open_repeat):
        for i, (label, app) in enumerate(APPS):
            runs[label].append(measure_open(label, app, phones, args.open_rate, args.open_seconds,
                                            f"o{rep}x{i}", env))
    print(f"open loop at {args.open_rate:.0f}/s, median of {args.open_repeat}:")
    for label, rs in runs.items():
        m = {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "p99.9")}
        print(f"  {label:28s} p50 {m['p50']:6.1f} ms, p99 {m['p99']:6.1f} ms, p99.9 {m['p99.9']:6.1f} ms"
              + ("  (target: p99 < 100 ms)" if label == APPS[2][0] else ""))
    if sum(r["errors"] for rs in runs.values() for r in rs):
        print("non-200 answers seen: see the gunicorn output above")


if __name__ == "__main__":
    main()
