"""Every kind of job, registered with :func:`outreach.jobs.queue.handler` when its module is imported."""
from __future__ import annotations

from . import exports, imports, launches, reports  # noqa: F401
