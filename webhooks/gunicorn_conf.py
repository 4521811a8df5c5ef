"""gunicorn settings for the web app: the Procfile's ``web`` process and the webhook benchmark use them.

``gunicorn -c python:webhooks.gunicorn_conf "webhooks.app:create_app()"``.  Threaded workers
(gthread): a request mostly waits on the database, and each thread holds at most one database
connection, so PostgreSQL sees at most ``WEB_CONCURRENCY × WEB_THREADS`` connections.
"""
from __future__ import annotations

import os

from outreach.config import load_settings, positive_int

_settings = load_settings()

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"  # the platform's PORT, as Heroku-style hosts set it
worker_class = "gthread"
workers = positive_int(_settings, "WEB_CONCURRENCY")
threads = positive_int(_settings, "WEB_THREADS")
