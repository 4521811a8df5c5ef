"""The statistical report in the console (issue 22)."""
from __future__ import annotations
