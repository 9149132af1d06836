"""Reading a canonical leads file for batch scoring: in chunks, checked row by row.

`LeadsFile` reads a CSV or Parquet file in chunks, each with the source line of its rows, and
says in words naming the file why it cannot when it cannot. `DuplicateIds` finds the lead ids
on more than one row in a first pass over `lead_id` alone. `RowChecks` splits a chunk into the
leads to score, typed as ingest types them, and the rejected rows with their reasons.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.contract import parse_datetimes
from scoring.errors import DataContractError, FunnelcastInputError, Problem
from scoring.features import FeatureSpec
from scoring.lead_scores import LeadScorer
from scoring.tables import MAX_LINE_BYTES, SOURCE_LINE, cut_problem, last_line_cut

CHUNK_ROWS = 50_000
FILE_SUFFIXES = (".csv", ".parquet")
_DATE_FORMAT = "ISO 8601 (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"
_OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}
# Columns of the canonical contract that are typed as stripped text (stage also lower-cased).
_IDENTIFIER_COLUMNS = ("stage", "owner", "account_id")

UInt64Array = npt.NDArray[np.uint64]
Reasons = npt.NDArray[np.object_]  # why each row of a chunk is rejected; "" when it is not


def check_suffix(path: Path, what: str) -> str:
    """The lower-cased suffix of a leads or scores file; only .csv and .parquet are read."""
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise FunnelcastInputError(
            f"{what} {path}: unsupported file type {suffix!r}; use .csv or .parquet"
        )
    return suffix


class LeadsFile:
    """A canonical leads file read in chunks of `chunk_rows`, each with its source lines.

    Raises `DataContractError` naming the file when it cannot be read: not found, not CSV or
    Parquet, not UTF-8 text, no `lead_id` column (or the wrong delimiter), malformed.
    """

    def __init__(self, path: Path, chunk_rows: int = CHUNK_ROWS) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.is_csv = check_suffix(path, "leads file") == ".csv"
        if not path.is_file():
            raise DataContractError(str(path), [Problem("file not found")])
        self.unit = "line" if self.is_csv else "row"
        self.columns = self._csv_header() if self.is_csv else self._parquet_columns()
        if "lead_id" not in self.columns:
            raise DataContractError(str(path), [self._no_lead_id()])
        if self.is_csv:
            self._check_complete()

    def _fail(self, message: str, rows: Iterable[int] = ()) -> DataContractError:
        return DataContractError(str(self.path), [Problem(message, rows=list(rows))], self.unit)

    def _csv_header(self) -> list[str]:
        with self.path.open("rb") as stream:
            first = stream.readline()
        if not first.strip():
            raise self._fail("the file is empty, or its first line (the header) is blank")
        try:
            text = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self._bad_bytes() from None
        if "\x00" in text:
            raise self._fail("binary data, not CSV text", rows=[1])
        return next(csv.reader([text]))

    def _check_complete(self) -> None:
        """Fail a file cut off in the middle of its last line (a truncated export)."""
        with self.path.open("rb") as stream:
            stream.seek(max(0, self.path.stat().st_size - MAX_LINE_BYTES))
            tail = stream.read()
        cut = last_line_cut(tail, len(self.columns), ",", "utf-8")
        if cut is not None:
            with self.path.open("rb") as stream:
                line = sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))
            problem = cut_problem(cut, len(self.columns), line + 1)
            raise DataContractError(str(self.path), [problem], self.unit)

    def _parquet_columns(self) -> list[str]:
        try:
            self._parquet = pq.ParquetFile(self.path)
        except Exception as error:  # pyarrow raises several unrelated types for a broken file
            raise self._fail(f"not a readable Parquet file ({type(error).__name__})") from None
        return list(self._parquet.schema_arrow.names)

    def _no_lead_id(self) -> Problem:
        if self.is_csv and len(self.columns) == 1:
            for delimiter, shown in _OTHER_DELIMITERS.items():
                if delimiter in self.columns[0]:
                    return Problem(
                        f"the header has a single column but contains {shown}: the file looks "
                        f"delimited by {shown}; canonical CSV is comma-delimited (or read it "
                        "with --mapping and declare `delimiter`)",
                        rows=[1],
                    )
        found = ", ".join(repr(c) for c in self.columns[:20]) or "none"
        return Problem(
            f"no lead_id column; the columns are: {found}", rows=[1] if self.is_csv else []
        )

    def _bad_bytes(self) -> DataContractError:
        """The first line that is not UTF-8 (a scan, on the error path only)."""
        with self.path.open("rb") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as error:
                    bad = line[error.start : error.start + 4]
                    return self._fail(
                        f"bytes that are not UTF-8 text at column {error.start + 1} ({bad!r}): "
                        "binary data, or a file saved in another encoding; save it as UTF-8 "
                        "CSV, or read it with --mapping and declare its `encoding`",
                        rows=[number],
                    )
        return self._fail("bytes that are not UTF-8 text")

    def lead_ids(self) -> Iterator[pd.Series]:
        """The `lead_id` column in chunks: the first pass. A CSV file is parsed whole here, so
        that a line with more fields than the header fails the file before anything is scored
        (reading only some columns, the parser would drop the extra fields silently)."""
        for frame in self.frames(None if self.is_csv else ["lead_id"]):
            yield frame["lead_id"]

    def frames(
        self, columns: Iterable[str] | None, categories: Iterable[str] = ()
    ) -> Iterator[pd.DataFrame]:
        """The file's `columns` (those present; None: all) in chunks, with `SOURCE_LINE`;
        Parquet text columns among `categories` come as pandas categories (from the file's
        dictionaries)."""
        wanted = (
            list(self.columns)
            if columns is None
            else [c for c in dict.fromkeys(columns) if c in self.columns]
        )
        first_line = 2 if self.is_csv else 1  # the header is line 1 of a CSV file
        batches = (
            self._csv_frames(None if columns is None else wanted)
            if self.is_csv
            else self._parquet_frames(wanted, [c for c in categories if c in wanted])
        )
        done = 0
        try:
            for frame in batches:
                frame = frame.reset_index(drop=True)
                frame[SOURCE_LINE] = np.arange(first_line + done, first_line + done + len(frame))
                done += len(frame)
                yield frame
        except UnicodeDecodeError:
            raise self._bad_bytes() from None
        except pd.errors.ParserError as error:
            raise self._fail(f"malformed CSV: {str(error).strip()}") from None
        except (pa.ArrowException, OSError) as error:
            raise self._fail(f"cannot be read ({type(error).__name__}: {error})") from None

    def _csv_frames(self, columns: list[str] | None) -> Iterator[pd.DataFrame]:
        yield from pd.read_csv(
            self.path,
            chunksize=self.chunk_rows,
            usecols=columns,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )

    def _parquet_frames(self, columns: list[str], categories: list[str]) -> Iterator[pd.DataFrame]:
        schema = self._parquet.schema_arrow
        text = [
            c
            for c in categories
            if pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
        ]
        # Dictionary-encoded text reads as pandas categories: the feature coding of three models
        # then looks up each distinct value once instead of hashing every row three times.
        parquet = pq.ParquetFile(self.path, read_dictionary=text) if text else self._parquet
        for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=columns):
            yield batch.to_pandas()


def identifier(values: pd.Series) -> pd.Series:
    """Stripped text, empty as missing (the contract's typing of ids)."""
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _id_hashes(ids: pd.Series) -> UInt64Array:
    return np.asarray(pd.util.hash_array(ids.to_numpy(dtype=object)), dtype=np.uint64)


@dataclass(frozen=True)
class DuplicateIds:
    """Hashes of the lead ids found on more than one row, with how many rows have each."""

    hashes: UInt64Array
    counts: npt.NDArray[np.int64]

    @classmethod
    def of(cls, ids: Iterable[pd.Series]) -> tuple[int, DuplicateIds]:
        """Rows seen and the duplicated ids among `ids` (chunks of a file's `lead_id`).

        Ids are compared by a 64-bit hash: a false "duplicate" needs two of them to collide,
        a chance of about 3 in a million in a file of 10 million leads."""
        rows, parts = 0, []
        for chunk in ids:
            rows += len(chunk)
            present = identifier(chunk).dropna()
            parts.append(_id_hashes(present))
        every = np.sort(np.concatenate(parts)) if parts else np.array([], dtype=np.uint64)
        repeated = every[1:][every[1:] == every[:-1]]
        del every
        values, counts = np.unique(repeated, return_counts=True)
        return rows, cls(values, counts.astype(np.int64) + 1)

    def count_of(self, ids: pd.Series) -> npt.NDArray[np.int64]:
        """Rows sharing each of `ids` (0 for an id that is unique)."""
        if self.hashes.size == 0:  # the common case: no id is hashed twice
            return np.zeros(len(ids), dtype=np.int64)
        hashes = _id_hashes(ids)
        position = np.clip(np.searchsorted(self.hashes, hashes), 0, self.hashes.size - 1)
        return np.where(self.hashes[position] == hashes, self.counts[position], 0)


def _feature_specs(scorer: LeadScorer) -> list[FeatureSpec]:
    specs = [scorer.conversion.feature_spec]
    cycle_spec = getattr(getattr(scorer.cycle, "design", None), "spec_", None)
    value_spec = getattr(scorer.value, "feature_spec_", None)
    return specs + [s for s in (cycle_spec, value_spec) if s is not None]


def _boolean_features(scorer: LeadScorer) -> set[str]:
    """Categorical features learned from true/false columns (levels "True"/"False"): ingest
    reads such a column as booleans, so "true" in a CSV file must become the level "True"."""
    names: set[str] = set()
    for spec in _feature_specs(scorer):
        for feature, levels in spec.categories_.items():
            known = {*levels, *spec.rare_levels_.get(feature, [])}
            if known & {"True", "False"} and not known & {"true", "false"}:
                names.add(feature)
    return names


def _as_boolean_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values
    text = values.astype("string").str.strip().str.lower()
    mapped = text.map({"true": "True", "false": "False"})
    return mapped.where(mapped.notna(), values.astype("string")).astype(object)


@dataclass(frozen=True)
class RowChecks:
    """How rows of one input are checked and typed before scoring."""

    features: frozenset[str]
    categorical_features: frozenset[str]
    boolean_features: frozenset[str]
    dated: bool  # created_at is checked and parsed (the deal-cycle model counts days from it)
    duplicates: DuplicateIds

    @classmethod
    def for_scorer(cls, scorer: LeadScorer, duplicates: DuplicateIds) -> RowChecks:
        """The checks of leads for `scorer`: its attributes, and dates when it scores timing."""
        categorical = {f for spec in _feature_specs(scorer) for f in spec.categories_}
        return cls(
            features=frozenset(scorer.attributes),
            categorical_features=frozenset(categorical),
            boolean_features=frozenset(_boolean_features(scorer)),
            dated=scorer.cycle is not None,
            duplicates=duplicates,
        )

    @property
    def columns(self) -> list[str]:
        return ["lead_id", *(["created_at"] if self.dated else []), *sorted(self.features)]

    def split(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The typed leads to score, and the rejected rows (`REJECT_COLUMNS`)."""
        ids = identifier(raw["lead_id"])
        reasons: Reasons = np.full(len(raw), "", dtype=object)
        missing = ids.isna().to_numpy()
        reasons[missing] = "lead_id is missing"
        present = ~missing
        sharing = np.zeros(len(raw), dtype=np.int64)
        sharing[present] = self.duplicates.count_of(ids[present])
        repeated = sharing > 1
        reasons[repeated] = [
            f"duplicate lead_id: {n:,} rows have it; none is scored" for n in sharing[repeated]
        ]
        leads = pd.DataFrame({"lead_id": ids}, index=raw.index)
        if self.dated:
            leads["created_at"] = self._dates(raw["created_at"], reasons)
        for column in self.features:
            if column in raw.columns:
                leads[column] = self._typed(column, raw[column])
        bad = reasons != ""
        rejects = pd.DataFrame(
            {
                "line": raw[SOURCE_LINE].to_numpy()[bad],
                "lead_id": raw["lead_id"].to_numpy()[bad],
                "reason": reasons[bad],
            }
        )
        good = leads[~bad] if bad.any() else leads
        good = good.reset_index(drop=True)
        good["lead_id"] = good["lead_id"].astype(str)
        return good, rejects

    @staticmethod
    def _dates(values: pd.Series, reasons: Reasons) -> pd.Series:
        parsed = parse_datetimes(values)
        absent = values.isna().to_numpy()
        wrong = ~absent & parsed.isna().to_numpy()
        _add_reason(reasons, absent, "created_at is missing (timing scores count from it)")
        if wrong.any():
            texts = [f"created_at {v!r} is not a date in {_DATE_FORMAT}" for v in values[wrong]]
            _add_reason(reasons, wrong, np.array(texts, dtype=object))
        return parsed

    def _typed(self, column: str, values: pd.Series) -> pd.Series:
        """A column as ingest types it; categorical features as pandas categories (the same
        levels, coded once for the three models instead of once per model)."""
        if column in _IDENTIFIER_COLUMNS:
            text = identifier(values)
            values = text.str.lower() if column == "stage" else text
            values = values.astype(object).where(values.notna(), None)
        elif column in self.boolean_features:
            values = _as_boolean_text(values)
        if column in self.categorical_features and not isinstance(
            values.dtype, pd.CategoricalDtype
        ):
            return values.astype("category")
        return values


def _add_reason(reasons: Reasons, mask: npt.NDArray[np.bool_], reason: str | Reasons) -> None:
    """Add `reason` to the rows of `mask` (after "; " where a row has one already)."""
    if not mask.any():
        return
    before = reasons[mask]
    reasons[mask] = before + np.where(before == "", "", "; ").astype(object) + reason
