"""`train --tune` for lead-conversion: a time-budgeted random search over LightGBM settings,
judged by cross-fitted ROC-AUC on the training slice's validation folds only."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scoring.features import FeatureSpec
from training.lead_conversion_candidates import Folds, cross_fit_lightgbm

# The tuning search space: values around the defaults that matter most on small funnels.
TUNING_GRID: dict[str, tuple[Any, ...]] = {
    "learning_rate": (0.02, 0.03, 0.05, 0.08),
    "num_leaves": (7, 11, 15, 23, 31),
    "min_child_samples": (10, 20, 30, 50, 100),
    "feature_fraction": (0.5, 0.6, 0.7, 0.8, 0.9),
    "lambda_l2": (0.0, 1.0, 3.0, 10.0),
    "cat_smooth": (1.0, 5.0, 10.0, 20.0, 50.0),
    "min_data_per_group": (5, 10, 20, 50, 100),
    "path_smooth": (0.0, 1.0, 10.0, 20.0),
}


def tune_lightgbm_params(
    held_out_auc: Callable[[dict[str, Any]], float],
    base: Mapping[str, Any],
    seconds: float,
    seed: int,
    max_trials: int = 50,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Random search over `TUNING_GRID`, judged by `held_out_auc`, within a time budget.

    The starting settings are tried first, so tuning can only replace them with something
    better on the training slice's validation folds. Which settings win depends on how many
    trials fit in the budget, so a tuned run is reproducible only on equally fast machines.

    Returns:
        The best settings found and a record of the search (trials, best AUC, seconds).
    """
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    best, best_auc = dict(base), held_out_auc(dict(base))
    trials = 1
    while trials < max_trials and time.monotonic() - started < seconds:
        trial = {**base, **{k: v[rng.integers(len(v))] for k, v in TUNING_GRID.items()}}
        auc = held_out_auc(trial)
        trials += 1
        if auc > best_auc:
            best, best_auc = trial, auc
    record = {"trials": trials, "held_out_auc": best_auc, "seconds": time.monotonic() - started}
    return best, record


def held_out_auc(
    spec: FeatureSpec, train: pd.DataFrame, folds: Folds, settings: dict[str, Any]
) -> float:
    """ROC-AUC of cross-fitted LightGBM on its validation folds (the tuning objective)."""
    won = train["label"].to_numpy()
    _, held_out, rows = cross_fit_lightgbm(settings, spec.transform(train), won, folds)
    return float(roc_auc_score(won[rows], held_out))
