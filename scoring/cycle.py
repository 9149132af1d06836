"""Deal cycle: when an open deal closes, and whether it is won or lost (DESIGN §4 `deal-cycle`).

Both models here answer the same questions for any deals and any day counts `d`:
P(won within d days) and P(lost within d days) (the cumulative incidence of each outcome), the
whole curve, and the expected days to a won close. With `as_of` (or `age_days`) the answer is
for a deal still open at that moment: "this deal is 40 days old and open; will it be won in the
next 30 days?".

- `DealCycleModel`: a discrete-time hazard model. A deal's life is cut into weeks; for each week
  two LightGBM models give the chance that an open deal closes in it and, if it closes, the
  chance that it is won, from the deal's attributes, its age and the calendar of that week
  (quarter-end pushes, holidays). Their product is the weekly hazard of winning, the rest of the
  closing chance that of losing. Cumulative incidence is built from these weekly hazards, so it
  never decreases with `d` and P(won) + P(lost) never exceeds 1.
- `MarginalCycleModel`: the same answers without features (Aalen-Johansen curves), the baseline.

A deal's clock counts days from the midnight that begins its creation day, so its week `w` holds
exactly the calendar days `created + 7w ... created + 7w + 6`. Inside a week, closes spread over
the days by a profile learned from past closes (deals rarely close on a Sunday, often in a
quarter's last month), which makes "within 30 days" finer than "within 4 or 5 weeks", and keeps
a week that straddles a month end from moving closes across it.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.calendar_features import (
    SPAN_FEATURES,
    WeekProfile,
    calendar_columns,
    elapsed_shares,
    span_calendar,
    to_days,
)
from scoring.fast_predict import averaged_booster, predict_array
from scoring.features import FeatureSpec
from scoring.predict_threads import predict_options

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
AsOf = pd.Timestamp | str | pd.Series | pd.DatetimeIndex | np.ndarray | Sequence[object] | None
# Deals as a frame, or as records (attribute -> value per deal, as the API receives them).
Deals = pd.DataFrame | Sequence[Mapping[str, object]]

WEEK = 7
_DAY_NS = 86_400 * 10**9
# Hazard rows scored at once, and deals per batch in `predict_frame`: bound the memory used
# (a row matrix under 32 MB reuses the memory of the last one instead of faulting in more).
_PREDICT_ROWS = 250_000
_FRAME_DEALS = 20_000
# Deal-level summaries of the attributes (see `HazardDesign`), in column order.
DEAL_SCORES = ("won_propensity", "won_log_days", "lost_log_days")
_SCORES = ["p_won_30d", "p_won_90d", "p_won_horizon", "p_lost_horizon", "expected_days_to_close"]


class Booster(Protocol):
    """What the models need of a fitted LightGBM booster."""

    def predict(
        self, data: Float32Array, *, raw_score: bool = False, **options: Any
    ) -> npt.ArrayLike: ...


def as_of_moments(deals: pd.DataFrame, as_of: AsOf, age_days: npt.ArrayLike | None) -> IntArray:
    """The moment (ns since epoch) each deal is seen at: creation, `as_of`, or `created + age`.

    Raises:
        ValueError: when both `as_of` and `age_days` are given, or a deal is seen before it was
            created.
    """
    created = deals["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if as_of is not None and age_days is not None:
        raise ValueError("give either as_of or age_days, not both")
    if age_days is not None:
        age = np.broadcast_to(np.asarray(age_days, dtype=np.float64), created.shape)
        moments = created + np.rint(age * _DAY_NS).astype(np.int64)
    elif as_of is None:
        moments = created.copy()
    elif isinstance(as_of, pd.Timestamp | str):
        moments = np.full(created.shape, pd.Timestamp(as_of).as_unit("ns").value, dtype=np.int64)
    else:
        stamps = pd.to_datetime(pd.Series(np.asarray(as_of)))
        moments = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if (moments < created).any():
        raise ValueError("a deal cannot be seen before it was created (as_of < created_at)")
    return np.asarray(moments, dtype=np.int64)


def deal_clock(created_at: pd.Series, moments: IntArray) -> FloatArray:
    """Days from the midnight of each deal's creation day to `moments` (ns since epoch)."""
    midnight = to_days(created_at) * _DAY_NS
    return np.asarray((moments - midnight) / _DAY_NS, dtype=np.float64)


def created_ns(deals: pd.DataFrame) -> IntArray:
    """Each deal's `created_at` as ns since the epoch."""
    return np.asarray(
        deals["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64), dtype=np.int64
    )


@functools.lru_cache(maxsize=256)
def _week_calendar_matrix(first_day: int, n_days: int, names: tuple[str, ...]) -> Float32Array:
    """The calendar (`names`, side by side) of the week starting on each of `n_days` days from
    `first_day`, one row per day.

    Deal-weeks start on few distinct days (a batch of a million leads spans a few years of
    days), so the calendar is computed once per day and gathered; leads created the same day
    share it across requests. Read-only: it is shared.
    """
    calendar = span_calendar(np.arange(first_day, first_day + n_days, dtype=np.int64), WEEK)
    matrix = np.empty((n_days, len(names)), dtype=np.float32)
    for column, name in enumerate(names):
        matrix[:, column] = calendar[name]
    matrix.setflags(write=False)
    return matrix


class HazardDesign:
    """The rows the hazard model sees: deal attributes, deal age and the calendar of the week.

    Training and scoring both build rows here, so feature order, category levels and calendar
    definitions live in one place (STYLE practice 3). Attributes go through the same
    `FeatureSpec` as lead-conversion. Three more deal-level columns (`DEAL_SCORES`) summarise
    the attributes: the log-odds that a closed deal like this was won, and the log days a won
    and a lost one took, from `deal_scores_` (boosters over the attributes, set by
    `training.deal_cycle`). Trees over deal-weeks learn attribute effects slowly; without these
    summaries the best and the fastest deals come out too timid.

    The calendar of the week is the `SPAN_FEATURES` that the history can teach
    (`calendar_columns`): below two years of closes, not the ones that turn once a year.

    Args:
        features: attribute columns of the leads (may be empty: age and calendar only).
        age_cap_weeks: weeks after which a deal's age stops changing its hazard; older deals are
            rare, and sharing the last age keeps their predictions stable.
    """

    # Models pickled before the calendar depended on the history used every column.
    calendar_features_: tuple[str, ...] = SPAN_FEATURES

    def __init__(self, features: Sequence[str] = (), age_cap_weeks: int = 52) -> None:
        self.features = tuple(features)
        self.age_cap_weeks = age_cap_weeks

    def fit(self, leads: pd.DataFrame, history_days: float = float("inf")) -> HazardDesign:
        """Learn the attributes' kinds and category levels from training leads, and the calendar
        columns `history_days` days of close history support."""
        self.calendar_features_ = calendar_columns(history_days)
        self.spec_ = FeatureSpec(self.features).fit(leads) if self.features else None
        self.deal_scores_: dict[str, tuple[Booster, ...]] = {}
        kinds = [] if self.spec_ is None else list(self.spec_.transform(leads.head(1)).dtypes)
        names = [] if self.spec_ is None else [str(n) for n in self.spec_.get_feature_names_out()]
        self.categorical_indices_ = [
            i for i, kind in enumerate(kinds) if isinstance(kind, pd.CategoricalDtype)
        ]
        self.feature_names_ = [
            *names,
            *DEAL_SCORES,
            "deal_age_days",
            "age_vs_won_days",
            "age_vs_lost_days",
            *(f"week_{name}" for name in self.calendar_features_),
        ]
        return self

    def attribute_matrix(self, deals: Deals) -> Float32Array:
        """One float32 row of attributes per deal; categories as level codes, unknown as NaN."""
        if self.spec_ is None:
            return np.zeros((len(deals), 0), dtype=np.float32)
        return self.spec_.codes(deals).astype(np.float32)

    def deal_score_matrix(self, attributes: Float32Array) -> FloatArray:
        """The `DEAL_SCORES` of each deal: mean raw score of each score's boosters (0 without).

        The fold boosters of each score are merged into one (`averaged_booster`: the same
        mean in one predict call instead of one per fold), once per set of boosters.
        """
        scores = np.zeros((len(attributes), len(DEAL_SCORES)))
        for column, name in enumerate(DEAL_SCORES):
            boosters = self.deal_scores_.get(name, ())
            if boosters:
                scores[:, column] = predict_array(
                    self._averaged(name, boosters), attributes, raw_score=True
                )
        return scores

    def _averaged(self, name: str, boosters: tuple[Booster, ...]) -> Booster:
        cache: dict[str, tuple[tuple[int, ...], Booster]] = self.__dict__.setdefault(
            "_averaged_scores", {}
        )
        key = tuple(id(b) for b in boosters)
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, averaged_booster(boosters))
        return cache[name][1]

    def _deal_score_matrix_by_fold(self, attributes: Float32Array) -> FloatArray:
        """`deal_score_matrix` predicting fold by fold (the reference the merge is held to)."""
        scores = np.zeros((len(attributes), len(DEAL_SCORES)))
        for column, name in enumerate(DEAL_SCORES):
            boosters = self.deal_scores_.get(name, ())
            if boosters:
                folds = [
                    np.asarray(b.predict(attributes, raw_score=True, **predict_options()))
                    for b in boosters
                ]
                scores[:, column] = np.mean(folds, axis=0)
        return scores

    def deal_matrix(self, deals: Deals, scores: FloatArray | None = None) -> Float32Array:
        """Attributes plus `DEAL_SCORES` (given, for out-of-fold values in training)."""
        attributes = self.attribute_matrix(deals)
        summary = self.deal_score_matrix(attributes) if scores is None else scores
        return np.column_stack([attributes, summary.astype(np.float32)]).astype(np.float32)

    def rows(
        self, deals: Float32Array, created_day: IntArray, deal_index: IntArray, week: IntArray
    ) -> Float32Array:
        """Model rows for (deal, week) pairs: `deal_matrix` row, age at the week's start, age
        against the deal's typical won and lost times, and the calendar of the week.

        The age contrasts let a split say "early for this deal" in one step: how the chances
        move with age depends on the deal, and trees find such interactions slowly.
        """
        width = deals.shape[1]
        age = np.minimum(week, self.age_cap_weeks) * WEEK
        log_age = np.log1p(age + WEEK / 2).astype(np.float32)
        won_days = width - len(DEAL_SCORES) + DEAL_SCORES.index("won_log_days")
        lost_days = width - len(DEAL_SCORES) + DEAL_SCORES.index("lost_log_days")
        matrix = np.empty((len(week), len(self.feature_names_)), dtype=np.float32)
        matrix[:, :width] = deals[deal_index]
        matrix[:, width] = age
        matrix[:, width + 1] = log_age - deals[deal_index, won_days]
        matrix[:, width + 2] = log_age - deals[deal_index, lost_days]
        starts = created_day[deal_index] + WEEK * week
        first = int(starts.min()) if len(starts) else 0
        calendar = _week_calendar_matrix(
            first, int(starts.max()) - first + 1 if len(starts) else 1, self.calendar_features_
        )
        matrix[:, width + 3 :] = calendar[starts - first]
        return matrix


@dataclass(frozen=True)
class IncidenceCurve:
    """Cumulative incidence of each outcome on a day grid: `won[i, k]` = P(won within days[k])."""

    days: IntArray
    won: FloatArray
    lost: FloatArray


def mean_close_day(grid: FloatArray, curve: FloatArray) -> FloatArray:
    """Mean day of the closes a cumulative-incidence curve on `grid` holds; NaN when none."""
    mass = np.diff(curve, axis=1)
    total = mass.sum(axis=1)
    # A close counted between grid days happened during that day: its midpoint is the best guess.
    mean = (mass * (grid[1:] - 0.5)).sum(axis=1)
    return np.asarray(
        np.divide(mean, total, out=np.full(len(total), np.nan), where=total > 0), dtype=np.float64
    )


class CycleModel(ABC):
    """What every deal-cycle model answers; subclasses give the incidence for deals and days."""

    horizon_days: int

    @abstractmethod
    def _incidence(
        self, deals: Deals, created: IntArray, moments: IntArray, days: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """P(won), P(lost) within each of `days` after `moments`, for deals created at
        `created` (ns) and open at `moments` (ns)."""

    def incidence_from_creation(
        self, deals: Deals, created: IntArray, days: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """`cumulative_incidence` from creation for deals given as records (or a frame) with
        their creation moments apart, in ns: the API's path, which never builds a frame."""
        grid = np.asarray(days, dtype=np.float64).reshape(-1)
        created = np.asarray(created, dtype=np.int64)
        if len(deals) == 0 or len(grid) == 0:
            return np.zeros((len(deals), len(grid))), np.zeros((len(deals), len(grid)))
        return self._incidence(deals, created, created, grid)

    def cumulative_incidence(
        self,
        deals: pd.DataFrame,
        days: npt.ArrayLike,
        as_of: AsOf = None,
        *,
        age_days: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """P(won within d days) and P(lost within d days) for each deal and each `d` in `days`.

        Counted from `as_of` (one moment, or one per deal) or `created_at + age_days`, for a
        deal still open then; by default from creation. Both arrays have shape
        (deals, len(days)) and never decrease in `d`.
        """
        grid = np.asarray(days, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(grid)) or (grid < 0).any():
            raise ValueError("days must be finite and not negative")
        moments = as_of_moments(deals, as_of, age_days)
        if len(deals) == 0 or len(grid) == 0:
            return np.zeros((len(deals), len(grid))), np.zeros((len(deals), len(grid)))
        deals = deals.reset_index(drop=True)
        return self._incidence(deals, created_ns(deals), moments, grid)

    def p_won_within(
        self,
        deals: pd.DataFrame,
        days: float,
        as_of: AsOf = None,
        *,
        age_days: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """P(won within `days` days) per deal (from `as_of`, else from creation)."""
        return self.cumulative_incidence(deals, [days], as_of, age_days=age_days)[0][:, 0]

    def incidence_curve(
        self,
        deals: pd.DataFrame,
        max_days: int | None = None,
        as_of: AsOf = None,
        *,
        age_days: npt.ArrayLike | None = None,
    ) -> IncidenceCurve:
        """The cumulative-incidence curves on days 0 ... `max_days` (default: the horizon)."""
        grid = np.arange(0, (max_days or self.horizon_days) + 1, dtype=np.int64)
        won, lost = self.cumulative_incidence(deals, grid, as_of, age_days=age_days)
        return IncidenceCurve(grid, won, lost)

    def expected_days_to_close(
        self,
        deals: pd.DataFrame,
        as_of: AsOf = None,
        *,
        age_days: npt.ArrayLike | None = None,
        within_days: int | None = None,
        outcome: Literal["won", "lost", "closed"] = "won",
    ) -> FloatArray:
        """Expected days from `as_of` (else creation) to the close, given the deal closes with
        `outcome` within `within_days` (default: the horizon; "closed" is won or lost).

        A conditional mean: a deal that will most likely be lost still has an expected time to
        a win. NaN when that outcome has no chance in the window.
        """
        grid = np.arange(0, (within_days or self.horizon_days) + 1, dtype=np.float64)
        won, lost = self.cumulative_incidence(deals, grid, as_of, age_days=age_days)
        return mean_close_day(grid, {"won": won, "lost": lost, "closed": won + lost}[outcome])

    def predict_frame(self, leads: pd.DataFrame) -> pd.DataFrame:
        """Scores for the API and the CLI, one row per lead: `p_won_30d`, `p_won_90d`,
        `p_won_horizon`, `p_lost_horizon`, `expected_days_to_close` (given won within the
        horizon), after `lead_id` when the frame has one.

        Deals are seen at creation, or at their `as_of` column when the frame has one.
        """
        leads = leads.reset_index(drop=True)
        grid = np.arange(0, self.horizon_days + 1, dtype=np.float64)
        parts = []
        for begin in range(0, len(leads), _FRAME_DEALS):
            batch = leads.iloc[begin : begin + _FRAME_DEALS]
            as_of = batch["as_of"] if "as_of" in batch.columns else None
            won, lost = self.cumulative_incidence(batch, grid, as_of)
            parts.append(
                pd.DataFrame(
                    {
                        "p_won_30d": won[:, min(30, self.horizon_days)],
                        "p_won_90d": won[:, min(90, self.horizon_days)],
                        "p_won_horizon": won[:, -1],
                        "p_lost_horizon": lost[:, -1],
                        "expected_days_to_close": mean_close_day(grid, won),
                    }
                )
            )
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_SCORES)
        if "lead_id" in leads.columns:
            frame.insert(0, "lead_id", leads["lead_id"].to_numpy())
        return frame


class DealCycleModel(CycleModel):
    """Discrete-time hazard model over weeks of a deal's life (see the module docstring).

    Built by `training.deal_cycle`; scores canonical lead columns (`created_at` and the
    attributes) by itself, so one pickle is the whole model.

    Args:
        design: the fitted `HazardDesign`.
        closing: binary booster over the design's rows: P(an open deal closes in the week).
        winning: binary booster over the same rows: P(won | the deal closes in the week).
        profile: how closes spread over the days of a week.
        horizon_days: the funnel's conversion horizon (the default curve length).
        outcome_profiles: how wins and how losses spread over the days of a week, when they
            differ (a quarter-end push moves wins only); `profile` for both when not given.
    """

    # Models pickled before wins and losses had profiles of their own.
    outcome_profiles: tuple[WeekProfile, WeekProfile] | None = None

    def __init__(
        self,
        design: HazardDesign,
        closing: Booster,
        winning: Booster,
        profile: WeekProfile,
        horizon_days: int,
        *,
        outcome_profiles: tuple[WeekProfile, WeekProfile] | None = None,
    ) -> None:
        self.design = design
        self.closing = closing
        self.winning = winning
        self.profile = profile
        self.horizon_days = horizon_days
        self.outcome_profiles = outcome_profiles

    def weekly_hazards(
        self,
        deals: Deals,
        created_day: IntArray,
        first_week: IntArray,
        n_weeks: int,
        weeks_needed: IntArray | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """P(won in week), P(lost in week) for an open deal, weeks `first_week + 0 ... n - 1`.

        With `weeks_needed`, only each deal's first `weeks_needed` weeks are predicted (the
        rest are left at 0): a curve that ends mid-week needs one week fewer for some deals.
        """
        matrix = self.design.deal_matrix(deals)
        return self._hazards(matrix, created_day, first_week, n_weeks, weeks_needed)

    def _hazards(
        self,
        matrix: Float32Array,
        created_day: IntArray,
        first_week: IntArray,
        n_weeks: int,
        weeks_needed: IntArray | None,
    ) -> tuple[FloatArray, FloatArray]:
        """`weekly_hazards` from the deals' `deal_matrix` rows."""
        n = len(matrix)
        needed = np.full(n, n_weeks) if weeks_needed is None else np.minimum(weeks_needed, n_weeks)
        deal_index = np.repeat(np.arange(n), needed)
        offset = np.arange(len(deal_index)) - np.repeat(np.cumsum(needed) - needed, needed)
        week = first_week[deal_index] + offset
        rows = self.design.rows(matrix, created_day, deal_index, week)
        closes = predict_array(self.closing, rows)
        wins = predict_array(self.winning, rows)
        del rows
        won = np.zeros((n, n_weeks))
        lost = np.zeros((n, n_weeks))
        won[deal_index, offset] = closes * wins
        lost[deal_index, offset] = closes * (1.0 - wins)
        return won, lost

    def _incidence(
        self, deals: Deals, created: IntArray, moments: IntArray, days: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        created_day = np.floor_divide(created, _DAY_NS)
        start = (moments - created_day * _DAY_NS) / _DAY_NS
        n_weeks = int(np.ceil(days.max() / WEEK)) + 1
        chunk = max(1, _PREDICT_ROWS // n_weeks)
        matrix = self.design.deal_matrix(deals)
        won = np.empty((len(deals), len(days)))
        lost = np.empty((len(deals), len(days)))
        # Seen at creation, on whole days: the common case (the API, batch scoring), whose
        # calendar arithmetic has a shorter form (`_creation_shares`).
        whole_days = bool(np.all((start >= 0.0) & (start < 1.0)) and np.all(days == np.floor(days)))
        for begin in range(0, len(deals), chunk):
            part = slice(begin, begin + chunk)
            won[part], lost[part] = self._incidence_chunk(
                matrix[part], created_day[part], start[part], days, n_weeks, whole_days
            )
        return won, lost

    def _incidence_chunk(
        self,
        matrix: Float32Array,
        created_day: IntArray,
        start: FloatArray,
        days: FloatArray,
        n_weeks: int,
        whole_days: bool = False,
    ) -> tuple[FloatArray, FloatArray]:
        first_week = np.floor(start / WEEK).astype(np.int64)
        # The weeks from the one holding `start` to the one holding the last day asked for.
        last_week = np.floor((start + days.max()) / WEEK).astype(np.int64)
        won_h, lost_h = self._hazards(
            matrix, created_day, first_week, n_weeks, last_week - first_week + 1
        )
        n = len(matrix)
        # Chance to be open at the start of each week, given open at the start of the first,
        # and the incidence of each outcome by then (column k: the start of week k, of n_weeks).
        open_at = np.ones((n, n_weeks + 1))
        np.cumprod(1.0 - won_h - lost_h, axis=1, out=open_at[:, 1:])
        won_by = np.zeros((n, n_weeks + 1))
        np.cumsum(open_at[:, :-1] * won_h, axis=1, out=won_by[:, 1:])
        lost_by = np.zeros((n, n_weeks + 1))
        np.cumsum(open_at[:, :-1] * lost_h, axis=1, out=lost_by[:, 1:])
        profiles = self.outcome_profiles or (self.profile, self.profile)  # won, lost
        if whole_days:
            grid = np.concatenate([[0], days.astype(np.int64)])
            index = grid // WEEK  # the same week for every deal: all start on day 0
            week_days = WEEK * (int(index[-1]) + 1)
            won_share, lost_share = _creation_shares(profiles, created_day, start, grid, week_days)
            open_then = open_at[:, index]
            won_at = won_by[:, index] + open_then * won_share * won_h[:, index]
            lost_at = lost_by[:, index] + open_then * lost_share * lost_h[:, index]
        else:
            won_at, lost_at = _general_cells(
                profiles, open_at, won_by, lost_by, won_h, lost_h, created_day, start, days,
                first_week,
            )  # fmt: skip
        # Condition on being open at `start` (column 0): a deal seen mid-week has lived part of it.
        still_open = 1.0 - won_at[:, :1] - lost_at[:, :1]
        won = (won_at[:, 1:] - won_at[:, :1]) / still_open
        lost = (lost_at[:, 1:] - lost_at[:, :1]) / still_open
        return won, lost


def _general_cells(
    profiles: tuple[WeekProfile, WeekProfile],
    open_at: FloatArray,
    won_by: FloatArray,
    lost_by: FloatArray,
    won_h: FloatArray,
    lost_h: FloatArray,
    created_day: IntArray,
    start: FloatArray,
    days: FloatArray,
    first_week: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Incidence of each outcome at `start` and at `start + days`, any start and days (the
    won and lost `profiles` spread each week's closes over its days)."""
    n, n_weeks = won_h.shape
    clock = start[:, None] + np.concatenate([[0.0], days])[None, :]
    week_of = np.floor(clock / WEEK)
    weeks = week_of.astype(np.int64)
    index = weeks - first_week[:, None]
    np.clip(index, 0, n_weeks - 1, out=index)
    week_start = created_day[:, None] + WEEK * weeks
    elapsed = clock - WEEK * week_of
    won_share, lost_share = elapsed_shares(profiles, week_start, elapsed)
    # The cells' positions in the (n, n_weeks + 1) and (n, n_weeks) arrays, flattened.
    at = index + (n_weeks + 1) * np.arange(n)[:, None]
    at_h = index + n_weeks * np.arange(n)[:, None]
    open_then = open_at.ravel()[at]
    won_at = won_by.ravel()[at] + open_then * won_share * won_h.ravel()[at_h]
    lost_at = lost_by.ravel()[at] + open_then * lost_share * lost_h.ravel()[at_h]
    return won_at, lost_at


# Deals created on at most this many days take their week shares from `_day_shares`' cache
# (two entries per day, one per profile); more days go the vectorised way.
_CACHED_DAYS = 16


@functools.lru_cache(maxsize=128)
def _day_shares(
    profile: WeekProfile, created_day: int, week_days: int
) -> tuple[FloatArray, FloatArray]:
    """`_creation_shares` of a deal created on `created_day`, on days 0 ... `week_days` - 1, as
    two parts: the share at day d is `parts[0][d] + start * parts[1][d]`. Read-only."""
    weights = profile.weights_between(created_day, created_day + week_days)
    by_week = weights.reshape(-1, WEEK)
    totals = np.repeat(by_week.sum(axis=1), WEEK)
    before = (np.cumsum(by_week, axis=1) - by_week).ravel()
    parts = (before / totals, weights / totals)
    for part in parts:
        part.setflags(write=False)
    return parts


def _creation_shares(
    profiles: tuple[WeekProfile, WeekProfile],
    created_day: IntArray,
    start: FloatArray,
    grid: IntArray,
    week_days: int,
) -> list[FloatArray]:
    """`elapsed_share` of each profile at `start + grid` days, for deals whose deal-weeks begin
    on their creation day `created_day` (`start`: the time of day of creation, below 1).

    Grid day d falls in deal-week d // 7, on its day d % 7, of which `start` has elapsed: the
    share is (the week's weights before that day + `start` x that day's weight) / the week's
    weights. One gather per profile instead of `elapsed_shares`' general arithmetic.
    """
    low = int(created_day.min())
    if low == int(created_day.max()):  # one creation day (a one-lead request): from a cache
        # week_days covers the grid: its last day is in week week_days // 7 - 1.
        return [
            parts[0][grid][None, :] + start[:, None] * parts[1][grid][None, :]
            for parts in (_day_shares(profile, low, week_days) for profile in profiles)
        ]
    days, deal_day = np.unique(created_day, return_inverse=True)
    if len(days) <= _CACHED_DAYS:  # a few creation days (a CRM's request): from the cache too
        cached: list[FloatArray] = []
        for profile in profiles:
            parts = [_day_shares(profile, int(day), week_days) for day in days]
            base = np.stack([part[0][grid] for part in parts])[deal_day]
            slope = np.stack([part[1][grid] for part in parts])[deal_day]
            cached.append(base + start[:, None] * slope)
        return cached
    offsets = (created_day - low)[:, None] + np.arange(week_days)
    shares: list[FloatArray] = []
    for profile in profiles:
        weights = profile.weights_between(low, int(created_day.max()) + week_days)[offsets]
        by_week = weights.reshape(len(created_day), -1, WEEK)
        before = (np.cumsum(by_week, axis=2) - by_week).reshape(len(created_day), -1)
        totals = by_week.sum(axis=2)
        elapsed = before[:, grid] + start[:, None] * weights[:, grid]
        shares.append(np.asarray(elapsed / totals[:, grid // WEEK], dtype=np.float64))
    return shares


class MarginalCycleModel(CycleModel):
    """The baseline: one Aalen-Johansen curve per outcome for every deal, no features.

    Args:
        times: days from creation at which the curves step (increasing).
        won, lost: cumulative incidence of each outcome from each of `times` on.
        horizon_days: the funnel's conversion horizon.
    """

    def __init__(
        self, times: FloatArray, won: FloatArray, lost: FloatArray, horizon_days: int
    ) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.won = np.asarray(won, dtype=np.float64)
        self.lost = np.asarray(lost, dtype=np.float64)
        self.horizon_days = horizon_days

    def _at(self, curve: FloatArray, age: FloatArray) -> FloatArray:
        position = np.searchsorted(self.times, age, side="right")
        return np.asarray(np.concatenate([[0.0], curve])[position], dtype=np.float64)

    def _incidence(
        self, deals: Deals, created: IntArray, moments: IntArray, days: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        age = (moments - created) / _DAY_NS
        ahead = age[:, None] + days[None, :]
        won_now, lost_now = self._at(self.won, age)[:, None], self._at(self.lost, age)[:, None]
        still_open = 1.0 - won_now - lost_now
        # Past the last close ever seen nobody is left open: nothing more can happen.
        scale = np.divide(1.0, still_open, out=np.zeros_like(still_open), where=still_open > 1e-12)
        won = (self._at(self.won, ahead) - won_now) * scale
        lost = (self._at(self.lost, ahead) - lost_now) * scale
        return won, lost
