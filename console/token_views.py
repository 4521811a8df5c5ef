"""Personal access tokens for the data API (issue 22)."""
from __future__ import annotations
