"""Back-test results: one run per (cutoff, period, KPI), their scores, JSON and a text report.

Scores per KPI and method (`funnelcast`, whose point is the forecast's P50, and the baselines of
`training.backtest_baselines`), over the runs with a non-null, non-zero actual and a point:

- `mape`: mean of |point - actual| / |actual|;
- `bias`: mean of (point - actual) / |actual|, signed: positive means over-forecast;
- `coverage` (funnelcast only): share of the runs with an actual and a P10-P90 interval whose
  actual lies in [P10, P90] (a zero actual counts here: an interval can cover it);
- `n`: runs counted by `mape` and `bias`; `n_coverage`: runs counted by `coverage`.

A field is None when no run counts. The JSON layout is DESIGN §7's `backtest --format json`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from training.backtest_baselines import BASELINE_METHODS

__all__ = [
    "FORECAST_KEYS",
    "FUNNELCAST",
    "METHODS",
    "BacktestRun",
    "backtest_json",
    "backtest_table",
    "summarise",
]

FUNNELCAST = "funnelcast"
METHODS = (FUNNELCAST, *BASELINE_METHODS)
FORECAST_KEYS = ("mean", "p10", "p50", "p90")

Score = dict[str, float | int | None]


@dataclass(frozen=True)
class BacktestRun:
    """One forecast replayed from a past cutoff, with what happened and the baselines.

    `forecast` has the keys `FORECAST_KEYS` (a value may be None when the engine has none);
    `baselines` has keys among `BASELINE_METHODS` (a missing one counts as None).
    """

    cutoff: date
    period_start: date
    period_end: date
    kpi: str
    actual: float | None
    forecast: Mapping[str, float | None]
    baselines: Mapping[str, float | None]

    def __post_init__(self) -> None:
        missing = [key for key in FORECAST_KEYS if key not in self.forecast]
        if missing:
            raise ValueError(f"forecast of {self.kpi} lacks {', '.join(missing)}")
        unknown = [name for name in self.baselines if name not in BASELINE_METHODS]
        if unknown:
            raise ValueError(
                f"unknown baseline {', '.join(map(repr, unknown))}; "
                f"use: {', '.join(BASELINE_METHODS)}"
            )
        if self.period_end < self.period_start:
            raise ValueError(f"period ends on {self.period_end} before it starts")

    def point(self, method: str) -> float | None:
        """The method's point forecast: the P50 for funnelcast, else the baseline's value."""
        if method == FUNNELCAST:
            return _finite(self.forecast.get("p50"))
        return _finite(self.baselines.get(method))

    def as_json(self) -> dict[str, object]:
        """The run in DESIGN §7's layout: ISO dates, None for missing or non-finite numbers."""
        return {
            "cutoff": self.cutoff.isoformat(),
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "kpi": self.kpi,
            "actual": _finite(self.actual),
            "forecast": {key: _finite(self.forecast.get(key)) for key in FORECAST_KEYS},
            "baselines": {name: _finite(self.baselines.get(name)) for name in BASELINE_METHODS},
        }


def summarise(runs: Iterable[BacktestRun]) -> dict[str, dict[str, Score]]:
    """{kpi: {method: {"mape", "bias", "coverage", "n", "n_coverage"}}}, KPIs in run order."""
    by_kpi: dict[str, list[BacktestRun]] = {}
    for run in runs:
        by_kpi.setdefault(run.kpi, []).append(run)
    return {
        kpi: {method: _score(kpi_runs, method) for method in METHODS}
        for kpi, kpi_runs in by_kpi.items()
    }


def backtest_json(runs: Sequence[BacktestRun]) -> dict[str, object]:
    """`{"runs": [...], "summary": {...}}` (DESIGN §7), every number finite or None."""
    return {"runs": [run.as_json() for run in runs], "summary": summarise(runs)}


def backtest_table(runs: Sequence[BacktestRun]) -> str:
    """A plain-text report: one line per run, then each KPI's scores and who wins on MAPE."""
    header = ["cutoff", "period", "kpi", "actual", "P10", "P50", "P90", *BASELINE_METHODS]
    rows = [header]
    for run in runs:
        rows.append(
            [
                run.cutoff.isoformat(),
                f"{run.period_start.isoformat()}..{run.period_end.isoformat()}",
                run.kpi,
                _number(run.actual),
                *(_number(run.forecast.get(key)) for key in ("p10", "p50", "p90")),
                *(_number(run.baselines.get(name)) for name in BASELINE_METHODS),
            ]
        )
    lines = ["Back-test runs", *_aligned(rows), ""]
    summary = summarise(runs)
    lines.append("Summary (point = P50 for funnelcast; * marks the lowest MAPE)")
    for kpi, scores in summary.items():
        lines.append("")
        lines.extend(_kpi_summary(kpi, scores))
    return "\n".join(lines) + "\n"


def _score(runs: Sequence[BacktestRun], method: str) -> Score:
    errors = [
        (point - actual) / abs(actual)
        for run in runs
        for actual, point in [(_finite(run.actual), run.point(method))]
        if actual is not None and actual != 0 and point is not None
    ]
    covered = [_covers(run) for run in runs] if method == FUNNELCAST else []
    counted = [hit for hit in covered if hit is not None]
    return {
        "mape": _mean([abs(error) for error in errors]),
        "bias": _mean(errors),
        "coverage": _mean([1.0 if hit else 0.0 for hit in counted]),
        "n": len(errors),
        "n_coverage": len(counted),
    }


def _covers(run: BacktestRun) -> bool | None:
    """Whether the actual lies in [P10, P90]; None when either side is unknown."""
    actual = _finite(run.actual)
    low, high = _finite(run.forecast.get("p10")), _finite(run.forecast.get("p90"))
    if actual is None or low is None or high is None:
        return None
    return low <= actual <= high


def _kpi_summary(kpi: str, scores: Mapping[str, Score]) -> list[str]:
    mapes = {method: score["mape"] for method, score in scores.items() if score["mape"] is not None}
    best = min(mapes.values(), default=None)
    rows = [["", "method", "MAPE", "bias", "coverage", "n"]]
    for method, score in scores.items():
        mark = "*" if best is not None and score["mape"] == best else ""
        rows.append(
            [
                mark,
                method,
                _ratio(score["mape"]),
                _ratio(score["bias"], signed=True),
                _ratio(score["coverage"]),
                str(score["n"]),
            ]
        )
    lines = [f"{kpi}:", *("  " + line for line in _aligned(rows))]
    ours = mapes.get(FUNNELCAST)
    if ours is None:
        lines.append(f"  funnelcast has no MAPE on {kpi}: no run with a non-zero actual and a P50")
        return lines
    winners = sorted(
        (mape, method) for method, mape in mapes.items() if method != FUNNELCAST and mape < ours
    )
    for mape, method in winners:
        runs_note = ""
        if scores[method]["n"] != scores[FUNNELCAST]["n"]:
            runs_note = f" (over {scores[FUNNELCAST]['n']} vs {scores[method]['n']} runs)"
        lines.append(
            f"  funnelcast loses to {method} on {kpi}: MAPE {ours:.2f} vs {mape:.2f}{runs_note}"
        )
    if not winners:
        lines.append(f"  funnelcast beats or ties every baseline with a MAPE on {kpi}")
    return lines


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell: text left, numbers right."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if _numeric(cell) else cell.ljust(width)
            for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def _numeric(cell: str) -> bool:
    if cell == "-":
        return True
    try:
        float(cell.replace(",", ""))
    except ValueError:
        return False
    return True


def _number(value: float | None) -> str:
    number = _finite(value)
    if number is None:
        return "-"
    if abs(number) >= 1000 or number.is_integer():
        return f"{number:,.0f}"
    return f"{number:.4g}"


def _ratio(value: float | int | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _finite(value: object) -> float | None:
    """A plain float, or None for missing and non-finite values (JSON has no NaN)."""
    if not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
