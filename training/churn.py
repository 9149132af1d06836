"""Training and evaluation of `churn`: P(a customer churns within d days).

Split: a time cutoff. The model is fitted on the customers table as it stood at the cutoff
(customers who had started, churn after the cutoff not yet happened) and evaluated on the book
of customers active at the cutoff over the following window, which is what the product does
with it: score today's customers and see who leaves. Splitting by `started_at` instead would
evaluate only the newest customers, whose short follow-up holds few churns and no long tenures.

The window is `test_fraction` of the customer history, at least 90 days, and a full year when
the history spans two years or more (a 365-day prediction needs a 365-day window to be judged).

Metrics, for the model and for the `tenure_only` baseline (Kaplan-Meier by tenure, no
attributes), on the book at the cutoff:
- `concordance`: Harrell's C of P(churn within 365 days of the cutoff) against observed time
  to churn, censored customers compared only while observed; same-day pairs are not ranked.
- `brier`: IPCW Brier score of P(churn within H days of the cutoff), H = 365 when the window is
  a year long, else 90 (`brier_horizon_days` in the run's params; also in the split text).
- `calibration_error`: customer-weighted mean |predicted - observed| of P(churn within H days)
  over deciles of the prediction (observed: Kaplan-Meier within the decile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure

from scoring.churn import ChurnModel, FloatArray, churn_features, days_between, tenure_days
from scoring.funnel import Funnel
from training.result import Evaluation, ModelSkipped, TrainingResult
from training.survival_metrics import StepCurve, kaplan_meier

NAME = "churn"
RISK_DAYS = 365
MIN_WINDOW_DAYS = 90
MIN_HISTORY_DAYS = 90
# Fewer churns than this in the history leave the hazard model nothing to learn from; fewer in
# the window make concordance and Brier noise (a C-index from 10 churns has a SE near 0.05).
MIN_HISTORY_CHURNS = 30
MIN_WINDOW_CHURNS = 10
_DAY = pd.Timedelta(days=1)
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ChurnSplit:
    """History up to the cutoff (to fit on) and the book active at it (to evaluate on)."""

    cutoff: pd.Timestamp
    observed_until: pd.Timestamp
    history: pd.DataFrame  # customers as known at the cutoff
    book: pd.DataFrame  # customers active at the cutoff, with what happened to them later
    time: FloatArray  # days from the cutoff to churn, or to `observed_until`
    churned: BoolArray
    horizon_days: int  # of the Brier score

    def describe(self) -> str:
        window = (self.observed_until - self.cutoff) / _DAY
        return (
            f"time cutoff {self.cutoff:%Y-%m-%d}: fit on churn history before it, evaluate the "
            f"{len(self.book)} customers active then over the following {window:.0f} days; "
            f"Brier at {self.horizon_days} days"
        )


def split_customers(funnel: Funnel, *, test_fraction: float = 0.2) -> ChurnSplit:
    """The cutoff split of the module docstring.

    Raises:
        ModelSkipped: no customers table, no dates, too short a history or too few churns.
    """
    customers = funnel.customers
    if customers is None or customers.empty:
        raise ModelSkipped(f"{NAME} needs a customers table; {funnel.name} has none")
    if not funnel.dated or customers["started_at"].isna().all():
        raise ModelSkipped(f"{NAME} needs customer start dates; {funnel.name} has no dates")
    customers = customers[customers["started_at"].notna()]
    latest = customers[["started_at", "churned_at"]].max().max()
    observed_until = pd.Timestamp(funnel.observed_until or latest)
    span = (observed_until - customers["started_at"].min()) / _DAY
    window = max(test_fraction * span, MIN_WINDOW_DAYS)
    if span >= 2 * RISK_DAYS:
        window = max(window, RISK_DAYS)
    if span - window < MIN_HISTORY_DAYS:
        raise ModelSkipped(
            f"{NAME} needs {MIN_HISTORY_DAYS + MIN_WINDOW_DAYS} days of customer history to "
            f"fit and evaluate; {funnel.name} has {span:.0f}"
        )
    cutoff = observed_until - pd.Timedelta(days=window)
    started = customers[customers["started_at"] <= cutoff]
    history = started.assign(
        churned_at=started["churned_at"].where(started["churned_at"] <= cutoff)
    )
    book = started[~(started["churned_at"] <= cutoff)].reset_index(drop=True)
    days_after, churned = tenure_days(book.assign(started_at=cutoff), observed_until)
    history_churns, window_churns = int(history["churned_at"].notna().sum()), int(churned.sum())
    if history_churns < MIN_HISTORY_CHURNS or window_churns < MIN_WINDOW_CHURNS:
        raise ModelSkipped(
            f"{NAME} needs at least {MIN_HISTORY_CHURNS} churns before the cutoff "
            f"{cutoff:%Y-%m-%d} and {MIN_WINDOW_CHURNS} after it; {funnel.name} has "
            f"{history_churns} and {window_churns}"
        )
    return ChurnSplit(
        cutoff=cutoff,
        observed_until=observed_until,
        history=history.reset_index(drop=True),
        book=book,
        time=days_after,
        churned=churned,
        horizon_days=RISK_DAYS if window >= RISK_DAYS else MIN_WINDOW_DAYS,
    )


def harrell_concordance(time: FloatArray, churned: BoolArray, risk: FloatArray) -> float:
    """Harrell's C with censoring: of the pairs where one customer churned on an earlier day
    than the other was last seen, the share where the churner had the higher risk (ties 1/2).
    """
    day = np.floor(time)
    order = np.argsort(risk, kind="stable")
    sorted_risk = risk[order]
    below = np.searchsorted(sorted_risk, risk, side="left")
    up_to = np.searchsorted(sorted_risk, risk, side="right")
    concordant = comparable = 0.0
    # One pass per churn day: customers seen beyond that day, counted below each churner's risk.
    for churn_day in np.unique(day[churned]):
        cases = np.flatnonzero(churned & (day == churn_day))
        later = np.concatenate([[0.0], np.cumsum((day > churn_day)[order])])
        lower = later[below[cases]]
        concordant += float(np.sum(lower + 0.5 * (later[up_to[cases]] - lower)))
        comparable += len(cases) * later[-1]
    return float(concordant / comparable) if comparable > 0 else float("nan")


def ipcw_brier(
    time: FloatArray, churned: BoolArray, predicted: FloatArray, at_days: float
) -> float:
    """IPCW Brier score of P(churn within `at_days`) (Graf et al. 1999).

    Churned by `at_days`: weight 1/G(T-); still active at `at_days`: 1/G(at_days-), so customers
    censored exactly at the horizon (the end of the data) count as survivors; censored earlier:
    0. G is the Kaplan-Meier curve of the censoring time.
    """
    censoring = kaplan_meier(time, ~churned)
    gone = churned & (time <= at_days)
    alive = (time >= at_days) & ~gone
    weight = np.zeros(len(time))
    weight[gone] = _inverse(censoring.at(time[gone], left=True))
    weight[alive] = _inverse(censoring.at(np.array([at_days]), left=True))[0]
    return float(np.mean(weight * (gone - predicted) ** 2))


def _inverse(values: FloatArray) -> FloatArray:
    return np.divide(1.0, values, out=np.zeros_like(values), where=values > 0)


class TenureOnly:
    """Baseline: Kaplan-Meier churn curve by tenure, the same for every customer.

    Beyond the last tenure with 100 customers at risk the curve continues with the average
    hazard of the year (at most half the support) before it, as the model's pooled tail does.
    """

    def __init__(self, history: pd.DataFrame, cutoff: pd.Timestamp) -> None:
        days, churned = tenure_days(history, cutoff)
        self.curve: StepCurve = kaplan_meier(days, churned)
        ranked = np.sort(days)[::-1]
        self.support = float(ranked[min(99, len(ranked) - 1)])
        width = min(float(RISK_DAYS), self.support / 2)
        ends = np.log(
            np.maximum(self.curve.at(np.array([self.support - width, self.support])), 1e-12)
        )
        self.tail_hazard = float(ends[0] - ends[1]) / width if width > 0 else 0.0

    def survival(self, tenure: FloatArray) -> FloatArray:
        inside = self.curve.at(np.minimum(tenure, self.support))
        return np.asarray(inside * np.exp(-self.tail_hazard * np.maximum(tenure - self.support, 0)))

    def p_churn_within(self, tenure: FloatArray, days: float) -> FloatArray:
        start = np.maximum(self.survival(tenure), 1e-12)
        return np.asarray(1.0 - self.survival(tenure + days) / start)


def calibration_table(
    time: FloatArray, churned: BoolArray, predicted: FloatArray, at_days: float, bins: int = 10
) -> pd.DataFrame:
    """Per decile of `predicted`: customers, mean prediction, observed (Kaplan-Meier) churn."""
    ranks = np.argsort(np.argsort(predicted, kind="stable"), kind="stable")
    decile = ranks * bins // max(len(predicted), 1)
    rows = []
    for b in np.unique(decile):
        members = decile == b
        observed = 1.0 - kaplan_meier(time[members], churned[members]).at(np.array([at_days]))[0]
        rows.append((int(members.sum()), float(predicted[members].mean()), float(observed)))
    return pd.DataFrame(rows, columns=["customers", "predicted", "observed"])


def churn_metrics(
    split: ChurnSplit, risk: FloatArray, at_horizon: FloatArray
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics of the module docstring, and the calibration table they come with."""
    table = calibration_table(split.time, split.churned, at_horizon, split.horizon_days)
    gap = np.abs(table["predicted"] - table["observed"]) * table["customers"]
    return {
        "concordance": harrell_concordance(split.time, split.churned, risk),
        "brier": ipcw_brier(split.time, split.churned, at_horizon, split.horizon_days),
        "calibration_error": float(gap.sum() / table["customers"].sum()),
    }, table


def _predictions(model: ChurnModel, split: ChurnSplit) -> tuple[FloatArray, FloatArray]:
    curve = model.churn_curve(split.book, [RISK_DAYS, split.horizon_days], as_of=split.cutoff)
    return curve[:, 0], curve[:, 1]


def _evaluate(model: ChurnModel, split: ChurnSplit) -> tuple[Evaluation, dict[str, pd.DataFrame]]:
    metrics, table = churn_metrics(split, *_predictions(model, split))
    baseline = TenureOnly(split.history, split.cutoff)
    tenure = days_between(split.cutoff, split.book["started_at"])
    baseline_metrics, baseline_table = churn_metrics(
        split,
        baseline.p_churn_within(tenure, RISK_DAYS),
        baseline.p_churn_within(tenure, split.horizon_days),
    )
    evaluation = Evaluation(
        metrics=metrics,
        baselines={"tenure_only": baseline_metrics},
        split=split.describe(),
        rows={
            "train": len(split.history),
            "test": len(split.book),
            "train_churns": int(split.history["churned_at"].notna().sum()),
            "test_churns": int(split.churned.sum()),
        },
    )
    return evaluation, {"model": table, "tenure only": baseline_table}


def evaluate_churn(
    model: ChurnModel, funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """Evaluate a fitted model on the book at the cutoff (the baseline refit on the history).

    `seed` is accepted for the pipeline's common signature; the split is deterministic.
    """
    return _evaluate(model, split_customers(funnel, test_fraction=test_fraction))[0]


def train_churn(
    funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2, threads: int = 1
) -> TrainingResult:
    """Fit `churn` on the history before the cutoff and evaluate it (see module docstring)."""
    split = split_customers(funnel, test_fraction=test_fraction)
    features = churn_features(split.history)
    model = ChurnModel(features, seed=seed, n_threads=threads).fit(split.history, split.cutoff)
    evaluation, tables = _evaluate(model, split)
    params: dict[str, Any] = {
        "features": ",".join(model.features),
        "bucket_days": model.bucket_days,
        "n_trees": model.n_trees_,
        "pooled_from_bucket": model.last_bucket_,
        "customer_bucket_rows": model.n_rows_,
        "brier_horizon_days": split.horizon_days,
        "concordance_risk_days": RISK_DAYS,
    }
    return TrainingResult(
        name=NAME,
        model=model,
        evaluation=evaluation,
        params=params,
        figures={"churn_calibration.png": calibration_figure(tables, split.horizon_days)},
        limits=[
            f"Hazards beyond {model.last_bucket_ * model.bucket_days} days of tenure are pooled "
            "(the last tenure with enough customers at risk): long-tenure risk is extrapolated.",
            "Customer attributes are taken as known at the start and constant afterwards.",
            "Evaluated on customers active at the cutoff; customers who started later are not.",
        ],
        tags={"cutoff": str(split.cutoff), "split_kind": "time-cutoff"},
    )


def calibration_figure(tables: dict[str, pd.DataFrame], horizon_days: int) -> Figure:
    """Predicted vs observed churn within the horizon, by decile of each model's prediction."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.subplots()
    top = 0.0
    for name, table in tables.items():
        axes.plot(table["predicted"], table["observed"], marker="o", label=name)
        top = max(top, float(table[["predicted", "observed"]].to_numpy().max()))
    axes.plot([0, top], [0, top], color="black", linestyle="--", linewidth=1, label="ideal")
    axes.set(
        xlabel=f"predicted P(churn within {horizon_days} days)",
        ylabel="observed (Kaplan-Meier)",
        title="churn: calibration by decile on the book at the cutoff",
    )
    axes.legend()
    return figure
