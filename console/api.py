"""The data API for researchers (``/api/v1``): personal access tokens, de-identified exports (issue 22)."""
from __future__ import annotations

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/api/v1")
