"""Outreach: SMS follow-up of patients discharged from addiction treatment.

Service layer: persistence, imports, waves, the SMS gateway.  Depends on
``conversations`` (the pure domain); never on ``webhooks``.
"""
