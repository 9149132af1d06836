"""What every lead-volume model offers, whatever it is inside: forecasts of new leads per week,
month or quarter for the whole funnel or a segment, sample paths, daily means and `predict_frame`.

`VolumeForecaster` turns a request (frequency, number of periods, where to start, a segment
filter) into a period grid of epoch days and a segment level; a model supplies the numbers for
that grid (`_distribution`, `_paths`, `_daily`). The count regression (`scoring.lead_volume`)
and the seasonal naive (`scoring.lead_volume_naive`) share it, so the API and the forecast
engine can use either one as the registered `lead-volume` model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from functools import wraps
from typing import ClassVar, Generic, ParamSpec, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from scoring.errors import FunnelcastInputError
from scoring.funnel import LEAD_COLUMNS, Funnel
from scoring.periods import FREQS, MICROS_PER_DAY, NAT_MICROS, Freq, to_micros
from scoring.segments import column_matches

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ALL = "all"
QUANTILES = (0.1, 0.5, 0.9)
_EPOCH = date(1970, 1, 1)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def one_blas_thread(method: Callable[_P, _R]) -> Callable[_P, _R]:
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


def as_freq(text: object) -> Freq:
    for freq in FREQS:
        if text == freq:
            return freq
    raise FunnelcastInputError(f"freq must be one of {', '.join(FREQS)}, not {text!r}")


def creation_history(funnel: Funnel, until: date | None) -> tuple[IntArray, BoolArray, int, int]:
    """Each lead's creation epoch day, which leads the history up to `until` keeps, and the
    history's first and last day (`until`, default the last creation day).

    Raises:
        FunnelcastInputError: when no lead has a creation date up to `until`.
    """
    if not funnel.dated or "created_at" not in funnel.leads.columns:
        raise FunnelcastInputError("lead volume needs lead creation dates (created_at)")
    micros = to_micros(funnel.leads["created_at"])
    days = np.asarray(micros // MICROS_PER_DAY, dtype=np.int64)
    known = micros != NAT_MICROS
    if not known.any():
        raise FunnelcastInputError("lead volume needs leads with a creation date")
    last = epoch_day(until) if until is not None else int(days[known].max())
    kept = known & (days <= last)
    if not kept.any():
        raise FunnelcastInputError(f"lead volume: no lead was created by {until}")
    return days, np.asarray(kept), int(days[kept].min()), last


def pick_segment_columns(funnel: Funnel, max_levels: int) -> list[str]:
    """Categorical features (text, categories, booleans) with 2 to `max_levels` levels."""
    leads, picked = funnel.leads, []
    for column in (c for c in funnel.features if c in leads and c not in LEAD_COLUMNS):
        values = leads[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            continue
        if 2 <= values.nunique() <= max_levels:
            picked.append(column)
    return picked


class SegmentLevel(Protocol):
    """A level of a segment column; `value` None is the column's missing cells."""

    @property
    def column(self) -> str: ...

    @property
    def value(self) -> object: ...

    @property
    def label(self) -> str: ...


Level = TypeVar("Level", bound=SegmentLevel)


class VolumeForecaster(BaseEstimator, Generic[Level]):  # type: ignore[misc]
    """Request handling shared by the lead-volume models (module doc).

    A fitted subclass sets `last_day_` (the history's last day) and `segments_` (label →
    level, missing levels included), and implements `_distribution`, `_paths` and `_daily`.
    """

    kind: ClassVar[str]
    last_day_: date
    segments_: Mapping[str, Level]

    def _distribution(
        self, segment: Level | None, first: IntArray, last: IntArray, freq: Freq
    ) -> tuple[FloatArray, IntArray]:
        """Mean and P10/P50/P90 (periods × 3) of the leads created in each [first, last]."""
        raise NotImplementedError

    def _paths(
        self,
        segment: Level | None,
        first: IntArray,
        last: IntArray,
        freq: Freq,
        draws: int,
        rng: np.random.Generator,
    ) -> IntArray:
        """Draws × periods lead counts of each [first, last], correlated across periods."""
        raise NotImplementedError

    def _daily(self, segment: Level | None, days: IntArray) -> FloatArray:
        """Expected leads on each day."""
        raise NotImplementedError

    @property
    def segments(self) -> list[str]:
        """The segment labels this model forecasts: "all", then "column=level"."""
        check_is_fitted(self, "segments_")
        return [ALL, *(label for label, s in self.segments_.items() if s.value is not None)]

    def _segment(self, segment: Mapping[str, str] | str | None) -> Level | None:
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

    def _grid(
        self, freq: Freq, periods: int, start_after: date | None
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Period starts, and the first and last day counted in each, after `start_after`."""
        check_is_fitted(self, "segments_")
        freq = as_freq(freq)
        if periods < 1:
            raise FunnelcastInputError(f"periods must be at least 1, not {periods}")
        first = epoch_day(start_after or self.last_day_) + 1
        grid = period_starts(np.array([first]), freq)
        for _ in range(periods - 1):
            grid = np.append(grid, period_ends(grid[-1:], freq) + 1)
        return grid, np.maximum(grid, first), period_ends(grid, freq)

    @one_blas_thread
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
        segment: Level | None,
        starts: IntArray,
        first: IntArray,
        last: IntArray,
        freq: Freq,
    ) -> pd.DataFrame:
        mean, quantiles = self._distribution(segment, first, last, freq)
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

    @one_blas_thread
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

    @one_blas_thread
    def daily_mean(
        self, first: date, last: date, segment: Mapping[str, str] | None = None
    ) -> pd.Series:
        """Expected leads per day (plug-in): where within a period simulated leads arrive."""
        check_is_fitted(self, "segments_")
        days: IntArray = np.arange(epoch_day(first), epoch_day(last) + 1)
        mean = self._daily(self._segment(segment), days)
        return pd.Series(mean, index=[from_epoch_day(d) for d in days], name="mean")

    @one_blas_thread
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
            freq, label = as_freq(key[0]), str(key[1])  # type: ignore[index]
            starts = period_starts(request["day"].to_numpy()[rows], freq)
            part = self._frame(
                self._segment(label), starts, starts, period_ends(starts, freq), freq
            )
            parts.append(part.set_axis(rows))
        return pd.concat(parts).sort_index().reset_index(drop=True)
