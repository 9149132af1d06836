"""Training the lead-conversion model: LightGBM against logistic regression and naive Bayes.

Labels come from `conversion_labels` (won within the horizon; unsettled leads left out) and the
split from `split_labelled` (time when dated, stratified random when not). Only the training
slice is used for fitting, early stopping, calibration and `--tune`; the three candidates are
then scored on the evaluation slice, and the best by ROC-AUC is the champion (DESIGN §4).

The candidates are fitted in `training.lead_conversion_candidates`, `--tune` searches in
`training.lead_conversion_tuning`; this module splits, judges and reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from scoring.conversion import BASE_VALUE, LeadConversionModel
from scoring.errors import FunnelcastInputError
from scoring.features import FeatureSpec
from scoring.funnel import Funnel
from training.lead_conversion_candidates import (
    DEFAULT_THREADS,
    LOGISTIC_C,
    Folds,
    fit_baselines,
    fit_lightgbm,
    lightgbm_settings,
    validation_folds,
)
from training.lead_conversion_tuning import held_out_auc, tune_lightgbm_params
from training.metrics import classification_figures, classification_metrics
from training.result import Evaluation, TrainingResult
from training.splits import Split, conversion_labels, split_labelled

__all__ = [
    "ConversionResult",
    "choose_champion",
    "evaluate_lead_conversion",
    "settled_horizon_days",
    "train_lead_conversion",
    "train_lead_conversion_result",
]

# Fits the LightGBM candidate: (spec, training slice, folds, settings, horizon days) -> model.
Boosting = Callable[[FeatureSpec, pd.DataFrame, Folds, dict[str, Any], int], LeadConversionModel]

TRAINING_SCORE_SAMPLE = 100_000  # training leads whose scores set a score's percentile
IMPORTANCE_SAMPLE = 5_000  # evaluation leads whose contributions make the importance plot
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


def _sample(leads: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """At most `size` leads, a random sample in their original order."""
    if len(leads) <= size:
        return leads
    keep = np.random.default_rng(seed).choice(len(leads), size, replace=False)
    return leads.iloc[np.sort(keep)]


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
    threads: int = DEFAULT_THREADS,
    boosting: Boosting | None = None,
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
        threads: LightGBM training threads (see `DEFAULT_THREADS`).
        boosting: fits the LightGBM candidate instead of `fit_lightgbm` (same arguments), e.g.
            `training.lead_conversion_dask.DaskBoosting` on a Dask cluster.

    Returns:
        The champion, every candidate's evaluation metrics and predictions, the split and row
        counts.

    Raises:
        FunnelcastInputError: when the funnel has no features, or a slice lacks won or
            not-won leads.
    """
    say = progress or (lambda _: None)
    if tune and boosting is not None:
        raise FunnelcastInputError("--tune runs on one machine only; leave it out with a cluster")
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

    def settings(params: Mapping[str, Any]) -> dict[str, Any]:
        return lightgbm_settings(params, seed, threads=threads, training_leads=len(train))

    if tune:
        say(f"tuning LightGBM for up to {tune_seconds:.0f} s")
        found, tuning = tune_lightgbm_params(
            lambda params: held_out_auc(spec, train, folds, settings(params)),
            base=chosen, seconds=tune_seconds, seed=seed,
        )  # fmt: skip
        chosen = {**chosen, **found}
    say("fitting LightGBM")
    fit = boosting or fit_lightgbm
    candidates = {"lightgbm": fit(spec, train, folds, settings(chosen), funnel.horizon_days)}
    say("fitting logistic regression and naive Bayes")
    candidates |= fit_baselines(spec, train, funnel.dated, seed, funnel.horizon_days)

    labels = test["label"].to_numpy().astype(np.int64)
    predictions = {kind: model.predict_proba(test) for kind, model in candidates.items()}
    metrics = {kind: classification_metrics(labels, p) for kind, p in predictions.items()}
    champion_kind = choose_champion(metrics)
    # Percentiles against a random 100,000 training leads are within 0.2 points of all of them.
    candidates[champion_kind].remember_training_scores(_sample(train, TRAINING_SCORE_SAMPLE, seed))
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


NAME = "lead-conversion"


def train_lead_conversion_result(
    funnel: Funnel,
    *,
    seed: int = 0,
    tune: bool = False,
    test_fraction: float = 0.2,
    threads: int = DEFAULT_THREADS,
    boosting: Boosting | None = None,
) -> TrainingResult:
    """`train_lead_conversion` as the pipeline's `TrainingResult`: the champion, its metrics
    next to the other candidates' as baselines, flat params, plots, limits and tags."""
    result = train_lead_conversion(
        funnel, seed=seed, tune=tune, test_fraction=test_fraction, threads=threads,
        boosting=boosting,
    )  # fmt: skip
    champion = result.champion
    # Feature importance: mean |contribution| over evaluation leads. Tree contributions cost
    # far more than predictions (over 40 s for the 37,000 evaluation leads of a 200,000-lead
    # funnel), and 5,000 leads put each mean within a few percent.
    evaluation_leads = funnel.leads.set_index("lead_id").loc[result.evaluation_lead_ids]
    shown = _sample(evaluation_leads.reset_index(), IMPORTANCE_SAMPLE, seed)
    parts = champion.contributions(shown)
    importance = parts.drop(columns=BASE_VALUE).abs().mean()
    flat = {f"lightgbm.{k}": v for k, v in result.params["candidates"]["lightgbm"].items()}
    params = {
        "model_kind": champion.kind,
        **{k: v for k, v in result.params.items() if k not in ("candidates", "tuning")},
        "features": ",".join(champion.feature_names),
        **{k: v for k, v in flat.items() if isinstance(v, int | float | str | bool)},
        "logistic_regression.C": LOGISTIC_C,
    }
    lightgbm = result.params["candidates"]["lightgbm"]
    tags = {
        "split_kind": result.split_kind,
        "champion_kind": champion.kind,
        "lightgbm_engine": str(lightgbm.get("engine", "local")),
    }
    if "dask_rows_by_worker" in lightgbm:
        tags["dask_rows_by_worker"] = json.dumps(lightgbm["dask_rows_by_worker"])
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
    baselines = fit_baselines(spec, train, funnel.dated, seed, funnel.horizon_days)
    return Evaluation(
        metrics=classification_metrics(labels, model.predict_proba(test)),
        baselines={
            k: classification_metrics(labels, b.predict_proba(test)) for k, b in baselines.items()
        },
        split=split.describe(),
        rows={"train": len(train), "test": len(test)},
    )
