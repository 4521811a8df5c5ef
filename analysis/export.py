"""Writing the linked dataset for a statistics package, with its codebook beside it.

CSV cells a spreadsheet would run as a formula get a leading apostrophe (:mod:`outreach.csvsafe`);
numbers are left alone.  ``private=True`` creates the files readable by their owner only (0600).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import pandas as pd

from outreach.csvsafe import PRIVATE_MODE, private_files, safe_frame

from .codebook import BY_NAME, FOLLOW_UP_UNIT, Variable, notes

FORMATS = {".csv": "csv", ".parquet": "parquet", ".dta": "dta", ".sav": "sav"}


class ExportError(ValueError):
    pass


def format_for(path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ExportError(f"cannot tell the format from {path.name!r}: use --format csv|parquet|dta|sav "
                          "or a file ending in .csv, .parquet, .dta or .sav") from None


def codebook_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.codebook.csv")


def codebook(df: pd.DataFrame, suppress_below: int = 5, unit: str = FOLLOW_UP_UNIT) -> pd.DataFrame:
    """One row per column of ``df`` (label, type, codes), then the notes: the unit of a row and the suppression
    rule for anything published from the file."""
    rows = []
    for col in df.columns:
        v = BY_NAME.get(col, Variable(col, col, "string"))
        rows.append({"variable": col, "label": v.label, "type": v.type,
                     "codes": "; ".join(f"{k} = {label}" for k, label in v.codes.items())})
    return pd.DataFrame(rows + notes(suppress_below, unit), columns=["variable", "label", "type", "codes"])


def _for_stats_package(df: pd.DataFrame) -> pd.DataFrame:
    """Stata and SPSS want plain floats (NaN = missing) and plain strings."""
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s) or s.dtype == object:
            out[col] = s.astype("object").where(s.notna(), "").astype(str)
        else:
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(df: pd.DataFrame, path: Path, fmt: str, *, private: bool = False, suppress_below: int = 5,
          unit: str = FOLLOW_UP_UNIT) -> Path:
    """Write ``df`` to ``path`` in ``fmt`` and its codebook beside it (always CSV).  ``private``: both files
    are created with mode 0600 (and made 0600 if they already existed)."""
    path = Path(path)
    with private_files() if private else contextlib.nullcontext():
        _write(df, path, fmt, suppress_below, unit)
    if private:
        for written in (path, codebook_path(path)):
            os.chmod(written, PRIVATE_MODE)
    return path


def _write(df: pd.DataFrame, path: Path, fmt: str, suppress_below: int, unit: str = FOLLOW_UP_UNIT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        safe_frame(df).to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt in ("dta", "sav"):
        import pyreadstat

        data = _for_stats_package(df)
        labels = {c: BY_NAME[c].label[:80] if c in BY_NAME else c for c in df.columns}
        value_labels = {c: {float(k): v for k, v in BY_NAME[c].codes.items()}
                        for c in df.columns if c in BY_NAME and BY_NAME[c].codes
                        and all(isinstance(k, int) for k in BY_NAME[c].codes)}
        writer = pyreadstat.write_dta if fmt == "dta" else pyreadstat.write_sav
        writer(data, str(path), column_labels=labels, variable_value_labels=value_labels)
    else:
        raise ExportError(f"unknown format {fmt!r}: use csv, parquet, dta or sav")
    safe_frame(codebook(df, suppress_below, unit)).to_csv(codebook_path(path), index=False)
