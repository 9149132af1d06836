"""The lead-conversion candidates: cross-fitted LightGBM, logistic regression and naive Bayes,
each fitted on the training slice only (`training.lead_conversion` judges them).

LightGBM is cross-fitted: the training slice is cut into validation folds (stratified folds
when undated; one time-later fold when dated, since the future is what the model will meet).
Each fold model stops early on its own validation fold; the Platt calibration is fitted on
those validation predictions, which no tree saw. Undated data keeps the fold models as an
averaged ensemble; dated data refits on the whole slice with the stopped iteration count, so
the most recent leads are not left out of the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from scoring.conversion import (
    BinnedNaiveBayes,
    BoostedTrees,
    LeadConversionModel,
    LinearScorer,
    NaiveBayesScorer,
    PlattCalibration,
    logistic_regression_pipeline,
)
from scoring.errors import FunnelcastInputError
from scoring.features import FeatureSpec

# Defaults for small tabular funnels (thousands to a million leads): a moderate learning rate
# stopped early, small trees whose leaf values shrink towards their parent's (path_smooth),
# half the features per tree, and smoothing of categorical splits so that a level needs real
# support before it gets its own branch. Chosen by a random search with cross-validation on
# X Education (the tuned LightGBM level there, for no tuning cost). No class reweighting:
# plain log loss keeps the probabilities honest, and the calibration fixes what is left.
DEFAULT_LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 11,
    "min_child_samples": 10,
    "feature_fraction": 0.5,
    "lambda_l2": 1.0,
    "path_smooth": 20.0,
    "cat_smooth": 5.0,
    "cat_l2": 10.0,
    "min_data_per_group": 20,
    "max_cat_to_onehot": 4,
    "max_bin": 255,
}
# One thread by default: on funnels of thousands of leads threads cost more than they save,
# and on a busy machine OpenMP's spinning threads make training 10-30 times slower. The
# `threads` option raises it for hundreds of thousands of leads on cores of their own; results
# are reproducible for a given thread count.
DEFAULT_THREADS = 1
# From this many training leads on, the data carries more than the small-funnel defaults need,
# and their cost grows with rows times rounds: twice the learning rate (half the rounds, and
# half the trees to predict with), 3 folds instead of 5 when undated, and the linear and naive
# Bayes baselines fitted on a stratified sample (their few parameters are settled long before).
LARGE_TRAINING_LEADS = 200_000
LARGE_LIGHTGBM_PARAMS: dict[str, Any] = {"learning_rate": 0.1}
LARGE_CV_FOLDS = 3
BASELINE_SAMPLE = 200_000
_FIXED_LIGHTGBM_PARAMS: dict[str, Any] = {
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,
}
MAX_ROUNDS = 5000
EARLY_STOPPING_ROUNDS = 50
CV_FOLDS = 5
VALIDATION_SHARE = 0.2
LOGISTIC_C = 1.0


Folds = list[tuple[np.ndarray, np.ndarray]]


def validation_folds(train: pd.DataFrame, dated: bool, seed: int) -> tuple[Folds, str]:
    """Fit/validation row positions inside the training slice, and their description.

    Dated data gets one fold: the latest `VALIDATION_SHARE` of leads by creation. When that
    fold lacks either outcome (too few wins to stop or calibrate on), or the data is undated,
    stratified folds are used instead.
    """
    won = train["label"].to_numpy()
    if dated and "created_at" in train.columns:
        order = np.argsort(train["created_at"].to_numpy(), kind="stable")
        cut = round(len(order) * (1 - VALIDATION_SHARE))
        early, late = np.sort(order[:cut]), np.sort(order[cut:])
        late_wins = int(won[late].sum())
        if min(late_wins, len(late) - late_wins) >= 10 and 0 < won[early].sum() < len(early):
            return [(early, late)], "time-later validation fold (last 20 % of the training slice)"
    minority = int(min(won.sum(), len(won) - won.sum()))
    n_folds = min(CV_FOLDS if len(won) < LARGE_TRAINING_LEADS else LARGE_CV_FOLDS, minority)
    if n_folds < 2:
        raise FunnelcastInputError("the training slice needs at least two won and two other leads")
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    folds = [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(len(won)), won)]
    return folds, f"{n_folds} stratified validation folds"


def lightgbm_settings(
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    threads: int = DEFAULT_THREADS,
    training_leads: int = 0,
) -> dict[str, Any]:
    """Full LightGBM parameters: defaults (with `LARGE_LIGHTGBM_PARAMS` from
    `LARGE_TRAINING_LEADS` training leads on), `threads`, then `params`, then the fixed
    reproducibility ones."""
    scale = LARGE_LIGHTGBM_PARAMS if training_leads >= LARGE_TRAINING_LEADS else {}
    return {
        **DEFAULT_LIGHTGBM_PARAMS,
        **scale,
        "num_threads": threads,
        **(params or {}),
        **_FIXED_LIGHTGBM_PARAMS,
        "seed": seed,
    }


def baseline_sample(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The training leads the baselines are fitted on: all, or a stratified `BASELINE_SAMPLE`
    (in creation order, so a time-later validation fold still exists) at scale."""
    if len(train) <= BASELINE_SAMPLE:
        return train
    keep, _ = train_test_split(
        np.arange(len(train)), train_size=BASELINE_SAMPLE, random_state=seed,
        stratify=train["label"].to_numpy(),
    )  # fmt: skip
    return train.iloc[np.sort(keep)].reset_index(drop=True)


def _boost(
    settings: dict[str, Any],
    matrix: pd.DataFrame,
    won: np.ndarray,
    fit: np.ndarray,
    stop_on: np.ndarray | None,
    rounds: int = MAX_ROUNDS,
) -> lgb.Booster:
    """One booster on rows `fit`, stopped early on rows `stop_on` (when given)."""
    data = lgb.Dataset(matrix.iloc[fit], won[fit], free_raw_data=True)
    if stop_on is None:
        return lgb.train(settings, data, num_boost_round=rounds)
    valid = lgb.Dataset(matrix.iloc[stop_on], won[stop_on], reference=data)
    booster = lgb.train(
        settings,
        data,
        num_boost_round=rounds,
        valid_sets=[valid],
        callbacks=[
            lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)
        ],
    )
    # Keep only the trees up to the best iteration: no later caller can predict with the rest.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))


def cross_fit_lightgbm(
    settings: dict[str, Any], matrix: pd.DataFrame, won: np.ndarray, folds: Folds
) -> tuple[list[lgb.Booster], np.ndarray, np.ndarray]:
    """Fold boosters, and the held-out raw scores with the rows they belong to."""
    boosters, held_out, rows = [], [], []
    for fit, validate in folds:
        booster = _boost(settings, matrix, won, fit, validate)
        boosters.append(booster)
        held_out.append(np.asarray(booster.predict(matrix.iloc[validate], raw_score=True)))
        rows.append(validate)
    return boosters, np.concatenate(held_out), np.concatenate(rows)


def fit_lightgbm(
    spec: FeatureSpec,
    train: pd.DataFrame,
    folds: Folds,
    settings: dict[str, Any],
    horizon_days: int,
) -> LeadConversionModel:
    """Cross-fitted, calibrated LightGBM (see the module docstring)."""
    matrix = spec.transform(train)
    won = train["label"].to_numpy()
    boosters, held_out, rows = cross_fit_lightgbm(settings, matrix, won, folds)
    calibration = PlattCalibration.fit(held_out, won[rows])
    iterations = [b.current_iteration() for b in boosters]
    if len(folds) == 1:
        fit_share = len(folds[0][0]) / len(matrix)
        # More rows support more rounds at the same learning rate; scale gently.
        rounds = max(1, round(iterations[0] / math.sqrt(fit_share)))
        boosters = [_boost(settings, matrix, won, np.arange(len(matrix)), None, rounds)]
    params = {**settings, "fold_iterations": iterations, "trees": [b.num_trees() for b in boosters]}
    return LeadConversionModel(
        "lightgbm", spec, BoostedTrees(tuple(boosters)), horizon_days, calibration, params
    )


def fit_logistic_regression(
    spec: FeatureSpec, train: pd.DataFrame, horizon_days: int, seed: int
) -> LeadConversionModel:
    """The linear baseline, fitted on log loss: its own probabilities are its calibration."""
    pipeline = logistic_regression_pipeline(spec, c=LOGISTIC_C, seed=seed)
    pipeline.fit(spec.transform(train), train["label"].to_numpy())
    params = {
        "C": LOGISTIC_C,
        "encoding": "one-hot, median impute + missing flag, scaled",
        "training_leads": len(train),
    }
    return LeadConversionModel(
        "logistic_regression", spec, LinearScorer(pipeline), horizon_days, None, params
    )


def fit_naive_bayes(
    spec: FeatureSpec, train: pd.DataFrame, folds: Folds, horizon_days: int
) -> LeadConversionModel:
    """Binned naive Bayes; its over-confident log-odds are Platt-calibrated on held-out folds."""
    matrix = spec.transform(train)
    won = train["label"].to_numpy()
    held_out, rows = [], []
    for fit, validate in folds:
        fold_model = BinnedNaiveBayes().fit(matrix.iloc[fit], won[fit])
        held_out.append(fold_model.decision_function(matrix.iloc[validate]))
        rows.append(validate)
    calibration = PlattCalibration.fit(np.concatenate(held_out), won[np.concatenate(rows)])
    model = BinnedNaiveBayes().fit(matrix, won)
    params = {"n_bins": model.n_bins, "alpha": model.alpha, "training_leads": len(train)}
    return LeadConversionModel(
        "naive_bayes", spec, NaiveBayesScorer(model), horizon_days, calibration, params
    )


def fit_baselines(
    spec: FeatureSpec, train: pd.DataFrame, dated: bool, seed: int, horizon_days: int
) -> dict[str, LeadConversionModel]:
    """Logistic regression and naive Bayes on `baseline_sample` of the training slice."""
    sample = baseline_sample(train, seed)
    folds, _ = validation_folds(sample, dated, seed)
    return {
        "logistic_regression": fit_logistic_regression(spec, sample, horizon_days, seed),
        "naive_bayes": fit_naive_bayes(spec, sample, folds, horizon_days),
    }
