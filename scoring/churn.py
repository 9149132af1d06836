"""Churn: P(a customer churns within d days), for any d, from tenure and customer attributes.

A discrete-time hazard model. Tenure is cut into 30-day buckets; a customer contributes one row
per bucket while at risk (from `started_at` to churn, or to the end of observation when still
active), labelled 1 in the bucket where it churned. LightGBM (binary) learns the hazard
`h(bucket, x)`, the chance of churning within a bucket given survival to its start, with the
bucket as a feature, so risk can rise or fall with tenure and differently by segment.

The trees boost from the tenure-only hazard (a life table of the training customers, smoothed
where churns are sparse) given as LightGBM's initial score: with few trees or little signal the
model falls back to "churn by tenure", never to one flat average hazard, which would badly
under-predict the first months (churn risk usually falls with tenure).

Censoring: an active customer is data up to its censoring time; its last, partly observed bucket
counts with the observed fraction as weight (the actuarial life-table convention), so it neither
inflates nor deflates that bucket's hazard. Within a bucket the hazard is spread evenly over its
days, which gives a survival curve `S(t | x)` continuous in `t` and a churn probability
`1 - S(a + d) / S(a)` for a customer of tenure `a`, non-decreasing in `d` by construction.

Long tenures are pooled: the last bucket from which on at least 50 churns were seen stands for
every longer tenure too, with one hazard. Few customers reach those tenures, LightGBM cannot
extrapolate, and a constant late hazard is the cautious guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.features import FeatureSpec
from scoring.predict_threads import predict_options

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BUCKET_DAYS = 30
CHURN_COLUMNS = ("account_id", "started_at", "churned_at")
HORIZONS = (90, 365)
_ONE_DAY = np.timedelta64(1, "D")
_TENURE = "tenure_bucket"
_MAX_TREES = 1000
_EARLY_STOPPING_ROUNDS = 50
_VALIDATION_SHARE = 0.2
# The tenure-only hazard of a bucket is averaged over neighbouring buckets until it rests on
# this many churns, so a bucket with a few churns by chance does not get a spike; the pooled tail
# holds at least this many churns too (a 1/sqrt(50) = 14 % standard error on its hazard).
_MIN_BUCKET_CHURNS = 50


def churn_features(customers: pd.DataFrame) -> list[str]:
    """Customer columns usable as features: every attribute plus `value`, if not all missing."""
    return [c for c in customers.columns if c not in CHURN_COLUMNS and customers[c].notna().any()]


def days_between(later: Any, earlier: pd.Series) -> FloatArray:
    """Fractional days from each of `earlier` to `later` (one moment, or one per row)."""
    end = np.asarray(later, dtype="datetime64[ns]")
    return np.asarray((end - earlier.to_numpy(dtype="datetime64[ns]")) / _ONE_DAY, dtype=float)


def tenure_days(
    customers: pd.DataFrame, observed_until: pd.Timestamp
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Days from start to churn (event) or to `observed_until` (censored), and the event flags.

    Churn after `observed_until` has not happened yet as far as this data knows.
    """
    churned = customers["churned_at"]
    event = (churned.notna() & (churned <= observed_until)).to_numpy(dtype=bool)
    end = churned.where(event, observed_until)
    return np.maximum(days_between(end, customers["started_at"]), 0.0), event


def person_buckets(
    days: FloatArray, event: npt.NDArray[np.bool_], bucket_days: int = BUCKET_DAYS
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """One row per customer and tenure bucket at risk: (customer, bucket, churned, weight).

    A customer of `days` tenure was at risk in buckets 0 .. floor(days / bucket_days); the last
    is labelled 1 when it churned there, else weighted by the share of it that was observed.
    """
    last = np.floor(days / bucket_days).astype(np.int64)
    customer = np.repeat(np.arange(len(days)), last + 1)
    starts = np.cumsum(last + 1) - (last + 1)
    bucket = np.arange(len(customer)) - starts[customer]
    in_last = bucket == last[customer]
    label = (in_last & event[customer]).astype(np.float64)
    observed = days / bucket_days - last
    weight = np.where(in_last & ~event[customer], observed[customer], 1.0)
    keep = weight > 0
    return customer[keep], bucket[keep], label[keep], weight[keep]


def smoothed_hazard(churns: FloatArray, at_risk: FloatArray) -> FloatArray:
    """Per-bucket hazard churns / at risk, over the narrowest centred window with enough churns."""
    churn_sum = np.concatenate([[0.0], np.cumsum(churns)])
    risk_sum = np.concatenate([[0.0], np.cumsum(at_risk)])
    n = len(churns)
    hazard = np.empty(n)
    for bucket in range(n):
        for width in range(n + 1):
            low, high = max(0, bucket - width), min(n, bucket + width + 1)
            if churn_sum[high] - churn_sum[low] >= _MIN_BUCKET_CHURNS or high - low == n:
                break
        total_risk = risk_sum[high] - risk_sum[low]
        hazard[bucket] = (churn_sum[high] - churn_sum[low]) / total_risk if total_risk else 0.0
    return hazard


def _numeric(column: pd.Series) -> FloatArray:
    """A feature as LightGBM reads it: floats, or category codes with missing as NaN."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy(np.float64)
        return np.where(codes < 0, np.nan, codes)
    return column.to_numpy(np.float64)


def _integrated(per_bucket: FloatArray, tenure: FloatArray, bucket_days: int) -> FloatArray:
    """Cumulative hazard at `tenure` from per-bucket cumulative hazards (rows: customers).

    The last column's hazard continues beyond it (the pooled tail).
    """
    position = tenure / bucket_days
    last = per_bucket.shape[1] - 1
    bucket = np.minimum(np.floor(position).astype(np.int64), last)
    before = np.concatenate([np.zeros((len(per_bucket), 1)), np.cumsum(per_bucket, axis=1)], 1)
    rows = np.arange(len(per_bucket))
    return np.asarray(before[rows, bucket] + (position - bucket) * per_bucket[rows, bucket])


class ChurnModel:
    """P(churn within d days) of customers (see module docstring).

    Args:
        features: customer attribute columns used as features (may be empty: tenure only).
        bucket_days: length of a tenure bucket.
        seed: seed of the validation split, the row subsample and LightGBM.
        max_rows: above this many customer-bucket rows, rows without churn are subsampled
            (kept rows weighted up by the inverse of the sampling rate), as DESIGN §4 allows.
        n_threads: LightGBM threads. One by default: on a shared machine OpenMP's spinning
            threads make LightGBM several times slower (5x measured on 2 busy cores); raise it
            on a dedicated machine. Results are reproducible for a given count.
    """

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        bucket_days: int = BUCKET_DAYS,
        seed: int = 0,
        max_rows: int = 500_000,
        n_threads: int = 1,
    ) -> None:
        self.features = tuple(features)
        self.bucket_days = bucket_days
        self.seed = seed
        self.max_rows = max_rows
        self.n_threads = n_threads

    def _params(self, n_rows: int) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": 0.05,
            # Attribute effects on churn are weak next to tenure's; small trees (main effects
            # and pairwise interactions) let early stopping run longer before noise wins.
            "num_leaves": 4,
            # Churn is rare per bucket (about 1 %): a leaf needs enough rows to hold some churns.
            "min_child_samples": int(np.clip(n_rows // 500, 50, 2000)),
            "min_data_per_group": 100,
            "reg_lambda": 10.0,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_threads,
            "verbose": -1,
        }

    def _matrix(self, customers: pd.DataFrame) -> pd.DataFrame:
        if self.feature_spec_ is None:
            return pd.DataFrame(index=pd.RangeIndex(len(customers)))
        return self.feature_spec_.transform(customers)

    def fit(self, customers: pd.DataFrame, observed_until: pd.Timestamp) -> ChurnModel:
        """Fit on customers as known at `observed_until` (later starts are left out)."""
        known = customers[customers["started_at"] <= observed_until].reset_index(drop=True)
        days, event = tenure_days(known, observed_until)
        customer, bucket, label, weight = person_buckets(days, event, self.bucket_days)
        churns_beyond = np.cumsum(np.bincount(bucket, weights=label)[::-1])[::-1]
        supported = np.flatnonzero(churns_beyond >= _MIN_BUCKET_CHURNS)
        self.last_bucket_ = int(supported[-1]) if len(supported) else 0
        bucket = np.minimum(bucket, self.last_bucket_)
        hazard = smoothed_hazard(
            np.bincount(bucket, weights=label).astype(np.float64),
            np.bincount(bucket, weights=weight).astype(np.float64),
        )
        self.base_logit_ = np.log(np.clip(hazard, 1e-6, 0.5) / (1 - np.clip(hazard, 1e-6, 0.5)))
        rng = np.random.default_rng(self.seed)
        if len(label) > self.max_rows:
            rate = (self.max_rows - label.sum()) / (len(label) - label.sum())
            keep = (label == 1) | (rng.random(len(label)) < rate)
            weight = np.where(label == 1, weight, weight / rate)
            customer, bucket, label, weight = (
                customer[keep],
                bucket[keep],
                label[keep],
                weight[keep],
            )
        self.feature_spec_ = FeatureSpec(self.features).fit(known) if self.features else None
        rows = self._matrix(known).iloc[customer].reset_index(drop=True)
        rows[_TENURE] = bucket.astype(np.float64)
        init = self.base_logit_[bucket]
        params = self._params(len(rows))

        def data(part: npt.NDArray[np.bool_]) -> lgb.Dataset:
            return lgb.Dataset(rows[part], label[part], weight=weight[part], init_score=init[part])

        # Early stopping on whole customers held out, so no customer is on both sides.
        check = (rng.random(len(known)) < _VALIDATION_SHARE)[customer]
        booster = lgb.train(
            params,
            data(~check),
            _MAX_TREES,
            valid_sets=[data(check)],
            callbacks=[lgb.early_stopping(_EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        self.n_trees_ = max(int(booster.best_iteration), 1)
        # Refit on every customer with the chosen number of trees.
        self.booster_ = lgb.train(params, data(np.ones(len(rows), dtype=bool)), self.n_trees_)
        self.observed_until_ = observed_until
        self.n_customers_, self.n_churned_, self.n_rows_ = len(known), int(event.sum()), len(rows)
        return self

    def _bucket_hazards(self, matrix: pd.DataFrame, n_buckets: int) -> FloatArray:
        """Cumulative hazard of each bucket 0 .. n_buckets-1 (capped at the pooled tail)."""
        # The same rows are scored once per bucket: convert them to LightGBM's numeric form once
        # (a category is its code in the learned levels, as LightGBM itself does for pandas
        # input) instead of paying pandas' conversion for every bucket.
        rows = np.column_stack(
            [_numeric(matrix[c]) for c in matrix.columns] + [np.zeros(len(matrix))]
        )
        columns = []
        for bucket in range(min(n_buckets, self.last_bucket_ + 1)):
            rows[:, -1] = bucket
            logit = self.booster_.predict(
                rows, num_iteration=self.n_trees_, raw_score=True, **predict_options()
            )
            # -log(1 - sigmoid(z)) = log(1 + exp(z)): the bucket's cumulative hazard.
            columns.append(np.logaddexp(0.0, logit + self.base_logit_[bucket]))
        return np.column_stack(columns)

    def _conditional(
        self, customers: pd.DataFrame, tenure: FloatArray, days: Sequence[float]
    ) -> list[FloatArray]:
        """P(churn within each of `days` | survived to `tenure`), per customer."""
        if not hasattr(self, "booster_"):
            raise RuntimeError("ChurnModel is not fitted; call fit first")
        if len(customers) == 0:
            return [np.zeros(0) for _ in days]
        dated = np.isfinite(tenure)  # no start date: no tenure, no probability
        tenure = np.where(dated, tenure, 0.0)
        furthest = float(tenure.max()) + max(days)
        per_bucket = self._bucket_hazards(
            self._matrix(customers), int(furthest // self.bucket_days) + 1
        )
        start = _integrated(per_bucket, tenure, self.bucket_days)
        return [
            np.where(
                dated,
                -np.expm1(-(_integrated(per_bucket, tenure + d, self.bucket_days) - start)),
                np.nan,
            )
            for d in days
        ]

    def _tenure(self, customers: pd.DataFrame, as_of: Any) -> tuple[FloatArray, Any]:
        when = pd.Timestamp.now("UTC").tz_localize(None) if as_of is None else as_of
        if isinstance(when, pd.Series):
            when = when.to_numpy()
        tenure = days_between(when, customers["started_at"])
        # A customer that has not started by `as_of` is scored from its start.
        return np.maximum(tenure, 0.0), when

    def churn_curve(
        self,
        customers: pd.DataFrame,
        days: Sequence[float],
        as_of: pd.Timestamp | pd.Series | None = None,
    ) -> FloatArray:
        """P(churn within each of `days` of `as_of`), given still active at `as_of`.

        Args:
            customers: `started_at`, optionally `churned_at`, and the feature columns.
            days: horizons in days (>= 0); one hazard pass serves them all.
            as_of: a moment, one per customer (a Series aligned with `customers`, e.g. their
                `started_at` for "within d days of starting"), or None for now.

        Returns:
            Shape (customers, days), non-decreasing along `days`; NaN for customers that
            churned by `as_of` (no longer at risk) or have no start date.
        """
        tenure, when = self._tenure(customers, as_of)
        curves = self._conditional(customers, tenure, [float(d) for d in days])
        return np.column_stack([self._mask_churned(p, customers, when) for p in curves])

    def p_churn_within(
        self,
        customers: pd.DataFrame,
        days: float,
        as_of: pd.Timestamp | pd.Series | None = None,
    ) -> FloatArray:
        """P(churn within `days` of `as_of`) (see `churn_curve`)."""
        return np.asarray(self.churn_curve(customers, [days], as_of)[:, 0])

    @staticmethod
    def _mask_churned(probability: FloatArray, customers: pd.DataFrame, when: Any) -> FloatArray:
        if "churned_at" not in customers:
            return probability
        gone = (customers["churned_at"] <= when).to_numpy(dtype=bool)
        return np.where(gone, np.nan, probability)

    def predict_frame(
        self, customers: pd.DataFrame, as_of: pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """`account_id`, `tenure_days`, `p_churn_90d`, `p_churn_365d` as of `as_of` (default now).

        Probabilities are NaN for customers that churned by then.
        """
        tenure, when = self._tenure(customers, as_of)
        probabilities = self._conditional(customers, tenure, HORIZONS)
        frame = pd.DataFrame({"account_id": customers["account_id"].to_numpy()})
        frame["tenure_days"] = tenure
        for horizon, probability in zip(HORIZONS, probabilities, strict=True):
            frame[f"p_churn_{horizon}d"] = self._mask_churned(probability, customers, when)
        return frame
