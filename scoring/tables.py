"""Reading raw tables from CSV, Parquet or SQL with errors that name the file, line and problem.

Every frame read here carries a `_source_line` column (the line in a CSV file, the row number in
Parquet or SQL results) so later validation can point at the line a user has to fix.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from scoring.errors import DataContractError, Problem

SOURCE_LINE = "_source_line"
_OTHER_DELIMITERS = (";", "\t", "|")
# No lead takes a megabyte; parsing a line that long costs ten times its size in memory.
MAX_LINE_BYTES = 1 << 20
_SCAN_BYTES = 1 << 24


def read_table(
    path: Path,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    missing_values: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Read a CSV (as text, every column a string) or Parquet file.

    Args:
        path: the file; `.csv`/`.txt` are read as CSV, `.parquet`/`.pq` as Parquet.
        delimiter: the CSV field separator.
        encoding: the CSV text encoding.
        missing_values: extra strings that mean "missing" (for example "Select").
    """
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataContractError(str(path), [Problem("file not found")])
    if suffix in (".parquet", ".pq"):
        frame = _read_parquet(path)
        if missing_values:
            frame = frame.replace(list(missing_values), pd.NA)
        return frame
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv(path, delimiter=delimiter, encoding=encoding, missing=missing_values)
    raise DataContractError(
        str(path), [Problem(f"unsupported file type '{suffix}'; use .csv or .parquet")]
    )


def read_sql(url: str, *, table: str | None = None, query: str | None = None) -> pd.DataFrame:
    """Read a table or the result of a query from a SQL database through SQLAlchemy."""
    if (table is None) == (query is None):
        raise ValueError("give exactly one of table or query")
    where = f"{redact_url(url)} ({'table ' + table if table else 'query'})"
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise DataContractError(
            redact_url(url), [Problem(f"cannot use database URL: {error}")]
        ) from None
    try:
        with engine.connect() as connection:
            statement: sa.Select[Any] | sa.TextClause = (
                sa.select(sa.text("*")).select_from(sa.table(table))
                if table
                else sa.text(query or "")
            )
            frame = pd.DataFrame(pd.read_sql(statement, connection))
    except sa.exc.SQLAlchemyError as error:
        message = str(getattr(error, "orig", error)).splitlines()[0]
        raise DataContractError(where, [Problem(f"cannot read: {message}")]) from None
    finally:
        engine.dispose()
    frame[SOURCE_LINE] = range(1, len(frame) + 1)
    return frame


def redact_url(url: str) -> str:
    """A database URL without its password, safe to show in messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<database URL>"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a broken file
        raise DataContractError(
            str(path), [Problem(f"not a readable Parquet file ({type(error).__name__})")]
        ) from None
    frame = frame.reset_index(drop=True)
    frame[SOURCE_LINE] = range(1, len(frame) + 1)
    return frame


def _read_csv(
    path: Path, *, delimiter: str, encoding: str, missing: tuple[str, ...]
) -> pd.DataFrame:
    where = str(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataContractError(where, [Problem("the file is empty")])
    _check_line_lengths(raw, where)
    text = _decode(raw, encoding, where)
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=["", *missing],
            skip_blank_lines=False,
        )
    except pd.errors.ParserError as error:
        raise DataContractError(where, [Problem(f"malformed CSV: {error}".strip())]) from None
    except pd.errors.EmptyDataError:
        raise DataContractError(where, [Problem("the file is empty")]) from None
    _check_delimiter(frame, delimiter, where)
    cut = last_line_cut(raw[-MAX_LINE_BYTES:], len(frame.columns), delimiter, encoding)
    if cut is not None:
        problem = cut_problem(cut, len(frame.columns), raw.count(b"\n") + 1)
        raise DataContractError(where, [problem], unit="line")
    frame = _drop_trailing_empty_columns(frame)
    # Line numbers as a user sees them in an editor: the header is line 1.
    frame[SOURCE_LINE] = range(2, len(frame) + 2)
    return frame


def _check_line_lengths(raw: bytes, where: str) -> None:
    """Refuse a line over `MAX_LINE_BYTES` before parsing it (scanned in bounded windows)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    previous, lines = -1, 0  # the last line break seen, and how many
    for start in range(0, len(data), _SCAN_BYTES):
        breaks = np.flatnonzero(data[start : start + _SCAN_BYTES] == ord("\n")) + start
        bounds = np.concatenate([[previous], breaks, [min(start + _SCAN_BYTES, len(data))]])
        longest = int(np.argmax(np.diff(bounds)))
        if bounds[longest + 1] - bounds[longest] - 1 > MAX_LINE_BYTES:
            begin = int(bounds[longest]) + 1
            end = raw.find(b"\n", begin)
            size = (end if end >= 0 else len(raw)) - begin
            problem = Problem(
                f"a line of {size:,} bytes (at most {MAX_LINE_BYTES:,}): no lead has a field "
                "that large; check the export (an unclosed quote, a file pasted into a cell) "
                "or leave that column out",
                rows=[lines + longest + 1],
            )
            raise DataContractError(where, [problem], unit="line")
        if len(breaks):
            previous, lines = int(breaks[-1]), lines + len(breaks)


def last_line_cut(tail: bytes, columns: int, delimiter: str, encoding: str) -> int | None:
    """The fields on a CSV file's last line when the file looks cut off there (given its last
    bytes): no line break at the end, and fewer fields than the header's `columns`. A last line
    with an odd number of quotes closes a field begun earlier, or is cut inside one (which the
    parser reports): not judged here."""
    if not tail.strip() or tail.endswith((b"\n", b"\r")):
        return None
    last = tail[tail.rfind(b"\n") + 1 :]
    if last.count(b'"') % 2:
        return None
    fields = next(csv.reader([last.decode(encoding, errors="replace")], delimiter=delimiter), [])
    return len(fields) if 0 < len(fields) < columns else None


def cut_problem(fields: int, columns: int, line: int) -> Problem:
    return Problem(
        f"the file ends in the middle of a line: its last line has {fields} of the header's "
        f"{columns} fields and no line break; the file looks truncated (cut off while being "
        "exported or copied). Export or copy it again; the file was not used",
        rows=[line],
    )


def _decode(raw: bytes, encoding: str, where: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad = raw[error.start : error.start + 4]
        raise DataContractError(
            where,
            [
                Problem(
                    f"bytes that are not valid {encoding} at byte {error.start} ({bad!r}); "
                    "save the file as UTF-8 or declare its encoding in the mapping",
                    rows=[line],
                )
            ],
            unit="line",
        ) from None
    except LookupError:
        raise DataContractError(where, [Problem(f"unknown encoding {encoding!r}")]) from None


def _check_delimiter(frame: pd.DataFrame, delimiter: str, where: str) -> None:
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    for other in _OTHER_DELIMITERS:
        if other != delimiter and other in header:
            shown = "tab" if other == "\t" else repr(other)
            raise DataContractError(
                where,
                [
                    Problem(
                        f"the header has a single column but contains {shown}: the file looks "
                        f"delimited by {shown}, not {delimiter!r}; convert it or declare "
                        "`delimiter` in the mapping"
                    )
                ],
            )


def _drop_trailing_empty_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop columns made by a trailing delimiter on every line (unnamed and entirely empty)."""
    unnamed_empty = [
        c for c in frame.columns if str(c).startswith("Unnamed: ") and frame[c].isna().all()
    ]
    return frame.drop(columns=unnamed_empty)
