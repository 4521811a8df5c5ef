"""Research analysis: the linked, de-identified dataset, its export, the statistics and the report.

Reads the database through the plain query functions in ``queries`` and
works on pandas DataFrames.  Imports no Flask.
"""
