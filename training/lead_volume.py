"""Training and back-test of the lead-volume model (DESIGN §4: error vs seasonal naive, MASE).

Back-test: the history (first to last lead creation day) is cut at the month start nearest to
`1 - test_fraction` of it; a model is fitted on the days before the cutoff and forecasts every
complete month and ISO week after it. Metrics on those period totals: `mase` (mean absolute error
of the P50, scaled by the in-sample mean absolute error of the seasonal naive on the fitting
history, Hyndman's MASE; the gate reads `mase`), `mape`, `bias` (total P50 error over total
actual) and `coverage_80` (share of periods inside P10-P90); monthly under the plain names,
weekly with a `_week` suffix.

Baseline `seasonal_naive`: the same period one year back (12 months, 52 weeks) when the fitting
history spans two years, else the last period before the cutoff (one year of history cannot show
a season, and the year-back value would be the ramp-up of the data). It takes the latest
observed value at a multiple of its lag, never a held-out one. Its P10-P90 is the normal interval
of its in-sample errors, widened by the square root of the number of lags it reaches back
(Hyndman & Athanasopoulos, FPP3 §5.5), so its coverage is comparable.

The registered model is refit on the whole history; the metrics come from the back-test fit.
`evaluate_lead_volume` evaluates a given model the same way: a clone with the same
hyper-parameters is refit on the pre-cutoff history and forecasts the held-out periods, so a
model trained on everything (including the held-out periods) is never scored on what it saw,
and candidate and champion are compared on the same cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

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
from scoring.periods import MICROS_PER_DAY, NAT_MICROS, Freq, to_micros
from training.result import Evaluation, ModelSkipped, TrainingResult

NAME = "lead-volume"
MIN_HISTORY_DAYS = 183  # about six months: less cannot show a trend apart from its noise
_MIN_FIT_DAYS = 122
_SEASON = {"month": 12, "week": 52}
_Z80 = 1.2815515655446004  # standard normal 90 % quantile


@dataclass(frozen=True)
class Holdout:
    """Where the back-test cuts the history (days are dates, `cutoff` is the first held-out)."""

    first_day: date
    last_day: date
    cutoff: date

    @property
    def seasonal(self) -> bool:
        """Whether the fitting history spans two years, so a year-back naive is meaningful."""
        return (self.cutoff - self.first_day).days >= 730

    def describe(self) -> str:
        naive = "the same period a year back" if self.seasonal else "the last period before it"
        return (
            f"back-test: fit on leads created {self.first_day} to {self.cutoff - timedelta(1)}, "
            f"forecast the complete months and weeks to {self.last_day}; "
            f"seasonal naive = {naive}"
        )


@dataclass(frozen=True)
class Backtest:
    """Held-out and fitting-history periods of one frequency, actuals and forecasts."""

    freq: Freq
    periods: pd.DataFrame  # period_start, actual, held_out, mean, p10-p90, naive_p10-p90
    scale: float  # in-sample mean absolute error of the seasonal naive
    fitting_periods: int  # complete periods before the cutoff

    def metrics(self, prefix: str, suffix: str) -> dict[str, float]:
        held = self.periods[self.periods["held_out"]]
        actual = held["actual"].to_numpy(np.float64)
        point = held[f"{prefix}p50"].to_numpy(np.float64)
        inside = (actual >= held[f"{prefix}p10"]) & (actual <= held[f"{prefix}p90"])
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


def backtest(model: LeadVolumeModel, funnel: Funnel, holdout: Holdout, freq: Freq) -> Backtest:
    """Fit a clone of `model` before the cutoff and forecast the held-out periods of `freq`."""
    fitted: LeadVolumeModel = clone(model).fit(funnel, until=holdout.cutoff - timedelta(days=1))
    first, last = epoch_day(holdout.first_day), epoch_day(holdout.last_day)
    starts = np.unique(period_starts(np.arange(first, last + 1), freq))
    starts = starts[(starts >= first) & (period_ends(starts, freq) <= last)]  # complete periods
    seen, counts = np.unique(period_starts(creation_days(funnel), freq), return_counts=True)
    actual = pd.Series(counts, index=seen).reindex(starts, fill_value=0).to_numpy(np.int64)
    cutoff = epoch_day(holdout.cutoff)
    fitting, held = period_ends(starts, freq) < cutoff, starts >= cutoff
    frame = pd.DataFrame(
        {"period_start": starts.astype("datetime64[D]"), "actual": actual, "held_out": held}
    )
    lag = _SEASON[freq] if holdout.seasonal else 1
    naive, scale = _seasonal_naive(actual, fitting, held, lag)
    forecast = fitted.predict_frame(
        pd.DataFrame({"period_start": frame["period_start"], "freq": freq})
    )
    for column in ("mean", "p10", "p50", "p90"):
        frame[column] = np.where(held, forecast[column].to_numpy(np.float64), np.nan)
    frame = pd.concat([frame, naive], axis=1)
    return Backtest(freq, frame, scale, int(fitting.sum()))


def _seasonal_naive(
    actual: np.ndarray, fitting: np.ndarray, held: np.ndarray, lag: int
) -> tuple[pd.DataFrame, float]:
    """The baseline on the held-out periods, and its in-sample mean absolute error (the MASE
    scale). Its P50 is the latest fitting period at a multiple of `lag` back."""
    in_sample = actual[fitting].astype(np.float64)
    errors = in_sample[lag:] - in_sample[:-lag]
    if len(errors) == 0:
        raise ModelSkipped(f"lead-volume: too few periods before the cutoff for a {lag}-lag naive")
    index, last_fitting = np.arange(len(actual)), int(fitting.sum()) - 1
    steps = np.maximum(-(-(index - last_fitting) // lag), 1)
    point = np.where(held, actual[np.clip(index - steps * lag, 0, None)], np.nan)
    spread = _Z80 * float(np.sqrt(np.mean(errors**2))) * np.sqrt(steps)
    naive = pd.DataFrame(
        {"naive_p50": point, "naive_p10": point - spread, "naive_p90": point + spread}
    )
    return naive, float(np.abs(errors).mean())


def _run(
    model: LeadVolumeModel, funnel: Funnel, test_fraction: float
) -> tuple[Holdout, list[Backtest], Evaluation]:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    holdout = choose_holdout(funnel, test_fraction)
    runs = [backtest(model, funnel, holdout, freq) for freq in ("month", "week")]
    metrics: dict[str, float] = {}
    naive: dict[str, float] = {}
    rows = {"leads": len(creation_days(funnel))}
    for run, suffix in zip(runs, ("", "_week"), strict=True):
        metrics |= run.metrics("", suffix)
        naive |= run.metrics("naive_", suffix)
        rows[f"fitting_{run.freq}s"] = run.fitting_periods
        rows[f"held_out_{run.freq}s"] = int(run.periods["held_out"].sum())
    evaluation = Evaluation(metrics, {"seasonal_naive": naive}, holdout.describe(), rows)
    return holdout, runs, evaluation


def evaluate_lead_volume(
    model: LeadVolumeModel, funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """Back-test metrics of `model`'s recipe on `funnel` (module doc).

    A clone with the same hyper-parameters is refit on the history before the cutoff, so a model
    registered after training on everything is judged only on periods its clone did not see.
    `seed` is accepted for a uniform interface: fitting and forecasting are deterministic.
    """
    return _run(model, funnel, test_fraction)[2]


def train_lead_volume(
    funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> TrainingResult:
    """Back-test the lead-volume model, then refit it on the whole history for registration."""
    recipe = LeadVolumeModel()
    holdout, runs, evaluation = _run(recipe, funnel, test_fraction)
    model = clone(recipe).fit(funnel)
    design = model.total_.design
    params = {
        **recipe.get_params(),
        "seed": seed,
        "test_fraction": test_fraction,
        "segment_columns_fitted": ",".join(model.segment_columns_),
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
    }
    return TrainingResult(
        name=NAME,
        model=model,
        evaluation=evaluation,
        params=params,
        figures={"lead_volume_backtest.png": backtest_figure(runs, holdout)},
        limits=_limits(model, holdout),
        tags=tags,
    )


def input_example(model: LeadVolumeModel) -> pd.DataFrame:
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


def _limits(model: LeadVolumeModel, holdout: Holdout) -> list[str]:
    limits = [
        "The registered model is refit on the whole history; its metrics come from a fit on the "
        f"history before {holdout.cutoff}.",
        "The trend is extrapolated on the log scale (no damping): long horizons after a growth "
        "spurt can run high; the interval widens with the horizon.",
        "Segment forecasts are shares of the total with a trend in the share; a segment's own "
        "seasonality is not modelled and the share's estimation error is not in its interval.",
    ]
    missing = 12 - len(model.total_.design.months)
    if missing:
        limits.append(
            f"{missing} calendar months are covered fewer than twice by the history: they have no "
            "seasonal effect of their own."
        )
    if not holdout.seasonal:
        limits.append(
            "Less than two years before the cutoff: the seasonal naive baseline is the last "
            "period, and MASE is scaled by its in-sample error."
        )
    return limits


def backtest_figure(runs: list[Backtest], holdout: Holdout) -> Figure:
    """Actual leads per period against the back-test forecast, P10-P90 band and seasonal naive."""
    figure = Figure(figsize=(10, 7), layout="constrained")
    for axes, run in zip(figure.subplots(len(runs), 1), runs, strict=True):
        periods = run.periods
        x, held = periods["period_start"], periods["held_out"].to_numpy()
        axes.plot(x, periods["actual"], marker=".", color="black", label="actual")
        axes.fill_between(
            x[held], periods["p10"][held], periods["p90"][held], alpha=0.3, label="P10-P90"
        )
        axes.plot(x[held], periods["p50"][held], marker=".", label="forecast P50")
        axes.plot(x[held], periods["naive_p50"][held], ls="--", label="seasonal naive")
        axes.axvline(pd.Timestamp(holdout.cutoff), color="grey", lw=1)
        axes.set_title(f"new leads per {run.freq}: back-test from {holdout.cutoff}")
        axes.set_ylabel("leads")
        axes.legend(loc="upper left")
    return figure
