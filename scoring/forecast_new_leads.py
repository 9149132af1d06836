"""Leads not yet created: how many arrive (lead-volume paths) and what becomes of them.

Scoring every simulated lead would cost draws x leads model calls. Instead each simulated
period gets a pool of template leads, scored once: a creation moment drawn from the days the
volume model expects leads on (after `as_of`), attributes resampled from the segment's recent
leads. A simulated lead is a random template plus one uniform draw, read against the template's
cumulative curves of winning and losing by each bin: won within the horizon with the calibrated
lead-conversion probability, on the deal-cycle timing `LeadScorer` serves (P(won within d) =
probability x W(d)/W(horizon)); lost on the cycle's losing curve scaled to the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scoring.errors import FunnelcastInputError
from scoring.forecast_draws import FloatArray, IntArray, Tally, inverse_cdf_rows, lognormal_of
from scoring.forecast_timeline import Timeline, series_days, simulation_freq
from scoring.funnel import Funnel
from scoring.periods import next_period_start

if TYPE_CHECKING:
    from scoring.forecast import ForecastModels

POOL_SIZE = 1000
RECENT_DAYS = 365
_MIN_RECENT = 200


def add_new_leads(
    tally: Tally,
    known: Funnel,
    models: ForecastModels,
    timeline: Timeline,
    rng: np.random.Generator,
    segment: Mapping[str, str],
    *,
    segment_share: float = 1.0,
    extra_leads_per_week: float = 0.0,
    extra_rng: np.random.Generator | None = None,
) -> list[str]:
    """Draw the leads created after `as_of` into `tally`; notes on what could not be drawn.

    `known` is already filtered to `segment`; `segment_share` is the segment's share of the
    recent leads of all segments (used when lead-volume has no forecast for the segment).
    """
    notes: list[str] = []
    recent = _recent_leads(known, timeline)
    if recent.empty:
        return ["no leads before as_of to resample: no new leads simulated"]
    first_day = timeline.as_of.date() + timedelta(days=1)
    subs = [i for i, end in enumerate(timeline.sub_ends) if end >= first_day]
    if not subs:
        return notes
    counts = np.zeros((tally.draws, len(subs)), dtype=np.int64)
    volume_segment: Mapping[str, str] | None = segment or None
    if models.volume is None:
        notes.append("no lead-volume model: no new leads are simulated after as_of")
    else:
        calendar = [timeline.sub_calendar()[sub] for sub in subs]
        months = sorted(set(calendar))
        by_month, volume_segment, note = _volume_paths(
            models, timeline, len(months), tally.draws, rng, segment, segment_share
        )
        if note:
            notes.append(note)
        counts = _share_out(by_month, months, calendar, subs, timeline, models, volume_segment, rng)
    if extra_leads_per_week > 0:
        extra = extra_rng if extra_rng is not None else np.random.default_rng(0)
        for column, sub in enumerate(subs):
            first = max(timeline.sub_starts[sub], first_day)
            days = (timeline.sub_ends[sub] - first).days + 1
            counts[:, column] += extra.poisson(extra_leads_per_week * days / 7.0, tally.draws)
    share = _amount_share(known)
    # Templates per period: enough for three periods' worth at full size, at least 200 each.
    pool_size = max(200, min(POOL_SIZE, 3 * POOL_SIZE // len(subs)))
    for column, sub in enumerate(subs):
        if counts[:, column].sum() == 0:
            continue
        first = max(timeline.sub_starts[sub], first_day)
        weights = _day_weights(models, first, timeline.sub_ends[sub], volume_segment)
        pool = _template_pool(recent, first, weights, rng, pool_size)
        curves = _template_curves(pool, known, models, timeline)
        _draw_leads(tally, sub, counts[:, column], curves, timeline, share, rng)
    return notes


def _share_out(
    by_month: IntArray,
    months: list[Any],
    calendar: list[Any],
    subs: list[int],
    timeline: Timeline,
    models: ForecastModels,
    segment: Mapping[str, str] | None,
    rng: np.random.Generator,
) -> IntArray:
    """Each calendar period's drawn leads shared among its simulated periods, in proportion to
    the leads expected on their days (a goal's period may start or end inside a month; the
    leads of the month's other days are dropped)."""
    first_day = timeline.as_of.date() + timedelta(days=1)
    freq = simulation_freq(timeline.freq)
    counts = np.zeros((by_month.shape[0], len(subs)), dtype=np.int64)
    for column_month, month in enumerate(months):
        members = [i for i, c in enumerate(calendar) if c == month]
        first = max(month, first_day)
        last = next_period_start(month, freq) - timedelta(days=1)
        whole = _day_weights(models, first, last, segment, normalise=False)
        parts = [
            float(
                whole[
                    (whole.index >= max(timeline.sub_starts[subs[i]], first_day))
                    & (whole.index <= timeline.sub_ends[subs[i]])
                ].sum()
            )
            for i in members
        ]
        total = float(whole.sum())
        covered = sum(parts)
        if total <= 0 or (len(members) == 1 and covered >= total * (1 - 1e-12)):
            counts[:, members[0]] = by_month[:, column_month]
            continue
        shares = np.array([*parts, max(total - covered, 0.0)]) / total
        drawn = rng.multinomial(by_month[:, column_month], shares / shares.sum())
        counts[:, members] = drawn[:, : len(members)]
    return counts


def _recent_leads(known: Funnel, timeline: Timeline) -> pd.DataFrame:
    leads = known.leads.sort_values("created_at")
    since = timeline.as_of - pd.Timedelta(days=RECENT_DAYS)
    recent = leads[leads["created_at"] > since]
    if len(recent) < _MIN_RECENT:
        recent = leads.tail(_MIN_RECENT)
    return recent.reset_index(drop=True)


def _volume_paths(
    models: ForecastModels,
    timeline: Timeline,
    periods: int,
    draws: int,
    rng: np.random.Generator,
    segment: Mapping[str, str],
    segment_share: float,
) -> tuple[IntArray, Mapping[str, str] | None, str | None]:
    """Lead counts (draws x periods) from the volume model; a segment it has no forecast for
    gets the all-leads paths thinned by the segment's share of recent leads."""
    volume = models.volume
    assert volume is not None
    freq = simulation_freq(timeline.freq)
    start_after = timeline.as_of.date()
    try:
        paths = volume.sample_paths(freq, periods, draws, rng, segment or None, start_after)
        return np.asarray(paths, dtype=np.int64), segment or None, None
    except FunnelcastInputError:
        pass
    paths = np.asarray(volume.sample_paths(freq, periods, draws, rng, None, start_after))
    thinned = rng.binomial(paths.astype(np.int64), segment_share)
    note = (
        f"lead volume has no forecast for segment {dict(segment)}: all-lead volume x its "
        f"share of the last {RECENT_DAYS} days' leads ({segment_share:.1%})"
    )
    return np.asarray(thinned, dtype=np.int64), None, note


def _day_weights(
    models: ForecastModels,
    first: Any,
    last: Any,
    segment: Mapping[str, str] | None,
    *,
    normalise: bool = True,
) -> pd.Series:
    days = pd.date_range(first, last, freq="D")
    if models.volume is None:
        return pd.Series(1.0, index=days.date)
    try:
        weights = models.volume.daily_mean(first, last, segment)
    except FunnelcastInputError:
        weights = models.volume.daily_mean(first, last, None)
    values = np.clip(weights.to_numpy(dtype=float), 0.0, None)
    if not normalise:
        return pd.Series(values, index=weights.index)
    if values.sum() <= 0:
        values = np.ones(len(values))
    return pd.Series(values / values.sum(), index=weights.index)


def _template_pool(
    recent: pd.DataFrame, first: Any, weights: pd.Series, rng: np.random.Generator, size: int
) -> pd.DataFrame:
    """`size` template leads: recent leads' attributes on days drawn by `weights`."""
    pick = rng.integers(0, len(recent), size)
    pool = recent.iloc[pick].reset_index(drop=True)
    day = rng.choice(len(weights), size, p=weights.to_numpy(dtype=float))
    start = pd.Timestamp(weights.index[0])
    time_of_day = pool["created_at"] - pool["created_at"].dt.normalize()
    pool["created_at"] = start + pd.to_timedelta(day, unit="D") + time_of_day
    pool["lead_id"] = [f"simulated-{i}" for i in range(size)]
    pool["outcome"] = "open"
    for column in ("closed_at", "amount"):
        if column in pool:
            pool[column] = np.nan if column == "amount" else pd.NaT
    return pool


class _Curves:
    """A pool's templates: creation (epoch days), P(won within horizon), cumulative chances of
    winning and losing by each bin's end, and the amount law if won."""

    def __init__(
        self,
        created: FloatArray,
        probability: FloatArray,
        won_by: FloatArray,
        lost_by: FloatArray,
        mu: FloatArray,
        sigma: FloatArray,
        has_value: bool,
    ) -> None:
        self.created = created
        self.probability = probability
        self.won_by = won_by
        self.lost_by = lost_by
        self.mu = mu
        self.sigma = sigma
        self.has_value = has_value


def _template_curves(
    pool: pd.DataFrame, known: Funnel, models: ForecastModels, timeline: Timeline
) -> _Curves:
    horizon = known.horizon_days
    created = series_days(pool["created_at"])
    probability = np.asarray(models.conversion.predict_proba(pool), dtype=float)
    # Won and lost curves stop at the horizon (`_at` holds the last value beyond it).
    grid = np.arange(0, horizon + 1, dtype=np.float64)
    won, lost = models.cycle.cumulative_incidence(pool, grid)
    capped = np.minimum(grid, horizon).astype(np.int64)
    w_h = won[:, horizon : horizon + 1]
    shape = np.divide(won[:, capped], w_h, out=np.ones_like(won), where=w_h > 1e-12)
    won_curve = probability[:, None] * np.clip(shape, 0.0, 1.0)
    lost_share = np.divide(lost[:, capped], np.clip(1.0 - w_h, 1e-12, None))
    lost_curve = (1.0 - probability[:, None]) * np.clip(lost_share, 0.0, 1.0)
    relative = timeline.edges[None, 1:] - created[:, None]
    won_by = _at(won_curve, relative)
    lost_by = _at(lost_curve, relative)
    if models.value is not None:
        mu, sigma = lognormal_of(models.value.value_summary(pool))
        has_value = True
    else:
        mu, sigma, has_value = np.zeros(len(pool)), np.zeros(len(pool)), False
    return _Curves(created, probability, won_by, lost_by, mu, sigma, has_value)


def _at(curve: FloatArray, days: FloatArray) -> FloatArray:
    """Each row's curve (on days 0, 1, ...) at fractional `days` (linear; 0 before day 0)."""
    last = curve.shape[1] - 1
    clipped = np.clip(days, 0.0, float(last))
    low = np.floor(clipped).astype(np.int64)
    high = np.minimum(low + 1, last)
    rows = np.arange(curve.shape[0])[:, None]
    fraction = clipped - low
    value = curve[rows, low] * (1 - fraction) + curve[rows, high] * fraction
    return np.where(days <= 0, 0.0, value)


def _amount_share(known: Funnel) -> float:
    """Share of open deals with an amount: how often a new open lead adds to the pipeline."""
    if "amount" not in known.leads:
        return 0.0
    open_deals = known.leads[known.leads["outcome"] == "open"]
    base = open_deals if len(open_deals) else known.leads
    return float(base["amount"].notna().mean()) if len(base) else 0.0


def _draw_leads(
    tally: Tally,
    sub: int,
    counts: IntArray,
    curves: _Curves,
    timeline: Timeline,
    amount_share: float,
    rng: np.random.Generator,
) -> None:
    """Tally the `counts[d]` leads created in simulated period `sub` of each draw d."""
    draws = tally.draws
    draw = np.repeat(np.arange(draws), counts)
    total = len(draw)
    template = rng.integers(0, len(curves.probability), total)
    u = rng.random(total)
    z = rng.standard_normal(total)
    position = rng.random(total)
    n_bins = timeline.n_bins
    tally.leads[:, sub] += counts
    probability = curves.probability[template]
    tally.converted[:, sub] += np.bincount(draw[u < probability], minlength=draws)
    amount = np.exp(curves.mu[template] + curves.sigma[template] * z) if curves.has_value else None

    won = np.flatnonzero(u < curves.won_by[template, -1])
    won_template = template[won]
    won_bin = inverse_cdf_rows(curves.won_by, won_template, u[won])
    won_bin = np.minimum(won_bin, n_bins - 1)
    won_sub = timeline.bin_sub[won_bin]
    won_draw = draw[won]
    tally.won += tally.by_draw_and_period(won_draw, won_sub, np.ones(len(won)))
    if amount is not None:
        tally.won_amount += tally.by_draw_and_period(won_draw, won_sub, amount[won])
    created = curves.created[won_template]
    start = np.maximum(timeline.edges[won_bin], created)
    moment = start + (timeline.edges[won_bin + 1] - start) * position[won]
    tally.add_cycle_days(won_draw, won_sub, moment - created)

    rest = u - probability
    lost = np.flatnonzero((rest >= 0) & (rest < curves.lost_by[template, -1]))
    lost_bin = np.minimum(inverse_cdf_rows(curves.lost_by, template[lost], rest[lost]), n_bins - 1)
    lost_sub = timeline.bin_sub[lost_bin]
    lost_draw = draw[lost]
    tally.lost += tally.by_draw_and_period(lost_draw, lost_sub, np.ones(len(lost)))

    if amount is not None and amount_share > 0:
        # Open from its creation period to the end of the period it closes in (pipeline).
        value = amount * amount_share
        change = np.zeros((draws, tally.periods))
        change[:, sub] = np.bincount(draw, weights=value, minlength=draws)
        change -= tally.by_draw_and_period(won_draw, won_sub, value[won])
        change -= tally.by_draw_and_period(lost_draw, lost_sub, value[lost])
        tally.pipeline += np.cumsum(change, axis=1)
