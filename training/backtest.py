"""The back-test (DESIGN §5): replay past cutoffs, refit, forecast, and compare with what happened.

At each cutoff the funnel is rebuilt as it stood then (`funnel_at_cutoff`), every forecast model
is refitted on that alone (`fit_models`, no registry), and the engine forecasts the next periods
from it. Each (cutoff, period, KPI) becomes a `BacktestRun` holding the actual (from the whole
funnel), the forecast's mean and P10/P50/P90, and the three baselines, all from the same cutoff.
The run is logged to MLflow: parameters, the summary as metrics, and the JSON as an artifact.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import numpy as np

from scoring.errors import FunnelcastInputError
from scoring.forecast import forecast, forecast_models
from scoring.funnel import Funnel
from scoring.periods import Freq
from training.backtest_baselines import (
    CutoffBaselines,
    actual_kpis,
    cutoff_moment,
    funnel_at_cutoff,
    future_periods,
)
from training.backtest_report import BacktestRun, backtest_json
from training.pipeline import fit_models

FORECAST_MODELS = ("lead-conversion", "deal-cycle", "deal-value", "lead-volume", "churn")
DEFAULT_KPIS = ("won_revenue", "won_deals", "lead_count", "win_rate")


@dataclass(frozen=True)
class BacktestSettings:
    freq: Freq = "month"
    periods: int = 1
    kpis: tuple[str, ...] = DEFAULT_KPIS
    segment: Mapping[str, str] | None = None
    draws: int = 2000
    seed: int = 0
    threads: int | None = None


@dataclass(frozen=True)
class Backtest:
    """Every (cutoff, period, KPI) run, notes (models skipped, what the engine left out), and
    the forecast's draws of each run, by (cutoff, period start, KPI)."""

    runs: list[BacktestRun]
    notes: list[str]
    draws: dict[tuple[date, date, str], np.ndarray]


def run_backtest(
    funnel: Funnel,
    cutoffs: Sequence[date],
    settings: BacktestSettings,
    progress: Callable[[str], None] | None = None,
) -> Backtest:
    """Refit and forecast at every cutoff; compare with the actuals and the baselines."""
    if not funnel.dated:
        raise FunnelcastInputError("a back-test needs dated data; this data set has no dates")
    if not cutoffs:
        raise FunnelcastInputError("give at least one cutoff date")
    runs: list[BacktestRun] = []
    notes: list[str] = []
    kept: dict[tuple[date, date, str], np.ndarray] = {}
    for cutoff in sorted(cutoffs):
        known = funnel_at_cutoff(funnel, cutoff)
        if progress:
            progress(f"cutoff {cutoff}: refitting on {len(known.leads):,} leads known then")
        models, skipped = fit_models(
            known, FORECAST_MODELS, seed=settings.seed, threads=settings.threads, final=True
        )
        notes += [f"cutoff {cutoff}: {name} not fitted: {why}" for name, why in skipped.items()]
        result = forecast(
            funnel,
            forecast_models(models, {}),
            freq=settings.freq,
            periods=settings.periods,
            as_of=cutoff_moment(funnel, cutoff),
            segment=settings.segment,
            draws=settings.draws,
            seed=settings.seed,
        )
        notes += [f"cutoff {cutoff}: {note}" for note in result.notes]
        periods = future_periods(cutoff, settings.freq, settings.periods)
        if [start for start, _ in periods] != list(result.timeline.starts):
            raise AssertionError(f"forecast periods {result.timeline.starts} != {periods}")
        base = CutoffBaselines.at(funnel, cutoff, settings.freq, settings.segment)
        for index, (start, end) in enumerate(periods):
            actual = actual_kpis(funnel, start, end, settings.kpis, settings.segment)
            reference = base.for_period(start, end, settings.kpis)
            for kpi in settings.kpis:
                kept[(cutoff, start, kpi)] = result.draws[kpi][:, index]
                runs.append(
                    BacktestRun(
                        cutoff=cutoff,
                        period_start=start,
                        period_end=end,
                        kpi=kpi,
                        actual=actual[kpi],
                        forecast=_figures(result.draws[kpi][:, index]),
                        baselines=reference[kpi],
                    )
                )
    return Backtest(runs, notes, kept)


def _figures(draws: np.ndarray) -> dict[str, float | None]:
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return {"mean": None, "p10": None, "p50": None, "p90": None}
    p10, p50, p90 = np.quantile(finite, [0.1, 0.5, 0.9])
    return {"mean": float(finite.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def log_backtest(
    runs: Sequence[BacktestRun],
    cutoffs: Sequence[date],
    settings: BacktestSettings,
    dataset: str,
) -> str:
    """Log the back-test as an MLflow run (the tracking URI must be configured); its run id."""
    report = backtest_json(runs)
    with mlflow.start_run(run_name=f"backtest {dataset}") as run:
        mlflow.set_tags({"kind": "backtest", "dataset": dataset})
        mlflow.log_params(
            {
                "cutoffs": ",".join(c.isoformat() for c in cutoffs),
                "freq": settings.freq,
                "periods": settings.periods,
                "kpis": ",".join(settings.kpis),
                "segment": json.dumps(dict(settings.segment or {})),
                "draws": settings.draws,
                "seed": settings.seed,
            }
        )
        metrics: dict[str, float] = {}
        summary = report["summary"]
        assert isinstance(summary, dict)
        for kpi, methods in summary.items():
            for method, scores in methods.items():
                for name in ("mape", "bias", "coverage"):
                    value = scores.get(name)
                    if value is not None:
                        metrics[f"{kpi}.{method}.{name}"] = float(value)
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "backtest.json"
            path.write_text(json.dumps(report, indent=2), encoding="utf-8")
            mlflow.log_artifact(str(path))
        return str(run.info.run_id)
