"""Training the lead-conversion model: LightGBM against logistic regression and naive Bayes.

Labels come from `conversion_labels` (won within the horizon; unsettled leads left out) and the
split from `split_labelled` (time when dated, stratified random when not). Only the training
slice is used for fitting, early stopping, calibration and `--tune`; the three candidates are
then scored on the evaluation slice, and the best by ROC-AUC is the champion (DESIGN §4).

LightGBM is cross-fitted: the training slice is cut into validation folds (stratified folds
when undated; one time-later fold when dated, since the future is what the model will meet).
Each fold model stops early on its own validation fold; the Platt calibration is fitted on
those validation predictions, which no tree saw. Undated data keeps the fold models as an
averaged ensemble; dated data refits on the whole slice with the stopped iteration count, so
the most recent leads are not left out of the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from scoring.conversion import (
    BASE_VALUE,
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
from scoring.funnel import Funnel
from training.metrics import classification_figures, classification_metrics
from training.result import Evaluation, TrainingResult
from training.splits import Split, conversion_labels, split_labelled

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
    # One thread: on funnels this size threads cost more than they save, and on a busy
    # machine OpenMP's spinning threads make training 10-30 times slower. Raise it for
    # millions of leads; results are reproducible for a given thread count.
    "num_threads": 1,
}
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
# Champion choice: a higher ROC-AUC wins unless the two are within this of each other, when
# the lower Brier score decides (an AUC difference that small is noise on these data sizes).
AUC_TIE = 0.002


@dataclass(frozen=True)
class ConversionResult:
    """A lead-conversion training run: the champion, every candidate and how they were judged.

    Attributes:
        champion: the best candidate on the evaluation slice.
        candidates: every fitted candidate by kind (the champion among them).
        metrics: kind → `classification_metrics` on the evaluation slice.
        evaluation_lead_ids / evaluation_labels: the evaluation leads and their labels.
        evaluation_predictions: kind → calibrated probabilities of the evaluation leads.
        split: how the data was split, in words; `split_kind` is "time" or
            "stratified-random", `validation_date` the time split's date.
        rows: `train`, `test`, `excluded_unsettled` (open and younger than the horizon),
            `unused_train` (left out by `train_fraction`), `leads`.
        params: the settings of every candidate and of the run.
    """

    champion: LeadConversionModel
    candidates: dict[str, LeadConversionModel]
    metrics: dict[str, dict[str, float]]
    evaluation_lead_ids: np.ndarray
    evaluation_labels: np.ndarray
    evaluation_predictions: dict[str, np.ndarray]
    split: str
    split_kind: str
    validation_date: pd.Timestamp | None
    rows: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def champion_kind(self) -> str:
        return self.champion.kind


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
    n_folds = min(CV_FOLDS, minority)
    if n_folds < 2:
        raise FunnelcastInputError("the training slice needs at least two won and two other leads")
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    folds = [(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(len(won)), won)]
    return folds, f"{n_folds} stratified validation folds"


def lightgbm_settings(params: Mapping[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Full LightGBM parameters: defaults, then `params`, then the fixed reproducibility ones."""
    return {**DEFAULT_LIGHTGBM_PARAMS, **(params or {}), **_FIXED_LIGHTGBM_PARAMS, "seed": seed}


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
    params = {"C": LOGISTIC_C, "encoding": "one-hot, median impute + missing flag, scaled"}
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
    params = {"n_bins": model.n_bins, "alpha": model.alpha}
    return LeadConversionModel(
        "naive_bayes", spec, NaiveBayesScorer(model), horizon_days, calibration, params
    )


def choose_champion(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """The best candidate by ROC-AUC; within `AUC_TIE`, the lower Brier score."""
    ranked = sorted(metrics, key=lambda kind: -metrics[kind]["roc_auc"])
    best = ranked[0]
    for kind in ranked[1:]:
        close = metrics[best]["roc_auc"] - metrics[kind]["roc_auc"] <= AUC_TIE
        if close and metrics[kind]["brier"] < metrics[best]["brier"]:
            best = kind
    return best


def _check_both_outcomes(labels: np.ndarray, where: str, funnel: Funnel) -> None:
    wins = int(labels.sum())
    if 0 < wins < len(labels):
        return
    what = "won" if wins else "not won"
    hint = (
        f" With dated data this usually means the horizon ({funnel.horizon_days} days) is "
        "longer than the recent leads have been observed, so only their wins are settled; "
        "pass a shorter horizon_days (see `settled_horizon_days`)."
        if funnel.dated
        else ""
    )
    raise FunnelcastInputError(f"every {where} lead is {what}: ROC-AUC is undefined.{hint}")


def _labelled_split(
    funnel: Funnel, seed: int, test_fraction: float
) -> tuple[pd.DataFrame, Split, pd.DataFrame, pd.DataFrame]:
    """Settled leads, their split, and the training and evaluation slices."""
    labelled = conversion_labels(funnel).reset_index(drop=True)
    split = split_labelled(labelled, funnel.dated, test_fraction=test_fraction, seed=seed)
    train = labelled.iloc[split.train].reset_index(drop=True)
    test = labelled.iloc[split.test].reset_index(drop=True)
    return labelled, split, train, test


def settled_horizon_days(funnel: Funnel) -> int:
    """The longest horizon for which every lead's label is settled: the days from the last
    lead's creation to the extraction. With it, no lead is left out and none counts as lost
    before it was observed for the whole horizon."""
    if not funnel.dated:
        raise FunnelcastInputError("undated data has no horizon: labels are final outcomes")
    observed = funnel.observed_until or funnel.leads[["created_at", "closed_at"]].max().max()
    return int((observed - funnel.leads["created_at"].max()) / pd.Timedelta(days=1))


def train_lead_conversion(
    funnel: Funnel,
    *,
    seed: int = 0,
    tune: bool = False,
    test_fraction: float = 0.2,
    train_fraction: float = 1.0,
    horizon_days: int | None = None,
    lightgbm_params: Mapping[str, Any] | None = None,
    tune_seconds: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> ConversionResult:
    """Fit LightGBM, logistic regression and naive Bayes; judge them on the evaluation slice.

    Args:
        funnel: the funnel history; its `features` are the model's inputs.
        seed: drives the split (undated data), the folds and LightGBM; same seed and data give
            the same models and metrics.
        tune: search LightGBM settings with cross-validation on the training slice first.
        test_fraction: share of settled leads in the evaluation slice (the latest, when dated).
        train_fraction: use only this stratified share of the training slice (a deliberately
            weaker candidate, for testing the quality gate).
        horizon_days: the label's horizon, when not the funnel's own.
        lightgbm_params: LightGBM settings over `DEFAULT_LIGHTGBM_PARAMS`.
        tune_seconds: the time budget of `tune`.
        progress: called with a line of text at each step.

    Returns:
        The champion, every candidate's evaluation metrics and predictions, the split and row
        counts.

    Raises:
        FunnelcastInputError: when the funnel has no features, or a slice lacks won or
            not-won leads.
    """
    say = progress or (lambda _: None)
    if horizon_days is not None:
        funnel = replace(funnel, horizon_days=horizon_days)
    if not funnel.features:
        raise FunnelcastInputError(f"the {funnel.name} funnel declares no features to learn from")
    labelled, split, train, test = _labelled_split(funnel, seed, test_fraction)
    full_train = len(train)
    if train_fraction < 1.0:
        keep, _ = train_test_split(
            np.arange(full_train), train_size=train_fraction, random_state=seed,
            stratify=train["label"].to_numpy(),
        )  # fmt: skip
        train = train.iloc[np.sort(keep)].reset_index(drop=True)
    _check_both_outcomes(train["label"].to_numpy(), "training", funnel)
    _check_both_outcomes(test["label"].to_numpy(), "evaluation", funnel)
    say(f"{split.describe()}: {len(train):,} training and {len(test):,} evaluation leads")

    spec = FeatureSpec(funnel.features).fit(train)
    folds, fold_text = validation_folds(train, funnel.dated, seed)
    chosen = dict(lightgbm_params or {})
    tuning: dict[str, Any] = {}
    if tune:
        say(f"tuning LightGBM for up to {tune_seconds:.0f} s")
        found, tuning = tune_lightgbm_params(
            lambda params: _held_out_auc(spec, train, folds, lightgbm_settings(params, seed)),
            base=chosen, seconds=tune_seconds, seed=seed,
        )  # fmt: skip
        chosen = {**chosen, **found}
    candidates: dict[str, LeadConversionModel] = {}
    say("fitting LightGBM")
    candidates["lightgbm"] = fit_lightgbm(
        spec, train, folds, lightgbm_settings(chosen, seed), funnel.horizon_days
    )
    say("fitting logistic regression and naive Bayes")
    candidates["logistic_regression"] = fit_logistic_regression(
        spec, train, funnel.horizon_days, seed
    )
    candidates["naive_bayes"] = fit_naive_bayes(spec, train, folds, funnel.horizon_days)

    labels = test["label"].to_numpy().astype(np.int64)
    predictions = {kind: model.predict_proba(test) for kind, model in candidates.items()}
    metrics = {kind: classification_metrics(labels, p) for kind, p in predictions.items()}
    champion_kind = choose_champion(metrics)
    candidates[champion_kind].remember_training_scores(train)
    say(f"champion: {champion_kind} (ROC-AUC {metrics[champion_kind]['roc_auc']:.3f})")
    return ConversionResult(
        champion=candidates[champion_kind],
        candidates=candidates,
        metrics=metrics,
        evaluation_lead_ids=test["lead_id"].to_numpy(),
        evaluation_labels=labels,
        evaluation_predictions=predictions,
        split=split.describe(),
        split_kind=split.kind,
        validation_date=split.validation_date,
        rows={
            "leads": len(funnel.leads),
            "train": len(train),
            "test": len(test),
            "excluded_unsettled": len(funnel.leads) - len(labelled),
            "unused_train": full_train - len(train),
        },
        params={
            "seed": seed,
            "horizon_days": funnel.horizon_days,
            "test_fraction": test_fraction,
            "train_fraction": train_fraction,
            "validation": fold_text,
            "tuned": tune,
            "tuning": tuning,
            "features": spec.feature_names_,
            "candidates": {kind: model.params for kind, model in candidates.items()},
        },
    )


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


def _held_out_auc(
    spec: FeatureSpec, train: pd.DataFrame, folds: Folds, settings: dict[str, Any]
) -> float:
    """ROC-AUC of cross-fitted LightGBM on its validation folds (the tuning objective)."""
    won = train["label"].to_numpy()
    _, held_out, rows = cross_fit_lightgbm(settings, spec.transform(train), won, folds)
    return float(roc_auc_score(won[rows], held_out))


# --- the pipeline's interface (training.pipeline logs, registers and gates what these return) ---

NAME = "lead-conversion"


def train_lead_conversion_result(
    funnel: Funnel, *, seed: int = 0, tune: bool = False, test_fraction: float = 0.2
) -> TrainingResult:
    """`train_lead_conversion` as the pipeline's `TrainingResult`: the champion, its metrics
    next to the other candidates' as baselines, flat params, plots, limits and tags."""
    result = train_lead_conversion(funnel, seed=seed, tune=tune, test_fraction=test_fraction)
    champion = result.champion
    evaluation_leads = funnel.leads.set_index("lead_id").loc[result.evaluation_lead_ids]
    parts = champion.contributions(evaluation_leads.reset_index())
    importance = parts.drop(columns=BASE_VALUE).abs().mean()
    flat = {f"lightgbm.{k}": v for k, v in result.params["candidates"]["lightgbm"].items()}
    params = {
        "model_kind": champion.kind,
        **{k: v for k, v in result.params.items() if k not in ("candidates", "tuning")},
        "features": ",".join(champion.feature_names),
        **{k: v for k, v in flat.items() if isinstance(v, int | float | str | bool)},
        "logistic_regression.C": LOGISTIC_C,
    }
    tags = {"split_kind": result.split_kind, "champion_kind": champion.kind}
    if result.validation_date is not None:
        tags["validation_date"] = str(result.validation_date)
    limits = [
        f"P(won within {champion.horizon_days} days of creation); leads younger than that "
        f"and still open were left out ({result.rows['excluded_unsettled']:,} here).",
        "Lead attributes are taken as known at creation; an attribute filled in later would "
        "leak the outcome.",
    ]
    return TrainingResult(
        name=NAME,
        model=champion,
        evaluation=Evaluation(
            metrics=result.metrics[champion.kind],
            baselines={k: m for k, m in result.metrics.items() if k != champion.kind},
            split=result.split,
            rows=result.rows,
        ),
        params=params,
        figures=classification_figures(
            result.evaluation_labels, result.evaluation_predictions, importance
        ),
        limits=limits,
        tags=tags,
    )


def evaluate_lead_conversion(
    model: LeadConversionModel, funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """A fitted model on this funnel's evaluation slice (labels at the model's horizon), next to
    logistic regression and naive Bayes refitted on the training slice."""
    funnel = replace(funnel, horizon_days=model.horizon_days)
    _, split, train, test = _labelled_split(funnel, seed, test_fraction)
    _check_both_outcomes(test["label"].to_numpy(), "evaluation", funnel)
    labels = test["label"].to_numpy()
    spec = FeatureSpec(funnel.features).fit(train)
    folds, _ = validation_folds(train, funnel.dated, seed)
    baselines = {
        "logistic_regression": fit_logistic_regression(spec, train, funnel.horizon_days, seed),
        "naive_bayes": fit_naive_bayes(spec, train, folds, funnel.horizon_days),
    }
    return Evaluation(
        metrics=classification_metrics(labels, model.predict_proba(test)),
        baselines={
            k: classification_metrics(labels, b.predict_proba(test)) for k, b in baselines.items()
        },
        split=split.describe(),
        rows={"train": len(train), "test": len(test)},
    )
