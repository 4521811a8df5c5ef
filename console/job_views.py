"""A job's page: its progress and result (issue 22)."""
from __future__ import annotations
