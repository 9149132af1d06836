"""The Monte Carlo forecast engine (DESIGN §5): every KPI of §2, per future period, as draws.

From the funnel as known at `as_of` and the champions, each draw plays out the future once:
- each open deal closes won or lost in some week of the window, or stays open, with the
  chances of the deal-cycle model as of `as_of` (its age and the calendar of each week count),
  times the chance that it is still worked on: a creation-week cohort whose open deals closed
  in the last four weeks well below those chances holds stale deals that never close
  (`scoring.forecast_pace.stale_shares`);
  a won deal brings its amount (drawn from deal-value when the CRM has none); the closes of
  each draw are scaled by one factor of pace for that draw, the deal-cycle model's own
  month-to-month error on the funnel's last months (`scoring.forecast_pace`), so intervals
  hold the model's error and not only the luck of which deals close;
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
import pandas as pd

from scoring.churn import ChurnModel
from scoring.conversion import LeadConversionModel
from scoring.cycle import CycleModel
from scoring.deal_value import ValueModel
from scoring.errors import FunnelcastInputError
from scoring.forecast_actuals import add_actuals, sub_period_of
from scoring.forecast_churn import add_churn
from scoring.forecast_draws import (
    CategoryRuns,
    FloatArray,
    IntArray,
    Tally,
    category_runs,
    lognormal_of,
    lognormal_sums,
)
from scoring.forecast_kpis import kpi_draws
from scoring.forecast_new_leads import RECENT_DAYS, add_new_leads
from scoring.forecast_pace import pace_factors, pace_spread, stale_shares
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

# Open deals x categories drawn at once: bounds the runs held in memory.
_CHUNK_RUNS = 4_000_000
# Expected wins of open deals, summed over the draws, up to which each win gets its own
# amount and close moment (see `_tally_wins`).
_WINS_ONE_BY_ONE = 3_000_000


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
    known = _known_at(funnel, seen)
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
    deals_rng, leads_rng, churn_rng, extra_rng, pace_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(5)
    )
    tally = Tally(draws, len(timeline.sub_starts))
    notes: list[str] = []

    add_actuals(tally, known, timeline)
    # The open deals' closes carry the model's error of pace (`scoring.forecast_pace`).
    open_deals = Tally(draws, tally.periods)
    _add_open_deals(open_deals, known, models, timeline, deals_rng, notes)
    spread = pace_spread(known, models.cycle, as_of, pace_rng)
    tally.add_closes(open_deals, pace_factors(spread, draws, pace_rng))
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


def _known_at(funnel: Funnel, seen: pd.Timestamp) -> Funnel:
    """The funnel as known at `seen` (`funnel_as_of`), without its stage events unless a lead's
    stage must be taken back to `seen` (a lead closed after it): the engine reads no stage
    events (stage moves are not simulated), and filtering them costs seconds on a big funnel."""
    leads = funnel.leads
    rolled_back = "stage" in leads and bool((leads["closed_at"] > seen).any())
    if funnel.stage_events is None or rolled_back:
        return funnel_as_of(funnel, seen)
    return funnel_as_of(funnel.with_tables(stage_events=None), seen)


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
    notes: list[str],
) -> None:
    """Draw each open deal's close bin and outcome, its amount when won, and its cycle days;
    say in `notes` how many open deals are judged stale."""
    deals = _open_deals(known)
    if deals.empty:
        return
    relative = timeline.edges - timeline.as_of_days
    won_curve, lost_curve = models.cycle.cumulative_incidence(deals, relative, timeline.as_of)
    # A stale deal never closes: the chances are those of a deal still worked on. Closes are
    # known up to the end of the data at most.
    seen = timeline.as_of
    if known.observed_until is not None:
        seen = min(seen, end_of_day(pd.Timestamp(known.observed_until)))
    stale = stale_shares(known.leads, models.cycle, seen)
    active = 1.0 - stale[(known.leads["outcome"] == "open").to_numpy()]
    won_curve, lost_curve = won_curve * active[:, None], lost_curve * active[:, None]
    judged_stale = float(np.sum(1.0 - active))
    if judged_stale >= 1.0:
        notes.append(
            f"about {judged_stale:,.0f} of {len(active):,} open deals are judged stale (their "
            "creation week's deals stopped closing in the last 4 weeks) and are not expected "
            "to close"
        )
    created = series_days(deals["created_at"])
    converts = _converts_later(
        deals, created, known, models.cycle, timeline, (won_curve, lost_curve), active
    )
    late = np.zeros(len(deals))
    if converts is not None:
        late[converts.deal] = converts.after_window
    still_open = np.clip(1.0 - won_curve[:, -1] - lost_curve[:, -1], 0.0, None)
    # Categories: won in bin b, lost in bin b, still open at the end, and still open but won
    # after the window within the horizon (counts toward its cohort's conversion only).
    probabilities = np.column_stack(
        [
            np.diff(won_curve, axis=1),
            np.diff(lost_curve, axis=1),
            still_open * (1.0 - late),
            still_open * late,
        ]
    )
    amount = (
        deals["amount"].to_numpy(dtype=float) if "amount" in deals else np.full(len(deals), np.nan)
    )
    deal_facts = _DealFacts(
        known_amount=np.nan_to_num(amount),
        created=created,
        law=_amount_law(models.value, deals) if models.value is not None else None,
        cohort=np.full(len(deals), -1, dtype=np.int64),
        horizon_bin=np.zeros(len(deals), dtype=np.int64),
    )
    if converts is not None:
        deal_facts.cohort[converts.deal] = converts.cohort
        deal_facts.horizon_bin[converts.deal] = converts.horizon_bin
    opened = _pipeline_open(deal_facts.known_amount, tally.periods)[None, :]
    tally.pipeline += opened
    tally.opened += opened
    per_draw = tally.draws * float(won_curve[:, -1].sum()) <= _WINS_ONE_BY_ONE
    chunk = max(1, _CHUNK_RUNS // probabilities.shape[1])
    for begin in range(0, len(deals), chunk):
        runs = category_runs(probabilities[begin : begin + chunk], tally.draws, rng)
        _tally_deal_runs(tally, runs, begin, timeline, deal_facts)
        _tally_wins(tally, runs, begin, timeline, deal_facts, per_draw, rng)


@dataclass(frozen=True)
class _DealFacts:
    """What the tallies need of each open deal."""

    known_amount: FloatArray
    created: FloatArray
    law: tuple[FloatArray, FloatArray] | None  # lognormal of the amount if won (deal-value)
    cohort: IntArray  # simulated period the deal was created in; -1 before the forecast
    horizon_bin: IntArray  # wins in bins before this one are within the deal's horizon


def _tally_deal_runs(
    tally: Tally, runs: CategoryRuns, begin: int, timeline: Timeline, facts: _DealFacts
) -> None:
    """Sum one chunk of open deals' drawn closes into `tally`: won and lost deals, closed
    pipeline and the conversions of forecast cohorts, per draw and simulated period."""
    n_bins, subs = timeline.n_bins, tally.periods
    category = runs.category
    deal = runs.subject + begin
    never = np.full(2, -1, dtype=np.int64)
    # Columns: won then lost, per simulated period; the open categories count nowhere.
    column = np.concatenate([timeline.bin_sub, subs + timeline.bin_sub, never])[category]
    amount = facts.known_amount[deal]
    weights: list[FloatArray | None] = [None, amount] if amount.any() else [None]
    summed = runs.spans.sums(column, weights, 2 * subs)
    tally.won += summed[0][:, :subs]
    tally.lost += summed[0][:, subs:]
    if len(summed) > 1:
        # A deal closed in sub-period s is no longer pipeline at the end of s and after.
        tally.pipeline -= np.cumsum(summed[1][:, :subs] + summed[1][:, subs:], axis=1)
    cohort = facts.cohort[deal]
    converted = (cohort >= 0) & (
        (category < np.minimum(facts.horizon_bin[deal], n_bins)) | (category == 2 * n_bins + 1)
    )
    if converted.any():
        (count,) = runs.spans.sums(np.where(converted, cohort, -1), [None], tally.periods)
        tally.converted += count


def _pipeline_open(known_amount: FloatArray, n_subs: int) -> FloatArray:
    """Every open deal's known amount at every sub-period end (closes are taken off after)."""
    return np.full(n_subs, float(known_amount.sum()))


def _tally_wins(
    tally: Tally,
    runs: CategoryRuns,
    begin: int,
    timeline: Timeline,
    facts: _DealFacts,
    per_draw: bool,
    rng: np.random.Generator,
) -> None:
    """Amounts and cycle days of won closes.

    The close falls uniformly inside its bin. Won amounts come from deal-value, not from the
    deal's stored amount: the store keeps one amount per deal, and for a deal still open at a
    past cutoff that is often its final close value (a back-test leak). Without deal-value the
    stored amount is used.

    With `per_draw`, every won (deal, draw) gets its own close moment and amount. Otherwise
    (millions of wins) a won run shares one close moment, and each draw's amounts in a period
    are drawn as one sum: a lognormal with the exact mean and variance of the sum of its won
    deals' amounts (at that size, typically thousands per draw and period, so the sum's shape
    is all but normal). Either way every draw has each deal's outcome, moment and amount with
    the right chances, independently of the other deals.
    """
    won_runs = np.flatnonzero(runs.category < timeline.n_bins)
    spans = runs.spans.take(won_runs)
    run = won_runs
    if per_draw:
        parent, spans = spans.split(1)
        run = won_runs[parent]
    deal = runs.subject[run] + begin
    bin_index = runs.category[run]
    sub = timeline.bin_sub[bin_index]
    start = timeline.edges[bin_index]
    moment = start + (timeline.edges[bin_index + 1] - start) * rng.random(len(run))
    tally.add_cycle_spans(spans, sub, moment - facts.created[deal])
    subs = tally.periods
    if facts.law is None:
        tally.won_amount += spans.sums(sub, [facts.known_amount[deal]], subs)[0]
        return
    mu, sigma = facts.law[0][deal], facts.law[1][deal]
    if per_draw:
        value = np.exp(mu + sigma * rng.standard_normal(len(run)))
        tally.won_amount += spans.sums(sub, [value], subs)[0]
        return
    mean = np.exp(mu + sigma**2 / 2)
    total, variance = spans.sums(sub, [mean, np.expm1(sigma**2) * mean**2], subs)
    tally.won_amount += lognormal_sums(total, variance, rng)


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
    curves: tuple[FloatArray, FloatArray],
    active: FloatArray,
) -> _Converts | None:
    """The open deals created inside the forecast span, whose conversion (won within the
    horizon) counts toward their cohort's `conversion_rate`.

    `curves`: the deals' won and lost curves over the window, already times `active`, each
    deal's chance not to be stale (a stale deal converts neither in the window nor after it).
    """
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
        won_late = won_late * active[late, None]
        won_curve, lost_curve = curves
        open_at_end = np.clip(1.0 - won_curve[late, -1] - lost_curve[late, -1], 1e-12, None)
        extra = won_late[np.arange(len(rows)), reach] - won_curve[late, -1]
        after[beyond] = np.clip(extra / open_at_end, 0.0, 1.0)
    return _Converts(members, cohort[members], np.minimum(horizon_bin, timeline.n_bins), after)


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
