"""Application factory.  Nothing happens at import time."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask, jsonify
from sqlalchemy import text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    settings = load_settings({k: v for k, v in (config or {}).items() if isinstance(v, str)})
    engine = make_engine(settings.database_url)
    app.extensions["outreach"] = {"settings": settings, "engine": engine, "sessions": session_factory(engine)}

    @app.get("/healthz")
    def healthz():
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # the database is down or unreachable
            return jsonify(status="unavailable", reason="database does not answer"), 503
        return jsonify(status="ok")

    return app
