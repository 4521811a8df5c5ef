"""Services for the study team: console accounts, the audit log, crisis alerts, patient pages, the inbox,
contact events and hand-written texts.  Views and CLI commands call these; nothing below (messaging, study,
the infrastructure) imports from here."""
