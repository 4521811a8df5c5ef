"""Texting patients: everything that sends, receives, spools and paces texts, and the rule that says who may
be texted now.  It knows messages, patients' phones and opt-outs; it knows nothing of waves, imports or the
console's pages (those live in ``outreach.study`` and ``outreach.staff``, above it)."""
