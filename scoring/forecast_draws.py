"""Vectorised drawing for the forecast engine, and the tallies the draws are summed into.

Two ways to draw a category (a close bin, "still open") for many subjects:
- `categorical_draws`: every subject in every draw (open deals, customers). The number of draws
  landing in each category is multinomial, so one `multinomial` call per subject gives the
  counts, and a random rotation per subject decides which draws they are: no per-draw search.
- `inverse_cdf_rows`: one uniform per simulated lead, looked up in its template's cumulative
  curve. Rows are offset by 2 so that a single `searchsorted` serves every template at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Lognormal z of the P90 (and minus that of the P10).
_Z90 = 1.2815515655446004
# Cycle days are tallied per day up to this many; longer cycles share the last slot.
CYCLE_SLOTS = 1500


def categorical_draws(
    probabilities: FloatArray, draws: int, rng: np.random.Generator
) -> npt.NDArray[np.int16]:
    """For each row of `probabilities` (subjects x categories, rows summing to 1), the category
    each of `draws` draws lands in: shape (subjects, draws).

    A subject's counts per category are multinomial; its draws get them as one run per category
    (in category order), rotated by a random offset of its own. For any one draw the subjects
    are then independent with the right chances, which is what every KPI of that draw needs; a
    shuffle per subject would give the same marginals at several times the cost.
    """
    n, k = probabilities.shape
    if n == 0:
        return np.zeros((0, draws), dtype=np.int16)
    p = np.clip(probabilities, 0.0, None)
    p = p / p.sum(axis=1, keepdims=True)
    counts = rng.multinomial(draws, p)
    ordered = np.repeat(np.tile(np.arange(k, dtype=np.int16), n), counts.ravel()).reshape(n, draws)
    offset = np.asarray(rng.integers(0, draws, size=n), dtype=np.int64)
    position = np.arange(draws)[None, :] + offset[:, None]
    position[position >= draws] -= draws
    return np.asarray(np.take_along_axis(ordered, position, axis=1), dtype=np.int16)


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


def median_of_counts(counts: npt.NDArray[np.int64]) -> FloatArray:
    """Median of the values tallied in `counts[..., v]` (value v = slot v + 0.5); NaN if empty."""
    total = counts.sum(axis=-1)
    cumulative = np.cumsum(counts, axis=-1)
    lower = np.argmax(cumulative >= np.ceil(total / 2)[..., None], axis=-1)
    upper = np.argmax(cumulative >= (total // 2 + 1)[..., None], axis=-1)
    even = total % 2 == 0
    value = np.where(even, (lower + upper) / 2.0, upper) + 0.5
    return np.where(total > 0, value, np.nan)


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
    churned: FloatArray = field(init=False)
    _cycle_parts: list[IntArray] = field(init=False)
    _actual_cycle: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        shape = (self.draws, self.periods)
        for name in ("leads", "converted", "won", "won_amount", "lost", "pipeline", "churned"):
            setattr(self, name, np.zeros(shape))
        self._cycle_parts = []
        self._actual_cycle = np.zeros((self.periods, CYCLE_SLOTS), dtype=np.int64)

    def add_cycle_days(self, draw: IntArray, period: IntArray, days: FloatArray) -> None:
        """Tally won deals' cycle lengths (days) by draw and period (counted once, at the end:
        a draws x periods x days array per call would make many periods quadratic)."""
        slot = np.clip(np.floor(days), 0, CYCLE_SLOTS - 1).astype(np.int64)
        self._cycle_parts.append((draw * self.periods + period) * CYCLE_SLOTS + slot)

    def add_actual_cycle_days(self, period: IntArray, days: FloatArray) -> None:
        """Tally cycle lengths that already happened: the same in every draw."""
        slot = np.clip(np.floor(days), 0, CYCLE_SLOTS - 1).astype(np.int64)
        counts = np.bincount(period * CYCLE_SLOTS + slot, minlength=self.periods * CYCLE_SLOTS)
        self._actual_cycle += counts.reshape(self.periods, CYCLE_SLOTS)

    def cycle_days(self, groups: list[list[int]]) -> npt.NDArray[np.int64]:
        """Cycle-length counts per draw, group of periods and day: (draws, groups, days)."""
        group_of = np.full(self.periods, -1, dtype=np.int64)
        for number, members in enumerate(groups):
            group_of[members] = number
        counts = np.zeros((self.draws, len(groups), CYCLE_SLOTS), dtype=np.int64)
        for part in self._cycle_parts:
            slot = part % CYCLE_SLOTS
            cell = part // CYCLE_SLOTS
            group = group_of[cell % self.periods]
            keep = group >= 0
            index = ((cell // self.periods)[keep] * len(groups) + group[keep]) * CYCLE_SLOTS
            counts += np.bincount(index + slot[keep], minlength=counts.size).reshape(counts.shape)
        for number, members in enumerate(groups):
            counts[:, number, :] += self._actual_cycle[members].sum(axis=0)[None, :]
        return counts

    def by_draw_and_period(
        self, draw: IntArray, period: IntArray, weights: FloatArray
    ) -> FloatArray:
        """Sum `weights` into a draws x periods array."""
        index = draw * self.periods + period
        summed = np.bincount(index, weights=weights, minlength=self.draws * self.periods)
        return np.asarray(summed.reshape(self.draws, self.periods), dtype=np.float64)
