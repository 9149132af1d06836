"""Training and evaluation of `deal-value`: the amount of a won deal, P10/P50/P90.

Data: won deals with a positive amount (a won deal without one, or with zero, tells nothing
about value; they are counted in `rows["excluded"]`). Dated data is split in time by *close*
date: the amount is booked when the deal is won, so "deals closed after the validation date" is
what a model fitted on the past meets next (a deal without a close date falls back to its
creation date). Undated data is split at random.

Metrics on the evaluation slice, for the model and for the `segment_median` baseline:
`mae` (of the P50, in money), `pinball_loss` (mean pinball loss of P10, P50 and P90, in money;
the gate's metric), `pinball_loss_log` (the same on log amounts, which no single large deal
dominates), `coverage_p10_p90` (share of deals inside P10-P90; 0.8 is the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import train_test_split

from scoring.deal_value import QUANTILES, DealValueModel, FloatArray, SegmentValueModel, ValueModel
from scoring.funnel import Funnel
from training.result import Evaluation, ModelSkipped, TrainingResult

NAME = "deal-value"
# Five folds of ten deals are the least that yields residual quantiles at 10 % and 90 % which
# are not just the extreme deals; the evaluation slice then holds at least ten deals.
MIN_WON_DEALS = 50


@dataclass(frozen=True)
class ValueSplit:
    """Won deals with an amount, split for fitting and evaluation."""

    train: pd.DataFrame
    test: pd.DataFrame
    excluded: int  # won deals without a positive amount
    description: str
    validation_date: pd.Timestamp | None = None


def split_won_deals(funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2) -> ValueSplit:
    """Won deals with a positive amount: the last `test_fraction` by close date, or at random.

    Raises:
        ModelSkipped: the data has no amounts or fewer than `MIN_WON_DEALS` won deals with one.
    """
    leads = funnel.leads
    won = leads[leads["outcome"] == "won"]
    if "amount" not in leads or won["amount"].isna().all():
        raise ModelSkipped(f"{NAME} needs deal amounts; the won deals of {funnel.name} have none")
    has_amount = (won["amount"] > 0).fillna(False).to_numpy(dtype=bool)
    deals = won[has_amount].reset_index(drop=True)
    if len(deals) < MIN_WON_DEALS:
        raise ModelSkipped(
            f"{NAME} needs at least {MIN_WON_DEALS} won deals with an amount; "
            f"{funnel.name} has {len(deals)}"
        )
    excluded = len(won) - len(deals)
    if not funnel.dated:
        train, test = train_test_split(
            np.arange(len(deals)), test_size=test_fraction, random_state=seed
        )
        return ValueSplit(
            deals.iloc[np.sort(train)],
            deals.iloc[np.sort(test)],
            excluded,
            "random split of won deals (the data has no dates)",
        )
    booked = deals["closed_at"].fillna(deals["created_at"])
    validation_date = pd.Timestamp(
        np.quantile(booked.to_numpy().astype("int64"), 1 - test_fraction)
    )
    is_test = (booked >= validation_date).to_numpy()
    return ValueSplit(
        deals[~is_test],
        deals[is_test],
        excluded,
        f"time split: fit on deals won before {validation_date}, evaluate those won after",
        validation_date,
    )


def pinball_loss(actual: FloatArray, predicted: FloatArray, levels: Sequence[float]) -> float:
    """Mean pinball (quantile) loss over `levels`; `predicted` has one column per level."""
    error = actual[:, None] - predicted
    level = np.asarray(levels)[None, :]
    return float(np.mean(np.maximum(level * error, (level - 1) * error)))


def value_metrics(amount: FloatArray, quantiles: FloatArray) -> dict[str, float]:
    """Metrics of P10/P50/P90 predictions (`quantiles`: one column per level of QUANTILES)."""
    median = quantiles[:, QUANTILES.index(0.5)]
    inside = (amount >= quantiles[:, 0]) & (amount <= quantiles[:, -1])
    return {
        "mae": float(np.mean(np.abs(amount - median))),
        "pinball_loss": pinball_loss(amount, quantiles, QUANTILES),
        "pinball_loss_log": pinball_loss(np.log(amount), np.log(quantiles), QUANTILES),
        "coverage_p10_p90": float(np.mean(inside)),
    }


def _metrics(model: ValueModel, deals: pd.DataFrame) -> dict[str, float]:
    return value_metrics(deals["amount"].to_numpy(dtype=float), model.predict_quantiles(deals))


def _evaluation(
    metrics: dict[str, float], baselines: dict[str, dict[str, float]], split: ValueSplit
) -> Evaluation:
    return Evaluation(
        metrics=metrics,
        baselines=baselines,
        split=split.description,
        rows={"train": len(split.train), "test": len(split.test), "excluded": split.excluded},
    )


def evaluate_deal_value(
    model: ValueModel, funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """Evaluate a fitted model on the evaluation slice, next to the baseline refit on training."""
    split = split_won_deals(funnel, seed=seed, test_fraction=test_fraction)
    baseline = SegmentValueModel(funnel.features).fit(split.train)
    return _evaluation(
        _metrics(model, split.test), {"segment_median": _metrics(baseline, split.test)}, split
    )


def train_deal_value(
    funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2, threads: int = 1
) -> TrainingResult:
    """Fit `deal-value` on the training slice and evaluate it (see module docstring).

    The candidate is the better of LightGBM and the segment median on the evaluation slice's
    pinball loss (DESIGN §4: baselines can be champions); the other is reported as a baseline.
    """
    split = split_won_deals(funnel, seed=seed, test_fraction=test_fraction)
    lightgbm = DealValueModel(funnel.features, seed=seed, n_threads=threads).fit(split.train)
    baseline = SegmentValueModel(funnel.features).fit(split.train)
    scores = {"lightgbm": _metrics(lightgbm, split.test)}
    scores["segment_median"] = _metrics(baseline, split.test)
    chosen = "segment_median" if _baseline_wins(scores) else "lightgbm"
    model: ValueModel = baseline if chosen == "segment_median" else lightgbm
    params: dict[str, Any] = {
        "model_kind": chosen,
        "features": ",".join(funnel.features),
        "n_trees": lightgbm.n_trees_,
        "n_folds": lightgbm.n_folds_,
        "learning_rate": lightgbm.learning_rate,
        "min_child_samples": lightgbm.min_child_samples_,
        "residual_log_p10": float(lightgbm.residual_quantile([0.1])[0]),
        "residual_log_p90": float(lightgbm.residual_quantile([0.9])[0]),
        "smearing_factor": lightgbm.smearing_,
        "segment_column": baseline.column_ or "(overall)",
    }
    tags = {"split_kind": "time" if split.validation_date is not None else "random"}
    if split.validation_date is not None:
        tags["validation_date"] = str(split.validation_date)
    limits = [
        "Fitted on won deals only: it predicts the amount a deal books if it is won.",
        f"Won deals without a positive amount are left out ({split.excluded} here).",
    ]
    if chosen == "lightgbm":
        limits.insert(
            0,
            "The P10-P90 width is the same on the log scale for every deal (a constant "
            "coefficient of variation): segments with more erratic amounts get intervals that "
            "are too narrow, steadier ones intervals that are too wide.",
        )
    else:
        limits.insert(
            0,
            f"The segment median ({params['segment_column']}) beat LightGBM on pinball loss, "
            "so it is the candidate: amounts are the training quantiles of the lead's segment.",
        )
    return TrainingResult(
        name=NAME,
        model=model,
        evaluation=_evaluation(scores[chosen], scores, split),
        params=params,
        figures={"value_interval_coverage.png": coverage_figure(lightgbm, baseline, split.test)},
        limits=limits,
        tags=tags,
    )


def _baseline_wins(scores: dict[str, dict[str, float]]) -> bool:
    return scores["segment_median"]["pinball_loss"] < scores["lightgbm"]["pinball_loss"]


def coverage_figure(
    model: DealValueModel, baseline: SegmentValueModel, deals: pd.DataFrame
) -> Figure:
    """P10-P90 coverage by decile of predicted P50, and predicted vs actual with intervals."""
    amount = deals["amount"].to_numpy(dtype=float)
    predicted = model.predict_quantiles(deals)
    decile = pd.qcut(predicted[:, 1], 10, labels=False, duplicates="drop")
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    bands_of = (
        ("LightGBM", predicted, -0.2),
        ("segment median", baseline.predict_quantiles(deals), 0.2),
    )
    for name, bands, offset in bands_of:
        inside = (amount >= bands[:, 0]) & (amount <= bands[:, 2])
        share = pd.Series(inside).groupby(decile).mean()
        left.bar(share.index + offset, share.to_numpy(), width=0.4, label=name)
    left.axhline(0.8, color="black", linestyle="--", label="target 0.8")
    left.set(xlabel="decile of LightGBM's P50", ylabel="share inside P10-P90", ylim=(0, 1))
    left.legend(loc="lower center", ncols=3, fontsize="small")
    shown = np.random.default_rng(0).permutation(len(deals))[:300]
    errors = np.abs(predicted[shown][:, [0, 2]].T - predicted[shown, 1])
    right.errorbar(predicted[shown, 1], amount[shown], xerr=errors, fmt="o", ms=3, alpha=0.4)
    limits = [amount.min(), amount.max()]
    right.plot(limits, limits, color="black", linewidth=1)
    right.set(xscale="log", yscale="log", xlabel="LightGBM P50 (bars: P10-P90)", ylabel="amount")
    figure.suptitle("deal-value: interval coverage on the evaluation slice")
    return figure
