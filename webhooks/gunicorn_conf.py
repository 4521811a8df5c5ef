"""gunicorn settings for the web app: the Procfile's ``web`` process and the webhook benchmark use them.

``gunicorn -c python:webhooks.gunicorn_conf "webhooks.app:create_app()"``.  Threaded workers
(gthread): a request mostly waits on the database, and each thread holds at most one database
connection, so PostgreSQL sees at most ``WEB_CONCURRENCY × WEB_THREADS`` connections.
"""
from __future__ import annotations

import os
import sys
import tempfile

# Metrics of every worker add up (prometheus-client's multiprocess mode): each writes its counts to this folder,
# made fresh for each start unless the operator names one; it must be set before prometheus_client is imported.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="outreach-metrics-")

from outreach.config import ConfigError, load_settings  # noqa: E402

try:  # once, in the master, before any worker starts: a few lines, not a traceback per worker
    from webhooks.app import check_startup, startup_message

    _settings = load_settings()  # every setting parsed and checked here, before any worker starts
    check_startup(_settings)
except ConfigError as _exc:
    print(startup_message(_exc), file=sys.stderr, flush=True)
    sys.exit(1)

from outreach.logs import JsonFormatter, json_logs  # noqa: E402

if json_logs():  # gunicorn's own lines (its start, a worker's boot or timeout, its stop) as JSON objects too
    from gunicorn.glogging import Logger as _GunicornLogger

    class _JsonLogger(_GunicornLogger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())

    logger_class = _JsonLogger

bind = f"0.0.0.0:{_settings.port}"  # the platform's PORT, as Heroku-style hosts set it
worker_class = "gthread"
workers = _settings.web_concurrency
threads = _settings.web_threads

# Compiled once here, in the master: every worker forked from it starts with the crisis detector's rules built
# and its learned model loaded.
from conversations.crisis import rules as _crisis_rules  # noqa: E402
from conversations.crisis_model import model as _crisis_model  # noqa: E402

_crisis_rules()
_crisis_model()


def when_ready(_server) -> None:
    """METRICS_PORT: /metrics on 127.0.0.1 from the master (no token: only this host can reach it)."""
    if _settings.metrics_port:
        from outreach.ops.metrics import serve_on_loopback

        serve_on_loopback(_settings, _settings.metrics_port)


def child_exit(_server, worker) -> None:
    """A worker gone: its live gauges leave the scrape, its counts stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(_server) -> None:
    """The metrics folder this start made goes with it."""
    if _OWN_METRICS_DIR:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
