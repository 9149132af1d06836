"""The seasonal naive lead-volume model: each future period repeats the latest observed one a
whole season back (12 months, 52 weeks, 4 quarters) when the history spans two years, else the
last complete period (one year of history cannot show a season, and a year back would be the
data's ramp-up).

It is lead-volume's baseline (DESIGN §4) and, when it beats the count regression on the
back-test, the registered model, so it answers every request `LeadVolumeModel` answers:
`forecast`, `sample_paths`, `daily_mean`, `predict_frame`, per segment.

Uncertainty: period totals follow a seasonal random walk, y[t] = y[t - lag] + e[t], with e
normal of the root mean square of the in-sample lag differences, so the interval widens with
the square root of the number of seasons a period reaches back (Hyndman & Athanasopoulos, FPP3
§5.5) and `sample_paths` are correlated across periods of the same season position. Counts are
clipped at 0 and rounded. A period only partly requested (`forecast_from` after its start)
gets the share of its days; within a period, leads are spread evenly over the days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from scoring.funnel import Funnel
from scoring.lead_volume_forecaster import (
    FloatArray,
    IntArray,
    VolumeForecaster,
    creation_history,
    epoch_day,
    from_epoch_day,
    period_ends,
    period_starts,
    pick_segment_columns,
)
from scoring.periods import Freq

SEASON: dict[Freq, int] = {"week": 52, "month": 12, "quarter": 4}
SEASONAL_HISTORY_DAYS = 730  # two years: a year-back value exists for a whole year of periods
_Z80 = 1.2815515655446004  # standard normal 90 % quantile


def period_index(starts: IntArray, freq: Freq) -> IntArray:
    """Consecutive numbers of the periods starting on `starts` (epoch day numbers)."""
    if freq == "week":
        return (starts + 3) // 7  # a Monday's (epoch day + 3) is a multiple of 7
    months = starts.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return np.asarray(months // 3 if freq == "quarter" else months, dtype=np.int64)


@dataclass(frozen=True)
class _NaiveLevel:
    """A level of a segment column and its leads per history day."""

    column: str
    value: object
    label: str
    daily: IntArray


@dataclass(frozen=True)
class _Seasons:
    """Complete history periods of one frequency and how far back the naive looks."""

    first: int  # period index of the first complete period
    totals: FloatArray  # leads in each complete period, consecutive from `first`
    lag: int
    sd: float  # standard deviation of a one-season step of the random walk

    @property
    def last(self) -> int:
        return self.first + len(self.totals) - 1

    def sources(self, index: IntArray) -> tuple[IntArray, IntArray]:
        """For each target period, the history period it repeats and the seasons back."""
        steps = np.maximum(-(-(index - self.last) // self.lag), 1)
        return np.clip(index - steps * self.lag, self.first, self.last), steps


class SeasonalNaiveVolume(VolumeForecaster[_NaiveLevel]):
    """New leads per period and segment by the seasonal naive method (module doc).

    Args:
        segment_columns: the columns to forecast per level; None picks the funnel's categorical
            features with 2 to `max_segment_levels` levels (as `LeadVolumeModel` does).
        max_segment_levels: a column with more levels is not a segment column.
    """

    kind = "seasonal_naive"

    def __init__(
        self, segment_columns: Sequence[str] | None = None, max_segment_levels: int = 12
    ) -> None:
        self.segment_columns = segment_columns
        self.max_segment_levels = max_segment_levels

    def fit(self, funnel: Funnel, until: date | None = None) -> SeasonalNaiveVolume:
        """Count the leads created each day up to `until` (default: the last creation day)."""
        days, kept, first, last = creation_history(funnel, until)
        offsets = days[kept] - first
        length = last - first + 1
        self.first_day_, self.last_day_ = from_epoch_day(first), from_epoch_day(last)
        self.n_leads_ = int(kept.sum())
        self.seasonal_ = length >= SEASONAL_HISTORY_DAYS
        self.daily_ = np.bincount(offsets, minlength=length).astype(np.int64)
        picked = self.segment_columns
        if picked is None:
            picked = pick_segment_columns(funnel, self.max_segment_levels)
        self.segment_columns_ = tuple(picked)
        leads = funnel.leads.loc[kept]
        levels: dict[str, _NaiveLevel] = {}
        for column in self.segment_columns_:
            codes, values = pd.factorize(leads[column])
            for code in range(-1 if (codes == -1).any() else 0, len(values)):
                value = None if code == -1 else values[code]
                label = f"{column}=(missing)" if value is None else f"{column}={value}"
                daily = np.bincount(offsets[codes == code], minlength=length).astype(np.int64)
                levels[label] = _NaiveLevel(column, value, label, daily)
        self.segments_ = levels
        return self

    def _seasons(self, segment: _NaiveLevel | None, freq: Freq) -> _Seasons:
        """The complete history periods of `freq` for the segment, lag and step deviation."""
        daily = self.daily_ if segment is None else segment.daily
        first = epoch_day(self.first_day_)
        days = np.arange(first, first + len(daily), dtype=np.int64)
        starts = period_starts(days, freq)
        complete = (starts >= days[0]) & (period_ends(starts, freq) <= days[-1])
        seen, inverse = np.unique(starts[complete], return_inverse=True)
        totals = np.bincount(inverse, daily[complete], minlength=len(seen)).astype(np.float64)
        if len(seen) == 0:  # shorter than one period: the history's rate for a whole period
            length = int(period_ends(starts[-1:], freq)[0] - starts[-1] + 1)
            rate = float(daily.mean()) * length
            index = period_index(starts[-1:], freq)
            return _Seasons(int(index[0]), np.array([rate]), 1, float(np.sqrt(max(rate, 1.0))))
        lag = SEASON[freq] if self.seasonal_ else 1
        steps = totals[lag:] - totals[:-lag]
        # Without a single lag difference (a short history), Poisson noise of the period total.
        sd = float(np.sqrt(np.mean(steps**2))) if len(steps) else float(np.sqrt(totals.mean()))
        return _Seasons(int(period_index(seen[:1], freq)[0]), totals, lag, sd)

    def _targets(self, first: IntArray, last: IntArray, freq: Freq) -> tuple[IntArray, FloatArray]:
        """Period index of each [first, last] and the share of its period's days it covers."""
        starts = period_starts(first, freq)
        share = (last - first + 1) / (period_ends(starts, freq) - starts + 1)
        return period_index(starts, freq), np.asarray(share, dtype=np.float64)

    def _distribution(
        self, segment: _NaiveLevel | None, first: IntArray, last: IntArray, freq: Freq
    ) -> tuple[FloatArray, IntArray]:
        seasons = self._seasons(segment, freq)
        index, share = self._targets(first, last, freq)
        source, steps = seasons.sources(index)
        point = seasons.totals[source - seasons.first] * share
        spread = _Z80 * seasons.sd * np.sqrt(steps) * share
        quantiles = np.column_stack([point - spread, point, point + spread])
        return point, np.rint(np.maximum(quantiles, 0.0)).astype(np.int64)

    def _paths(
        self,
        segment: _NaiveLevel | None,
        first: IntArray,
        last: IntArray,
        freq: Freq,
        draws: int,
        rng: np.random.Generator,
    ) -> IntArray:
        seasons = self._seasons(segment, freq)
        index, share = self._targets(first, last, freq)
        end = max(int(index.max()), seasons.last)
        # The random walk from the history on: a path is high or low across the periods that
        # repeat the same season position.
        walk = np.empty((draws, end - seasons.first + 1))
        walk[:, : len(seasons.totals)] = seasons.totals
        for position in range(len(seasons.totals), walk.shape[1]):
            back = max(position - seasons.lag, 0)
            walk[:, position] = walk[:, back] + seasons.sd * rng.standard_normal(draws)
        values = walk[:, np.clip(index - seasons.first, 0, None)]
        past = index <= seasons.last  # a history period: the one-step forecast from a lag back
        if past.any():
            source, _ = seasons.sources(index[past])
            noise = seasons.sd * rng.standard_normal((draws, int(past.sum())))
            values[:, past] = seasons.totals[source - seasons.first] + noise
        return np.rint(np.maximum(values * share, 0.0)).astype(np.int64)

    def _daily(self, segment: _NaiveLevel | None, days: IntArray) -> FloatArray:
        months = np.unique(period_starts(days, "month"))
        mean, _ = self._distribution(segment, months, period_ends(months, "month"), "month")
        month_days = period_ends(months, "month") - months + 1
        position = np.searchsorted(months, period_starts(days, "month"))
        return np.asarray(mean[position] / month_days[position], dtype=np.float64)
