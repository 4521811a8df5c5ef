"""``make serve``: demo accounts that really sign in, and a console that answers on a real port."""
from __future__ import annotations

import socket
import threading
import time
import urllib.request

from outreach.staff.accounts import authenticate
from outreach.db import unit_of_work
from outreach.serve import DEMO_ACCOUNTS, DEMO_PASSWORD, ensure_demo_accounts


def test_demo_accounts_sign_in_with_the_printed_password_and_are_made_once(sessions):
    ensure_demo_accounts(sessions)
    ensure_demo_accounts(sessions)  # a second `make serve` keeps them
    for email, role in DEMO_ACCOUNTS:
        with unit_of_work(sessions) as s:
            assert authenticate(s, email, DEMO_PASSWORD, address="127.0.0.1").role == role


def test_serve_runs_the_demo_once_then_serves_the_console(tmp_path, monkeypatch):
    from outreach import serve as serve_module
    from webhooks.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prepared = []

    def prepare(where):  # stands in for the demo: an empty database at the demo's path
        prepared.append(where)
        where.mkdir(parents=True, exist_ok=True)
        (where / "outreach.db").touch()

    lines: list[str] = []
    thread = threading.Thread(target=serve_module.serve, args=(tmp_path / "demo",),
                              kwargs=dict(port=port, app_factory=create_app, prepare_demo=prepare,
                                          echo=lines.append), daemon=True)
    thread.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/console/sign-in", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("the console did not answer: " + "\n".join(lines))
    assert "Sign in" in page and len(prepared) == 1
    text = "\n".join(lines)
    assert f"http://127.0.0.1:{port}/console/" in text and DEMO_PASSWORD in text and "admin@demo.example.org" in text
