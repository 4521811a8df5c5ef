"""Exports for researchers (issue 22)."""
from __future__ import annotations
