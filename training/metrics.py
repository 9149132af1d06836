"""Metrics of a lead-conversion model on evaluation leads (DESIGN §4), and data for its plots.

Every function takes the observed labels `y` (1 = won within the horizon) and predicted
probabilities `p` of the same leads. They are meant for held-out leads only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

CALIBRATION_BINS = 10
TOP_SHARE = 0.10
_EPS = 1e-15


def _arrays(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y, dtype=np.float64).ravel()
    probabilities = np.asarray(p, dtype=np.float64).ravel()
    if labels.shape != probabilities.shape:
        raise ValueError(f"{labels.size} labels but {probabilities.size} predictions")
    if labels.size == 0:
        raise ValueError("no leads to evaluate")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(probabilities).any() or (probabilities < 0).any() or (probabilities > 1).any():
        raise ValueError("predictions must be probabilities in [0, 1]")
    return labels, probabilities


def _ranked(p: np.ndarray) -> np.ndarray:
    """Lead positions from the highest to the lowest score; ties keep input order."""
    return np.argsort(-p, kind="stable")


def classification_metrics(y: object, p: object) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, log loss, lift at the top 10 % and ECE of predictions `p`.

    Args:
        y: observed labels, 0 or 1.
        p: predicted probabilities of label 1.

    Returns:
        `roc_auc` and `pr_auc` (average precision; both NaN when only one class is present),
        `brier`, `log_loss`, `lift_at_10` (win rate among the top 10 % by score over the base
        rate), `ece` (see `expected_calibration_error`), `base_rate`, `mean_prediction`, `n`.
    """
    labels, probabilities = _arrays(y, p)
    both_classes = 0 < labels.sum() < labels.size
    clipped = np.clip(probabilities, _EPS, 1 - _EPS)
    log_loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, probabilities))
        if both_classes
        else math.nan,
        "brier": float(np.mean((probabilities - labels) ** 2)),
        "log_loss": float(log_loss),
        "lift_at_10": lift_at(labels, probabilities, TOP_SHARE),
        "ece": expected_calibration_error(labels, probabilities),
        "base_rate": float(labels.mean()),
        "mean_prediction": float(probabilities.mean()),
        "n": float(labels.size),
    }


def lift_at(y: object, p: object, share: float = TOP_SHARE) -> float:
    """Win rate of the top `share` of leads by score over the overall win rate (NaN if no wins).

    The top is `ceil(share × n)` leads; ties at the cut are broken by input order.
    """
    labels, probabilities = _arrays(y, p)
    base = labels.mean()
    if base == 0:
        return math.nan
    top = _ranked(probabilities)[: max(1, math.ceil(share * labels.size))]
    return float(labels[top].mean() / base)


def _equal_mass_bins(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each lead: `bins` groups of (nearly) equal size in score order."""
    order = np.argsort(p, kind="stable")
    index = np.empty(p.size, dtype=np.int64)
    index[order] = (np.arange(p.size) * bins) // p.size
    return index


def calibration_curve(y: object, p: object, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Mean prediction against observed win rate in `bins` equal-mass bins of the score.

    Equal-mass bins (deciles by default) put as many leads in each bin, so no bin's observed
    rate rests on a handful of leads, as equal-width bins do where scores are sparse.

    Returns:
        One row per bin, lowest scores first: `bin`, `leads`, `mean_predicted`, `observed_rate`,
        `std_error` (binomial standard error of the observed rate at the mean prediction).
    """
    labels, probabilities = _arrays(y, p)
    bins = max(1, min(bins, labels.size))
    frame = pd.DataFrame(
        {"bin": _equal_mass_bins(probabilities, bins), "y": labels, "p": probabilities}
    )
    curve = frame.groupby("bin").agg(
        leads=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")
    )
    predicted = curve["mean_predicted"]
    curve["std_error"] = np.sqrt(predicted * (1 - predicted) / curve["leads"])
    return curve.reset_index()


def expected_calibration_error(y: object, p: object, bins: int = CALIBRATION_BINS) -> float:
    """ECE: lead-weighted mean |observed rate − mean prediction| over equal-mass bins.

    With 10 equal-mass bins (the default), each bin holds a tenth of the leads; sampling noise
    alone contributes roughly 0.8 × the binomial standard error of a bin, so compare ECE
    between models on the same leads rather than against zero.
    """
    curve = calibration_curve(y, p, bins)
    gap = (curve["observed_rate"] - curve["mean_predicted"]).abs()
    return float((gap * curve["leads"]).sum() / curve["leads"].sum())


def cumulative_gain(y: object, p: object, points: int = 100) -> pd.DataFrame:
    """Cumulative gain and lift: the share of wins found by working the top leads first.

    Returns:
        `points + 1` rows: `share_of_leads` (0 to 1), `share_of_wins` (the gain curve; NaN
        without wins), `lift` (gain over share of leads; NaN at 0).
    """
    labels, probabilities = _arrays(y, p)
    found = np.concatenate([[0.0], np.cumsum(labels[_ranked(probabilities)])])
    shares = np.linspace(0.0, 1.0, points + 1)
    counts = np.ceil(shares * labels.size - 1e-9).astype(np.int64)
    wins = labels.sum()
    gain = found[counts] / wins if wins > 0 else np.full(shares.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(shares > 0, gain / shares, np.nan)
    return pd.DataFrame({"share_of_leads": shares, "share_of_wins": gain, "lift": lift})


def classification_figures(
    y: object, predictions: Mapping[str, np.ndarray], importance: pd.Series
) -> dict[str, Figure]:
    """ROC, precision-recall, calibration and cumulative-gain curves of every candidate on the
    same evaluation leads, and the champion's feature importance (largest first)."""
    labels = np.asarray(y, dtype=np.float64)
    figures = {name: Figure(figsize=(6, 4.5), layout="constrained") for name in _FIGURES}
    roc, pr, calibration, gain = (figures[n].subplots() for n in _FIGURES[:4])
    for kind, p in predictions.items():
        fpr, tpr, _ = roc_curve(labels, p)
        roc.plot(fpr, tpr, label=kind)
        precision, recall, _ = precision_recall_curve(labels, p)
        pr.plot(recall, precision, label=kind)
        curve = calibration_curve(labels, p)
        calibration.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", label=kind)
        gains = cumulative_gain(labels, p)
        gain.plot(gains["share_of_leads"], gains["share_of_wins"], label=kind)
    top = float(max(np.max(p) for p in predictions.values()))
    references = (
        (roc, [0, 1], [0, 1], "false positive rate", "true positive rate", "ROC"),
        (pr, [0, 1], [labels.mean()] * 2, "recall", "precision", "precision-recall"),
        (calibration, [0, top], [0, top], "mean prediction", "observed win rate",
         f"calibration ({CALIBRATION_BINS} equal-mass bins)"),
        (gain, [0, 1], [0, 1], "share of leads worked, best first", "share of wins found",
         "cumulative gain"),
    )  # fmt: skip
    for axes, x, reference, x_label, y_label, title in references:
        axes.plot(x, reference, color="grey", linestyle="--", linewidth=1, label="reference")
        axes.set(xlabel=x_label, ylabel=y_label, title=title)
        axes.legend(loc="best", fontsize="small")
    shown = importance.sort_values().tail(20)
    bars = figures["feature_importance.png"].subplots()
    bars.barh([str(i) for i in shown.index], shown.to_numpy())
    bars.set(xlabel="mean |log-odds contribution| on evaluation leads", title="feature importance")
    return figures


_FIGURES = ("roc.png", "pr.png", "calibration.png", "gain.png", "feature_importance.png")
