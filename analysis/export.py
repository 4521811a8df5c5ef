"""Writing the linked dataset for a statistics package, with its codebook beside it.

CSV cells a spreadsheet would run as a formula get a leading apostrophe (:mod:`outreach.csvsafe`);
numbers are left alone.  ``private=True`` creates the files readable by their owner only (0600).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
        if s.empty and col in BY_NAME and BY_NAME[col].type in ("integer", "numeric", "binary"):
            out[col] = s.astype("float64")  # no rows: the contract's type (a labelled number, not an empty text)
        elif isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s) or s.dtype == object:
            out[col] = s.astype("object").where(s.notna(), "").astype(str)
        else:
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
    return out


def to_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as ``df.to_csv(path, index=False)`` does, byte for byte, with the cells turned into text and
    joined into rows by Arrow a column at a time (pandas formats and writes every cell in Python: 400,000 rows of
    the linked dataset took about 5 s).  A frame with a column it does not know (dates, 32-bit floats, an object
    column holding other than text) or of one column (where an empty cell is written "") is written by pandas."""
    cells = [_csv_cells(df[col]) for col in df.columns]
    if len(cells) < 2 or any(c is None for c in cells) or not all(isinstance(col, str) for col in df.columns):
        df.to_csv(path, index=False)
        return
    header = ",".join(_csv_quoted(pa.array(df.columns, type=pa.string())).to_pylist())
    rows = pc.binary_join_element_wise(*cells, ",", null_handling="replace", null_replacement="")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + os.linesep)
        for start in range(0, len(rows), 100_000):
            fh.writelines(row + os.linesep for row in rows[start:start + 100_000].to_pylist())


def _csv_cells(s: pd.Series) -> pa.Array | None:
    """A column's cells as ``to_csv`` writes them, null where it writes nothing, quoted as the csv module's
    QUOTE_MINIMAL quotes; None for a dtype this writer does not know."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):  # each category's text, taken by the codes
        categories = _csv_cells(pd.Series(dtype.categories))
        if categories is None:
            return None
        return pc.take(categories, pa.array(s.cat.codes.to_numpy(), mask=s.isna().to_numpy()))
    if pd.api.types.is_bool_dtype(dtype):
        return pc.if_else(pa.array(s, from_pandas=True), "True", "False")
    if pd.api.types.is_integer_dtype(dtype):
        return pa.array(s, from_pandas=True).cast(pa.string())
    if pd.api.types.is_float_dtype(dtype) and dtype.itemsize == 8:  # numpy's text of a float64 is Python's repr
        codes, distinct = pd.factorize(s.to_numpy(dtype="float64", na_value=np.nan))  # each distinct number once
        return pc.take(pa.array(distinct.astype(str)), pa.array(codes, mask=codes < 0))
    if pd.api.types.is_string_dtype(dtype) and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return _csv_quoted(pa.array(s, type=pa.string(), from_pandas=True))
    return None


def _csv_quoted(text: pa.Array) -> pa.Array:
    """QUOTE_MINIMAL: a cell holding the delimiter, the quote or a character of the line end is quoted, its
    quotes doubled."""
    special = pc.match_substring(text, ",")
    for char in '"' + os.linesep:
        special = pc.or_kleene(special, pc.match_substring(text, char))
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(special, quoted, text)


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
        to_csv(safe_frame(df), path)
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
    to_csv(safe_frame(codebook(df, suppress_below, unit)), codebook_path(path))
