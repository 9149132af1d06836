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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats

from scoring.funnel import Funnel
from scoring.lead_volume_forecaster import (
    ALL,
    QUANTILES,
    FloatArray,
    IntArray,
    VolumeForecaster,
    creation_history,
    epoch_day,
    from_epoch_day,
    one_blas_thread,
    period_ends,
    period_starts,
    pick_segment_columns,
)
from scoring.lead_volume_regression import (
    CHANGEPOINT_RANGE,
    YEAR_DAYS,
    CountFit,
    Design,
    fit_share,
    fit_total,
)
from scoring.periods import Freq

__all__ = [
    "ALL",
    "LeadVolumeModel",
    "epoch_day",
    "from_epoch_day",
    "period_ends",
    "period_starts",
]

# Models pickled before the regression moved to its own module name these classes here.
_Design, _CountFit = Design, CountFit


@dataclass(frozen=True)
class _Segment:
    """A level of a segment column: its share log-odds are `intercept + slope × years`."""

    column: str
    value: object
    label: str
    intercept: float
    slope: float


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


class LeadVolumeModel(VolumeForecaster[_Segment]):
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

    kind = "count_regression"

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

    @one_blas_thread
    def fit(self, funnel: Funnel, until: date | None = None) -> LeadVolumeModel:
        """Fit on the leads created up to `until` (default: the last creation day); days up to
        `until` without a lead count as days without leads."""
        days, kept, first, last = creation_history(funnel, until)
        length, spacing = last - first + 1, self.changepoint_days
        # A month seen once cannot be told apart from the trend of that stretch (a ramp-up, a
        # campaign): only months the history covers twice (56 days) get an effect.
        history = np.arange(first, last + 1).astype("datetime64[D]").astype("datetime64[M]")
        month_days = np.bincount(history.astype(np.int64) % 12, minlength=12)
        months = tuple(int(m) + 1 for m in np.flatnonzero(month_days >= 56))
        design = Design(
            first_day=first,
            last_day=last,
            changepoints=tuple(
                range(first + spacing, first + int(CHANGEPOINT_RANGE * length), spacing)
            ),
            spacing=spacing,
            months=months if self.annual_seasonality else (),
        )
        offsets = days[kept] - first
        total = np.bincount(offsets, minlength=length).astype(np.float64)
        self.total_ = fit_total(design, total)
        self.n_leads_ = int(kept.sum())
        self.first_day_, self.last_day_ = from_epoch_day(first), from_epoch_day(last)
        leads = funnel.leads.loc[kept]
        picked = self.segment_columns
        if picked is None:
            picked = pick_segment_columns(funnel, self.max_segment_levels)
        self.segment_columns_ = tuple(picked)
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
        years = np.arange(len(total)) / YEAR_DAYS
        recent = offsets >= len(total) - self.share_window_days
        fitted = []
        for code in range(-1 if (codes == -1).any() else 0, len(levels)):
            mine = codes == code
            if mine.sum() >= self.min_segment_leads:
                counts = np.bincount(offsets[mine], minlength=len(total)).astype(np.float64)
                intercept, slope = fit_share(years, counts, total)
            else:  # too few leads for a trend: the recent share, kept off 0 and 1
                share = ((mine & recent).sum() + 1e-9) / (recent.sum() + 2e-9)
                intercept, slope = float(np.log(share / (1 - share))), 0.0
            value = None if code == -1 else levels[code]
            label = f"{column}=(missing)" if value is None else f"{column}={value}"
            fitted.append(_Segment(column, value, label, intercept, slope))
        return fitted

    def _daily_share(self, segment: _Segment, days: IntArray) -> FloatArray:
        """The level's share of each day's leads, normalised over its column's levels."""
        years = (days - self.total_.design.first_day) / YEAR_DAYS
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

    def _distribution(
        self, segment: _Segment | None, first: IntArray, last: IntArray, freq: Freq
    ) -> tuple[FloatArray, IntArray]:
        mean, var = self._moments(segment, first, last, freq)
        return mean, _nbinom_quantiles(mean, var)

    def _daily(self, segment: _Segment | None, days: IntArray) -> FloatArray:
        _, _, x, share = self._layout(segment, days[:1], days[-1:])
        return np.asarray(np.exp(x @ self.total_.coef) * share)
