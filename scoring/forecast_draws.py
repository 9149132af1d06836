"""Vectorised drawing for the forecast engine, and the tallies the draws are summed into.

Two ways to draw a category (a close bin, "still open") for many subjects:
- `category_runs`: every subject in every draw (open deals, customers). The number of draws
  landing in each category is multinomial, so one `multinomial` call per subject gives the
  counts; they are laid out as one run per category on a cycle of the draws, at a random
  rotation, and in one of several orders of the draws (`DrawSpans`). Per-draw sums then come
  from the runs' ends (difference arrays and a cumulative sum), never from a subjects x draws
  matrix.
- `inverse_cdf_rows`: one uniform per simulated lead, looked up in its template's cumulative
  curve. Rows are offset by 2 so that a single `searchsorted` serves every template at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Lognormal z of the P90 (and minus that of the P10).
_Z90 = 1.2815515655446004
# Cycle days are tallied per day up to this many; longer cycles share the last slot.
CYCLE_SLOTS = 1500
# Orders of the draws a subject's runs may follow (see `DrawSpans`).
_LANES = 64
# Difference-array cells (lanes x positions x columns) summed at once: bounds the memory.
_SUM_CELLS = 4_000_000
# Days either side of the pooled median within which every draw's median is first sought.
_MEDIAN_REACH = 8


@dataclass(frozen=True)
class DrawSpans:
    """Sets of draws, each a run of consecutive positions in the order of the draws of a lane.

    Lane `l` puts draw d at position `strides[l] * d mod draws` (a stride prime to `draws`, so
    every lane is a permutation of the draws); a span holds the positions `start, start + 1,
    ..., start + length - 1` (mod `draws`). A subject's runs all lie in one lane.

    Why lanes: a subject's runs are long (a category with chance p holds about p x draws
    consecutive positions), so with one order two neighbouring draws share almost every
    subject's category, and a KPI's spread over the draws rests on a handful of independent
    directions: the interval's width came out 30 % too wide or too narrow from one seed to the
    next. Subjects spread over 64 lanes that interleave their runs differently bring that error
    down to a few percent, at no cost per draw.
    """

    draws: int
    strides: IntArray
    lane: IntArray
    start: IntArray
    length: IntArray

    def __len__(self) -> int:
        return len(self.start)

    def take(self, index: IntArray) -> DrawSpans:
        """The spans at `index`."""
        return DrawSpans(
            self.draws, self.strides, self.lane[index], self.start[index], self.length[index]
        )

    def split(self, most: int) -> tuple[IntArray, DrawSpans]:
        """Pieces of at most `most` draws each: the span each piece comes from, and the pieces."""
        count = -(-self.length // most)
        parent = np.repeat(np.arange(len(self)), count)
        first = np.cumsum(count) - count
        step = np.arange(len(parent)) - np.repeat(first, count)
        start = (self.start[parent] + most * step) % self.draws
        length = np.minimum(most, self.length[parent] - most * step)
        return parent, DrawSpans(self.draws, self.strides, self.lane[parent], start, length)

    def sums(
        self, column: IntArray, weights: Sequence[FloatArray | None], columns: int
    ) -> list[FloatArray]:
        """Per draw, the sum of each span's weight into its `column` over the spans holding
        the draw, for each of `weights` (None: every span counts 1): arrays of shape
        (draws, columns). Spans with a negative column count nowhere."""
        draws, lanes = self.draws, len(self.strides)
        keep = np.flatnonzero(column >= 0)
        lane, start, length = self.lane[keep], self.start[keep], self.length[keep]
        kept = [None if w is None else np.asarray(w, dtype=np.float64)[keep] for w in weights]
        per_lane = (draws + 1) * columns
        # Each span adds its weight at its first position and takes it back after its last
        # (a difference array per lane, summed up over the positions); one that runs past the
        # last position goes on from position 0.
        first = lane * per_lane
        first += column[keep]
        end = length
        end += start
        wraps = np.flatnonzero(end > draws)
        wrap_first = first[wraps]
        wrap_last = wrap_first + (end[wraps] - draws) * columns
        np.minimum(end, draws, out=end)
        end *= columns
        last = end
        last += first
        start *= columns
        first += start
        del start, length, end
        block = max(1, _SUM_CELLS // per_lane)
        outs = [np.zeros((draws, columns)) for _ in weights]
        # Blocks of lanes: first and last lane, then the spans and the wrapped spans in them.
        parts: list[tuple[int, int, IntArray | slice, IntArray | slice]]
        if block >= lanes:
            parts = [(0, lanes, slice(None), slice(None))]
        else:
            order = np.argsort(lane.astype(np.int16), kind="stable")
            wrap_order = np.argsort(lane[wraps].astype(np.int16), kind="stable")
            bounds = np.searchsorted(lane[order], np.arange(0, lanes + block, block))
            wrap_bounds = np.searchsorted(
                lane[wraps][wrap_order], np.arange(0, lanes + block, block)
            )
            parts = [
                (
                    number * block,
                    min(lanes, (number + 1) * block),
                    order[bounds[number] : bounds[number + 1]],
                    wrap_order[wrap_bounds[number] : wrap_bounds[number + 1]],
                )
                for number in range(len(bounds) - 1)
                if number * block < lanes
            ]
        for low, high, picked, wrap_picked in parts:
            size = (high - low) * per_lane
            shift = low * per_lane
            for out, weight in zip(outs, kept, strict=True):
                weight_of = None if weight is None else weight[picked]
                diff = np.bincount(first[picked] - shift, weight_of, minlength=size)
                diff -= np.bincount(last[picked] - shift, weight_of, minlength=size)
                if wraps.size:
                    wrap_weight = None if weight is None else weight[wraps][wrap_picked]
                    diff += np.bincount(wrap_first[wrap_picked] - shift, wrap_weight, size)
                    diff -= np.bincount(wrap_last[wrap_picked] - shift, wrap_weight, size)
                totals = np.cumsum(diff.reshape(high - low, draws + 1, columns)[:, :draws], axis=1)
                for lane_number in range(low, high):
                    out += totals[lane_number - low, self._positions(lane_number)]
        return outs

    def cells(self) -> tuple[IntArray, IntArray]:
        """Every (span, draw) pair the spans hold."""
        span = np.repeat(np.arange(len(self)), self.length)
        first = np.cumsum(self.length) - self.length
        position = (self.start[span] + np.arange(len(span)) - first[span]) % self.draws
        inverse = np.array(
            [pow(int(s), -1, self.draws) if self.draws > 1 else 0 for s in self.strides],
            dtype=np.int64,
        )
        return span, position * inverse[self.lane[span]] % self.draws

    def _positions(self, lane: int) -> IntArray:
        """The position of each draw in `lane`'s order."""
        return np.arange(self.draws, dtype=np.int64) * int(self.strides[lane]) % self.draws


@dataclass(frozen=True)
class CategoryRuns:
    """The category each subject lands in, in every draw: one span per (subject, category)
    with at least one draw."""

    subject: IntArray
    category: IntArray
    spans: DrawSpans


def category_runs(probabilities: FloatArray, draws: int, rng: np.random.Generator) -> CategoryRuns:
    """For each row of `probabilities` (subjects x categories, rows summing to 1), the draws
    that land in each category.

    A subject's draws are shared out among the categories by systematic sampling (category k
    gets `floor(draws * F_k + u) - floor(draws * F_(k-1) + u)` draws, F the cumulative chances,
    u uniform: `draws * p_k` on average, within one of it always), as one run per category in
    category order on a cycle of positions, rotated by a random offset of its own, in a random
    lane (`DrawSpans`). For any one draw the subjects are then independent with the right
    chances, which is what every KPI of that draw needs; over the draws each subject's
    categories come in their right proportions, which only takes noise out of the estimates
    (a multinomial per subject would put it back, at ten times the cost).
    """
    n = len(probabilities)
    strides = _lane_strides(draws, rng)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CategoryRuns(empty, empty, DrawSpans(draws, strides, empty, empty, empty))
    cumulative = np.maximum(probabilities, 0.0)
    np.cumsum(cumulative, axis=1, out=cumulative)
    cumulative /= cumulative[:, -1:]
    cumulative[:, -1] = 1.0
    cumulative *= draws
    cumulative += rng.random(n)[:, None]
    np.floor(cumulative, out=cumulative)
    np.minimum(cumulative, draws, out=cumulative)
    bounds = cumulative.astype(np.int64)
    del cumulative
    offset = np.asarray(rng.integers(0, draws, size=n), dtype=np.int64)
    lane_of = np.asarray(rng.integers(0, len(strides), size=n), dtype=np.int64)
    width = bounds.shape[1]
    flat = bounds.ravel()
    counts = np.empty_like(flat)
    counts[0] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=counts[1:])
    counts[::width] = flat[::width]
    cell = np.flatnonzero(counts)
    length = counts[cell]
    subject = cell // width
    start = flat[cell] - length - offset[subject]
    start %= draws
    spans = DrawSpans(draws, strides, lane_of[subject], start, length)
    return CategoryRuns(subject, cell - subject * width, spans)


def _lane_strides(draws: int, rng: np.random.Generator) -> IntArray:
    """Up to `_LANES` distinct strides prime to `draws`, at random."""
    if draws <= 2:
        return np.ones(1, dtype=np.int64)
    candidates = np.arange(1, draws, dtype=np.int64)
    candidates = candidates[np.gcd(candidates, draws) == 1]
    picked = rng.choice(len(candidates), size=min(_LANES, len(candidates)), replace=False)
    return np.asarray(candidates[np.sort(picked)], dtype=np.int64)


def inverse_cdf_rows(cdf: FloatArray, rows: IntArray, u: FloatArray) -> IntArray:
    """For each (row, u): the first column of `cdf[row]` (non-decreasing, in [0, 1]) whose
    value exceeds u; `cdf.shape[1]` when none does."""
    m, k = cdf.shape
    if k == 0:
        return np.zeros(len(rows), dtype=np.int64)
    flat = (np.clip(cdf, 0.0, 1.0) + 2.0 * np.arange(m)[:, None]).ravel()
    position = np.searchsorted(flat, u + 2.0 * rows, side="right")
    return np.asarray(position - rows * k, dtype=np.int64)


def lognormal_of(summary: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Log-location and log-scale of amounts from their P10, P50, P90 (columns 0-2)."""
    low, median, high = (np.log(np.maximum(summary[:, i], 1e-9)) for i in range(3))
    return median, np.maximum((high - low) / (2 * _Z90), 0.0)


def lognormal_sums(mean: FloatArray, variance: FloatArray, rng: np.random.Generator) -> FloatArray:
    """One draw per cell of a lognormal with that `mean` and `variance` (0 where the mean is)."""
    positive = mean > 0
    safe = np.where(positive, mean, 1.0)
    scale = np.log1p(np.clip(variance, 0.0, None) / safe**2)
    z = rng.standard_normal(mean.shape)
    return np.where(positive, safe * np.exp(np.sqrt(scale) * z - scale / 2), 0.0)


def median_of_counts(counts: npt.NDArray[np.int64]) -> FloatArray:
    """Median of the values tallied in `counts[..., v]` (value v = slot v + 0.5); NaN if empty."""
    lower, upper, total = _median_slots(counts)
    even = total % 2 == 0
    value = np.where(even, (lower + upper) / 2.0, upper) + 0.5
    return np.where(total > 0, value, np.nan)


def _median_slots(
    counts: npt.NDArray[np.int64],
) -> tuple[IntArray, IntArray, npt.NDArray[np.int64]]:
    """The slots of the lower and upper middle values, and the number of values."""
    total = counts.sum(axis=-1)
    cumulative = np.cumsum(counts, axis=-1)
    lower = np.argmax(cumulative >= np.ceil(total / 2)[..., None], axis=-1)
    upper = np.argmax(cumulative >= (total // 2 + 1)[..., None], axis=-1)
    return lower, upper, total


@dataclass
class Tally:
    """Per-draw sums for each simulated period (draws x periods), actual and drawn alike."""

    draws: int
    periods: int
    leads: FloatArray = field(init=False)
    converted: FloatArray = field(init=False)
    won: FloatArray = field(init=False)
    won_amount: FloatArray = field(init=False)
    lost: FloatArray = field(init=False)
    pipeline: FloatArray = field(init=False)
    opened: FloatArray = field(init=False)
    churned: FloatArray = field(init=False)
    _cycle_parts: list[IntArray] = field(init=False)
    _cycle_spans: list[tuple[DrawSpans, IntArray, IntArray]] = field(init=False)
    _actual_cycle: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        shape = (self.draws, self.periods)
        names = ("leads", "converted", "won", "won_amount", "lost", "pipeline", "opened", "churned")
        for name in names:
            setattr(self, name, np.zeros(shape))
        self._cycle_parts = []
        self._cycle_spans = []
        self._actual_cycle = np.zeros((self.periods, CYCLE_SLOTS), dtype=np.int64)

    def add_closes(self, part: Tally, pace: FloatArray) -> None:
        """Add `part`'s sums with its closes scaled by `pace` (one factor per draw): wins, their
        amounts and losses, and the pipeline they took off (what `part` opened is kept whole;
        `opened` holds it). Leads, conversions, churn and cycle days are added as they are."""
        factor = pace[:, None]
        self.won += factor * part.won
        self.won_amount += factor * part.won_amount
        self.lost += factor * part.lost
        self.pipeline += part.opened + factor * (part.pipeline - part.opened)
        self.opened += part.opened
        self.leads += part.leads
        self.converted += part.converted
        self.churned += part.churned
        self._cycle_parts += part._cycle_parts
        self._cycle_spans += part._cycle_spans
        self._actual_cycle += part._actual_cycle

    def add_cycle_days(self, draw: IntArray, period: IntArray, days: FloatArray) -> None:
        """Tally won deals' cycle lengths (days) by draw and period (counted once, at the end:
        a draws x periods x days array per call would make many periods quadratic)."""
        self._cycle_parts.append((draw * self.periods + period) * CYCLE_SLOTS + _slot(days))

    def add_cycle_spans(self, spans: DrawSpans, period: IntArray, days: FloatArray) -> None:
        """Tally one cycle length per span, in each draw the span holds."""
        self._cycle_spans.append((spans, period, _slot(days)))

    def add_actual_cycle_days(self, period: IntArray, days: FloatArray) -> None:
        """Tally cycle lengths that already happened: the same in every draw."""
        counts = np.bincount(
            period * CYCLE_SLOTS + _slot(days), minlength=self.periods * CYCLE_SLOTS
        )
        self._actual_cycle += counts.reshape(self.periods, CYCLE_SLOTS)

    def cycle_medians(self, groups: list[list[int]]) -> FloatArray:
        """Median cycle days of the won deals per draw and group of periods: (draws, groups),
        NaN where a draw has none (days tallied whole; the median of a day is its middle).

        Counting every day in every draw costs draws x groups x days per call. The draws'
        medians lie close together, so days are first counted in a window around the median
        of all draws pooled, with one slot for the days below and one for those above; only
        when a draw's median falls outside the window are all days counted.
        """
        group_of = np.full(self.periods, -1, dtype=np.int64)
        for number, members in enumerate(groups):
            group_of[members] = number
        n_groups = len(groups)
        slots = np.arange(CYCLE_SLOTS)
        low = np.zeros(n_groups, dtype=np.int64)
        window = min(2 * _MEDIAN_REACH + 1, CYCLE_SLOTS)
        for group in range(n_groups):
            hist = self._pooled(group_of, group)
            if hist.sum() > 0:
                middle = int(np.argmax(np.cumsum(hist) >= hist.sum() / 2))
                low[group] = min(max(middle - _MEDIAN_REACH, 0), CYCLE_SLOTS - window)
        column = np.clip(slots[None, :] - low[:, None] + 1, 0, window + 1)
        counts = self._counts(group_of, n_groups, column, window + 2)
        lower, upper, total = _median_slots(counts)
        inside = (lower >= 1) & (upper <= window)
        if not inside[total > 0].all():
            identity = np.broadcast_to(slots, (n_groups, CYCLE_SLOTS))
            return median_of_counts(self._counts(group_of, n_groups, identity, CYCLE_SLOTS))
        lower, upper = lower - 1 + low[None, :], upper - 1 + low[None, :]
        value = np.where(total % 2 == 0, (lower + upper) / 2.0, upper) + 0.5
        return np.asarray(np.where(total > 0, value, np.nan), dtype=np.float64)

    def _pooled(self, group_of: IntArray, group: int) -> FloatArray:
        """The days of `group` tallied over every draw at once."""
        hist = np.zeros(CYCLE_SLOTS)
        in_group = group_of == group
        for part in self._cycle_parts:
            mine = in_group[(part // CYCLE_SLOTS) % self.periods]
            hist += np.bincount(part[mine] % CYCLE_SLOTS, minlength=CYCLE_SLOTS)
        for spans, period, slot in self._cycle_spans:
            mine = in_group[period]
            hist += np.bincount(slot[mine], weights=spans.length[mine], minlength=CYCLE_SLOTS)
        actual = self._actual_cycle[in_group].sum(axis=0)
        return np.asarray(hist + self.draws * actual, dtype=np.float64)

    def _counts(
        self, group_of: IntArray, n_groups: int, column: IntArray, width: int
    ) -> npt.NDArray[np.int64]:
        """Days counted per draw, group and column: `column[group, slot]` says which."""
        counts = np.zeros((self.draws, n_groups, width), dtype=np.int64)
        flat = counts.reshape(self.draws, -1)
        for part in self._cycle_parts:
            cell = part // CYCLE_SLOTS
            group = group_of[cell % self.periods]
            keep = group >= 0
            where = column[group[keep], (part % CYCLE_SLOTS)[keep]]
            index = ((cell // self.periods)[keep] * n_groups + group[keep]) * width + where
            counts += np.bincount(index, minlength=counts.size).reshape(counts.shape)
        for spans, period, slot in self._cycle_spans:
            group = group_of[period]
            keep = group >= 0
            where = np.full(len(slot), -1, dtype=np.int64)
            where[keep] = group[keep] * width + column[group[keep], slot[keep]]
            used, local = np.unique(where, return_inverse=True)
            if used.size and used[0] < 0:
                used, local = used[1:], local - 1
            if len(spans.strides) * (self.draws + 1) * len(used) <= 4 * int(spans.length.sum()):
                (summed,) = spans.sums(local.astype(np.int64), [None], len(used))
                flat[:, used] += np.rint(summed).astype(np.int64)
            else:
                span, draw = spans.cells()
                mine = where[span] >= 0
                index = draw[mine] * flat.shape[1] + where[span][mine]
                counts += np.bincount(index, minlength=counts.size).reshape(counts.shape)
        for number in range(n_groups):
            actual = self._actual_cycle[group_of == number].sum(axis=0)
            counts[:, number, :] += np.bincount(column[number], weights=actual, minlength=width)[
                None, :
            ].astype(np.int64)
        return counts

    def by_draw_and_period(
        self, draw: IntArray, period: IntArray, weights: FloatArray
    ) -> FloatArray:
        """Sum `weights` into a draws x periods array."""
        index = draw * self.periods + period
        summed = np.bincount(index, weights=weights, minlength=self.draws * self.periods)
        return np.asarray(summed.reshape(self.draws, self.periods), dtype=np.float64)


def _slot(days: FloatArray) -> IntArray:
    return np.asarray(np.clip(np.floor(days), 0, CYCLE_SLOTS - 1), dtype=np.int64)
