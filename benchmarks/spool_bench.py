"""Spool benchmark (issue 15): how many texts a second ``outreach.messaging.spool.Spool.put`` writes durably
(each one written, fsynced, renamed into the spool and the folder fsynced, as the webhook does during
a database outage), on its own: one writer, then several threads in one process, then several processes
of several threads (as gunicorn's workers during an outage).  Target: at least 1,000 texts a second.

    python benchmarks/spool_bench.py [--texts 3000] [--dir PATH]

The spool goes in a fresh folder under the project's ``instance/`` folder by default (where SPOOL_DIR
points when unset, so on the same disk), removed afterwards.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.clock import utcnow  # noqa: E402
from outreach.messaging.spool import Spool  # noqa: E402


def form(n: int) -> dict[str, str]:
    """The fields of a signed inbound text, as Twilio posts them."""
    return {"ToCountry": "CA", "ToState": "ON", "SmsMessageSid": f"SM{n:032x}", "NumMedia": "0", "ToCity": "TORONTO",
            "FromZip": "", "SmsSid": f"SM{n:032x}", "FromState": "ON", "SmsStatus": "received", "FromCity": "TORONTO",
            "Body": "I don't know, maybe 7. It was a hard week.", "FromCountry": "CA", "To": "+15005550006",
            "ToZip": "", "NumSegments": "1", "MessageSid": f"SM{n:032x}", "AccountSid": "AC" + "0" * 32,
            "From": f"+1647{2000000 + n % 1000:07d}", "ApiVersion": "2010-04-01"}


def write(spool: Spool, first: int, count: int) -> list[float]:
    latencies = []
    for n in range(first, first + count):
        t0 = time.perf_counter()
        spool.put("sms", form(n), utcnow(), [])
        latencies.append(time.perf_counter() - t0)
    return latencies


def threads_writing(directory: str, threads: int, per_thread: int, offset: int = 0) -> list[float]:
    spool = Spool(directory)
    out: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def run(i: int) -> None:
        barrier.wait()
        mine = write(spool, offset + i * per_thread, per_thread)
        with lock:
            out.extend(mine)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def _process(directory: str, threads: int, per_thread: int, offset: int, barrier, results) -> None:
    barrier.wait()
    results.put(threads_writing(directory, threads, per_thread, offset))


def measure(label: str, directory: Path, processes: int, threads: int, texts: int) -> float:
    folder = directory / label.replace(" ", "_")
    per_thread = max(1, texts // (processes * threads))
    total = per_thread * processes * threads
    Spool(folder).writable()  # the folder exists before the clock starts
    t0 = time.perf_counter()
    if processes == 1:
        latencies = threads_writing(str(folder), threads, per_thread)
    else:
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
        procs = [ctx.Process(target=_process, args=(str(folder), threads, per_thread, p * threads * per_thread,
                                                     barrier, results)) for p in range(processes)]
        for p in procs:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        latencies = [x for _ in procs for x in results.get()]
        for p in procs:
            p.join()
    elapsed = time.perf_counter() - t0
    spooled = len(list(folder.glob("*.json")))
    assert spooled == total, f"{spooled} files for {total} texts"
    latencies.sort()
    print(f"{label:34s} {total:6d} texts in {elapsed:5.2f} s = {total / elapsed:7.0f} texts/s; put() p50 "
          f"{statistics.median(latencies) * 1000:5.2f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:5.2f} ms",
          flush=True)
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=3000, help="texts per measurement")
    parser.add_argument("--dir", help="folder to spool in (default: a fresh one under instance/)")
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else ROOT / "instance"
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="spool-bench-", dir=base))
    print(f"spool in {directory} ({os.statvfs(directory).f_bsize}-byte blocks); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        rates = {}
        for label, processes, threads in [("1 writer", 1, 1), ("4 threads, 1 process", 1, 4),
                                          ("20 threads, 1 process", 1, 20),
                                          ("5 processes x 4 threads (gunicorn)", 5, 4)]:
            rates[label] = measure(label, directory, processes, threads, args.texts)
        print(f"spool: {rates['1 writer']:.0f} texts/s from one writer, "
              f"{max(v for k, v in rates.items() if k != '1 writer'):.0f} texts/s at most with several at once "
              f"(target >= 1,000 texts/s); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
