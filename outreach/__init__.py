"""Outreach: SMS follow-up of patients discharged from addiction treatment.

At this top level: the infrastructure (settings, clock, database, models, logs, errors, phones, CSV files,
the send window) and the entry points (cli, worker, serve, demo).  Below the entry points, by what they serve:
``messaging`` (texting patients), ``study`` (the study's schedule) and ``staff`` (the team's services); each
layer imports only from layers below it, down to ``conversations`` (the pure domain).  docs/architecture.md
draws the layers and says where a new feature goes.
"""
