"""Screenshots of the study console for the README, made from the demo's synthetic data.

    python docs/screenshots.py [--dir demo] [--out docs]

Runs the demo first when DIR/outreach.db is missing (as ``outreach serve`` does), adds the demo accounts,
serves the console on a free loopback port in a thread and signs in as the demo coordinator in Debian's
Chromium (Playwright; no browser is downloaded).  Writes OUT/console-alerts.png (the crisis-alert queue),
OUT/console-patient.png (the page of the patient with the demo's crisis alert, reached from the alert),
OUT/console-import.png (the check of the demo's discharge file uploaded again, with its problems),
OUT/console-wave.png (the demo's paused wave) and OUT/console-dashboard.png (the study dashboard, as a
researcher sees it).  The worker's job thread runs the upload's check, as in `outreach worker`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's packages, installed or not

from playwright.sync_api import sync_playwright
from sqlalchemy import func, select
from werkzeug.serving import make_server

from analysis.summary import analyse_demo
from outreach.config import load_settings
from outreach.db import make_engine, session_factory, upgrade
from outreach.demo import run_demo
from outreach.jobs.queue import JobRunner
from outreach.models import Alert
from outreach.clock import Clock, using
from outreach.serve import DEMO_ACCOUNTS, DEMO_PASSWORD, demo_env, ensure_demo_accounts
from webhooks.app import create_app

FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
COORDINATOR = next(email for email, role in DEMO_ACCOUNTS if role == "coordinator")
RESEARCHER = next(email for email, role in DEMO_ACCOUNTS if role == "researcher")
PICTURES = ("console-alerts.png", "console-patient.png", "console-import.png", "console-wave.png",
            "console-dashboard.png")
VIEWPORT = {"width": 1280, "height": 900}
LOOK_AFTER = dt.timedelta(minutes=25)  # the console is looked at this long after the demo's first open alert


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(directory: Path, port: int) -> tuple[dict[str, str], Clock]:
    """The demo's database with the demo accounts; returns the app's environment.

    The demo's texts are dated on its simulated clock (days ahead of or behind today), so the app's clock is
    moved to LOOK_AFTER the first open alert: the queue then shows a sensible age, not a negative or stale one."""
    if not (directory / "outreach.db").exists():
        print(f"no demo data under {directory}/ yet: running the demo first")
        run_demo(directory, app_factory=create_app, analyse=analyse_demo, echo=print)
    env = demo_env(directory, port)
    engine = make_engine(load_settings(env).database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s:
        opened = s.scalar(select(func.min(Alert.opened_at)).where(Alert.resolved_at.is_(None)))
    clock = Clock()
    if opened is not None:
        clock.follow(opened + LOOK_AFTER)
    ensure_demo_accounts(sessions)
    engine.dispose()
    return env, clock


def sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(f"{base}/console/")


def shoot(base: str, out: Path, discharges: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(15_000)
        sign_in(page, base, COORDINATOR)

        page.goto(f"{base}/console/alerts")
        card = page.locator("article.alert-card").first
        card.wait_for()
        card.locator("details summary").first.click()  # show the messages before the alert
        page.screenshot(path=out / "console-alerts.png", full_page=True, animations="disabled")

        card.get_by_role("link", name="Patient").first.click()
        # the page is long: keep it down to the crisis text and the reply that followed it
        crisis = page.locator("#transcript-table tr", has=page.locator(".tag", has_text="Alert #"))
        crisis.first.wait_for()
        reply = crisis.first.locator("xpath=following-sibling::tr[1]")
        box = (reply if reply.count() else crisis.first).bounding_box()
        height = box["y"] + box["height"] + 1
        page.screenshot(path=out / "console-patient.png", full_page=True, animations="disabled",
                        clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})

        page.goto(f"{base}/console/imports")
        page.get_by_label("Discharge file").set_input_files(str(discharges))
        page.get_by_role("button", name="Upload and check").click()
        page.locator("#import-errors").wait_for(timeout=60_000)
        page.screenshot(path=out / "console-import.png", full_page=True, animations="disabled")

        page.goto(f"{base}/console/waves/2")  # the demo's 90-day wave, paused on its day 6
        page.screenshot(path=out / "console-wave.png", full_page=True, animations="disabled")

        researcher = browser.new_page(viewport=VIEWPORT)
        sign_in(researcher, base, RESEARCHER)
        researcher.goto(f"{base}/console/dashboard")
        researcher.screenshot(path=out / "console-dashboard.png", full_page=True, animations="disabled")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo", type=Path, help="the demo's directory (default: demo)")
    parser.add_argument("--out", default="docs", type=Path, help="where the PNGs go (default: docs)")
    args = parser.parse_args()
    port = free_port()
    env, clock = prepare(args.dir, port)
    app = create_app(env, clock=clock)
    settings = load_settings(env)
    jobs_engine = make_engine(settings.database_url)
    with using(clock):  # the jobs run on the app's clock, as `make serve`'s worker does
        jobs = JobRunner(session_factory(jobs_engine), settings, "screenshots").start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        shoot(f"http://127.0.0.1:{port}", args.out, args.dir / "discharges.csv")
    finally:
        jobs.stop(timeout=60)
        jobs_engine.dispose()
        server.shutdown()
        thread.join(timeout=5)
        app.extensions["outreach"]["engine"].dispose()
    for name in PICTURES:
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
