"""Batch scoring: a leads file in, the DESIGN §7 score columns out, in chunks of bounded memory.

A canonical leads file (CSV or Parquet) is read twice, and never whole: a first pass reads only
`lead_id` (to count the rows and find duplicate ids), the second reads the model's columns in
chunks, checks them, scores the good rows with `LeadScorer` and appends them to the output.
Memory is one chunk plus 8 bytes per lead (a hash of its id). Output goes to a temporary file
renamed at the end, so a failed run never leaves half a file under the output's name.

A row is rejected (written to `<out>.rejects.csv` with its line and the reason; the rest are
scored) when its `lead_id` is missing, when its `lead_id` appears on more than one row (none of
them is scored: which one is current is not for us to guess, and two output rows with one id
would break every join downstream), and, when the deal-cycle model scores timing, when its
`created_at` is missing or not a date. Everything else is scored as ingest types it: text in a
numeric attribute, or a category never seen in training, counts as not given.

A raw export read through a mapping is mapped in memory, exactly as `ingest` maps it; rows the
mapping's checks refuse are rejected the same way (with the mapping's own reason), and the
mapped leads are then scored in chunks like a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scoring.batch_input import (
    CHUNK_ROWS,
    DuplicateIds,
    LeadsFile,
    RowChecks,
    check_suffix,
)
from scoring.batch_output import RejectsWriter, ScoresWriter, TextCell, rejects_path
from scoring.champions import Champions, lead_scorer
from scoring.errors import DataContractError, FunnelcastInputError
from scoring.lead_scores import LeadScorer
from scoring.mapping import RuleReport, apply_mapping
from scoring.mapping_spec import DatasetMapping, Source
from scoring.tables import SOURCE_LINE, read_table

NO_CONVERSION_MODEL = "no lead-conversion champion; train one with `funnelcast train`"
_COUNT_PREFIX = re.compile(r"^\d[\d,]* rows?: ")
# A mapping's checks run in stages (outcomes, dates, contract): each pass can reject rows.
_MAPPING_PASSES = 5

# Leads scored at once. The deal-cycle model works on (leads x 182 days) arrays: at 5,000 leads
# they stay in the processor's cache, and the work around the predicts took 1.5x less time than
# at LeadScorer's 20,000 (bench/score.py's profile).
SCORE_LEADS = 5_000

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run writes and reports.

    Args:
        text_cell: applied to each text cell of CSV output and of the rejects file (the CLI
            neutralises spreadsheet formulas there).
        explain: add `reasons` (JSON text).
        chunk_rows: rows read, checked and scored at a time.
        progress: called with the rows done after each chunk.
        on_total: called once with the row count, before scoring starts.
    """

    text_cell: TextCell
    explain: bool = False
    chunk_rows: int = CHUNK_ROWS
    progress: Progress | None = None
    on_total: Callable[[int], None] | None = None


@dataclass
class BatchSummary:
    """What a batch run did."""

    scored: int
    rejected: int
    out: Path
    rejects: Path | None
    notes: list[str] = field(default_factory=list)
    reports: list[RuleReport] = field(default_factory=list)  # a mapping's rules, when mapped
    source_rows: int | None = None


def scorer_from_champions(champions: Champions) -> LeadScorer:
    """The scorer of the loaded champions; lead-conversion is required, the others optional."""
    scorer = lead_scorer(champions)
    if scorer is None:
        raise FunnelcastInputError(NO_CONVERSION_MODEL)
    return scorer


def timing_scorer(scorer: LeadScorer, has_dates: bool, notes: list[str]) -> LeadScorer:
    """`scorer`, without its deal-cycle model when the leads have no `created_at`."""
    if scorer.cycle is None or has_dates:
        return scorer
    notes.append(
        "the leads have no created_at: expected_days_to_close, p_won_30d and p_won_90d are "
        "left empty (the deal-cycle model counts days from creation)"
    )
    return LeadScorer(scorer.conversion, None, scorer.value, scorer.versions)


def scores_of(scorer: LeadScorer, leads: pd.DataFrame, explain: bool) -> pd.DataFrame:
    """`scorer.score_frame` in slices of `SCORE_LEADS`."""
    if len(leads) <= SCORE_LEADS:
        return scorer.score_frame(leads, explain=explain)
    parts = [
        scorer.score_frame(leads.iloc[begin : begin + SCORE_LEADS], explain=explain)
        for begin in range(0, len(leads), SCORE_LEADS)
    ]
    return pd.concat(parts, ignore_index=True)


def _score_chunks(
    scorer: LeadScorer,
    chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]],
    out: Path,
    options: BatchOptions,
) -> BatchSummary:
    """Score and write each (leads, rejects) chunk; commit both files only at the end."""
    scores = ScoresWriter(out, options.explain, options.text_cell)
    rejects = RejectsWriter(rejects_path(out), options.text_cell)
    try:
        for leads, rejected in chunks:
            if len(leads):
                scores.write(scores_of(scorer, leads, options.explain))
            rejects.write(rejected)
            if options.progress is not None:
                options.progress(len(leads) + len(rejected))
        scores.close()
    except BaseException:
        scores.discard()
        rejects.discard()
        raise
    rejects.commit()
    where = rejects.target if rejects.rows else None
    if scores.rows == 0:
        scores.discard()
        total = rejects.rows
        raise FunnelcastInputError(
            "no lead could be scored: the input has no leads"
            if total == 0
            else f"no lead could be scored: all {total:,} rows were rejected; see {where}"
        )
    scores.commit()
    return BatchSummary(scores.rows, rejects.rows, out, where)


def score_file(scorer: LeadScorer, path: Path, out: Path, options: BatchOptions) -> BatchSummary:
    """Score a canonical leads file (CSV or Parquet) into `out` (CSV or Parquet).

    Raises:
        DataContractError: the file is unreadable (nothing is written then).
        FunnelcastInputError: no row could be scored (the rejects file says why).
    """
    check_suffix(out, "--out")
    leads = LeadsFile(path, options.chunk_rows)
    notes: list[str] = []
    scorer = timing_scorer(scorer, "created_at" in leads.columns, notes)
    total, duplicates = DuplicateIds.of(leads.lead_ids())
    if options.on_total is not None:
        options.on_total(total)
    checks = RowChecks.for_scorer(scorer, duplicates)
    frames = leads.frames(checks.columns, checks.categorical_features)
    chunks = (checks.split(raw) for raw in frames)
    summary = _score_chunks(scorer, chunks, out, options)
    summary.notes = notes
    return summary


class _MappedSources:
    """Reads a mapping's file sources once each, leaving out the rejected lines of the main one."""

    def __init__(self, mapping: DatasetMapping, data_dir: Path) -> None:
        self.by_path: dict[Path, Source] = {
            data_dir / s.file: s for s in mapping.sources.values() if s.file is not None
        }
        main = mapping.sources[mapping.leads.from_]
        self.main = data_dir / main.file if main.file else None
        self.cache: dict[Path, pd.DataFrame] = {}
        self.rejected: dict[int, str] = {}

    def everything_rejected(self) -> bool:
        """Whether every row of the main table is rejected (so none is left to map)."""
        if self.main is None or self.main not in self.cache or not self.rejected:
            return False
        return len(self.read(self.main)) == 0

    def read(self, path: Path) -> pd.DataFrame:
        if path not in self.cache:
            source = self.by_path.get(path)
            options: dict[str, Any] = (
                {"delimiter": source.delimiter, "encoding": source.encoding} if source else {}
            )
            self.cache[path] = read_table(path, **options)
        frame = self.cache[path]
        if path == self.main and self.rejected:
            return frame[~frame[SOURCE_LINE].isin(list(self.rejected))].reset_index(drop=True)
        return frame


def _row_problems(error: DataContractError, where: str) -> dict[int, str] | None:
    """Reasons by source line when every problem of `error` names rows of the main table."""
    if error.source != where or not error.problems:
        return None
    reasons: dict[int, str] = {}
    for problem in error.problems:
        if not problem.rows:
            return None
        column = f"{problem.column}: " if problem.column else ""
        text = column + _COUNT_PREFIX.sub("", problem.message)
        for line in problem.rows:
            reasons[int(line)] = f"{reasons[int(line)]}; {text}" if int(line) in reasons else text
    return reasons


def _for_scoring(mapping: DatasetMapping, in_path: Path | None) -> DatasetMapping:
    """The mapping's leads part (stage events and customers play no part in a score), with
    `in_path` as its main table when given."""
    mapping = mapping.model_copy(update={"stage_events": None, "customers": None})
    if in_path is None:
        return mapping
    sources = dict(mapping.sources)
    main = sources[mapping.leads.from_]
    sources[mapping.leads.from_] = main.model_copy(update={"file": str(in_path), "sql": None})
    return mapping.model_copy(update={"sources": sources})


def score_mapped(
    scorer: LeadScorer,
    mapping: DatasetMapping,
    data_dir: Path,
    out: Path,
    options: BatchOptions,
    in_path: Path | None = None,
) -> BatchSummary:
    """Map a raw export in memory as `ingest` does (its main table replaced by `in_path` when
    given), then score the mapped leads in chunks into `out`. See `score_file`."""
    check_suffix(out, "--out")
    mapping = _for_scoring(mapping, in_path)
    main = mapping.sources[mapping.leads.from_]
    where = main.file if main.file else f"sql source {mapping.leads.from_!r}"
    sources = _MappedSources(mapping, data_dir)
    for _ in range(_MAPPING_PASSES):
        try:
            mapped = apply_mapping(mapping, data_dir, reader=sources.read)
            break
        except DataContractError as error:
            reasons = _row_problems(error, where)
            if reasons is None and sources.everything_rejected():
                # Writes the rejects, then says that nothing could be scored.
                no_leads = pd.DataFrame({"lead_id": pd.Series([], dtype=str)})
                _score_chunks(scorer, [(no_leads, _mapped_rejects(sources, mapping))], out, options)
            if reasons is None or sources.main is None:
                raise
            sources.rejected.update(reasons)
    else:
        raise FunnelcastInputError(
            f"{where}: the mapping keeps refusing rows; run ingest for details"
        )
    rejected = _mapped_rejects(sources, mapping)
    notes: list[str] = []
    leads = mapped.funnel.leads
    dated = mapped.funnel.dated and bool(leads["created_at"].notna().all())
    scorer = timing_scorer(scorer, dated, notes)
    if options.on_total is not None:
        options.on_total(len(leads) + len(rejected))
    columns = ["lead_id", "created_at", *sorted(scorer.attributes & set(leads.columns))]

    def chunks() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        yield leads.iloc[:0][columns], rejected
        for begin in range(0, len(leads), options.chunk_rows):
            yield leads.iloc[begin : begin + options.chunk_rows][columns], rejected.iloc[:0]

    summary = _score_chunks(scorer, chunks(), out, options)
    summary.notes, summary.reports, summary.source_rows = notes, mapped.reports, mapped.source_rows
    return summary


def _mapped_rejects(sources: _MappedSources, mapping: DatasetMapping) -> pd.DataFrame:
    lines = sorted(sources.rejected)
    ids: list[object] = [None] * len(lines)
    if sources.main is not None and lines:
        spec = mapping.leads
        column = spec.columns["lead_id"]
        raw = next((old for old, new in spec.rename.items() if new == column), column)
        frame = sources.cache[sources.main]
        if raw in frame.columns:
            by_line = frame.set_index(SOURCE_LINE)[raw]
            ids = [by_line.get(line) for line in lines]
    return pd.DataFrame(
        {"line": lines, "lead_id": ids, "reason": [sources.rejected[i] for i in lines]}
    )
