"""Files the service writes for people: CSV cells a spreadsheet will not run, and private files.

**Formulas.**  A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(and some also after a tab or carriage return), so a patient id, a program name or a text typed by a
patient could run one when a coordinator opens the file.  As OWASP recommends (CSV injection), such
a cell gets a leading apostrophe, which the spreadsheet shows as text.  Numbers are left as they are:
``-3`` and ``+1.5`` stay numbers.  Every CSV the service writes goes through here: the export and its
codebook (:mod:`analysis.export`), import rejects (:mod:`outreach.study.importer`) and the audit-log
download (:mod:`outreach.staff.audit_log`).

**Private files.**  :func:`private_files` creates files readable by their owner only (mode 0600).
"""
from __future__ import annotations

import contextlib
import csv
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
PRIVATE_MODE = 0o600


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows as text: a string starting like a formula gets a leading
    ``'``; numbers (and text that is a number, like ``-3``) and ``None`` are returned unchanged."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


class SafeWriter:
    """``csv.writer`` whose rows go through :func:`safe_cell`."""

    def __init__(self, fh, **kwargs: Any):
        self._writer = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_series(series):
    """A pandas Series of text (object, string or categorical) with formula-like cells neutralised, in a
    few vectorised operations; numeric series are returned as they are."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        if categories.dtype == object or pd.api.types.is_string_dtype(categories):
            return series.cat.rename_categories([safe_cell(c) for c in categories])
        return series
    if not (series.dtype == object or pd.api.types.is_string_dtype(series)):
        return series
    text = series.astype("string")
    risky = text.str.startswith(FORMULA_START).fillna(False) & ~text.str.fullmatch(NUMBER.pattern).fillna(False)
    if not risky.any():
        return series
    if series.dtype == object:  # keep non-text values (numbers, None) of a mixed column untouched
        risky &= series.map(lambda v: isinstance(v, str))
    mask = risky.to_numpy(dtype=bool)
    values = series.to_numpy(dtype=object, copy=True)  # (a masked assignment on the Series turns None into NaN)
    values[mask] = ["'" + v for v in values[mask]]
    return pd.Series(values, index=series.index, name=series.name).astype(series.dtype)


def safe_frame(df):
    """A DataFrame whose text columns went through :func:`safe_series` (a copy only when needed)."""
    out = df
    for col in df.columns:
        column = df[col]
        cleaned = safe_series(column)
        if cleaned is not column:
            if out is df:
                out = df.copy()
            out[col] = cleaned
    return out


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files (and folders) created in this block are readable by their owner only: the process's umask is
    077 while it runs (the CLI is one thread; a library that opens the file itself is covered too)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def open_private(path: Path, mode: str = "w", **kwargs: Any):
    """Open ``path`` for writing with mode 0600, also when it already existed with a wider mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    except (AttributeError, OSError):  # pragma: no cover - not on POSIX
        pass
    return os.fdopen(fd, mode, **kwargs)
