"""Training and evaluation of `deal-cycle`: time to close with competing outcomes won / lost.

The model (`scoring.cycle.DealCycleModel`) is a discrete-time hazard model. Each deal becomes one
row per week of its life until it closes or stops being observed; a row holds the deal's
attributes, its age and the calendar of that week, and its label says whether the deal was won,
lost or neither in that week. Two LightGBM models learn the weekly chances: one that an open
deal closes in the week (all rows), one that a close is a win (rows with a close). The split is
exact (P(won in week) = P(close) × P(won | close)) and cheaper than one multiclass model: two
trees per round instead of three, the second on few rows. Cross-fitted deal-level summaries
(won propensity, won and lost speed) are features of both (see `scoring.cycle.HazardDesign`).

- Open deals are data: they add rows up to their censoring week, the last one weighted by the
  share of the week that was observed (life-table style), never dropped or counted as lost.
- Point in time (DESIGN §3): the model is fitted on deals created before the validation date,
  with outcomes as they were known then (a deal closed after it was open at it), and evaluated
  on deals created after it, observed up to the data's `observed_until`. Only attributes known
  from creation are used, never the stage.
- At scale, week rows without an event are subsampled and the kept ones weighted up by the
  inverse rate, so the weighted likelihood stays the full one; rows with an event are all kept.
- The calendar is only what the history can teach: with less than two years of closes, the
  features that turn once a year are left out (`scoring.calendar_features.calendar_columns`),
  else next month's value may never have been seen. Inside a week, wins and losses spread over
  the days by profiles of weekday and calendar (`close_profiles`), so a deal-week straddling a
  quarter's end keeps the push on the right side of it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.calendar_features import WeekProfile, fit_week_profile, to_days
from scoring.cycle import (
    DEAL_SCORES,
    WEEK,
    CycleModel,
    DealCycleModel,
    HazardDesign,
    MarginalCycleModel,
)
from scoring.funnel import Funnel
from training import survival_metrics as sm
from training.result import Evaluation, ModelSkipped
from training.splits import Split, split_labelled

IntArray = sm.IntArray
FloatArray = sm.FloatArray
BoolArray = npt.NDArray[np.bool_]
Float32Array = npt.NDArray[np.float32]
EVALUATION_DAYS = 90
_UNSTOPPED_ROUNDS = 50


@dataclass(frozen=True)
class CycleParams:
    """Knobs of the hazard model; the defaults are meant to be good without tuning.

    `max_person_periods` bounds the fitting rows (1M leads give ~6M deal-weeks);
    `validation_share` of the training deals is held out, whole deals at a time, to stop
    boosting. The winning and deal-score models see one row per closed deal, so they get
    smaller leaves than the closing model, which sees every deal-week.
    """

    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 200
    deal_min_data_in_leaf: int = 50
    lambda_l2: float = 1.0
    max_rounds: int = 500
    early_stopping_rounds: int = 20
    max_person_periods: int = 2_500_000
    validation_share: float = 0.15
    age_cap_weeks: int = 52
    threads: int = 2


def close_profiles(outcomes: sm.DealOutcomes, created_day: IntArray) -> dict[str, WeekProfile]:
    """How closes spread over the days of a week (`fit_week_profile`): one profile for all
    closes ("closed"), one for wins ("won") and one for losses ("lost"), over the days from the
    first close seen (before it, the data may simply not record closes). Wins and losses get
    their own: a quarter-end push moves wins, not losses."""
    ended = outcomes.cause != sm.OPEN
    if not ended.any():
        return {name: WeekProfile() for name in ("closed", "won", "lost")}
    last_day = created_day + np.floor(outcomes.clock).astype(np.int64)
    since = int(last_day[ended].min())
    causes = {"closed": ended, "won": outcomes.cause == sm.WON, "lost": outcomes.cause == sm.LOST}
    return {
        name: fit_week_profile(created_day, last_day, closed, since)
        for name, closed in causes.items()
    }


@dataclass(frozen=True)
class PersonPeriods:
    """Deal-week rows for fitting: which deal, which week, label (0/1/2) and weight."""

    deal: IntArray
    week: IntArray
    label: IntArray
    weight: FloatArray
    negative_rate: float


def person_periods(
    outcomes: sm.DealOutcomes,
    created_day: IntArray,
    profile: WeekProfile,
    rng: np.random.Generator,
    max_rows: int,
) -> PersonPeriods:
    """One row per deal per week at risk; rows without an event subsampled to fit `max_rows`.

    `created_day`: each deal's creation day (days since 1970-01-01), where its weeks start.
    """
    last = np.floor(outcomes.clock / WEEK).astype(np.int64)
    week_start = created_day + WEEK * last
    observed = profile.elapsed_share(week_start, (outcomes.clock - WEEK * last)[:, None])[:, 0]
    censored = outcomes.cause == sm.OPEN
    # A deal censored right at a week's start was never at risk in that week.
    weeks = last + 1 - (censored & (observed <= 0))
    starts = np.cumsum(weeks) - weeks
    deal = np.repeat(np.arange(len(weeks)), weeks)
    week = np.arange(len(deal)) - starts[deal]
    label = np.zeros(len(deal), dtype=np.int64)
    weight = np.ones(len(deal), dtype=np.float64)
    final = (starts + weeks - 1)[weeks > 0]
    label[final] = outcomes.cause[weeks > 0]
    weight[final] = np.where(censored, observed, 1.0)[weeks > 0]
    events = int((label > 0).sum())
    negatives = len(label) - events
    rate = 1.0 if negatives <= max_rows - events else max(0.02, (max_rows - events) / negatives)
    keep = (label > 0) | (rng.random(len(label)) < rate)
    weight = np.where(label > 0, weight, weight / rate)
    return PersonPeriods(deal[keep], week[keep], label[keep], weight[keep], rate)


def _fit_booster(
    data: tuple[Float32Array, Float32Array],
    labels: tuple[npt.NDArray[Any], npt.NDArray[Any]],
    weights: tuple[FloatArray | None, FloatArray | None],
    design: HazardDesign,
    params: CycleParams,
    min_data_in_leaf: int,
    seed: int,
    objective: str = "binary",
) -> lgb.Booster:
    """One booster, stopped early on held-out deals, cut to its best round."""
    names = design.feature_names_[: data[0].shape[1]]
    fitting = lgb.Dataset(
        data[0],
        label=labels[0],
        weight=weights[0],
        feature_name=names,
        categorical_feature=design.categorical_indices_,
        free_raw_data=True,
    )
    # Tiny funnels can leave no held-out deal: then boost a fixed, modest number of rounds.
    stopping = [lgb.Dataset(data[1], label=labels[1], weight=weights[1], reference=fitting)]
    if len(data[1]) == 0:
        stopping = []
    booster_params = {
        "objective": objective,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": min_data_in_leaf,
        "lambda_l2": params.lambda_l2,
        "feature_fraction": 0.9,
        "max_bin": 127,
        "num_threads": params.threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    booster = lgb.train(
        booster_params,
        fitting,
        num_boost_round=params.max_rounds if stopping else _UNSTOPPED_ROUNDS,
        valid_sets=stopping,
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)]
        if stopping
        else [],
    )
    # Keep only the rounds up to the best one, so no caller can predict with the others.
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _cross_fitted_scores(
    design: HazardDesign,
    attributes: Float32Array,
    outcomes: sm.DealOutcomes,
    held_out: BoolArray,
    rng: np.random.Generator,
    params: CycleParams,
    seed: int,
) -> FloatArray:
    """Fit the design's deal-score boosters; return out-of-fold `DEAL_SCORES` for the deals.

    Two folds: each deal's scores come from boosters that did not see it, so the hazard models
    learn how far to trust a score on deals it was not fitted to, as at prediction time (which
    averages both folds). The log-days scores ignore open deals: they rank deals by speed, the
    hazard models then calibrate them.
    """
    closed = outcomes.cause != sm.OPEN
    won = outcomes.cause == sm.WON
    log_days = np.log1p(outcomes.days)
    targets = {
        "won_propensity": (closed, won, "binary"),
        "won_log_days": (won, log_days, "regression"),
        "lost_log_days": (outcomes.cause == sm.LOST, log_days, "regression"),
    }
    fold = rng.integers(0, 2, len(won))
    scores = np.zeros((len(won), len(DEAL_SCORES)))
    for column, name in enumerate(DEAL_SCORES):
        rows, target, objective = targets[name]
        # Too few examples (or one kind only) say nothing about attributes: leave it at 0.
        smallest = min((rows & (fold == k)).sum() for k in (0, 1))
        if attributes.shape[1] == 0 or smallest < 2 * params.deal_min_data_in_leaf:
            continue
        if objective == "binary" and target[rows].all() | (~target[rows]).all():
            continue
        boosters = []
        for k in (0, 1):
            fit, stop = rows & (fold != k) & ~held_out, rows & (fold != k) & held_out
            booster = _fit_booster(
                (attributes[fit], attributes[stop]),
                (target[fit], target[stop]),
                (None, None),
                design,
                params,
                params.deal_min_data_in_leaf,
                seed,
                objective,
            )
            mine = fold == k
            scores[mine, column] = np.asarray(booster.predict(attributes[mine], raw_score=True))
            boosters.append(booster)
        design.deal_scores_[name] = tuple(boosters)
    return scores


@dataclass(frozen=True)
class FitReport:
    """Sizes and settings of one fit, for the run's parameters and tags."""

    deals: int
    person_periods: int
    event_rows: int
    negative_rate: float
    closing_rounds: int
    winning_rounds: int
    seconds: float


def fit_deal_cycle(
    leads: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    features: tuple[str, ...],
    horizon_days: int,
    seed: int = 0,
    params: CycleParams | None = None,
) -> tuple[DealCycleModel, FitReport]:
    """Fit the hazard model on the leads created before `as_of`, outcomes as known at `as_of`.

    Raises:
        ModelSkipped: when no deal had closed by `as_of` (nothing to learn timing from).
    """
    params = params or CycleParams()
    began = time.perf_counter()
    leads = leads[leads["created_at"] < as_of].reset_index(drop=True)
    outcomes = sm.observed_outcomes(leads, as_of)
    if not (outcomes.cause != sm.OPEN).any():
        raise ModelSkipped("deal-cycle: no deal had closed before the cutoff")
    rng = np.random.default_rng(seed)
    first_close = leads.loc[outcomes.cause != sm.OPEN, "closed_at"].min()
    history_days = (as_of - first_close) / pd.Timedelta(days=1)
    design = HazardDesign(features, params.age_cap_weeks).fit(leads, history_days)
    created_day = to_days(leads["created_at"])
    profiles = close_profiles(outcomes, created_day)
    held_out = rng.random(len(leads)) < params.validation_share
    attributes = design.attribute_matrix(leads)
    scores = _cross_fitted_scores(design, attributes, outcomes, held_out, rng, params, seed)
    deals = design.deal_matrix(leads, scores)
    del attributes
    rows = person_periods(outcomes, created_day, profiles["closed"], rng, params.max_person_periods)
    parts = (~held_out[rows.deal], held_out[rows.deal])
    data = tuple(design.rows(deals, created_day, rows.deal[p], rows.week[p]) for p in parts)
    labels = tuple(rows.label[p] for p in parts)
    weights = tuple(rows.weight[p] for p in parts)
    closing = _fit_booster(
        (data[0], data[1]),
        (labels[0] > 0, labels[1] > 0),
        (weights[0], weights[1]),
        design,
        params,
        params.min_data_in_leaf,
        seed,
    )
    closes = (labels[0] > 0, labels[1] > 0)
    winning = _fit_booster(
        (data[0][closes[0]], data[1][closes[1]]),
        (labels[0][closes[0]] == sm.WON, labels[1][closes[1]] == sm.WON),
        (weights[0][closes[0]], weights[1][closes[1]]),
        design,
        params,
        params.deal_min_data_in_leaf,
        seed,
    )
    report = FitReport(
        deals=len(leads),
        person_periods=len(rows.label),
        event_rows=int((rows.label > 0).sum()),
        negative_rate=rows.negative_rate,
        closing_rounds=closing.current_iteration(),
        winning_rounds=winning.current_iteration(),
        seconds=time.perf_counter() - began,
    )
    model = DealCycleModel(
        design,
        closing,
        winning,
        profiles["closed"],
        horizon_days,
        outcome_profiles=(profiles["won"], profiles["lost"]),
    )
    return model, report


def fit_cycle_baseline(
    leads: pd.DataFrame, *, as_of: pd.Timestamp, horizon_days: int
) -> MarginalCycleModel:
    """Aalen-Johansen curves of the leads created before `as_of`, outcomes as known then."""
    outcomes = sm.observed_outcomes(leads[leads["created_at"] < as_of], as_of)
    won, lost = sm.aalen_johansen(outcomes.days, outcomes.cause)
    return MarginalCycleModel(won.times, won.values, lost.values, horizon_days)


def observed_until(funnel: Funnel) -> pd.Timestamp:
    """When the data was extracted: open deals are censored there."""
    if funnel.observed_until is not None:
        return pd.Timestamp(funnel.observed_until)
    return pd.Timestamp(funnel.leads[["created_at", "closed_at"]].max().max())


def evaluation_split(funnel: Funnel, test_fraction: float = 0.2) -> Split:
    """The time split: the last `test_fraction` of leads by creation are the evaluation slice.

    Raises:
        ModelSkipped: when the data has no dates (a cycle model needs them).
    """
    leads = funnel.leads
    if not funnel.dated or "created_at" not in leads or "closed_at" not in leads:
        raise ModelSkipped("deal-cycle needs dated leads (created_at and closed_at)")
    return split_labelled(leads, dated=True, test_fraction=test_fraction)


def evaluate_cycle_model(
    model: CycleModel, deals: pd.DataFrame, until: pd.Timestamp, tau_days: int = EVALUATION_DAYS
) -> sm.IncidenceReport:
    """Metrics (`survival_metrics.incidence_report`) of predictions made at creation for
    `deals`, against outcomes observed up to `until`."""
    outcomes = sm.observed_outcomes(deals, until)
    won, lost = model.cumulative_incidence(deals, np.arange(1, tau_days + 1))
    return sm.incidence_report(outcomes.days, outcomes.cause, won, lost)


def evaluate_deal_cycle(
    model: CycleModel, funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2
) -> Evaluation:
    """Evaluate any cycle model (candidate or champion) on the funnel's later slice, next to
    the Aalen-Johansen baseline fitted before it: what the quality gate compares.

    `seed` is accepted for a signature shared with the other models; a time split has no
    randomness.
    """
    del seed
    split = evaluation_split(funnel, test_fraction)
    assert split.validation_date is not None  # a time split always has one
    deals = funnel.leads.iloc[split.test].reset_index(drop=True)
    until = observed_until(funnel)
    baseline = fit_cycle_baseline(
        funnel.leads, as_of=split.validation_date, horizon_days=funnel.horizon_days
    )
    return Evaluation(
        metrics=evaluate_cycle_model(model, deals, until).metrics,
        baselines={"aalen_johansen": evaluate_cycle_model(baseline, deals, until).metrics},
        split=split.describe(),
        rows={"train": len(split.train), "test": len(split.test)},
    )


@dataclass(frozen=True)
class CycleResult:
    """A trained deal-cycle candidate, its evaluation next to the baseline's, and the fit."""

    model: DealCycleModel
    baseline: MarginalCycleModel
    evaluation: sm.IncidenceReport
    baseline_evaluation: sm.IncidenceReport
    split: Split
    fit: FitReport
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        return {"aalen_johansen": self.baseline_evaluation.metrics}


def train_deal_cycle(
    funnel: Funnel,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    params: CycleParams | None = None,
) -> CycleResult:
    """Fit on deals created before the validation date, evaluate on those created after it.

    Raises:
        ModelSkipped: when the data has no dates, or no deal closed before the validation date.
    """
    params = params or CycleParams()
    split = evaluation_split(funnel, test_fraction)
    assert split.validation_date is not None  # a time split always has one
    cutoff = split.validation_date
    model, report = fit_deal_cycle(
        funnel.leads,
        as_of=cutoff,
        features=tuple(funnel.features),
        horizon_days=funnel.horizon_days,
        seed=seed,
        params=params,
    )
    baseline = fit_cycle_baseline(funnel.leads, as_of=cutoff, horizon_days=funnel.horizon_days)
    deals = funnel.leads.iloc[split.test].reset_index(drop=True)
    until = observed_until(funnel)
    return CycleResult(
        model=model,
        baseline=baseline,
        evaluation=evaluate_cycle_model(model, deals, until),
        baseline_evaluation=evaluate_cycle_model(baseline, deals, until),
        split=split,
        fit=report,
        params={**asdict(params), "seed": seed, "test_fraction": test_fraction},
    )
