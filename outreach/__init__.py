"""Outreach: SMS follow-up of patients discharged from addiction treatment.

At this top level: the infrastructure (settings, clock, database, models, logs, errors, phones, CSV files,
the send window) and the entry points (cli, worker, serve, demo).  Below the entry points, by what they serve:
``messaging`` (texting patients), ``study`` (the study's schedule) and ``staff`` (the team's services); each
layer imports only from layers below it, down to ``conversations`` (the pure domain).  docs/architecture.md
draws the layers and says where a new feature goes.
"""

from .logs import install_record_cleaning as _clean_every_record

# Every log record made in this process is cleaned (phone numbers masked, message words left out) from the moment
# the package is imported, not only once an entry point has configured logging: a library, a test or a thread
# that logs before then (a failed job's traceback) writes nothing a patient said.
_clean_every_record()
