"""Rows as the text that PostgreSQL's ``COPY ... FROM STDIN`` reads (its default text format: a tab between
columns, a newline after each row, ``\\N`` for NULL, and a backslash before any backslash, tab, newline,
carriage return, backspace, form feed or vertical tab inside a value).

psycopg's ``copy.write_row`` finds a dumper for every value of every row: most of the time an import spent
writing 290,000 rows.  Here each column is converted as a whole, by the type of its table column: each distinct
date once, the text of a block searched once for characters that need escaping (nearly always none)."""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Callable, Sequence

from sqlalchemy import Table
from sqlalchemy.types import Boolean, Date, DateTime, Float, Integer

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f",
                          "\v": "\\v"})
_NEEDS_ESCAPE = re.compile("[\\\\\t\n\r\b\f\v]")
_FLOAT_WORDS = {math.inf: "Infinity", -math.inf: "-Infinity"}
_INTEGER_KINDS = {int, type(None)}


class CannotFormat(ValueError):
    """A value this module does not write (a NUL character, which PostgreSQL text cannot hold, or a value not of
    its column's type): the caller lets the driver write those rows, and say what is wrong."""


def copy_text(table: Table, names: Sequence[str], columns: Sequence[Sequence[Any]],
              same: dict[str, Any] | None = None) -> str:
    """Rows as COPY text for the columns of ``table`` called ``names`` and then those of ``same``: ``columns``
    holds the values of each of ``names`` (one sequence a name, all of one length), ``same`` a value for every row;
    :class:`CannotFormat` for a value it does not write."""
    if len(columns) != len(names) or len(set(map(len, columns))) != 1:
        raise CannotFormat("the columns are not one sequence a name, of one length")
    if not columns[0]:
        return ""
    cells = [_converter(table.c[name].type)(list(values)) for name, values in zip(names, columns)]
    end = "".join("\t" + _converter(table.c[name].type)([value])[0] for name, value in (same or {}).items()) + "\n"
    return end.join(map("\t".join, zip(*cells))) + end


def _converter(sql_type: Any) -> Callable[[list], list[str]]:
    if isinstance(sql_type, Boolean):
        return _booleans
    if isinstance(sql_type, Integer):
        return _integers
    if isinstance(sql_type, Float):
        return _floats
    if isinstance(sql_type, (Date, DateTime)):
        return _dates
    return _texts


def _booleans(values: list) -> list[str]:
    return _each_distinct_once(values, _boolean)


def _boolean(v: Any) -> str:
    if type(v) is not bool:
        raise CannotFormat("a boolean column holds something else")
    return "t" if v else "f"


def _integers(values: list) -> list[str]:
    kinds = set(map(type, values))
    if not kinds <= _INTEGER_KINDS:
        raise CannotFormat("a whole-number column holds something else")
    if type(None) in kinds:
        return [NULL if v is None else str(v) for v in values]
    return list(map(str, values))


def _floats(values: list) -> list[str]:
    return _each_distinct_once(values, _float)


def _float(v: Any) -> str:
    if type(v) not in (int, float):
        raise CannotFormat("a number column holds something else")
    v = float(v)
    return "NaN" if v != v else _FLOAT_WORDS.get(v) or repr(v)


def _dates(values: list) -> list[str]:
    return _each_distinct_once(values, _date)


def _date(v: Any) -> str:
    if not isinstance(v, dt.date):  # a datetime is a date too
        raise CannotFormat("a date column holds something else")
    return v.isoformat()


def _each_distinct_once(values: list, convert: Callable[[Any], str]) -> list[str]:
    """``convert`` of each value (NULL for None), called once per distinct value: a file has few distinct dates,
    flags and scores."""
    try:
        known = {v: NULL if v is None else convert(v) for v in set(values)}
    except TypeError:  # not hashable
        raise CannotFormat("a value of a column cannot be written as its type") from None
    return list(map(known.__getitem__, values))


def _texts(values: list) -> list[str]:
    nulls = None in values
    try:
        joined = "".join([v for v in values if v is not None] if nulls else values)
    except TypeError:
        raise CannotFormat("a text column holds something else") from None
    if "\x00" in joined:
        raise CannotFormat("PostgreSQL text cannot hold a NUL character")
    if _NEEDS_ESCAPE.search(joined):
        return [NULL if v is None else v.translate(_ESCAPES) for v in values]
    return [NULL if v is None else v for v in values] if nulls else values
