"""The sales calendar of a day and of a span of days, as model features (vectorised, numpy only).

Deals close in waves: at month and quarter ends, rarely at weekends, slowly over the year-end
holidays and the summer. A model that predicts *when* a deal closes needs to see the calendar of
each future period it predicts for; these functions turn dates into that calendar.

Days are whole calendar days counted from 1970-01-01 (`int64`), the unit `datetime64[D]` uses.

A calendar feature is only as good as the history that shows its values. Features that turn once
a year (`YEARLY_FEATURES`) are left out of a model that has seen closes for less than two years
(`calendar_columns`): with one year or less, next month's value was never seen, or seen once in a
stretch unlike today (the funnel's first months, a one-off push), and trees extrapolate from it.
The month and quarter positions turn every quarter and are always kept.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# Sales teams push in the last two weeks of a quarter and the last week of a month.
QUARTER_END_WINDOW_DAYS = 14
MONTH_END_WINDOW_DAYS = 7

SPAN_FEATURES = (
    "days_to_month_end",
    "days_to_quarter_end",
    "month_of_quarter",
    "month",
    "week_of_year",
    "weekday_share",
    "month_end_share",
    "quarter_end_share",
    "quarter_end_inside",
    "holiday_share",
    "summer_share",
)
"""Columns of `span_calendar`: the first five describe the span's first day, the rest its days."""

YEARLY_FEATURES = ("month", "week_of_year", "holiday_share", "summer_share")
"""The `SPAN_FEATURES` whose values come round once a year."""
YEARLY_HISTORY_DAYS = 730
"""Days of close history from which `YEARLY_FEATURES` are used: each value seen in two years."""

DAY_EFFECTS = (
    "month_of_quarter_2",
    "month_of_quarter_3",
    "in_month_end",
    "in_quarter_end",
    "is_quarter_end",
    "is_holiday_season",
)
"""Day-level 0/1 indicators whose effect on the daily close rate `WeekProfile` holds."""


def to_days(values: pd.Series | pd.DatetimeIndex | np.ndarray | Sequence[object]) -> IntArray:
    """Calendar days since 1970-01-01 of datetimes (the time of day is dropped)."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    stamps = pd.to_datetime(series)
    if stamps.isna().any():
        raise ValueError("dates must not be missing")
    as_days = stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    return np.asarray(as_days.astype(np.int64), dtype=np.int64)


def _month_and_quarter(days: IntArray) -> dict[str, IntArray]:
    dates = days.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    month = (months.astype(np.int64) % 12 + 1).astype(np.int64)
    month_of_quarter = (month - 1) % 3 + 1
    month_end = (months + 1).astype("datetime64[D]").astype(np.int64) - 1
    quarter_end = (months + (4 - month_of_quarter)).astype("datetime64[D]").astype(np.int64) - 1
    day_of_year = days - dates.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    return {
        "month": month,
        "month_of_quarter": month_of_quarter,
        "day_of_month": days - months.astype("datetime64[D]").astype(np.int64) + 1,
        "days_to_month_end": month_end - days,
        "days_to_quarter_end": quarter_end - days,
        "week_of_year": day_of_year // 7 + 1,
    }


def day_calendar(days: IntArray) -> dict[str, IntArray]:
    """Calendar of single days: month, position in month and quarter, weekday and season flags.

    Keys: `month` (1-12), `month_of_quarter` (1-3), `day_of_month`, `days_to_month_end`,
    `days_to_quarter_end` (0 on the last day), `week_of_year` (1-53, weeks counted from
    1 January), `weekday` (Monday 0), and 0/1 flags `is_weekday`, `in_month_end` (last
    `MONTH_END_WINDOW_DAYS` days), `in_quarter_end` (last `QUARTER_END_WINDOW_DAYS` days),
    `is_quarter_end` (its last day), `is_holiday_season` (22 December to 2 January),
    `is_summer` (July and August).
    """
    days = np.asarray(days, dtype=np.int64)
    calendar = _month_and_quarter(days)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    month, day = calendar["month"], calendar["day_of_month"]
    flags = {
        "is_weekday": weekday < 5,
        "in_month_end": calendar["days_to_month_end"] < MONTH_END_WINDOW_DAYS,
        "in_quarter_end": calendar["days_to_quarter_end"] < QUARTER_END_WINDOW_DAYS,
        "is_quarter_end": calendar["days_to_quarter_end"] == 0,
        "is_holiday_season": ((month == 12) & (day >= 22)) | ((month == 1) & (day <= 2)),
        "is_summer": (month == 7) | (month == 8),
    }
    return {
        **calendar,
        "weekday": weekday,
        **{name: flag.astype(np.int64) for name, flag in flags.items()},
    }


def calendar_columns(history_days: float) -> tuple[str, ...]:
    """The `SPAN_FEATURES` a model with `history_days` days of close history can learn from."""
    if history_days >= YEARLY_HISTORY_DAYS:
        return SPAN_FEATURES
    return tuple(name for name in SPAN_FEATURES if name not in YEARLY_FEATURES)


def day_effect_indicators(days: IntArray) -> FloatArray:
    """The `DAY_EFFECTS` indicators of each day, shape (days, len(DAY_EFFECTS))."""
    calendar = day_calendar(np.asarray(days, dtype=np.int64))
    columns = [
        calendar["month_of_quarter"] == 2,
        calendar["month_of_quarter"] == 3,
        *(calendar[name] == 1 for name in DAY_EFFECTS[2:]),
    ]
    return np.column_stack(columns).astype(np.float64)


_SHARED_FLAGS = {
    "weekday_share": "is_weekday",
    "month_end_share": "in_month_end",
    "quarter_end_share": "in_quarter_end",
    "quarter_end_inside": "is_quarter_end",
    "holiday_share": "is_holiday_season",
    "summer_share": "is_summer",
}


def span_calendar(start_days: IntArray, length_days: int) -> dict[str, Float32Array]:
    """Calendar of the spans `[start, start + length_days)`, one per start day (`SPAN_FEATURES`).

    Shares are the fraction of the span's days with a flag (`quarter_end_inside` is 1 when the
    span holds a quarter's last day). They come from cumulative sums over one day grid covering
    all spans, so the cost is linear in the number of spans whatever their length.
    """
    if length_days < 1:
        raise ValueError("a span holds at least one day")
    start_days = np.asarray(start_days, dtype=np.int64)
    if len(start_days) == 0:
        return {name: np.zeros(0, dtype=np.float32) for name in SPAN_FEATURES}
    first = int(start_days.min())
    grid = np.arange(first, int(start_days.max()) + length_days, dtype=np.int64)
    daily = day_calendar(grid)
    begin = start_days - first
    features: dict[str, Float32Array] = {}
    at_start = _month_and_quarter(start_days)
    for name in ("days_to_month_end", "days_to_quarter_end", "month_of_quarter", "month"):
        features[name] = at_start[name].astype(np.float32)
    features["week_of_year"] = at_start["week_of_year"].astype(np.float32)
    for name, flag in _SHARED_FLAGS.items():
        cumulative = np.concatenate([[0], np.cumsum(daily[flag])])
        count = cumulative[begin + length_days] - cumulative[begin]
        features[name] = (count / length_days).astype(np.float32)
    features["quarter_end_inside"] = np.minimum(features["quarter_end_inside"] * length_days, 1)
    return {name: features[name] for name in SPAN_FEATURES}


@dataclass(frozen=True)
class WeekProfile:
    """How closes spread over the days of a week: by weekday, and by each day's calendar.

    A week's close chance comes from the hazard model; this says which of its days the closes
    fall on. The calendar matters where a week straddles a month or quarter boundary: when
    September closes three times as often as October, a deal-week of 28 September to 4 October
    holds most of its closes before the 1st, and a forecast from 30 September must not carry
    them into October.

    Args:
        weekday_weights: relative close rate of Monday ... Sunday.
        calendar_effects: log rate ratio of a day with each of `DAY_EFFECTS` (0: no effect).
    """

    weekday_weights: tuple[float, ...] = (1.0,) * 7
    calendar_effects: tuple[float, ...] = (0.0,) * len(DAY_EFFECTS)

    def day_weights(self, days: IntArray) -> FloatArray:
        """Relative close rate of each day (> 0), from the days' calendar."""
        days = np.asarray(days, dtype=np.int64)
        weights = np.asarray(self.weekday_weights, dtype=np.float64)[(days + 3) % 7]
        effects = np.asarray(self.calendar_effects, dtype=np.float64)
        if effects.any():
            weights = weights * np.exp(day_effect_indicators(days) @ effects)
        return np.asarray(weights, dtype=np.float64)

    def elapsed_share(self, first_day: npt.ArrayLike, offset: FloatArray) -> FloatArray:
        """Share of a 7-day span's closes that fall in its first `offset` days (0 to 7).

        `first_day` is each span's first day (days since 1970-01-01): one per row of `offset`
        (shape (n, m)), or one per cell; a fractional day counts pro rata.
        """
        return elapsed_shares((self,), first_day, offset)[0]

    def weights_between(self, low: int, high: int) -> FloatArray:
        """`day_weights` of the days `low` ... `high - 1` (read-only when from the table).

        Days from 1970 to 2149 are looked up in a table computed once per profile: scoring one
        lead asks for the weights of a few hundred days, and their calendar costs far more than
        the lookup."""
        if low >= 0 and high <= _WEIGHT_TABLE_DAYS:
            return _weight_table(self)[low:high]
        return self.day_weights(np.arange(low, high, dtype=np.int64))


def elapsed_shares(
    profiles: Sequence[WeekProfile], first_day: npt.ArrayLike, offset: FloatArray
) -> list[FloatArray]:
    """`profile.elapsed_share(first_day, offset)` for each of `profiles`: the day arithmetic is
    shared, which is most of the work when there are few spans (the API's one lead)."""
    offset = np.asarray(offset, dtype=np.float64)
    first = np.asarray(first_day, dtype=np.int64)
    first = first.reshape(len(first), -1)  # one per row, or one per cell
    if offset.size == 0 or first.size == 0:
        return [np.zeros(offset.shape) for _ in profiles]
    low = int(first.min())
    high = int(first.max()) + 7
    whole = np.floor(offset)
    np.clip(whole, 0, 6, out=whole)
    partial = offset - whole
    np.clip(partial, 0.0, 1.0, out=partial)
    begin = first - low
    at = begin + whole.astype(np.int64)
    shares: dict[WeekProfile, FloatArray] = {}
    for profile in profiles:
        if profile in shares:
            continue
        weights = profile.weights_between(low, high)
        cumulative = np.empty(len(weights) + 1)
        cumulative[0] = 0.0
        np.cumsum(weights, out=cumulative[1:])
        before = cumulative[begin]
        elapsed = cumulative[at] - before + partial * weights[at]
        shares[profile] = np.asarray(elapsed / (cumulative[begin + 7] - before), dtype=np.float64)
    return [shares[profile] for profile in profiles]


_WEIGHT_TABLE_DAYS = 1 << 16
"""Days from 1970-01-01 that `_weight_table` covers (to 2149-06-06)."""


@functools.lru_cache(maxsize=32)
def _weight_table(profile: WeekProfile) -> FloatArray:
    """`profile`'s weight of every day from 1970-01-01 on (`_WEIGHT_TABLE_DAYS` of them);
    read-only, shared by every caller."""
    table = profile.day_weights(np.arange(_WEIGHT_TABLE_DAYS, dtype=np.int64))
    table.setflags(write=False)
    return table


# Prior spread (log rate ratio) of a calendar effect in `fit_week_profile`: beyond ×e is rare;
# and of a weekday's level around the average rate, only there to keep it finite.
_EFFECT_PRIOR_SD = 0.5
_LEVEL_PRIOR_SD = 2.0


def fit_week_profile(
    first_day: IntArray, last_day: IntArray, closed: npt.NDArray[np.bool_], since_day: int
) -> WeekProfile:
    """The `WeekProfile` of deals open from `first_day` to `last_day` (inclusive; `closed`: the
    deal closed on its last day), learned on the days from `since_day` on.

    A Poisson regression of each day's closes on its weekday and `DAY_EFFECTS`, with the deals
    open that day as exposure. A normal prior of standard deviation `_EFFECT_PRIOR_SD` on each
    calendar effect keeps a short history's profile near flat.
    """
    days = np.arange(since_day, int(last_day.max()) + 1, dtype=np.int64)
    # Deals open on each day (a deal closing that day counts), and closes on each day.
    change = np.zeros(len(days) + 1)
    np.add.at(change, np.clip(first_day, since_day, days[-1] + 1) - since_day, 1.0)
    np.add.at(change, np.maximum(last_day, since_day - 1) - since_day + 1, -1.0)
    at_risk = np.cumsum(change)[:-1]
    closes = np.bincount(
        last_day[closed & (last_day >= since_day)] - since_day, minlength=len(days)
    )
    exposed = at_risk > 0
    if closes.sum() == 0 or not exposed.any():
        return WeekProfile()
    weekday = (days[exposed] + 3) % 7
    design = np.column_stack([np.eye(7)[weekday], day_effect_indicators(days[exposed])])
    expected = at_risk[exposed] * closes.sum() / at_risk[exposed].sum()
    prior_sd = np.array([_LEVEL_PRIOR_SD] * 7 + [_EFFECT_PRIOR_SD] * len(DAY_EFFECTS))
    effects = _poisson_map(design, closes[exposed].astype(np.float64), expected, prior_sd)
    weekday_weights = np.exp(effects[:7])
    return WeekProfile(
        tuple(float(w) for w in weekday_weights / weekday_weights.mean()),
        tuple(float(e) for e in effects[7:]),
    )


def _poisson_map(
    design: FloatArray, counts: FloatArray, expected: FloatArray, prior_sd: FloatArray
) -> FloatArray:
    """Posterior mode of `b` in counts ~ Poisson(expected * exp(design @ b)), b ~ N(0, prior_sd²),
    by Newton's method."""
    precision = np.diag(1.0 / prior_sd**2)
    effects = np.zeros(design.shape[1])
    for _ in range(50):
        mean = expected * np.exp(design @ effects)
        gradient = design.T @ (mean - counts) + precision @ effects
        hessian = (design * mean[:, None]).T @ design + precision
        step = np.linalg.solve(hessian, gradient)
        # The objective is convex; bounding the steps keeps the first ones from overshooting.
        effects -= np.clip(step, -1.0, 1.0)
        if np.abs(step).max() < 1e-9:
            break
    return effects
