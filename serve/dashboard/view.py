"""Everything the dashboard page shows, gathered in one object from the panels.

The expensive parts run on worker threads side by side: the goal checks, the KPI forecast, and
the rest (funnel, segments, leads, model health). Results that only depend on the funnel's
revision, the champion versions and the pickers are kept in the worker's `ResultCache`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool

from scoring.errors import FunnelcastInputError
from scoring.forecast import ForecastModels
from scoring.funnel import Funnel
from scoring.goal_store import list_goals
from scoring.periods import FREQS, Freq
from scoring.settings import Settings
from serve.dashboard.cache import ResultCache
from serve.dashboard.goals import GoalCard, goal_cards
from serve.dashboard.model_health import HealthPanel, health_panel
from serve.dashboard.panels import (
    PERIODS,
    FunnelPanel,
    KpiPanel,
    LeadRow,
    SegmentsPanel,
    best_open_leads,
    funnel_panel,
    kpi_panel,
    run_forecast,
    segment_options,
    segments_panel,
)
from serve.deps import FunnelCache
from serve.service import Loaded

MAX_SEGMENT_COLUMNS = 3


@dataclass(frozen=True)
class Picks:
    """What the viewer chose: the KPI period length and segment, the target-group columns."""

    freq: Freq = "month"
    segment: str = ""  # column=value, or "" for every lead
    columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, query: Mapping[str, str], columns: Sequence[str]) -> Picks:
        freq = query.get("freq", "month")
        return cls(
            freq=freq if freq in FREQS else "month",
            segment=query.get("segment", "").strip(),
            columns=tuple(dict.fromkeys(c for c in columns if c))[:MAX_SEGMENT_COLUMNS],
        )

    def segment_filter(self) -> dict[str, str]:
        key, _, value = self.segment.partition("=")
        return {key: value} if self.segment else {}


@dataclass
class DashboardView:
    picks: Picks
    freqs: tuple[str, ...] = FREQS
    periods: dict[Freq, tuple[int, int]] = field(default_factory=lambda: dict(PERIODS))
    segment_options: list[str] = field(default_factory=list)
    goals: list[GoalCard] = field(default_factory=list)
    kpis: KpiPanel | None = None
    funnel: FunnelPanel | None = None
    segments: SegmentsPanel | None = None
    leads: list[LeadRow] = field(default_factory=list)
    leads_problem: str = ""
    health: HealthPanel | None = None
    problems: list[str] = field(default_factory=list)


def _stored_funnel(funnels: FunnelCache) -> tuple[Funnel | None, object, str]:
    revision = funnels.revision()
    try:
        return funnels.get(), revision, ""
    except FunnelcastInputError as error:
        return None, revision, str(error)


def _kpis(funnel: Funnel, models: ForecastModels | None, picks: Picks, cache: ResultCache,
          inputs: tuple[object, ...]) -> KpiPanel | str:  # fmt: skip
    if not funnel.dated:
        return "KPIs per period and forecasts need dated data; this data set has no dates"
    segment = picks.segment_filter()
    result = None
    if models is not None:
        key = ("forecast", picks.freq, picks.segment, *inputs)
        result = cache.get_or_make(key, lambda: run_forecast(funnel, models, picks.freq, segment))
    return kpi_panel(funnel, picks.freq, segment, result)


def _rest(
    view: DashboardView,
    funnel: Funnel,
    loaded: Loaded,
    cache: ResultCache,
    inputs: tuple[object, ...],
) -> None:
    segment = view.picks.segment_filter()
    view.funnel = cache.get_or_make(
        ("funnel", view.picks.segment, *inputs), lambda: funnel_panel(funnel, segment)
    )
    columns = view.picks.columns
    view.segments = cache.get_or_make(
        ("segments", columns, *inputs), lambda: segments_panel(funnel, columns)
    )
    scorer = loaded.scorer
    if scorer is None:
        view.leads_problem = "no lead-conversion champion is loaded, so no lead is scored"
    else:
        view.leads = cache.get_or_make(("leads", *inputs), lambda: best_open_leads(funnel, scorer))
    view.health = cache.get_or_make(
        ("health", *inputs), lambda: health_panel(funnel, loaded.champions, scorer)
    )


async def build_view(
    picks: Picks,
    engine: sa.Engine,
    funnels: FunnelCache,
    loaded: Loaded,
    models: ForecastModels | None,
    settings: Settings,
    cache: ResultCache,
) -> DashboardView:
    view = DashboardView(picks)
    funnel, revision, problem = await run_in_threadpool(_stored_funnel, funnels)
    inputs = (revision, tuple(sorted(loaded.champions.versions().items())))
    goals = await run_in_threadpool(list_goals, engine)
    if funnel is None:
        view.problems.append(problem)
        view.health = health_panel(None, loaded.champions, loaded.scorer)
        view.goals = await run_in_threadpool(
            goal_cards, engine, goals, None, models, settings, cache, inputs
        )
        return view
    view.segment_options = cache.get_or_make(
        ("segment-options", *inputs), lambda: segment_options(funnel)
    )
    if picks.segment and picks.segment not in view.segment_options:
        view.problems.append(f"no segment {picks.segment!r} to pick; showing every lead")
        view.picks = picks = Picks(picks.freq, "", picks.columns)
    cards, kpis, _ = await asyncio.gather(
        run_in_threadpool(goal_cards, engine, goals, funnel, models, settings, cache, inputs),
        run_in_threadpool(_kpis, funnel, models, picks, cache, inputs),
        run_in_threadpool(_rest, view, funnel, loaded, cache, inputs),
    )
    view.goals = cards
    if isinstance(kpis, str):
        view.problems.append(kpis)
    else:
        view.kpis = kpis
    return view
