"""The Monte Carlo forecast engine (DESIGN §5): every KPI of §2, per future period, as draws.

From the funnel as known at `as_of` and the champions, each draw plays out the future once:
- each open deal closes won or lost in some week of the window, or stays open, with the
  chances of the deal-cycle model as of `as_of` (its age and the calendar of each week count);
  a won deal brings its amount (drawn from deal-value when the CRM has none);
- leads not yet created arrive in the numbers of a lead-volume path, on days weighted as the
  model expects, with attributes resampled from the segment's recent leads; each converts with
  the lead-conversion probability, on the timing of deal-cycle (`LeadScorer`'s composition: the
  same numbers the API serves), and brings a drawn amount;
- active customers churn by the churn model.
Every KPI of every period is computed from the same draws (with what already happened in a
period that began before `as_of`), so a quarter's draws are the sum of its months' draws.

Not simulated (said in `Forecast.notes` where it matters): stage conversions (they need a model
of stage moves), customers won during the window churning inside it, and deals that win after
the horizon. A deal still open at the horizon stays open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.churn import ChurnModel
from scoring.conversion import LeadConversionModel
from scoring.cycle import CycleModel
from scoring.deal_value import ValueModel
from scoring.errors import FunnelcastInputError
from scoring.forecast_actuals import add_actuals, sub_period_of
from scoring.forecast_churn import add_churn
from scoring.forecast_draws import (
    FloatArray,
    IntArray,
    Tally,
    categorical_draws,
    lognormal_of,
)
from scoring.forecast_kpis import kpi_draws
from scoring.forecast_new_leads import RECENT_DAYS, add_new_leads
from scoring.forecast_timeline import (
    Timeline,
    build_range_timeline,
    build_timeline,
    end_of_day,
    series_days,
)
from scoring.funnel import Funnel
from scoring.lead_volume_forecaster import VolumeForecaster
from scoring.periods import Freq
from scoring.segments import check_segment, segment_customers, segment_mask
from scoring.snapshot import funnel_as_of

# Open deals drawn at once: bounds the (deals x draws) category matrix.
_CHUNK_CELLS = 20_000_000


@dataclass(frozen=True)
class ForecastModels:
    """The champions the engine draws from; all but conversion and cycle are optional."""

    conversion: LeadConversionModel
    cycle: CycleModel
    value: ValueModel | None = None
    volume: VolumeForecaster[Any] | None = None
    churn: ChurnModel | None = None
    versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Forecast:
    """KPI draws per reported period: `draws[kpi]` has shape (draws, periods); NaN where a draw
    leaves the KPI undefined (no closes, no won deal)."""

    timeline: Timeline
    draws: dict[str, FloatArray]
    notes: tuple[str, ...]
    versions: Mapping[str, str]
    segment: Mapping[str, str]

    def summary(self) -> pd.DataFrame:
        """One row per period and KPI: `mean`, `p10`, `p50`, `p90` over the draws (NaN-aware)."""
        rows = []
        for kpi, values in self.draws.items():
            for index, (start, end) in enumerate(
                zip(self.timeline.starts, self.timeline.ends, strict=True)
            ):
                column = values[:, index]
                finite = column[np.isfinite(column)]
                if finite.size:
                    p10, p50, p90 = np.quantile(finite, [0.1, 0.5, 0.9])
                    mean = float(finite.mean())
                else:
                    p10 = p50 = p90 = mean = float("nan")
                rows.append(
                    {
                        "period_start": start,
                        "period_end": end,
                        "kpi": kpi,
                        "mean": mean,
                        "p10": float(p10),
                        "p50": float(p50),
                        "p90": float(p90),
                    }
                )
        return pd.DataFrame(rows)

    def records(self) -> list[dict[str, object]]:
        """`summary()` as JSON-ready records: ISO dates, None for undefined figures."""
        out: list[dict[str, object]] = []
        for row in self.summary().to_dict("records"):
            record: dict[str, object] = {}
            for key, value in row.items():
                if key in ("period_start", "period_end"):
                    record[str(key)] = value.isoformat()
                elif isinstance(value, float) and not np.isfinite(value):
                    record[str(key)] = None
                else:
                    record[str(key)] = value
            out.append(record)
        return out


def forecast(
    funnel: Funnel,
    models: ForecastModels,
    *,
    freq: Freq = "month",
    periods: int = 3,
    as_of: pd.Timestamp | None = None,
    segment: Mapping[str, str] | None = None,
    draws: int = 2000,
    seed: int = 0,
    extra_leads_per_week: float = 0.0,
    period: tuple[date, date] | None = None,
) -> Forecast:
    """Draw the KPIs of the `periods` periods of `freq` after `as_of` (default: the end of the
    data) for the leads matching `segment`.

    `as_of` is taken at the end of its day (the data up to then is known): as of a month's last
    day the forecast starts with the next month; as of mid-month, with the current one, whose
    days so far are actual.

    `period` (first and last day) replaces `freq` and `periods` with one period of any whole
    days, a goal's. `extra_leads_per_week` adds that many leads a week, from now on, to the
    lead-volume draws (what a goal would take). Raises `FunnelcastInputError` for an unknown
    segment key or an `as_of` outside the data.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, not {draws}")
    segment = dict(segment or {})
    as_of = end_of_day(_resolve_as_of(funnel, as_of))
    seen = as_of if funnel.observed_until is None else min(as_of, funnel.observed_until)
    known = funnel_as_of(funnel, seen)
    check_segment(known.leads, segment)
    share = 1.0
    if segment:
        matches = segment_mask(known.leads, segment)
        recent = known.leads["created_at"] > as_of - pd.Timedelta(days=RECENT_DAYS)
        share = float(matches[recent.to_numpy()].mean()) if recent.any() else float(matches.mean())
        customers = segment_customers(known.customers, known.leads, segment)
        known = known.with_tables(leads=known.leads[matches].reset_index(drop=True))
        known = known.with_tables(customers=customers)
    timeline = (
        build_timeline(as_of, freq, periods)
        if period is None
        else build_range_timeline(as_of, period[0], period[1])
    )
    # One generator per part: the open deals draw the same whatever the volume, and a goal's
    # "extra leads" search compares forecasts that differ only by those leads.
    deals_rng, leads_rng, churn_rng, extra_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )
    tally = Tally(draws, len(timeline.sub_starts))
    notes: list[str] = []

    add_actuals(tally, known, timeline)
    _add_open_deals(tally, known, models, timeline, deals_rng)
    notes += add_new_leads(
        tally,
        known,
        models,
        timeline,
        leads_rng,
        segment,
        segment_share=share,
        extra_leads_per_week=extra_leads_per_week,
        extra_rng=extra_rng,
    )
    churn_base = add_churn(tally, known, models.churn, timeline, churn_rng, notes)
    values = kpi_draws(tally, timeline, churn_base, has_amounts=_has_amounts(known))
    return Forecast(timeline, values, tuple(notes), dict(models.versions), segment)


def _resolve_as_of(funnel: Funnel, as_of: pd.Timestamp | None) -> pd.Timestamp:
    if as_of is not None:
        return pd.Timestamp(as_of)
    if funnel.observed_until is not None:
        return pd.Timestamp(funnel.observed_until)
    return pd.Timestamp(funnel.leads["created_at"].max())


def _has_amounts(known: Funnel) -> bool:
    return "amount" in known.leads and bool(known.leads["amount"].notna().any())


def _open_deals(known: Funnel) -> pd.DataFrame:
    return known.leads[known.leads["outcome"] == "open"].reset_index(drop=True)


def _add_open_deals(
    tally: Tally,
    known: Funnel,
    models: ForecastModels,
    timeline: Timeline,
    rng: np.random.Generator,
) -> None:
    """Draw each open deal's close bin and outcome, its amount when won, and its cycle days."""
    deals = _open_deals(known)
    if deals.empty:
        return
    relative = timeline.edges - timeline.as_of_days
    won_curve, lost_curve = models.cycle.cumulative_incidence(deals, relative, timeline.as_of)
    n_bins = timeline.n_bins
    probabilities = np.column_stack(
        [
            np.diff(won_curve, axis=1),
            np.diff(lost_curve, axis=1),
            np.clip(1.0 - won_curve[:, -1] - lost_curve[:, -1], 0.0, None),
        ]
    )
    created = series_days(deals["created_at"])
    amount = (
        deals["amount"].to_numpy(dtype=float) if "amount" in deals else np.full(len(deals), np.nan)
    )
    known_amount = np.nan_to_num(amount)
    mu, sigma = _amount_law(models.value, deals)
    converts = _converts_later(deals, created, known, models.cycle, timeline, won_curve, lost_curve)
    n_subs = len(timeline.sub_starts)
    tally.pipeline += _pipeline_open(known_amount, n_subs)[None, :]
    chunk = max(1, _CHUNK_CELLS // tally.draws)
    for begin in range(0, len(deals), chunk):
        part = slice(begin, begin + chunk)
        categories = categorical_draws(probabilities[part], tally.draws, rng)
        _tally_deal_closes(
            tally, categories, begin, timeline, known_amount, created, mu, sigma, models, rng
        )
        if converts is not None:
            _tally_conversions(tally, converts, categories, begin, n_bins, timeline, rng)


def _tally_deal_closes(
    tally: Tally,
    categories: npt.NDArray[np.int16],
    begin: int,
    timeline: Timeline,
    known_amount: FloatArray,
    created: FloatArray,
    mu: FloatArray,
    sigma: FloatArray,
    models: ForecastModels,
    rng: np.random.Generator,
) -> None:
    """Sum one chunk of open deals' drawn closes (deals x draws categories) into `tally`.

    Counts and closed pipeline go through one `bincount` over (draw, category) cells; only the
    won cells are visited one by one, for their amounts and cycle days.
    """
    n, draws = categories.shape
    n_bins = timeline.n_bins
    width = 2 * n_bins + 1
    cell = (np.arange(draws, dtype=np.int32)[None, :] * width + categories).ravel()
    counts = np.bincount(cell, minlength=draws * width).reshape(draws, width)
    closed = np.bincount(
        cell, weights=np.repeat(known_amount[begin : begin + n], draws), minlength=draws * width
    ).reshape(draws, width)
    subs = tally.periods
    to_sub = np.zeros((width, subs))
    to_sub[np.arange(n_bins), timeline.bin_sub] = 1.0
    to_sub[n_bins + np.arange(n_bins), timeline.bin_sub] = 1.0
    tally.won += counts[:, :n_bins] @ to_sub[:n_bins]
    tally.lost += counts[:, n_bins : 2 * n_bins] @ to_sub[n_bins : 2 * n_bins]
    # A deal closed in sub-period s is no longer pipeline at the end of s and after.
    tally.pipeline -= np.cumsum(closed @ to_sub, axis=1)

    won_cells = np.flatnonzero(categories.ravel() < n_bins)
    deal = won_cells // draws + begin
    draw = won_cells % draws
    bin_index = categories.ravel()[won_cells].astype(np.int64)
    sub = timeline.bin_sub[bin_index]
    _tally_wins(tally, draw, sub, deal, bin_index, created, timeline, rng)
    # Won amounts come from deal-value, not from the deal's stored amount: the store keeps
    # one amount per deal, and for a deal still open at a past cutoff that is often its
    # final close value (a back-test leak). Without deal-value the stored amount is used.
    if models.value is not None:
        value = np.exp(mu[deal] + sigma[deal] * rng.standard_normal(len(deal)))
    else:
        value = known_amount[deal]
    tally.won_amount += tally.by_draw_and_period(draw, sub, value)


def _pipeline_open(known_amount: FloatArray, n_subs: int) -> FloatArray:
    """Every open deal's known amount at every sub-period end (closes are taken off after)."""
    return np.full(n_subs, float(known_amount.sum()))


def _tally_wins(
    tally: Tally,
    draw: IntArray,
    sub: IntArray,
    deal: IntArray,
    bin_index: IntArray,
    created: FloatArray,
    timeline: Timeline,
    rng: np.random.Generator,
) -> None:
    """Cycle days of won closes: the close falls uniformly inside its bin."""
    start = timeline.edges[bin_index]
    width = timeline.edges[bin_index + 1] - start
    moment = start + width * rng.random(len(draw))
    tally.add_cycle_days(draw, sub, moment - created[deal])


@dataclass(frozen=True)
class _Converts:
    """Open deals of cohorts inside the forecast: their cohort and when their horizon ends."""

    deal: IntArray
    cohort: IntArray
    horizon_bin: IntArray  # wins in bins before this one are within the horizon
    after_window: FloatArray  # P(won after the window but within the horizon | still open)


def _converts_later(
    deals: pd.DataFrame,
    created: FloatArray,
    known: Funnel,
    cycle: CycleModel,
    timeline: Timeline,
    won_curve: FloatArray,
    lost_curve: FloatArray,
) -> _Converts | None:
    """The open deals created inside the forecast span, whose conversion (won within the
    horizon) counts toward their cohort's `conversion_rate`."""
    cohort = sub_period_of(created, timeline)
    members = np.flatnonzero(cohort >= 0)
    if members.size == 0:
        return None
    horizon_end = created[members] + known.horizon_days
    horizon_bin = np.searchsorted(timeline.edges, horizon_end, side="right") - 1
    after = np.zeros(len(members))
    beyond = horizon_end > timeline.end_days
    if beyond.any():
        rows = deals.iloc[members[beyond]]
        reach = np.ceil(horizon_end[beyond] - timeline.as_of_days).astype(np.int64)
        grid = np.arange(0, int(reach.max()) + 1, dtype=np.float64)
        won_late, _ = cycle.cumulative_incidence(rows, grid, timeline.as_of)
        late = members[beyond]
        open_at_end = np.clip(1.0 - won_curve[late, -1] - lost_curve[late, -1], 1e-12, None)
        extra = won_late[np.arange(len(rows)), reach] - won_curve[late, -1]
        after[beyond] = np.clip(extra / open_at_end, 0.0, 1.0)
    return _Converts(members, cohort[members], np.minimum(horizon_bin, timeline.n_bins), after)


def _tally_conversions(
    tally: Tally,
    converts: _Converts,
    categories: np.ndarray,
    begin: int,
    n_bins: int,
    timeline: Timeline,
    rng: np.random.Generator,
) -> None:
    """Count, per draw, the open deals of forecast cohorts that win within their horizon."""
    local = converts.deal - begin
    inside = (local >= 0) & (local < len(categories))
    if not inside.any():
        return
    rows = categories[local[inside]].astype(np.int64)  # members x draws
    cohort = converts.cohort[inside]
    limit = converts.horizon_bin[inside][:, None]
    won_in_time = rows < np.minimum(limit, n_bins)
    still_open = rows == 2 * n_bins
    late = still_open & (rng.random(rows.shape) < converts.after_window[inside][:, None])
    hits = won_in_time | late
    member, draw = np.nonzero(hits)
    tally.converted += tally.by_draw_and_period(draw, cohort[member], np.ones(len(draw)))


def _amount_law(value: ValueModel | None, deals: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    if value is None or deals.empty:
        return np.zeros(len(deals)), np.zeros(len(deals))
    return lognormal_of(value.value_summary(deals))


def forecast_models(loaded: Mapping[str, Any], versions: Mapping[str, str]) -> ForecastModels:
    """The engine's models from loaded champions by registered name.

    Raises:
        FunnelcastInputError: without a lead-conversion or deal-cycle champion.
    """
    missing = [name for name in ("lead-conversion", "deal-cycle") if name not in loaded]
    if missing:
        raise FunnelcastInputError(
            f"forecasting needs a champion of {' and '.join(missing)}: train and promote with "
            "`funnelcast train --promote` (or `make demo` for the synthetic funnel)"
        )
    return ForecastModels(
        conversion=loaded["lead-conversion"],
        cycle=loaded["deal-cycle"],
        value=loaded.get("deal-value"),
        volume=loaded.get("lead-volume"),
        churn=loaded.get("churn"),
        versions=dict(versions),
    )
