"""The lead-conversion model: canonical leads in, calibrated P(won within the horizon) out.

`LeadConversionModel` is the one object that is pickled, logged and served: it holds the
`FeatureSpec` (preprocessing), a scorer that turns the feature matrix into log-odds, and the
Platt calibration that turns log-odds into probabilities. Three scorers share that interface:
boosted trees (LightGBM), logistic regression and a binned naive Bayes. Fitting them is
`training.lead_conversion`'s job; everything needed to predict lives here, because the API
loads this object and `serve` may not import `training`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from scoring.fast_predict import averaged_booster, predict_array
from scoring.features import FeatureSpec
from scoring.predict_threads import predict_options

Kind = Literal["lightgbm", "logistic_regression", "naive_bayes"]
KINDS: tuple[Kind, ...] = ("lightgbm", "logistic_regression", "naive_bayes")
BASE_VALUE = "base_value"
# What a scorer reads: the `FeatureSpec.codes` array (trees) or the `transform` frame (others).
Matrix = np.ndarray | pd.DataFrame
Leads = pd.DataFrame | Sequence[Mapping[str, object]]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))  # no overflow for large |x|


@dataclass(frozen=True)
class PlattCalibration:
    """P(won) = sigmoid(slope × log-odds + intercept), fitted on leads the scorer did not see.

    Platt scaling has two parameters, so a few hundred held-out leads fit it stably; isotonic
    regression needs far more per step, and its steps tie leads that the scorer had ranked.
    """

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, log_odds: np.ndarray, won: np.ndarray) -> PlattCalibration:
        """Maximum likelihood with Platt's smoothed targets (which keep the fit finite on
        separable data): Newton's method with step halving, on standardised scores."""
        x = np.asarray(log_odds, dtype=np.float64)
        y = np.asarray(won, dtype=np.float64)
        centre, scale = float(x.mean()), float(x.std())
        if not scale > 0:
            return cls()  # every lead scored alike: nothing to calibrate against
        positives, negatives = y.sum(), y.size - y.sum()
        target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
        design = np.column_stack([(x - centre) / scale, np.ones_like(x)])

        def loss(params: np.ndarray) -> float:
            z = design @ params
            return float(np.sum(np.logaddexp(0.0, z) - target * z))

        params = np.array([1.0, 0.0])
        for _ in range(100):
            p = _sigmoid(design @ params)
            hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
            step = np.linalg.solve(hessian, design.T @ (p - target))
            current, shrink = loss(params), 1.0
            while loss(params - shrink * step) > current and shrink > 1e-6:
                shrink /= 2
            params = params - shrink * step
            if np.abs(shrink * step).max() < 1e-10:
                break
        slope = params[0] / scale
        return cls(float(slope), float(params[1] - slope * centre))

    def log_odds(self, raw: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(raw) + self.intercept

    def probability(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.log_odds(raw))


class Scorer(Protocol):
    """Turns the feature matrix into log-odds, and splits them into per-feature parts."""

    # `Any`: each scorer reads its own form of the matrix (see `LeadConversionModel.matrix`).
    def log_odds(self, matrix: Any) -> np.ndarray: ...

    def contributions(self, matrix: Any) -> np.ndarray:
        """(leads, features + 1): each feature's log-odds part, then the base value."""
        ...


@dataclass(frozen=True)
class BoostedTrees:
    """LightGBM boosters (one, or the fold models of cross-fitting) whose raw scores average."""

    boosters: tuple[lgb.Booster, ...]

    def log_odds(self, matrix: Matrix) -> np.ndarray:
        if isinstance(matrix, np.ndarray):  # one call on the merged folds (see fast_predict)
            return predict_array(self.averaged(), matrix, raw_score=True)
        scores = [
            np.asarray(b.predict(matrix, raw_score=True, **predict_options()))
            for b in self.boosters
        ]
        return np.asarray(np.mean(scores, axis=0), dtype=np.float64)

    def averaged(self) -> lgb.Booster:
        """The boosters merged into one whose raw score is their mean (built once)."""
        merged: lgb.Booster | None = self.__dict__.get("_averaged")
        if merged is None:
            merged = averaged_booster(self.boosters)
            object.__setattr__(self, "_averaged", merged)  # a cache on a frozen dataclass
        return merged

    def contributions(self, matrix: Matrix) -> np.ndarray:
        # SHAP values are additive, so the average of the boosters' parts sums to the average
        # raw score.
        parts = [
            np.asarray(b.predict(matrix, pred_contrib=True, **predict_options()))
            for b in self.boosters
        ]
        return np.asarray(np.mean(parts, axis=0), dtype=np.float64)


def logistic_regression_pipeline(spec: FeatureSpec, c: float = 1.0, seed: int = 0) -> Pipeline:
    """One-hot categories (missing is a level), median-impute and scale numbers (with a
    missing flag), L2 logistic regression. One column block per feature, so each feature's
    share of the log-odds can be read back."""
    blocks = []
    for position, feature in enumerate(spec.feature_names_):
        numeric = feature in spec.numeric_features_
        step = (
            make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
            )
            if numeric
            else OneHotEncoder(handle_unknown="ignore")
        )
        # Block names are positions: a feature name may hold "__", which scikit-learn forbids.
        blocks.append((f"f{position}", step, [feature]))
    return Pipeline(
        [
            ("columns", ColumnTransformer(blocks, verbose_feature_names_out=False)),
            ("classifier", LogisticRegression(C=c, max_iter=5000, random_state=seed)),
        ]
    )


@dataclass(frozen=True)
class LinearScorer:
    """A fitted `logistic_regression_pipeline`."""

    pipeline: Pipeline

    def log_odds(self, matrix: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.decision_function(matrix), dtype=np.float64)

    def contributions(self, matrix: pd.DataFrame) -> np.ndarray:
        columns: ColumnTransformer = self.pipeline.named_steps["columns"]
        classifier: LogisticRegression = self.pipeline.named_steps["classifier"]
        weighted = sparse.csr_matrix(columns.transform(matrix)).multiply(classifier.coef_[0])
        weighted = sparse.csc_matrix(weighted)
        parts = [
            np.asarray(weighted[:, columns.output_indices_[f"f{position}"]].sum(axis=1)).ravel()
            for position in range(matrix.shape[1])
        ]
        base = np.full(len(matrix), float(classifier.intercept_[0]))
        return np.column_stack([*parts, base])


class BinnedNaiveBayes(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Naive Bayes on levels: categories as they are, numbers in quantile bins, and missing
    values as a level of their own (so that not answering can carry signal).

    Args:
        n_bins: quantile bins per numeric feature.
        alpha: additive (Laplace) smoothing of the level counts.
    """

    def __init__(self, n_bins: int = 10, alpha: float = 1.0) -> None:
        self.n_bins = n_bins
        self.alpha = alpha

    def _codes(self, matrix: pd.DataFrame) -> np.ndarray:
        codes = np.zeros(matrix.shape, dtype=np.int64)  # level 0 = missing
        for j, feature in enumerate(matrix.columns):
            values = matrix[feature]
            if isinstance(values.dtype, pd.CategoricalDtype):
                codes[:, j] = values.cat.codes.to_numpy() + 1
            else:
                numbers = values.to_numpy(dtype=np.float64)
                binned = np.searchsorted(self.edges_[feature], numbers, side="right") + 1
                codes[:, j] = np.where(np.isnan(numbers), 0, binned)
        return codes

    def fit(self, matrix: pd.DataFrame, y: Sequence[int] | np.ndarray) -> BinnedNaiveBayes:
        won = np.asarray(y, dtype=np.int64)
        self.classes_ = np.array([0, 1])
        self.edges_: dict[str, np.ndarray] = {}
        levels = []
        for feature in matrix.columns:
            values = matrix[feature]
            if isinstance(values.dtype, pd.CategoricalDtype):
                levels.append(len(values.cat.categories) + 1)
                continue
            numbers = values.to_numpy(dtype=np.float64)
            present = numbers[~np.isnan(numbers)]
            quantiles = np.linspace(0, 1, self.n_bins + 1)[1:-1]
            edges = np.unique(np.quantile(present, quantiles)) if present.size else np.array([])
            self.edges_[feature] = edges
            levels.append(edges.size + 2)
        codes = self._codes(matrix)
        counts = np.bincount(won, minlength=2).astype(np.float64)
        self.class_log_prior_ = np.log(counts / counts.sum())
        self.log_likelihood_ = []
        for j, n_levels in enumerate(levels):
            table = np.stack(
                [np.bincount(codes[won == c, j], minlength=n_levels) for c in (0, 1)]
            ).astype(np.float64)
            smoothed = (table + self.alpha) / (counts[:, None] + self.alpha * n_levels)
            self.log_likelihood_.append(np.log(smoothed))
        return self

    def contributions(self, matrix: pd.DataFrame) -> np.ndarray:
        """Per-feature log-likelihood ratios, then the log prior odds."""
        check_is_fitted(self, "log_likelihood_")
        codes = self._codes(matrix)
        parts = [table[1, codes[:, j]] - table[0, codes[:, j]]
                 for j, table in enumerate(self.log_likelihood_)]  # fmt: skip
        prior = self.class_log_prior_[1] - self.class_log_prior_[0]
        return np.column_stack([*parts, np.full(len(matrix), prior)])

    def decision_function(self, matrix: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.contributions(matrix).sum(axis=1))

    def predict_proba(self, matrix: pd.DataFrame) -> np.ndarray:
        p = _sigmoid(self.decision_function(matrix))
        return np.column_stack([1 - p, p])

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        return (self.decision_function(matrix) > 0).astype(np.int64)


@dataclass(frozen=True)
class NaiveBayesScorer:
    """A fitted `BinnedNaiveBayes`."""

    model: BinnedNaiveBayes

    def log_odds(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.model.decision_function(matrix)

    def contributions(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.model.contributions(matrix)


class LeadConversionModel:
    """Calibrated P(won within `horizon_days` of creation) of canonical leads.

    Args:
        kind: which scorer this is ("lightgbm", "logistic_regression", "naive_bayes").
        feature_spec: the fitted `FeatureSpec`; leads go through it first.
        scorer: the fitted scorer (log-odds from the feature matrix).
        horizon_days: the label's horizon.
        calibration: maps the scorer's log-odds to probabilities; None when the scorer's own
            log-odds are probabilities already (logistic regression fitted on log loss).
        params: the settings the scorer was trained with (for the record).

    Attributes:
        training_scores_: calibrated probabilities of the training leads, sorted ascending
            (the reference for percentiles and grades); set by `remember_training_scores`.
    """

    def __init__(
        self,
        kind: Kind,
        feature_spec: FeatureSpec,
        scorer: Scorer,
        horizon_days: int,
        calibration: PlattCalibration | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self.feature_spec = feature_spec
        self.scorer = scorer
        self.horizon_days = horizon_days
        self.calibration = calibration
        self.params = dict(params or {})
        self.training_scores_ = np.array([], dtype=np.float64)

    @property
    def feature_names(self) -> list[str]:
        """The lead attributes the model reads, in model order."""
        return list(self.feature_spec.feature_names_)

    def matrix(self, leads: Leads) -> Matrix:
        """What the scorer reads for `leads` (a frame, or records as the API receives them).

        Trees read the float code array, which skips pandas for records; the linear and naive
        Bayes scorers read the categorical frame.
        """
        if isinstance(self.scorer, BoostedTrees):
            return self.feature_spec.codes(leads)
        if isinstance(leads, pd.DataFrame):
            return self.feature_spec.transform(leads)
        return self.feature_spec.frame_from_codes(self.feature_spec.codes(leads))

    def log_odds(self, leads: Leads) -> np.ndarray:
        """The scorer's raw log-odds (before calibration) of each lead."""
        return self.scorer.log_odds(self.matrix(leads))

    def probability_of(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from raw log-odds."""
        if self.calibration is None:
            return _sigmoid(raw)
        return self.calibration.probability(raw)

    def predict_proba(self, leads: Leads) -> np.ndarray:
        """Calibrated P(won within the horizon), one value per lead (1-D).

        `leads` holds canonical lead columns; attributes the model does not know are ignored,
        missing ones count as not given, and category values never seen in training as missing.
        """
        return self.probability_of(self.log_odds(leads))

    def predict_frame(self, leads: pd.DataFrame) -> pd.DataFrame:
        """`lead_id`, `probability` and, once training scores are kept, `percentile`."""
        probability = self.predict_proba(leads)
        ids = leads["lead_id"].to_numpy() if "lead_id" in leads.columns else leads.index.to_numpy()
        frame = pd.DataFrame({"lead_id": ids, "probability": probability})
        if self.training_scores_.size:
            frame["percentile"] = self.percentile(probability)
        return frame

    def contributions(self, leads: pd.DataFrame) -> pd.DataFrame:
        """Each feature's part of the raw log-odds, plus `base_value`; a row sums to the raw
        score (`log_odds`). For LightGBM these are TreeSHAP values (`pred_contrib`).

        The calibration is increasing, so a part that raises the raw score raises the
        probability; its size in calibrated log-odds is `calibration_slope` times as large.
        """
        parts = self.contribution_array(leads)
        index = leads["lead_id"].to_numpy() if "lead_id" in leads.columns else None
        return pd.DataFrame(parts, columns=[*self.feature_names, BASE_VALUE], index=index)

    def contribution_array(self, leads: Leads) -> np.ndarray:
        """`contributions` as an array (leads, features + 1), for frames or records."""
        return self.scorer.contributions(self.matrix(leads))

    @property
    def calibration_slope(self) -> float:
        """d(calibrated log-odds) / d(raw log-odds): 1 without a calibration."""
        return 1.0 if self.calibration is None else self.calibration.slope

    def remember_training_scores(self, leads: pd.DataFrame) -> LeadConversionModel:
        """Keep the sorted calibrated probabilities of the training leads."""
        self.training_scores_ = np.sort(self.predict_proba(leads))
        return self

    def percentile(self, probabilities: np.ndarray) -> np.ndarray:
        """Share (0-100) of training leads scored at or below each probability.

        "At" is up to a relative 1e-12: the same lead's probability from LightGBM and from its
        compiled trees (`scoring.compiled_trees`) can differ in the last bits, and a lead
        scored like a training lead must get the same percentile either way."""
        if self.training_scores_.size == 0:
            raise ValueError("the model has no training scores; call remember_training_scores")
        probabilities = np.asarray(probabilities, dtype=np.float64)
        at_most = probabilities + np.abs(probabilities) * 1e-12
        below = np.searchsorted(self.training_scores_, at_most, side="right")
        return np.asarray(100.0 * below / self.training_scores_.size)

    def __repr__(self) -> str:
        return (
            f"LeadConversionModel(kind={self.kind!r}, features={len(self.feature_names)}, "
            f"horizon_days={self.horizon_days})"
        )
