"""Send-rate benchmark: real ``outreach worker`` processes on PostgreSQL against a loopback fake Twilio
API, a few hundred invitations due.  SEND_RATE_PER_SECOND is the sender's rate shared by every worker,
so three workers together must send at the configured rate (target: within 5 %), not three times it,
and nothing twice.  One worker, in the same run, is the reference.

Prints, per rate and number of workers: the aggregate rate measured at the fake API (texts between the
first and the last arrival / the time between them), its ratio to the configured rate, the most texts
that arrived in any one second, the longest pause between two arrivals (a stall, e.g. a busy machine,
shows there), and the number of texts sent twice (must be 0).

    BENCH_POSTGRES_URL=postgresql+psycopg://… python benchmarks/send_rate_bench.py [--texts 300] [--rates 20,50]
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.wave_bench import AS_OF, seed  # noqa: E402
from outreach.config import load_settings  # noqa: E402
from outreach.db import make_engine, session_factory, unit_of_work, upgrade  # noqa: E402
from outreach.study.waves import launch_wave  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://outreach:outreach@127.0.0.1:5432/outreach_rate_bench"


class Arrivals(list):
    """FakeTwilio's message list, with each message's arrival time (perf_counter) added as it is stored."""

    def append(self, message: dict) -> None:
        message["arrived"] = time.perf_counter()
        super().append(message)


def queue(url: str, texts: int) -> None:
    """A clean schema and ``texts`` invitations due now (a wave of as many patients)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(engine)
    seed(engine, texts, readmitted=0)
    with unit_of_work(session_factory(engine)) as s:
        wave, _ = launch_wave(s, load_settings({"DATABASE_URL": url}), 30, AS_OF, actor="bench")
    assert wave.targeted == texts, wave.targeted
    engine.dispose()


def run(url: str, texts: int, rate: float, workers: int, spool: str) -> str:
    queue(url, texts)
    exe = str(Path(sys.executable).with_name("outreach"))
    with FakeTwilio() as fake:
        fake.messages = Arrivals()
        env = {**os.environ, "DATABASE_URL": url, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "4" * 32,
               "TWILIO_AUTH_TOKEN": "tok", "TWILIO_MESSAGING_SERVICE_SID": "MG" + "5" * 32,
               "TWILIO_API_BASE_URL": fake.url, "SEND_WINDOW": "Mon-Sun 00:00-24:00",
               "SEND_RATE_PER_SECOND": str(rate), "SPOOL_DIR": spool}
        procs = [subprocess.Popen([exe, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers)]
        try:
            deadline = time.monotonic() + 30 + 3 * texts / rate
            while len(set(fake.sent_to())) < texts and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)  # anything sent twice would show up by now
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            errors = [p.communicate(timeout=30)[1].decode() for p in procs]
        with fake.lock:
            arrived = sorted(m["arrived"] for m in fake.messages)
            counts = Counter(m["to"] for m in fake.messages)
    if len(counts) < texts:
        sys.exit(f"only {len(counts)} of {texts} texts arrived; worker output:\n" + "\n".join(errors))
    measured = (len(arrived) - 1) / (arrived[-1] - arrived[0])
    busiest = max(bisect.bisect_left(arrived, t + 1.0) - i for i, t in enumerate(arrived))
    pause = max(b - a for a, b in zip(arrived, arrived[1:]))
    twice = sum(c - 1 for c in counts.values())
    return (f"rate {rate:4.0f}/s, {workers} worker(s): {len(arrived)} texts in {arrived[-1] - arrived[0]:5.2f} s = "
            f"{measured:5.2f}/s, {measured / rate:.3f} x the configured rate; at most {busiest} in any 1 s, "
            f"longest pause {pause * 1000:.0f} ms; "
            f"sent twice: {twice}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--rates", default="20,50", help="configured SEND_RATE_PER_SECOND values, comma-separated")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_URL)
    print(f"send rate: {args.texts} invitations due, PostgreSQL, loopback fake Twilio API, "
          f"{dt.datetime.now():%Y-%m-%d %H:%M}")
    with tempfile.TemporaryDirectory() as spool:
        for rate in (float(r) for r in args.rates.split(",")):
            for workers in (1, args.workers):
                print(run(url, args.texts, rate, workers, spool), flush=True)


if __name__ == "__main__":
    main()
