"""Care during the stay (issue 26): care teams and their clinicians, stays in treatment (admissions), the
therapeutic alliance rated at check-ins while the patient is still there, and alliance alerts to the care team
when it weakens.

- :mod:`.teams`: care teams, their members, and which patients a clinician may see;
- :mod:`.admissions`: ``outreach import-admissions``, the stays that have begun (the discharge import's code);
- :mod:`.checkins`: a check-in stored and scored by the instrument's rules; the discharge alliance at discharge;
- :mod:`.rules` and ``alliance_rules.toml``: the alert and watch rules, as data;
- :mod:`.alerts`: alliance alerts raised, listed and acknowledged; check-ins missed.

Layer: beside :mod:`outreach.study` (it reuses the importer and the instrument); the entry points call it.
"""
