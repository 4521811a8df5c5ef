"""The study's schedule: treatment stays and their discharge imports, rating instruments, waves of follow-ups
and the minute tick (reminders, expiry).  It may queue texts through ``outreach.messaging``; it knows nothing
of console accounts, alerts or patient pages (``outreach.staff``, above it)."""
