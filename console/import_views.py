"""Imports of discharge files from the browser (issue 22)."""
from __future__ import annotations
