"""Training and back-test of lead-volume (DESIGN §4: error vs seasonal naive, MASE).

Back-test: the history (first to last lead creation day) is cut at the month start nearest to
`1 - test_fraction` of it; a model is fitted on the days before the cutoff and forecasts every
complete month and ISO week after it. Metrics on those period totals: `mase` (mean absolute error
of the P50, scaled by the in-sample mean absolute error of the seasonal naive on the fitting
history, Hyndman's MASE; the gate reads `mase`), `mape`, `bias` (total P50 error over total
actual) and `coverage_80` (share of periods inside P10-P90); monthly under the plain names,
weekly with a `_week` suffix.

Candidates (DESIGN §4: the best in the run is the champion, baselines included): the count
regression `LeadVolumeModel` and the baseline `SeasonalNaiveVolume` (`scoring.lead_volume_naive`):
the same period one year back (12 months, 52 weeks) when the fitting history spans two years,
else the last period before the cutoff. The naive takes the latest observed value at a multiple
of its lag, never a held-out one; its P10-P90 widens with the square root of the seasons it
reaches back (Hyndman & Athanasopoulos, FPP3 §5.5), so its coverage is comparable. The naive is
registered when its MASE is lower monthly and weekly (`choose_champion`), else the regression;
the other's metrics are the registered one's baseline. Both answer the same requests, so the
API and the forecast engine take either.

The registered model is refit on the whole history; the metrics come from the back-test fit.
`evaluate_lead_volume` evaluates a given model the same way: a clone with the same
hyper-parameters is refit on the pre-cutoff history and forecasts the held-out periods, so a
model trained on everything (including the held-out periods) is never scored on what it saw,
and candidate and champion are compared on the same cutoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.base import clone

from scoring.funnel import Funnel
from scoring.lead_volume import (
    LeadVolumeModel,
    epoch_day,
    from_epoch_day,
    period_ends,
    period_starts,
)
from scoring.lead_volume_forecaster import VolumeForecaster
from scoring.lead_volume_naive import SEASON, SEASONAL_HISTORY_DAYS, SeasonalNaiveVolume
from scoring.periods import MICROS_PER_DAY, NAT_MICROS, Freq, to_micros
from training.result import Evaluation, ModelSkipped, TrainingResult

NAME = "lead-volume"
MIN_HISTORY_DAYS = 183  # about six months: less cannot show a trend apart from its noise
_MIN_FIT_DAYS = 122
COUNT_REGRESSION = LeadVolumeModel.kind
SEASONAL_NAIVE = SeasonalNaiveVolume.kind


@dataclass(frozen=True)
class Holdout:
    """Where the back-test cuts the history (days are dates, `cutoff` is the first held-out)."""

    first_day: date
    last_day: date
    cutoff: date

    @property
    def seasonal(self) -> bool:
        """Whether the fitting history spans two years, so a year-back naive is meaningful."""
        return (self.cutoff - self.first_day).days >= SEASONAL_HISTORY_DAYS

    def describe(self) -> str:
        naive = "the same period a year back" if self.seasonal else "the last period before it"
        return (
            f"back-test: fit on leads created {self.first_day} to {self.cutoff - timedelta(1)}, "
            f"forecast the complete months and weeks to {self.last_day}; "
            f"seasonal naive = {naive}"
        )


@dataclass(frozen=True)
class Backtest:
    """Held-out and fitting-history periods of one frequency, actuals and every candidate's
    forecasts (columns `{kind}_mean`, `{kind}_p10`, `{kind}_p50`, `{kind}_p90`)."""

    freq: Freq
    periods: pd.DataFrame  # period_start, actual, held_out, then the candidates' columns
    scale: float  # in-sample mean absolute error of the seasonal naive
    fitting_periods: int  # complete periods before the cutoff

    def metrics(self, kind: str, suffix: str) -> dict[str, float]:
        held = self.periods[self.periods["held_out"]]
        actual = held["actual"].to_numpy(np.float64)
        point = held[f"{kind}_p50"].to_numpy(np.float64)
        inside = (actual >= held[f"{kind}_p10"]) & (actual <= held[f"{kind}_p90"])
        error = np.abs(point - actual)
        positive = actual > 0
        return {
            f"mase{suffix}": float(error.mean() / self.scale) if self.scale > 0 else float("nan"),
            f"mape{suffix}": float((error[positive] / actual[positive]).mean()),
            f"bias{suffix}": float((point - actual).sum() / max(actual.sum(), 1.0)),
            f"coverage_80{suffix}": float(inside.mean()),
        }


def creation_days(funnel: Funnel) -> np.ndarray:
    """Epoch day of each dated lead's creation."""
    if not funnel.dated or "created_at" not in funnel.leads.columns:
        return np.zeros(0, dtype=np.int64)
    micros = to_micros(funnel.leads["created_at"])
    return np.asarray(micros[micros != NAT_MICROS] // MICROS_PER_DAY, dtype=np.int64)


def choose_holdout(funnel: Funnel, test_fraction: float) -> Holdout:
    """The back-test cutoff, or `ModelSkipped` when the data cannot support a lead forecast."""
    if not funnel.dated:
        raise ModelSkipped("lead-volume needs lead creation dates; this data set is undated")
    days = creation_days(funnel)
    if len(days) == 0:
        raise ModelSkipped("lead-volume needs lead creation dates; no lead has created_at")
    first, last = int(days.min()), int(days.max())
    if last - first + 1 < MIN_HISTORY_DAYS:
        raise ModelSkipped(
            f"lead-volume needs at least {MIN_HISTORY_DAYS} days of lead history to separate "
            f"trend from noise; leads span {last - first + 1} days"
        )
    # Cutoffs: month starts that leave four months (122 days) to fit on, and whose month is
    # complete in the data, so at least one whole month is held out; the nearest to the target.
    months = np.unique(period_starts(np.arange(first + _MIN_FIT_DAYS, last + 1), "month"))
    months = months[(months >= first + _MIN_FIT_DAYS) & (period_ends(months, "month") <= last)]
    if len(months) == 0:
        raise ModelSkipped(
            "lead-volume needs a complete month after four months of history to back-test on"
        )
    target = first + round((1 - test_fraction) * (last - first + 1))
    cutoff = int(months[np.argmin(np.abs(months - target))])
    return Holdout(from_epoch_day(first), from_epoch_day(last), from_epoch_day(cutoff))


def backtest(
    models: Mapping[str, VolumeForecaster[Any]], funnel: Funnel, holdout: Holdout, freq: Freq
) -> Backtest:
    """Fit a clone of each model before the cutoff and forecast the held-out periods of `freq`."""
    cutoff = epoch_day(holdout.cutoff)
    first, last = epoch_day(holdout.first_day), epoch_day(holdout.last_day)
    starts = np.unique(period_starts(np.arange(first, last + 1), freq))
    starts = starts[(starts >= first) & (period_ends(starts, freq) <= last)]  # complete periods
    seen, counts = np.unique(period_starts(creation_days(funnel), freq), return_counts=True)
    actual = pd.Series(counts, index=seen).reindex(starts, fill_value=0).to_numpy(np.int64)
    fitting, held = period_ends(starts, freq) < cutoff, starts >= cutoff
    frame = pd.DataFrame(
        {"period_start": starts.astype("datetime64[D]"), "actual": actual, "held_out": held}
    )
    request = pd.DataFrame({"period_start": frame["period_start"], "freq": freq})
    for kind, model in models.items():
        fitted = clone(model).fit(funnel, until=holdout.cutoff - timedelta(days=1))
        forecast = fitted.predict_frame(request)
        for column in ("mean", "p10", "p50", "p90"):
            frame[f"{kind}_{column}"] = np.where(
                held, forecast[column].to_numpy(np.float64), np.nan
            )
    lag = SEASON[freq] if holdout.seasonal else 1
    return Backtest(freq, frame, _naive_scale(actual[fitting], lag), int(fitting.sum()))


def _naive_scale(in_sample: np.ndarray, lag: int) -> float:
    """In-sample mean absolute error of the `lag`-period naive: the MASE scale."""
    errors = in_sample[lag:].astype(np.float64) - in_sample[:-lag]
    if len(errors) == 0:
        raise ModelSkipped(f"lead-volume: too few periods before the cutoff for a {lag}-lag naive")
    return float(np.abs(errors).mean())


def choose_champion(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """The count regression, unless the seasonal naive has the lower MASE both monthly (the
    gate's metric) and weekly: two or three held-out months alone can favour a repeat by luck,
    the four times as many weeks rarely do. A NaN MASE never wins."""
    naive, regression = metrics[SEASONAL_NAIVE], metrics[COUNT_REGRESSION]
    better = all(naive[m] < regression[m] for m in ("mase", "mase_week"))
    return SEASONAL_NAIVE if better else COUNT_REGRESSION


def _run(
    models: Mapping[str, VolumeForecaster[Any]], funnel: Funnel, test_fraction: float
) -> tuple[Holdout, list[Backtest], dict[str, dict[str, float]], dict[str, int]]:
    """The back-test of every model: the holdout, each frequency's run, metrics by kind, rows."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    holdout = choose_holdout(funnel, test_fraction)
    runs = [backtest(models, funnel, holdout, freq) for freq in ("month", "week")]
    metrics: dict[str, dict[str, float]] = {kind: {} for kind in models}
    rows = {"leads": len(creation_days(funnel))}
    for run, suffix in zip(runs, ("", "_week"), strict=True):
        for kind in models:
            metrics[kind] |= run.metrics(kind, suffix)
        rows[f"fitting_{run.freq}s"] = run.fitting_periods
        rows[f"held_out_{run.freq}s"] = int(run.periods["held_out"].sum())
    return holdout, runs, metrics, rows


def _recipes() -> dict[str, VolumeForecaster[Any]]:
    return {COUNT_REGRESSION: LeadVolumeModel(), SEASONAL_NAIVE: SeasonalNaiveVolume()}


def evaluate_lead_volume(
    model: VolumeForecaster[Any], funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """Back-test metrics of `model`'s recipe on `funnel` (module doc), next to the other
    candidate's.

    A clone with the same hyper-parameters is refit on the history before the cutoff, so a model
    registered after training on everything is judged only on periods its clone did not see.
    `seed` is accepted for a uniform interface: fitting and forecasting are deterministic.
    """
    models = {**_recipes(), model.kind: model}
    holdout, _, metrics, rows = _run(models, funnel, test_fraction)
    baselines = {kind: m for kind, m in metrics.items() if kind != model.kind}
    return Evaluation(metrics[model.kind], baselines, holdout.describe(), rows)


def train_lead_volume(
    funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> TrainingResult:
    """Back-test the count regression and the seasonal naive; the better by MASE is refit on the
    whole history for registration (DESIGN §4: baselines can be champions)."""
    recipes = _recipes()
    holdout, runs, metrics, rows = _run(recipes, funnel, test_fraction)
    kind = choose_champion(metrics)
    model = clone(recipes[kind]).fit(funnel)
    params = {
        "model_kind": kind,
        **recipes[kind].get_params(),
        "seed": seed,
        "test_fraction": test_fraction,
        "segment_columns_fitted": ",".join(model.segment_columns_),
    }
    if isinstance(model, LeadVolumeModel):
        design = model.total_.design
        params |= {
            "slope_change_sd": design.slope_change_sd,
            "level_change_sd": design.level_sd,
            "month_sd": design.month_sd,
            "months_with_effect": ",".join(map(str, design.months)),
        }
    tags = {
        "split": "time back-test",
        "cutoff": str(holdout.cutoff),
        "history_start": str(holdout.first_day),
        "history_end": str(holdout.last_day),
        "champion_kind": kind,
    }
    baselines = {other: m for other, m in metrics.items() if other != kind}
    return TrainingResult(
        name=NAME,
        model=model,
        evaluation=Evaluation(metrics[kind], baselines, holdout.describe(), rows),
        params=params,
        figures={"lead_volume_backtest.png": backtest_figure(runs, holdout, kind)},
        limits=_limits(model, holdout, metrics),
        tags=tags,
    )


def input_example(model: VolumeForecaster[Any]) -> pd.DataFrame:
    """A `predict_frame` request for MLflow: the next three months, and a segment's first."""
    months = model.forecast("month", 3)["period_start"]
    segment = model.segments[1] if len(model.segments) > 1 else "all"
    return pd.DataFrame(
        {
            "period_start": pd.to_datetime([*months, months[0]]),
            "freq": ["month"] * 4,
            "segment": ["all"] * 3 + [segment],
        }
    )


def _limits(
    model: VolumeForecaster[Any], holdout: Holdout, metrics: Mapping[str, Mapping[str, float]]
) -> list[str]:
    limits = [
        "The registered model is refit on the whole history; its metrics come from a fit on the "
        f"history before {holdout.cutoff}.",
    ]
    if isinstance(model, LeadVolumeModel):
        limits += [
            "The trend is extrapolated on the log scale (no damping): long horizons after a "
            "growth spurt can run high; the interval widens with the horizon.",
            "Segment forecasts are shares of the total with a trend in the share; a segment's "
            "own seasonality is not modelled and the share's estimation error is not in its "
            "interval.",
        ]
        missing = 12 - len(model.total_.design.months)
        if missing:
            limits.append(
                f"{missing} calendar months are covered fewer than twice by the history: they "
                "have no seasonal effect of their own."
            )
    else:
        regression = metrics[COUNT_REGRESSION]["mase"]
        limits += [
            f"The seasonal naive beat the count regression on the back-test (MASE "
            f"{metrics[SEASONAL_NAIVE]['mase']:.3f} against {regression:.3f}): the history "
            "gives the regression no trend or calendar it can extrapolate better than a repeat.",
            "No trend: every future period repeats a past one, so growth or decline after the "
            "history is missed; within a period, leads are spread evenly over its days.",
        ]
    if not holdout.seasonal:
        limits.append(
            "Less than two years before the cutoff: the seasonal naive is the last period, and "
            "MASE is scaled by its in-sample error."
        )
    return limits


def backtest_figure(runs: list[Backtest], holdout: Holdout, champion: str) -> Figure:
    """Actual leads per period against each candidate's back-test P50, and the champion's
    P10-P90 band."""
    figure = Figure(figsize=(10, 7), layout="constrained")
    kinds = [champion, *(k for k in (COUNT_REGRESSION, SEASONAL_NAIVE) if k != champion)]
    for axes, run in zip(figure.subplots(len(runs), 1), runs, strict=True):
        periods = run.periods
        x, held = periods["period_start"], periods["held_out"].to_numpy()
        axes.plot(x, periods["actual"], marker=".", color="black", label="actual")
        axes.fill_between(
            x[held],
            periods[f"{champion}_p10"][held],
            periods[f"{champion}_p90"][held],
            alpha=0.3,
            label=f"{champion} P10-P90",
        )
        for kind, style in zip(kinds, ("-", "--"), strict=False):
            label = f"{kind} P50" + (" (champion)" if kind == champion else "")
            axes.plot(x[held], periods[f"{kind}_p50"][held], ls=style, marker=".", label=label)
        axes.axvline(pd.Timestamp(holdout.cutoff), color="grey", lw=1)
        axes.set_title(f"new leads per {run.freq}: back-test from {holdout.cutoff}")
        axes.set_ylabel("leads")
        axes.legend(loc="upper left")
    return figure
