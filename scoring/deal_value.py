"""Deal value: what a lead's deal books if it is won, as P10/P50/P90 and the expected amount.

The model is location plus residual distribution on the log scale:
`log amount = mu(x) + e`, with `mu` one LightGBM regression (L2 on log amount) and `e` drawn from
the empirical distribution of its out-of-fold residuals. Why this and not three quantile models:

- the centre uses every deal, whereas a P10 or P90 loss learns mostly from the tenth of deals
  beyond it, which matters for the small data sets deal value is usually fitted on;
- quantiles are `mu(x)` plus sorted constants, so they can never cross, and the mean
  (Duan's smearing: `exp(mu) * mean(exp(e))`) comes from the same distribution as the quantiles;
- residuals are taken out of fold, so the interval reflects the error on unseen deals rather
  than the (smaller) in-sample error.

The price is a spread that is the same on the log scale for every deal (a constant coefficient
of variation in money). Small data is handled by LightGBM itself: each leaf is shrunk toward its
parent by `reg_lambda` (a leaf of n deals keeps n / (n + lambda) of its own signal), leaves need
`min_child_samples` deals, and cross-validated early stopping stops at few trees when there is
little to learn, which leaves the prediction near the overall log-mean, the median deal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import KFold

from scoring.fast_predict import predict_array
from scoring.features import FeatureSpec

# Leads as a frame, or as records (attribute -> value per lead, as the API receives them).
Leads = pd.DataFrame | Sequence[Mapping[str, object]]

__all__ = ["QUANTILES", "DealValueModel", "SegmentValueModel", "ValueModel"]

FloatArray = npt.NDArray[np.float64]

QUANTILES = (0.1, 0.5, 0.9)
# Residual distribution kept as this many evenly spaced quantiles (0 %, 1 %, ..., 100 %): enough
# to interpolate any level and to draw amounts in a Monte Carlo forecast, small to store.
_GRID_SIZE = 101
_MAX_TREES = 2000
_EARLY_STOPPING_ROUNDS = 50
# Above this many deals three folds are used: a third of 50,000 deals pins the residual
# quantiles as well as a fifth does, and each fold is a full LightGBM fit.
_FEW_FOLDS_FROM_DEALS = 50_000


def _min_child_samples(n_deals: int) -> int:
    """Deals per leaf: LightGBM's default of 20 from 2,000 deals, down to 5 on tiny data."""
    return int(np.clip(n_deals // 100, 5, 20))


class DealValueModel:
    """Amount of a won deal from lead attributes (see module docstring for the model).

    Args:
        features: lead attribute columns used as features (may be empty: then the model is the
            overall log-amount distribution).
        seed: seed of the fold assignment and of LightGBM.
        n_folds: folds of the cross-validation that picks the tree count and yields the
            out-of-fold residuals (at most 3 above 50,000 deals).
        learning_rate: LightGBM's shrinkage per tree.
        n_threads: LightGBM threads. One by default: on a shared machine OpenMP's spinning
            threads made a 145,000-deal fit 5x slower (67 s against 14 s on 2 busy cores);
            raise it on a dedicated machine. Results are reproducible for a given count.
    """

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        seed: int = 0,
        n_folds: int = 5,
        learning_rate: float = 0.1,
        n_threads: int = 1,
    ) -> None:
        self.features = tuple(features)
        self.seed = seed
        self.n_folds = n_folds
        self.learning_rate = learning_rate
        self.n_threads = n_threads

    def _params(self) -> dict[str, Any]:
        child = self.min_child_samples_
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": 15,
            "min_child_samples": child,
            # LightGBM's default of 100 deals per category group would forbid categorical
            # splits on small data altogether; the leaf minimum is the right guard.
            "min_data_per_group": child,
            "reg_lambda": 5.0,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_threads,
            "verbose": -1,
        }

    def fit(self, won_leads: pd.DataFrame, amounts: pd.Series | None = None) -> DealValueModel:
        """Fit on won deals; `amounts` defaults to their `amount` column (all must be > 0)."""
        values = (won_leads["amount"] if amounts is None else amounts).to_numpy(dtype=float)
        if len(values) < 2 * self.n_folds or not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(
                f"deal value needs at least {2 * self.n_folds} positive amounts; "
                f"got {len(values)} rows, {int(np.sum(~(values > 0)))} not positive"
            )
        log_amount = np.log(values)
        self.n_deals_ = len(values)
        self.min_child_samples_ = _min_child_samples(len(values))
        if not self.features:
            self.feature_spec_: FeatureSpec | None = None
            self.booster_: lgb.Booster | None = None
            self.log_mean_ = float(log_amount.mean())
            self.n_trees_ = self.n_folds_ = 0
            self._set_residuals(log_amount - self.log_mean_)
            return self
        self.feature_spec_ = FeatureSpec(self.features).fit(won_leads)
        matrix = self.feature_spec_.transform(won_leads)
        params = self._params()
        n_folds = min(self.n_folds, 3) if len(values) > _FEW_FOLDS_FROM_DEALS else self.n_folds
        self.n_folds_ = n_folds
        folds = list(
            KFold(n_folds, shuffle=True, random_state=self.seed).split(np.arange(len(values)))
        )
        result = lgb.cv(
            params,
            lgb.Dataset(matrix, log_amount, free_raw_data=False),
            num_boost_round=_MAX_TREES,
            folds=folds,
            stratified=False,
            callbacks=[lgb.early_stopping(_EARLY_STOPPING_ROUNDS, verbose=False)],
            return_cvbooster=True,
        )
        cv_booster = result["cvbooster"]
        self.n_trees_ = int(cv_booster.best_iteration)  # type: ignore[union-attr]
        out_of_fold = np.empty(len(values))
        for booster, (_, held_out) in zip(cv_booster.boosters, folds, strict=True):  # type: ignore[union-attr]
            out_of_fold[held_out] = booster.predict(
                matrix.iloc[held_out], num_iteration=self.n_trees_
            )
        self.booster_ = lgb.train(params, lgb.Dataset(matrix, log_amount), self.n_trees_)
        self.log_mean_ = float(log_amount.mean())
        self._set_residuals(log_amount - out_of_fold)
        return self

    def _set_residuals(self, residuals: FloatArray) -> None:
        self.residual_grid_ = np.quantile(residuals, np.linspace(0.0, 1.0, _GRID_SIZE))
        self.__dict__.pop("_summary_offsets_", None)
        # Duan's smearing factor: E[exp(e)] under the empirical residual distribution.
        self.smearing_ = float(np.mean(np.exp(residuals)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "residual_grid_"):
            raise RuntimeError("DealValueModel is not fitted; call fit first")

    def log_location(self, leads: Leads) -> FloatArray:
        """`mu(x)`: the model's mean log amount of each lead's deal (its log-median, roughly).

        `leads` is a frame or records (attribute -> value per lead, as the API receives them).
        """
        self._check_fitted()
        if self.booster_ is None or self.feature_spec_ is None:
            return np.full(len(leads), self.log_mean_)
        matrix = self.feature_spec_.codes(leads)
        return predict_array(self.booster_, matrix, num_iteration=self.n_trees_)

    def value_summary(self, leads: Leads) -> FloatArray:
        """P10, P50, P90 and mean amount of each lead's deal if won, shape (leads, 4)."""
        location = self.log_location(leads)
        amounts = np.exp(location[:, None] + self._summary_offsets()[None, :])
        return np.column_stack([amounts, np.exp(location) * self.smearing_])

    def _summary_offsets(self) -> FloatArray:
        """`residual_quantile(QUANTILES)`, computed once (the API asks for it per request)."""
        cached: FloatArray | None = self.__dict__.get("_summary_offsets_")
        if cached is None:
            cached = self.__dict__["_summary_offsets_"] = self.residual_quantile(QUANTILES)
        return cached

    def residual_quantile(self, levels: Sequence[float] | FloatArray) -> FloatArray:
        """Quantiles of the log-scale residual at `levels` (monotone in the level)."""
        self._check_fitted()
        grid = np.linspace(0.0, 1.0, _GRID_SIZE)
        return np.asarray(np.interp(np.asarray(levels, dtype=float), grid, self.residual_grid_))

    def predict_quantiles(
        self, leads: pd.DataFrame, levels: Sequence[float] = QUANTILES
    ) -> FloatArray:
        """Amounts at the quantile `levels`, shape (leads, levels), non-decreasing along levels."""
        location = self.log_location(leads)
        offsets = self.residual_quantile(levels)
        return np.asarray(np.exp(location[:, None] + offsets[None, :]))

    def predict_frame(self, leads: pd.DataFrame) -> pd.DataFrame:
        """`lead_id`, `value_p10`, `value_p50`, `value_p90`, `value_mean` (amount if won)."""
        location = self.log_location(leads)
        amounts = np.exp(location[:, None] + self.residual_quantile(QUANTILES)[None, :])
        ids = leads["lead_id"].to_numpy() if "lead_id" in leads else leads.index.to_numpy()
        return pd.DataFrame(
            {
                "lead_id": ids,
                "value_p10": amounts[:, 0],
                "value_p50": amounts[:, 1],
                "value_p90": amounts[:, 2],
                "value_mean": np.exp(location) * self.smearing_,
            }
        )


class SegmentValueModel:
    """The segment median: P10/P50/P90 and mean of training amounts per level of one column.

    The column is the categorical feature whose level medians explain the training log amounts
    best (smallest mean absolute deviation). Levels with fewer than `min_deals` deals, missing
    and unseen values get the overall quantiles; without any such column the model is overall.
    It is the deal-value baseline, and the registered model when it beats LightGBM.

    Args:
        features: candidate segment columns (categorical ones are considered).
        min_deals: training deals a level needs for quantiles of its own (with fewer, P10 and
            P90 are just the extreme deals).
    """

    def __init__(self, features: Sequence[str] = (), *, min_deals: int = 10) -> None:
        self.features = tuple(features)
        self.min_deals = min_deals

    def fit(self, won_leads: pd.DataFrame) -> SegmentValueModel:
        amount = won_leads["amount"].to_numpy(dtype=float)
        log_amount = np.log(amount)
        self.overall_ = self._summary(amount)
        self.column_: str | None = None
        self.levels_: dict[str, FloatArray] = {}
        self.feature_spec_ = FeatureSpec(self.features).fit(won_leads) if self.features else None
        if self.feature_spec_ is None:
            return self
        matrix = self.feature_spec_.transform(won_leads)
        best = float(np.mean(np.abs(log_amount - np.median(log_amount))))
        for column in self.feature_spec_.categorical_features_:
            levels = matrix[column].astype(object).fillna("").to_numpy()
            centres = self._level_medians(levels, log_amount)
            if len(centres) < 2:
                continue
            centre = pd.Series(levels).map(centres).fillna(np.median(log_amount)).to_numpy()
            deviation = float(np.mean(np.abs(log_amount - centre)))
            if deviation < best:
                best, self.column_ = deviation, column
        if self.column_ is not None:
            levels = matrix[self.column_].astype(object).to_numpy()
            for level in self._level_medians(levels, log_amount):
                self.levels_[level] = self._summary(amount[levels == level])
        return self

    def _level_medians(self, levels: npt.NDArray[Any], log_amount: FloatArray) -> dict[str, float]:
        """Median log amount of each level with enough deals (missing values are no level)."""
        frame = pd.DataFrame({"level": levels, "log": log_amount})
        grouped = frame[frame["level"] != ""].groupby("level")["log"]
        medians = grouped.median()[grouped.size() >= self.min_deals]
        return {str(level): float(value) for level, value in medians.items()}

    @staticmethod
    def _summary(amount: FloatArray) -> FloatArray:
        """P10, P50, P90 and mean of amounts."""
        return np.append(np.quantile(amount, QUANTILES), amount.mean())

    def value_summary(self, leads: Leads) -> FloatArray:
        """P10, P50, P90 and mean amount of each lead's deal if won, shape (leads, 4).

        `leads` is a frame or records (attribute -> value per lead, as the API receives them).
        """
        if not hasattr(self, "overall_"):
            raise RuntimeError("SegmentValueModel is not fitted; call fit first")
        if self.column_ is None or self.feature_spec_ is None:
            return np.tile(self.overall_, (len(leads), 1))
        spec = self.feature_spec_
        codes = spec.codes(leads)[:, spec.feature_names_.index(self.column_)]
        names = spec.categories_[self.column_]
        levels = [names[int(code)] if code == code else None for code in codes]
        return np.stack([self.levels_.get(str(level), self.overall_) for level in levels])

    def predict_quantiles(self, leads: pd.DataFrame) -> FloatArray:
        """P10/P50/P90 amounts, shape (leads, 3)."""
        return self.value_summary(leads)[:, : len(QUANTILES)]

    def predict_frame(self, leads: pd.DataFrame) -> pd.DataFrame:
        """`lead_id`, `value_p10`, `value_p50`, `value_p90`, `value_mean` (amount if won)."""
        summary = self.value_summary(leads)
        ids = leads["lead_id"].to_numpy() if "lead_id" in leads else leads.index.to_numpy()
        columns = ["value_p10", "value_p50", "value_p90", "value_mean"]
        frame = pd.DataFrame(summary, columns=columns)
        frame.insert(0, "lead_id", ids)
        return frame


ValueModel = DealValueModel | SegmentValueModel
