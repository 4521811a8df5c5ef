"""The exports job (issue 22): filled by its author."""
from __future__ import annotations
