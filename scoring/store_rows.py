"""Bulk row transfer between DataFrames and the store's tables.

Ingesting a million leads through per-row ORM or Core type processing takes minutes; these
helpers hand plain tuples to the database driver's executemany and parse whole columns back
with pandas, keeping SQLAlchemy's own storage format (so Core queries read the same rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

BATCH_ROWS = 50_000
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _is_sqlite(connection: sa.Connection) -> bool:
    return connection.dialect.name == "sqlite"


def _placeholder(connection: sa.Connection) -> str:
    style = connection.dialect.paramstyle
    if style not in _PLACEHOLDERS:
        raise NotImplementedError(f"database driver paramstyle {style!r} is not supported")
    return _PLACEHOLDERS[style]


def _quote(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _db_values(values: pd.Series, sqlite: bool) -> list[Any]:
    """A column as driver values: None for missing, datetimes in SQLAlchemy's SQLite format."""
    missing = values.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if not sqlite:
            return [
                None if gone else stamp.to_pydatetime()
                for stamp, gone in zip(values, missing, strict=True)
            ]
        text = np.datetime_as_string(values.to_numpy(dtype="datetime64[us]"), unit="us")
        as_list: list[Any] = np.char.replace(text, "T", " ").tolist()
    else:
        as_list = values.astype(object).tolist()
    if missing.any():
        for position in np.flatnonzero(missing):
            as_list[position] = None
    return as_list


def _tuples(connection: sa.Connection, frame: pd.DataFrame) -> Iterator[list[tuple[Any, ...]]]:
    sqlite = _is_sqlite(connection)
    for start in range(0, len(frame), BATCH_ROWS):
        chunk = frame.iloc[start : start + BATCH_ROWS]
        columns = [_db_values(chunk[c], sqlite) for c in chunk.columns]
        yield list(zip(*columns, strict=True))


def insert_rows(connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    """INSERT every row of `frame` (its columns named as the table's)."""
    if frame.empty:
        return
    names = ", ".join(_quote(connection, str(c)) for c in frame.columns)
    if connection.dialect.driver == "psycopg":
        # PostgreSQL's COPY, in this transaction: a large ingest takes half the time it does
        # with executemany.
        command = f"COPY {_quote(connection, table.name)} ({names}) FROM STDIN"
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(command) as copy:
            for rows in _tuples(connection, frame):
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join([_placeholder(connection)] * len(frame.columns))
    statement = f"INSERT INTO {_quote(connection, table.name)} ({names}) VALUES ({marks})"  # noqa: S608 - identifiers quoted, values bound
    for rows in _tuples(connection, frame):
        connection.exec_driver_sql(statement, rows)


def update_rows(connection: sa.Connection, table: sa.Table, key: str, frame: pd.DataFrame) -> None:
    """UPDATE the rows whose `key` matches, setting every other column of `frame`."""
    if frame.empty:
        return
    mark = _placeholder(connection)
    columns = [str(c) for c in frame.columns if c != key]
    assignments = ", ".join(f"{_quote(connection, c)} = {mark}" for c in columns)
    statement = (
        f"UPDATE {_quote(connection, table.name)} SET {assignments} "  # noqa: S608 - as above
        f"WHERE {_quote(connection, key)} = {mark}"
    )
    for rows in _tuples(connection, frame[[*columns, key]]):
        connection.exec_driver_sql(statement, rows)


def read_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    dates: Sequence[str] = (),
    where_in: tuple[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """SELECT columns (optionally WHERE column IN values, in batches) into a DataFrame."""
    names = ", ".join(_quote(connection, c) for c in columns)
    statement = f"SELECT {names} FROM {_quote(connection, table.name)}"  # noqa: S608 - as above
    # The driver's own cursor returns plain tuples; SQLAlchemy Row objects are slow to convert.
    cursor = connection.connection.cursor()
    try:
        if where_in is None:
            cursor.execute(statement)
            records = cursor.fetchall()
        else:
            column, values = where_in
            records = []
            for start in range(0, len(values), 500):
                batch = list(values[start : start + 500])
                marks = ", ".join([_placeholder(connection)] * len(batch))
                cursor.execute(
                    f"{statement} WHERE {_quote(connection, column)} IN ({marks})", tuple(batch)
                )
                records += cursor.fetchall()
    finally:
        cursor.close()
    frame = pd.DataFrame(records, columns=list(columns))
    for column in dates:
        frame[column] = pd.to_datetime(frame[column], format="ISO8601").astype("datetime64[ns]")
    return frame
