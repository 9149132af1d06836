"""Writing batch scores and rejects: chunk by chunk, under a temporary name renamed at the end."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.batch_input import check_suffix
from scoring.lead_scores import SCORE_COLUMNS

REJECT_COLUMNS = ("line", "lead_id", "reason")
REJECTS_SUFFIX = ".rejects.csv"

TextCell = Callable[[str], str]


def rejects_path(out: Path) -> Path:
    """Where the rejects of a run writing `out` go: `<out>.rejects.csv`, next to it."""
    return out.with_name(out.name + REJECTS_SUFFIX)


class _Staged:
    """A file written under a temporary name next to its target and renamed at the end."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def commit(self) -> None:
        self.temporary.replace(self.target)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


def _score_schema(explain: bool) -> pa.Schema:
    fields = [pa.field(name, pa.float64()) for name in SCORE_COLUMNS]
    fields[SCORE_COLUMNS.index("lead_id")] = pa.field("lead_id", pa.string())
    fields[SCORE_COLUMNS.index("score")] = pa.field("score", pa.int64())
    fields[SCORE_COLUMNS.index("grade")] = pa.field("grade", pa.string())
    if explain:
        fields.append(pa.field("reasons", pa.string()))
    return pa.schema(fields)


class ScoresWriter(_Staged):
    """The scores file, written chunk by chunk (Parquet row groups or appended CSV lines).

    CSV text cells go through `text_cell` (the CLI neutralises spreadsheet formulas there)."""

    def __init__(self, target: Path, explain: bool, text_cell: TextCell) -> None:
        super().__init__(target)
        self.is_csv = check_suffix(target, "--out") == ".csv"
        self.schema = _score_schema(explain)
        self.text_cell = text_cell
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv: IO[str] | None = None

    def write(self, scores: pd.DataFrame) -> None:
        if self.is_csv:
            self._write_csv(scores)
        else:
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.temporary, self.schema)
            table = pa.Table.from_pandas(scores, schema=self.schema, preserve_index=False)
            self._parquet.write_table(table)
        self.rows += len(scores)

    def _write_csv(self, scores: pd.DataFrame) -> None:
        first = self._csv is None
        if self._csv is None:
            self._csv = self.temporary.open("w", encoding="utf-8", newline="")
        scores = scores.copy()
        for column in ("lead_id", "reasons"):
            if column in scores.columns:
                scores[column] = scores[column].map(self.text_cell)
        scores.to_csv(self._csv, header=first, index=False, lineterminator="\n")

    def close(self) -> None:
        if self.rows == 0:
            self.write(pd.DataFrame({name: [] for name in self.schema.names}))
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()

    def discard(self) -> None:
        for handle in (self._parquet, self._csv):
            if handle is not None:
                handle.close()
        super().discard()


class RejectsWriter(_Staged):
    """`<out>.rejects.csv`: line, lead_id, reason; opened at the first rejected row."""

    def __init__(self, target: Path, text_cell: TextCell) -> None:
        super().__init__(target)
        self.text_cell = text_cell
        self.rows = 0
        self._stream: IO[str] | None = None

    def write(self, rejects: pd.DataFrame) -> None:
        if rejects.empty:
            return
        if self._stream is None:
            self._stream = self.temporary.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._stream, lineterminator="\n")
            self._writer.writerow(REJECT_COLUMNS)
        for line, lead_id, reason in rejects.itertuples(index=False):
            shown = "" if lead_id is None or pd.isna(lead_id) else self.text_cell(str(lead_id))
            self._writer.writerow([int(line), shown, self.text_cell(str(reason))])
        self.rows += len(rejects)

    def commit(self) -> None:
        if self._stream is None:
            self.target.unlink(missing_ok=True)  # a previous run's rejects would mislead
            return
        self._stream.close()
        super().commit()

    def discard(self) -> None:
        if self._stream is not None:
            self._stream.close()
        super().discard()
