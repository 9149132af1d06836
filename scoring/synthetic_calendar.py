"""Calendar of the synthetic funnel (`scoring.synthetic`): when leads arrive and when deals close.

Everything is per calendar day, day 0 being the first day leads can be created. Two curves:

- lead intensity (relative daily arrival rate): growth of 30 % a year, weekdays >> weekends
  (Mon 1.0, Tue-Wed 1.05, Thu 1.0, Fri 0.85, Sat 0.15, Sun 0.10), a summer dip (July 0.7,
  August 0.8) and a year-end dip (22 Dec - 2 Jan 0.35).
- closing intensity `g(day)` (multiplies a deal's base hazard): weekdays 1, Saturday 0.10,
  Sunday 0.05; ×2.0 in the last 14 days of each quarter (quarter-end push); ×0.25 from 22 Dec to
  2 Jan (holidays), ×0.8 in July. Lost deals use `g` without the quarter-end push: nobody pushes
  to lose a deal before the quarter closes.

A deal created on day `c` with base hazard `b` and minimum delay `m` closes on day `c + k` with
probability `(1 - exp(-b g[c+k])) × P(still open before c+k)` for `k ≥ m`, never before. With
`Gz[i] = g[0] + ... + g[i-1]` the chance to be closed by day `c + k` is exactly
`1 - exp(-b (Gz[c+k+1] - Gz[c+m]))`; sampling is inverse-transform with `searchsorted` on `Gz`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Days after the last creation day that the calendar covers: enough for the 180-day horizon of
# the truth plus the longest minimum delay; deals beyond it are open at `end` anyway.
CALENDAR_TAIL_DAYS = 400
_WEEKDAY_LEADS = np.array([1.0, 1.05, 1.05, 1.0, 0.85, 0.15, 0.10])
_WEEKDAY_CLOSES = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.10, 0.05])
_GROWTH_PER_YEAR = 0.3
QUARTER_PUSH_DAYS = 14
QUARTER_PUSH = 2.0


@dataclass(frozen=True)
class Calendar:
    """Day grid from `first_day` on: lead intensity and cumulative closing intensities."""

    first_day: pd.Timestamp
    creation_days: int
    lead_intensity: FloatArray
    won_cum: FloatArray
    lost_cum: FloatArray


def _holiday(days: pd.DatetimeIndex) -> npt.NDArray[np.bool_]:
    month, day = days.month.to_numpy(), days.day.to_numpy()
    return np.asarray(((month == 12) & (day >= 22)) | ((month == 1) & (day <= 2)))


def build_calendar(first_day: pd.Timestamp, creation_days: int) -> Calendar:
    """The calendar for leads created on `creation_days` days from `first_day` on."""
    days = pd.date_range(first_day, periods=creation_days + CALENDAR_TAIL_DAYS, freq="D")
    weekday = days.day_of_week.to_numpy()
    month = days.month.to_numpy()
    holiday = _holiday(days)
    years = np.arange(len(days)) / 365.25
    season = np.where(month == 7, 0.7, np.where(month == 8, 0.8, 1.0))
    leads = np.exp(_GROWTH_PER_YEAR * years) * _WEEKDAY_LEADS[weekday] * season
    leads = np.where(holiday, 0.35 * leads, leads)[:creation_days]

    quarter_end = (days + pd.offsets.QuarterEnd(0)).to_numpy()
    days_left = (quarter_end - days.to_numpy()).astype("timedelta64[D]").astype(np.int64)
    lost_g = _WEEKDAY_CLOSES[weekday] * np.where(holiday, 0.25, 1.0) * np.where(month == 7, 0.8, 1)
    won_g = lost_g * np.where(days_left < QUARTER_PUSH_DAYS, QUARTER_PUSH, 1.0)
    return Calendar(
        first_day=first_day,
        creation_days=creation_days,
        lead_intensity=leads / leads.sum(),
        won_cum=np.concatenate([[0.0], np.cumsum(won_g)]),
        lost_cum=np.concatenate([[0.0], np.cumsum(lost_g)]),
    )


def sample_close_offsets(
    cum: FloatArray,
    created_day: IntArray,
    min_delay: IntArray,
    base: FloatArray,
    exp_draws: FloatArray,
) -> IntArray:
    """Days from creation to close for deals that do close; `-1` when beyond the calendar.

    `exp_draws` are standard exponential draws: the deal closes on the first day on which its
    cumulative hazard `base × (Gz[c+k+1] - Gz[c+m])` reaches the draw.
    """
    target = cum[created_day + min_delay] + exp_draws / base
    index = np.searchsorted(cum, target, side="left")
    offsets = index - created_day - 1
    return np.where(index >= len(cum), -1, offsets).astype(np.int64)


def close_cdf(
    cum: FloatArray, created_day: IntArray, min_delay: IntArray, base: FloatArray, days: int
) -> FloatArray:
    """Exact P(close day offset ≤ `days`) for deals that eventually close, per deal."""
    start = cum[created_day + min_delay]
    stop = cum[created_day + days + 1]
    return np.where(days >= min_delay, 1.0 - np.exp(-base * np.maximum(stop - start, 0.0)), 0.0)


def median_offset(
    cum: FloatArray, created_day: IntArray, min_delay: IntArray, base: FloatArray
) -> IntArray:
    """The day offset at which the close CDF first reaches one half."""
    target = cum[created_day + min_delay] + np.log(2.0) / base
    offsets = np.searchsorted(cum, target, side="left") - created_day - 1
    return np.asarray(offsets, dtype=np.int64)
