"""Lead volume: new leads per week, month or quarter, for the whole funnel and per segment.

Total: daily counts follow a log-linear quasi-Poisson regression on the calendar: a trend (slope,
plus level and slope changes every `changepoint_days` over the first 80 % of the history, so the
extrapolated trend rests on a stretch of data, not the last weeks), weekday effects, month-of-year
effects for the months the history covers twice (a month seen once is indistinguishable from a
ramp-up or a campaign) and a year-end holiday (22 Dec - 2 Jan). Days add up to periods, so month
length, weekday mix and holidays come with each period. The prior scales of the trend changes and
month effects are chosen by Laplace-approximated marginal likelihood: a steady funnel gets a stiff
trend, a regime change a flexible one, small counts shrunken seasonality. Not LightGBM: trees
cannot extrapolate a trend, and one to three years of days are too few for calendar interactions.

Uncertainty of a period total: the coefficients' posterior (it widens with the horizon through
the slope), trend changes after the history (with the chosen prior scales), extra-Poisson noise of
period totals (a gamma multiplier; its variance is the in-sample excess over Poisson at that
frequency) and Poisson noise. `forecast` reports a negative binomial matched to that mean and
variance; `sample_paths` draws the layers, so a path is high or low across periods together.

Segments are shares of the total: each level of the main segment columns has a logit share with a
trend (drifting source mix), or its recent share under `min_segment_leads` leads; a column's
shares sum to 1. The calendar is learned once from the most data, levels add up to the total, and
segment paths thin the total's binomially; the share's own estimation error is left out.

The history runs from the first to the last creation day (or `until`): days after the last lead
are not zero-lead days, as exports often stop adding leads before their last close date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import wraps
from itertools import product
from typing import ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from scoring.errors import FunnelcastInputError
from scoring.funnel import LEAD_COLUMNS, Funnel
from scoring.periods import FREQS, MICROS_PER_DAY, NAT_MICROS, Freq, to_micros
from scoring.segments import column_matches

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ALL = "all"
QUANTILES = (0.1, 0.5, 0.9)
_EPOCH = date(1970, 1, 1)
_YEAR = 365.25
_CHANGEPOINT_RANGE = 0.8
# Prior standard deviations (log scale): growth of tens of percent a year is usual, of e^1 rare;
# weekend flow can be a tenth of a weekday's. The *_SDS are the marginal likelihood's candidates.
_SLOPE_SD = 1.0
_WEEKDAY_SD = 2.0
_HOLIDAY_SD = 1.0
_SHARE_SLOPE_SD = 0.5  # change of a segment's share log-odds per year
_SLOPE_CHANGE_SDS = (0.03, 0.1, 0.3)
_LEVEL_SDS = (0.01, 0.1, 0.3)
_MONTH_SDS = (0.01, 0.1, 0.2, 0.4)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_blas_thread(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """One BLAS thread: on matrices of a few hundred by a few dozen, OpenBLAS threads only spin
    (on a busy machine, 100 ms a product instead of 0.3 ms)."""

    @wraps(method)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with threadpool_limits(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return run


def epoch_day(day: date) -> int:
    return (day - _EPOCH).days


def from_epoch_day(day: int) -> date:
    return _EPOCH + timedelta(days=int(day))


def period_starts(days: IntArray, freq: Freq) -> IntArray:
    """First day of the period of `freq` containing each day (epoch day numbers)."""
    if freq == "week":
        return days - (days + 3) % 7  # 1970-01-01 was a Thursday; weeks start on Monday
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    if freq == "quarter":
        months -= months % 3
    return np.asarray(months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64))


def period_ends(starts: IntArray, freq: Freq) -> IntArray:
    """Last day of the periods starting on `starts`."""
    if freq == "week":
        return starts + 6
    step = 3 if freq == "quarter" else 1
    months = starts.astype("datetime64[D]").astype("datetime64[M]") + step
    return np.asarray(months.astype("datetime64[D]").astype(np.int64) - 1)


@dataclass(frozen=True)
class _Design:
    """The daily regression's columns and priors (days are epoch day numbers)."""

    first_day: int
    last_day: int
    changepoints: tuple[int, ...]
    spacing: int
    months: tuple[int, ...]  # calendar months with an effect of their own (1-12)
    slope_change_sd: float = 0.1
    level_sd: float = 0.1
    month_sd: float = 0.2

    def matrix(self, days: IntArray) -> FloatArray:
        columns = [np.ones((len(days), 1)), (days[:, None] - self.first_day) / _YEAR]
        columns.append(_trend_changes(days, np.asarray(self.changepoints, dtype=np.int64)))
        columns.append((days - period_starts(days, "week"))[:, None] == np.arange(7))
        stamps = days.astype("datetime64[D]")
        months = stamps.astype("datetime64[M]")
        month = months.astype(np.int64) % 12 + 1
        day_of_month = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
        columns.append(month[:, None] == np.asarray(self.months))
        holiday = ((month == 12) & (day_of_month >= 22)) | ((month == 1) & (day_of_month <= 2))
        columns.append(holiday[:, None])
        return np.hstack(columns).astype(np.float64)

    def precision(self) -> FloatArray:
        changes = len(self.changepoints)
        sds = [np.inf, _SLOPE_SD] + [self.level_sd] * changes + [self.slope_change_sd] * changes
        sds += [_WEEKDAY_SD] * 7 + [self.month_sd] * len(self.months) + [_HOLIDAY_SD]
        return np.asarray(1.0 / np.square(sds))

    def future_changes(self, days: IntArray) -> tuple[FloatArray, FloatArray]:
        """Level and slope changes that may come after the history, every `spacing` days from
        its end, and their standard deviations."""
        count = -(-max(int(days.max()) - self.last_day, 0) // self.spacing)
        columns = _trend_changes(days, self.last_day + 1 + self.spacing * np.arange(count))
        sds = np.repeat([self.level_sd, self.slope_change_sd], count)
        return columns, sds


def _trend_changes(days: IntArray, points: IntArray) -> FloatArray:
    """A level step and a slope change (years since the point) at each point."""
    after = days[:, None] - points[None, :]
    return np.hstack([(after >= 0).astype(np.float64), np.maximum(after, 0) / _YEAR])


@dataclass(frozen=True)
class _CountFit:
    """The total's fitted regression and its uncertainty layers."""

    design: _Design
    coef: FloatArray
    cov: FloatArray
    alpha: dict[str, float]  # extra-Poisson variance of period totals, per frequency


@dataclass(frozen=True)
class _Segment:
    """A level of a segment column: its share log-odds are `intercept + slope × years`."""

    column: str
    value: object
    label: str
    intercept: float
    slope: float


def _newton(
    x: FloatArray,
    y: FloatArray,
    precision: FloatArray,
    start: FloatArray,
    scale: float = 1.0,
    trials: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, float]:
    """Penalised GLM fit, Poisson (log link) or binomial of `trials` (logit link).

    Minimises (deviance / 2) / scale + ½ Σ precision·β²; returns the coefficients, the Hessian
    at them and the log likelihood (up to a constant).
    """

    def loglik(eta: FloatArray) -> float:
        if trials is None:
            return float(y @ eta - np.exp(eta).sum())
        return float(y @ eta - trials @ np.logaddexp(0.0, eta))

    def objective(beta: FloatArray) -> float:
        return -loglik(np.minimum(x @ beta, 50.0)) / scale + 0.5 * float(precision @ beta**2)

    def curvature(beta: FloatArray) -> tuple[FloatArray, FloatArray]:
        eta = np.minimum(x @ beta, 50.0)
        if trials is None:
            mean = var = np.exp(eta)
        else:
            p = 1.0 / (1.0 + np.exp(-eta))
            mean, var = trials * p, trials * p * (1 - p)
        gradient = x.T @ (mean - y) / scale + precision * beta
        return gradient, (x.T * var) @ x / scale + np.diag(precision)

    beta, current = start.copy(), objective(start)
    for _ in range(100):
        gradient, hessian = curvature(beta)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while (candidate := objective(beta - size * step)) > current and size > 1e-8:
            size /= 2  # step halving keeps every Newton step a descent
        beta, current = beta - size * step, candidate
        if np.max(np.abs(size * step)) < 1e-8:
            break
    return beta, curvature(beta)[1], loglik(np.minimum(x @ beta, 50.0))


def _fit_total(design: _Design, counts: FloatArray) -> _CountFit:
    days = np.arange(design.first_day, design.last_day + 1)
    x = design.matrix(days)
    start = np.zeros(x.shape[1])
    start[0] = np.log(counts.mean() + 0.1)
    beta, _, _ = _newton(x, counts, design.precision(), start)
    mu = np.exp(x @ beta)
    # Quasi-likelihood: noisier data (campaigns, bulk imports) count for less against the priors.
    dispersion = max(1.0, float(((counts - mu) ** 2 / mu).sum()) / max(len(days) - len(beta), 1))
    best: tuple[float, _Design, FloatArray, FloatArray] | None = None
    for slope_sd, level_sd, month_sd in product(
        _SLOPE_CHANGE_SDS, _LEVEL_SDS, _MONTH_SDS if design.months else _MONTH_SDS[:1]
    ):
        candidate = replace(design, slope_change_sd=slope_sd, level_sd=level_sd, month_sd=month_sd)
        precision = candidate.precision()
        beta, hessian, loglik = _newton(x, counts, precision, beta, dispersion)
        # Laplace approximation of the log marginal likelihood, constants dropped.
        evidence = (
            loglik / dispersion
            - 0.5 * precision @ beta**2
            + 0.5 * np.log(precision[precision > 0]).sum()
            - 0.5 * np.linalg.slogdet(hessian)[1]
        )
        if best is None or evidence > best[0]:
            best = (evidence, candidate, beta, hessian)
    assert best is not None
    _, chosen, beta, hessian = best
    mu = np.exp(x @ beta)
    alpha: dict[str, float] = {}
    previous = 0.0
    for freq in FREQS:  # too few periods: borrow the finer frequency's (as if fully correlated)
        estimate = _extra_variance(days, counts, mu, freq)
        alpha[freq] = previous = estimate if estimate is not None else previous
    return _CountFit(chosen, beta, np.asarray(np.linalg.inv(hessian), dtype=np.float64), alpha)


def _extra_variance(days: IntArray, y: FloatArray, mu: FloatArray, freq: Freq) -> float | None:
    """Method-of-moments excess over Poisson of complete in-sample period totals."""
    starts = period_starts(days, freq)
    complete = (starts >= days[0]) & (period_ends(starts, freq) <= days[-1])
    periods, index = np.unique(starts[complete], return_inverse=True)
    if len(periods) < 12:  # too few to estimate (quarters of a short history)
        return None
    actual, fitted = np.bincount(index, y[complete]), np.bincount(index, mu[complete])
    return float(max(0.0, ((actual - fitted) ** 2 - fitted).sum() / (fitted**2).sum()))


def _fit_share(years: FloatArray, mine: FloatArray, total: FloatArray) -> tuple[float, float]:
    """Share log-odds intercept and slope per year from daily counts of a level and the total."""
    x = np.column_stack([np.ones(len(years)), years])
    share = (mine.sum() + 0.5) / (total.sum() + 1.0)
    start = np.array([np.log(share / (1 - share)), 0.0])
    precision = np.array([0.0, 1.0 / _SHARE_SLOPE_SD**2])
    beta, _, _ = _newton(x, mine, precision, start, trials=total)
    return float(beta[0]), float(beta[1])


def _as_freq(text: object) -> Freq:
    for freq in FREQS:
        if text == freq:
            return freq
    raise FunnelcastInputError(f"freq must be one of {', '.join(FREQS)}, not {text!r}")


def _nbinom_quantiles(mean: FloatArray, var: FloatArray) -> IntArray:
    """P10/P50/P90 of the negative binomial (Poisson when not overdispersed) with these moments."""
    q = np.asarray(QUANTILES)[None, :]
    excess = var - mean
    out = stats.poisson.ppf(q, np.maximum(mean, 1e-12)[:, None])
    wide = excess > 1e-9 * np.maximum(mean, 1.0)
    if wide.any():
        r = mean[wide] ** 2 / excess[wide]
        out[wide] = stats.nbinom.ppf(q, r[:, None], (r / (r + mean[wide]))[:, None])
    return np.where(mean[:, None] > 0, out, 0).astype(np.int64)


class LeadVolumeModel(BaseEstimator):  # type: ignore[misc]
    """New leads per period and segment, with intervals and sample paths (module doc).

    Args:
        segment_columns: the columns to forecast per level; None picks the funnel's categorical
            features with 2 to `max_segment_levels` levels.
        max_segment_levels: a column with more levels is not a segment column.
        min_segment_leads: a level with fewer leads keeps its recent share, without a trend.
        changepoint_days: days between possible trend changes.
        annual_seasonality: month-of-year effects, for the months the history covers twice.
        share_window_days: the recent window whose mix sets a small level's share.
    """

    def __init__(
        self,
        segment_columns: Sequence[str] | None = None,
        max_segment_levels: int = 12,
        min_segment_leads: int = 200,
        changepoint_days: int = 61,
        annual_seasonality: bool = True,
        share_window_days: int = 182,
    ) -> None:
        self.segment_columns = segment_columns
        self.max_segment_levels = max_segment_levels
        self.min_segment_leads = min_segment_leads
        self.changepoint_days = changepoint_days
        self.annual_seasonality = annual_seasonality
        self.share_window_days = share_window_days

    @_one_blas_thread
    def fit(self, funnel: Funnel, until: date | None = None) -> LeadVolumeModel:
        """Fit on the leads created up to `until` (default: the last creation day); days up to
        `until` without a lead count as days without leads."""
        if not funnel.dated or "created_at" not in funnel.leads.columns:
            raise FunnelcastInputError("lead volume needs lead creation dates (created_at)")
        micros = to_micros(funnel.leads["created_at"])
        days = micros // MICROS_PER_DAY
        known = micros != NAT_MICROS
        if not known.any():
            raise FunnelcastInputError("lead volume needs leads with a creation date")
        last = epoch_day(until) if until is not None else int(days[known].max())
        kept = known & (days <= last)
        if not kept.any():
            raise FunnelcastInputError(f"lead volume: no lead was created by {until}")
        first = int(days[kept].min())
        length, spacing = last - first + 1, self.changepoint_days
        # A month seen once cannot be told apart from the trend of that stretch (a ramp-up, a
        # campaign): only months the history covers twice (56 days) get an effect.
        history = np.arange(first, last + 1).astype("datetime64[D]").astype("datetime64[M]")
        month_days = np.bincount(history.astype(np.int64) % 12, minlength=12)
        months = tuple(int(m) + 1 for m in np.flatnonzero(month_days >= 56))
        design = _Design(
            first_day=first,
            last_day=last,
            changepoints=tuple(
                range(first + spacing, first + int(_CHANGEPOINT_RANGE * length), spacing)
            ),
            spacing=spacing,
            months=months if self.annual_seasonality else (),
        )
        offsets = days[kept] - first
        total = np.bincount(offsets, minlength=length).astype(np.float64)
        self.total_ = _fit_total(design, total)
        self.n_leads_ = int(kept.sum())
        self.first_day_, self.last_day_ = from_epoch_day(first), from_epoch_day(last)
        leads = funnel.leads.loc[kept]
        picked = self.segment_columns
        self.segment_columns_ = tuple(self._pick_columns(funnel) if picked is None else picked)
        self.segments_ = {
            segment.label: segment
            for column in self.segment_columns_
            for segment in self._fit_column(column, leads[column], offsets, total)
        }
        return self

    def _fit_column(
        self, column: str, values: pd.Series, offsets: IntArray, total: FloatArray
    ) -> list[_Segment]:
        """A share model per level; missing values are a level too (for the sum, not reported)."""
        codes, levels = pd.factorize(values)
        years = np.arange(len(total)) / _YEAR
        recent = offsets >= len(total) - self.share_window_days
        fitted = []
        for code in range(-1 if (codes == -1).any() else 0, len(levels)):
            mine = codes == code
            if mine.sum() >= self.min_segment_leads:
                counts = np.bincount(offsets[mine], minlength=len(total)).astype(np.float64)
                intercept, slope = _fit_share(years, counts, total)
            else:  # too few leads for a trend: the recent share, kept off 0 and 1
                share = ((mine & recent).sum() + 1e-9) / (recent.sum() + 2e-9)
                intercept, slope = float(np.log(share / (1 - share))), 0.0
            value = None if code == -1 else levels[code]
            label = f"{column}=(missing)" if value is None else f"{column}={value}"
            fitted.append(_Segment(column, value, label, intercept, slope))
        return fitted

    def _pick_columns(self, funnel: Funnel) -> list[str]:
        """Categorical features (text, categories, booleans) with few levels."""
        leads, picked = funnel.leads, []
        for column in (c for c in funnel.features if c in leads and c not in LEAD_COLUMNS):
            values = leads[column]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                continue
            if 2 <= values.nunique() <= self.max_segment_levels:
                picked.append(column)
        return picked

    @property
    def segments(self) -> list[str]:
        """The segment labels this model forecasts: "all", then "column=level"."""
        check_is_fitted(self, "segments_")
        return [ALL, *(label for label, s in self.segments_.items() if s.value is not None)]

    def _segment(self, segment: Mapping[str, str] | str | None) -> _Segment | None:
        """The segment named by a filter ({"region": "Nordics"}) or a label; None is all."""
        if isinstance(segment, str):
            key, _, value = segment.partition("=")
            segment = {} if segment.strip() == ALL else {key.strip(): value.strip()}
        if not segment:
            return None
        if len(segment) == 1:
            ((column, wanted),) = segment.items()
            levels = [
                s for s in self.segments_.values() if s.column == column and s.value is not None
            ]
            hits = column_matches(pd.Series([s.value for s in levels], dtype=object), str(wanted))
            if hits.any():
                return levels[int(np.flatnonzero(hits)[0])]
        raise FunnelcastInputError(
            f"lead volume has no forecast for segment {dict(segment)}; it forecasts one column "
            f"at a time, segments: {', '.join(self.segments)}"
        )

    def _daily_share(self, segment: _Segment, days: IntArray) -> FloatArray:
        """The level's share of each day's leads, normalised over its column's levels."""
        years = (days - self.total_.design.first_day) / _YEAR
        siblings = [s for s in self.segments_.values() if s.column == segment.column]
        odds = {s.label: np.exp(np.clip(s.intercept + s.slope * years, -50, 50)) for s in siblings}
        shares = {label: o / (1 + o) for label, o in odds.items()}
        return np.asarray(shares[segment.label] / sum(shares.values()))

    def _layout(
        self, segment: _Segment | None, first: IntArray, last: IntArray
    ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """Days covered, day-to-period membership, the total's daily log mean and the share."""
        days = np.arange(first.min(), last.max() + 1)
        inside = ((days >= first[:, None]) & (days <= last[:, None])).astype(np.float64)
        x = self.total_.design.matrix(days)
        share = np.ones(len(days)) if segment is None else self._daily_share(segment, days)
        return days, inside, x, share

    def _moments(
        self, segment: _Segment | None, first: IntArray, last: IntArray, freq: Freq
    ) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of the lead count of each day range [first, last]."""
        fit, (days, inside, x, share) = self.total_, self._layout(segment, first, last)
        weight = inside * np.exp(x @ fit.coef)
        level = weight.sum(axis=1)
        weight /= np.maximum(level, 1e-300)[:, None]
        gradient = weight @ x  # d log(level) / d coef
        log_var = np.einsum("pi,ij,pj->p", gradient, fit.cov, gradient)
        changes, sds = fit.design.future_changes(days)
        log_var += (weight @ changes) ** 2 @ sds**2
        mean = level * np.exp(log_var / 2)
        var = mean + level**2 * np.exp(2 * log_var) * (1 + fit.alpha[freq]) - mean**2
        p = weight @ share  # binomial thinning of the total by the period's share
        return p * mean, p**2 * var + p * (1 - p) * mean

    def _paths(
        self,
        segment: _Segment | None,
        first: IntArray,
        last: IntArray,
        freq: Freq,
        draws: int,
        rng: np.random.Generator,
    ) -> IntArray:
        fit, (days, inside, x, share) = self.total_, self._layout(segment, first, last)
        values, vectors = np.linalg.eigh(fit.cov)
        root = vectors * np.sqrt(np.maximum(values, 0.0))
        eta = x @ (fit.coef + rng.standard_normal((draws, len(fit.coef))) @ root.T).T
        changes, sds = fit.design.future_changes(days)
        eta += changes @ (rng.standard_normal((draws, len(sds))) * sds).T
        daily = np.exp(np.minimum(eta, 50.0))
        latent = (inside @ daily).T  # draws × periods
        if (alpha := fit.alpha[freq]) > 0:
            latent *= rng.gamma(1.0 / alpha, alpha, latent.shape)
        counts = rng.poisson(latent)
        if segment is None:
            return np.asarray(counts, dtype=np.int64)
        p = ((inside @ (daily * share[:, None])).T / np.maximum(latent, 1e-300)).clip(0, 1)
        return np.asarray(rng.binomial(counts, p), dtype=np.int64)

    def _grid(
        self, freq: Freq, periods: int, start_after: date | None
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Period starts, and the first and last day counted in each, after `start_after`."""
        check_is_fitted(self, "segments_")
        freq = _as_freq(freq)
        if periods < 1:
            raise FunnelcastInputError(f"periods must be at least 1, not {periods}")
        first = epoch_day(start_after or self.last_day_) + 1
        grid = period_starts(np.array([first]), freq)
        for _ in range(periods - 1):
            grid = np.append(grid, period_ends(grid[-1:], freq) + 1)
        return grid, np.maximum(grid, first), period_ends(grid, freq)

    @_one_blas_thread
    def forecast(
        self,
        freq: Freq,
        periods: int,
        start_after: date | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """Leads created in the `periods` periods after `start_after` (default: history end).

        When `start_after` is not a period's last day, the first period counts only the days
        after it (`forecast_from`): the rest of the current period, as a goal check needs.
        """
        starts, first, last = self._grid(freq, periods, start_after)
        return self._frame(self._segment(segment), starts, first, last, freq)

    def _frame(
        self,
        segment: _Segment | None,
        starts: IntArray,
        first: IntArray,
        last: IntArray,
        freq: Freq,
    ) -> pd.DataFrame:
        mean, var = self._moments(segment, first, last, freq)
        quantiles = _nbinom_quantiles(mean, var)
        return pd.DataFrame(
            {
                "period_start": [from_epoch_day(d) for d in starts],
                "period_end": [from_epoch_day(d) for d in last],
                "forecast_from": [from_epoch_day(d) for d in first],
                "segment": ALL if segment is None else segment.label,
                "mean": mean,
                "p10": quantiles[:, 0],
                "p50": quantiles[:, 1],
                "p90": quantiles[:, 2],
            }
        )

    @_one_blas_thread
    def sample_paths(
        self,
        freq: Freq,
        periods: int,
        draws: int,
        rng: np.random.Generator,
        segment: Mapping[str, str] | None = None,
        start_after: date | None = None,
    ) -> IntArray:
        """Draws × periods lead counts for the periods `forecast` reports (same arguments)."""
        _, first, last = self._grid(freq, periods, start_after)
        return self._paths(self._segment(segment), first, last, freq, draws, rng)

    @_one_blas_thread
    def daily_mean(
        self, first: date, last: date, segment: Mapping[str, str] | None = None
    ) -> pd.Series:
        """Expected leads per day (plug-in): where within a period simulated leads arrive."""
        chosen = self._segment(segment)
        span = np.array([epoch_day(first)]), np.array([epoch_day(last)])
        days, _, x, share = self._layout(chosen, *span)
        mean = np.exp(x @ self.total_.coef) * share
        return pd.Series(mean, index=[from_epoch_day(d) for d in days], name="mean")

    @_one_blas_thread
    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast rows for `period_start` (snapped to its period), optional `freq`, `segment`.

        Defaults: monthly, the whole funnel. Each period is forecast whole.
        """
        check_is_fitted(self, "segments_")
        request = pd.DataFrame(
            {
                "day": pd.to_datetime(frame["period_start"])
                .to_numpy(dtype="datetime64[D]")
                .astype(np.int64),
                "freq": frame["freq"].astype(str) if "freq" in frame else "month",
                "segment": frame["segment"].astype(str) if "segment" in frame else ALL,
            }
        )
        parts = []
        groups = request.groupby(["freq", "segment"], sort=False).indices
        for key, rows in groups.items():
            freq, label = _as_freq(key[0]), str(key[1])  # type: ignore[index]
            starts = period_starts(request["day"].to_numpy()[rows], freq)
            part = self._frame(
                self._segment(label), starts, starts, period_ends(starts, freq), freq
            )
            parts.append(part.set_axis(rows))
        return pd.concat(parts).sort_index().reset_index(drop=True)
