"""Deal-cycle model: against the synthetic funnel's exact truth, against the Aalen-Johansen
baseline, and the contracts callers rely on (monotone curves, conditioning, pickling, seeds).

One model is trained per session (`cycle_run`, 50k leads); a few tests train tiny ones, among
them the as-of tests on a small funnel with quarterly waves of wins (`quarterly_funnel`).
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from scoring.calendar_features import (
    SPAN_FEATURES,
    YEARLY_FEATURES,
    WeekProfile,
    day_calendar,
    span_calendar,
    to_days,
)
from scoring.cycle import DealCycleModel, HazardDesign
from scoring.funnel import Funnel
from scoring.synthetic import _TIE_SHARE, generate_funnel
from tests.model.cycle_fixtures import (
    CYCLE_PARAMS,
    CycleRun,
    QuarterlyFunnel,
    cycle_run_fixture,  # noqa: F401 - registers `cycle_run` until conftest.py imports it
    quarterly_funnel,
    synthetic_funnel,
    true_incidence,
)
from training import survival_metrics as sm
from training.deal_cycle import (
    close_profiles,
    evaluate_deal_cycle,
    fit_deal_cycle,
    person_periods,
    train_deal_cycle,
)
from training.result import ModelSkipped
from training.survival_metrics import DealOutcomes, observed_outcomes

DAY = pd.Timedelta(days=1)


def _observed(run: CycleRun) -> tuple[DealOutcomes, sm.StepCurve]:
    outcomes = observed_outcomes(run.deals, run.synthetic.end)
    return outcomes, sm.censoring_curve(outcomes.days, outcomes.cause)


# --- against the truth ---------------------------------------------------------------------


def test_the_exact_truth_helper_agrees_with_the_generator(cycle_run: CycleRun) -> None:
    """`true_incidence` restates the generator's hazards; at creation it must give the
    generator's own P(won within 30 days) (a close on day 30 counts with the tie share)."""
    deals, truth = cycle_run.deals, cycle_run.truth
    before = true_incidence(cycle_run.synthetic, deals, truth, 0, 30)[0]
    through = true_incidence(cycle_run.synthetic, deals, truth, 0, 31)[0]
    np.testing.assert_allclose(before + _TIE_SHARE * (through - before), truth["p_won_30d"])


def test_concordance_is_within_003_of_the_true_model(cycle_run: CycleRun) -> None:
    outcomes, censoring = _observed(cycle_run)
    true_c = sm.concordance(
        outcomes.days, outcomes.cause, cycle_run.truth["p_won_90d"], tau=90, censoring=censoring
    )
    model_c = cycle_run.result.metrics["concordance"]
    assert abs(model_c - true_c) <= 0.03, (model_c, true_c)


@pytest.mark.parametrize("days", [30, 90])
def test_brier_is_close_to_the_true_model(cycle_run: CycleRun, days: int) -> None:
    outcomes, censoring = _observed(cycle_run)
    true_brier = sm.brier_score(
        outcomes.days, outcomes.cause, cycle_run.truth[f"p_won_{days}d"], days, censoring
    )
    model_brier = cycle_run.result.metrics[f"brier_won_{days}d"]
    # The truth is the best any model can do; 0.005 is a tenth of the gap to the baseline.
    assert true_brier - 0.002 <= model_brier <= true_brier + 0.005, (model_brier, true_brier)


@pytest.mark.parametrize("days", [30, 90])
def test_p_won_within_is_calibrated_against_the_truth(cycle_run: CycleRun, days: int) -> None:
    """Per decile of predicted P(won within d days), the mean prediction is within
    max(0.02, 3 standard errors of the mean gap) of the mean true probability; the top decile
    may fall short of the truth by up to 15 %.

    0.02 is the issue's bar for lead-conversion, and a decile's mean gap is a mean of 1,000
    per-deal gaps, so 3 standard errors of it covers which deals happen to fall in a decile.
    The top decile is where a model fitted on 40k deals is timid: its best deals rest on few
    examples and boosting shrinks them towards the rest. On seeds 1-8 it is 3-12 % short at 30
    days and 2-5 % at 90 (a direct classifier of P(won within 30 days) on the same leads is
    0-8 % short); it shrinks with data. Never above the truth by more than the common bar.
    """
    predicted = cycle_run.result.model.p_won_within(cycle_run.deals, days)
    truth = cycle_run.truth[f"p_won_{days}d"].to_numpy()
    decile = np.argsort(np.argsort(predicted, kind="stable")) * 10 // len(predicted)
    for d in range(10):
        gap = predicted[decile == d] - truth[decile == d]
        tolerance = max(0.02, 3 * gap.std(ddof=1) / np.sqrt(len(gap)))
        shortfall = 0.15 * truth[decile == d].mean() if d == 9 else tolerance
        assert -max(tolerance, shortfall) <= gap.mean() <= tolerance, (d, gap.mean())


def test_expected_days_to_close_ranks_like_the_truth(cycle_run: CycleRun) -> None:
    expected = cycle_run.result.model.expected_days_to_close(cycle_run.deals)
    median = cycle_run.truth["median_days_to_close"]
    rank_correlation = pd.Series(expected).corr(median.reset_index(drop=True), method="spearman")
    assert rank_correlation > 0.85
    # Given a win, the time to close is skewed right: the mean exceeds the median.
    assert np.mean(expected) > median.mean()


@pytest.mark.parametrize("age", [7, 40, 60, 120])
def test_a_deal_open_at_some_age_gets_the_true_conditional_chances(
    cycle_run: CycleRun, age: int
) -> None:
    """P(won / lost in the next 30 days | open at `age` days), weighted by the true chance of
    being open then (the deals a user would actually ask about), matches the exact truth.

    The truth rises then falls with age (7 days: most won deals are still in their minimum
    delay; 40: the peak; 120: survivors are mostly slow or doomed deals). Tolerance: 3
    standard errors of the rate among the training deals open at that age (the noise the model
    inherits from its data: tight at 7 days, loose at 120) plus 3 % of the rate for the
    smoothing of a regularised model, which blurs how deals differ and so overstates a
    survivor's chance to close over several weeks by a little.
    """
    deals, truth = cycle_run.deals, cycle_run.truth
    won_true, lost_true, open_true = true_incidence(cycle_run.synthetic, deals, truth, age, 30)
    as_of = deals["created_at"].dt.normalize() + age * DAY
    won, lost = cycle_run.result.model.cumulative_incidence(deals, [30], as_of=as_of)
    weight = open_true / open_true.sum()
    cutoff = cycle_run.result.split.validation_date
    assert cutoff is not None
    training = cycle_run.synthetic.leads.iloc[cycle_run.result.split.train]
    open_in_training = int((observed_outcomes(training, cutoff).clock > age).sum())
    for predicted, exact in ((won[:, 0], won_true), (lost[:, 0], lost_true)):
        rate = float(np.sum(weight * exact))
        tolerance = 3 * np.sqrt(rate * (1 - rate) / open_in_training) + 0.03 * rate
        assert abs(np.sum(weight * predicted) - rate) <= tolerance, (rate, tolerance)
    ordering = pd.Series(won[:, 0]).corr(pd.Series(won_true), method="spearman")
    assert ordering > 0.85


def test_ageing_moves_each_deal_the_way_the_truth_does(cycle_run: CycleRun) -> None:
    """Derived from the generator: once the minimum delays are over (30 days at most), a
    surviving deal is a mix of won-bound and lost-bound futures, each closing at its own steady
    rate. The mix drifts towards the slower side, so the 30-day win chance falls with age for a
    deal that wins faster than it loses, and rises for one that loses faster (in the truth:
    81 % fall, 19 % rise between 40 and 120 days). The model must move each deal the same way.
    """
    deals, model = cycle_run.deals, cycle_run.result.model
    midnight = deals["created_at"].dt.normalize()
    change = (
        model.cumulative_incidence(deals, [30], as_of=midnight + 120 * DAY)[0][:, 0]
        - model.cumulative_incidence(deals, [30], as_of=midnight + 40 * DAY)[0][:, 0]
    )
    true_change = (
        true_incidence(cycle_run.synthetic, deals, cycle_run.truth, 120, 30)[0]
        - true_incidence(cycle_run.synthetic, deals, cycle_run.truth, 40, 30)[0]
    )
    falls = true_change < 0
    assert 0.05 < falls.mean() < 0.95  # both kinds of deal are there to tell apart
    assert change[falls].mean() < 0
    true_gap = true_change[~falls].mean() - true_change[falls].mean()
    assert change[~falls].mean() - change[falls].mean() >= 0.5 * true_gap
    assert (np.sign(change) == np.sign(true_change)).mean() >= 0.8
    assert np.corrcoef(change, true_change)[0, 1] >= 0.8


def test_quarter_end_push_raises_the_short_horizon_chance_to_win(cycle_run: CycleRun) -> None:
    """The same deals, 35 days old and open, over the next 7 days: once in the last two weeks
    of a quarter (19-25 March), once mid-quarter (19-25 February, same weekdays). The generator
    doubles the win hazard in the push and leaves the loss hazard alone."""
    deals, truth = cycle_run.deals, cycle_run.truth
    time_of_day = deals["created_at"] - deals["created_at"].dt.normalize()
    chances = {}
    for name, created in (("push", "2026-02-12"), ("mid", "2026-01-15")):
        moved = deals.assign(created_at=pd.Timestamp(created) + time_of_day)
        as_of = pd.Timestamp(created) + 35 * DAY
        won, lost = cycle_run.result.model.cumulative_incidence(moved, [7], as_of=as_of)
        won_true, _, open_true = true_incidence(cycle_run.synthetic, moved, truth, 35, 7)
        weight = open_true / open_true.sum()
        chances[name] = (
            np.sum(weight * won[:, 0]),
            np.sum(weight * lost[:, 0]),
            np.sum(weight * won_true),
        )
    won_lift = chances["push"][0] / chances["mid"][0]
    lost_lift = chances["push"][1] / chances["mid"][1]
    true_lift = chances["push"][2] / chances["mid"][2]
    assert 1.3 <= won_lift <= true_lift + 0.3, (won_lift, true_lift)
    assert 0.85 <= lost_lift <= 1.15, lost_lift


# --- as of a cutoff, when wins come in quarterly waves ----------------------------------------


@pytest.fixture(scope="module", name="quarterly")
def quarterly_fixture() -> QuarterlyFunnel:
    """4,000 deals created from December 2024 over 500 days; cutoffs 9 to 13 months in."""
    return quarterly_funnel(4000, "2024-12-01", 500, seed=0)


@pytest.mark.parametrize("cutoff", ["2025-08-31", "2025-09-30", "2025-11-30", "2025-12-31"])
def test_open_deals_at_a_month_end_get_the_true_chance_to_win_next(
    quarterly: QuarterlyFunnel, cutoff: str
) -> None:
    """The forecast's question: the deals open at the end of a month, with the model refitted
    on what was known then, won within the next 30 days. Wins come in quarterly waves (a
    quarter's last month wins 15 times as fast as its first), so the true answer swings from
    5 % to 50 % between cutoffs a month apart, and the model must follow within 0.05.

    With less than two years of history, a feature such as `month` or `week_of_year` has never
    seen next month's value and extrapolates (this was the maven back-test's 45 % then 3 % where
    17 % came true). And a deal-week that straddles a quarter's end must not carry the push
    into the quiet first days of the next quarter: there the first 7 days' chance stays below
    twice the truth (it was four to five times).
    """
    moment = pd.Timestamp(cutoff) + DAY - pd.Timedelta(1, "ns")
    known = quarterly.leads[quarterly.leads["created_at"] <= moment]
    model, _ = fit_deal_cycle(
        known, as_of=moment, features=("grade",), horizon_days=180, params=CYCLE_PARAMS
    )
    positions = np.flatnonzero(observed_outcomes(known, moment).cause == sm.OPEN)
    open_deals = known.iloc[positions].reset_index(drop=True)
    won = model.cumulative_incidence(open_deals, [7, 30], as_of=moment)[0].mean(axis=0)
    within_7, within_30 = (quarterly.p_won_within(positions, moment, d).mean() for d in (7, 30))
    assert abs(won[1] - within_30) <= 0.05, (won[1], within_30)
    if pd.Timestamp(cutoff).month % 3 == 0:  # the quarter's last day
        assert won[0] <= 2 * within_7, (won[0], within_7)


def test_close_profiles_learn_when_wins_and_losses_fall(quarterly: QuarterlyFunnel) -> None:
    """The quarterly funnel wins 3 and 15 times as fast in a quarter's second and third month
    as in its first, and loses at one steady rate: the profiles must say so (shrunk a little)."""
    moment = pd.Timestamp("2025-12-31 23:59")
    known = quarterly.leads[quarterly.leads["created_at"] <= moment]
    profiles = close_profiles(observed_outcomes(known, moment), to_days(known["created_at"]))
    won_second, won_third = profiles["won"].calendar_effects[:2]
    assert 0.7 <= won_second <= np.log(3) + 0.3 and 2.0 <= won_third <= np.log(15) + 0.3
    assert max(abs(e) for e in profiles["lost"].calendar_effects) <= 0.35
    assert all(0.9 <= w <= 1.1 for w in profiles["won"].weekday_weights)  # no weekday effect


def test_a_week_across_a_quarter_end_holds_its_closes_where_the_calendar_puts_them() -> None:
    """28 September to 4 October: with the last month of a quarter 5 times as busy as the
    first, the 3 September days hold 15 of the week's 19 parts of closes, not 3 of 7."""
    first_day = to_days(pd.Series([pd.Timestamp("2025-09-28")]))
    busy_end = WeekProfile(calendar_effects=(0.0, np.log(5), 0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(busy_end.elapsed_share(first_day, np.array([[3.0]])), 15 / 19)
    np.testing.assert_allclose(WeekProfile().elapsed_share(first_day, np.array([[3.0]])), 3 / 7)


def test_day_weights_from_the_table_equal_the_calendar_computed_ones() -> None:
    """Day weights come from a table computed once per profile (1970 to 2149), and days
    outside it are computed: both must be what the calendar gives."""
    profile = WeekProfile(
        weekday_weights=(1.2, 1.1, 1.0, 1.0, 0.9, 0.4, 0.4),
        calendar_effects=(0.1, 0.6, 0.3, 0.5, -0.4, -0.2),
    )
    for low, high in [(-30, 30), (20_000, 20_400), (65_530, 65_540)]:
        days = np.arange(low, high, dtype=np.int64)
        np.testing.assert_allclose(profile.weights_between(low, high), profile.day_weights(days))


def test_incidence_from_creation_equals_the_general_calendar_arithmetic(
    cycle_run: CycleRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen at creation on whole days (the API's and batch scoring's case), the incidence takes
    a shorter road through the week calendar; it must give the general road's numbers."""
    deals = cycle_run.deals.head(300)
    model = cycle_run.result.model
    created = deals["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    created = created + np.arange(len(deals)) * 3_600_000_000_007 % 86_400_000_000_000
    grid = np.arange(0, model.horizon_days + 1)
    short = model.incidence_from_creation(deals, created, grid)
    # Deals created on one day (a one-lead request, say) take their shares from a cache.
    hour = 3_600_000_000_000
    one_day = created[0] // (24 * hour) * (24 * hour) + np.array([0, 1, 5, 23]) * hour
    same_day = model.incidence_from_creation(deals.head(4), one_day, grid)
    # So do deals created on a few days (a CRM's batch of recent leads).
    few_days = one_day[0] + np.arange(40) % 5 * (24 * hour) + np.arange(40) * 997_000_000_001
    assert len(np.unique(few_days // (24 * hour))) == 5
    few_days_short = model.incidence_from_creation(deals.head(40), few_days, grid)
    general = DealCycleModel._incidence_chunk

    def general_only(self: DealCycleModel, *args: object) -> object:
        return general(self, *args[:5])  # type: ignore[arg-type]

    monkeypatch.setattr(DealCycleModel, "_incidence_chunk", general_only)
    reference = model.incidence_from_creation(deals, created, grid)
    np.testing.assert_allclose(short[0], reference[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(short[1], reference[1], rtol=0, atol=1e-12)
    same_day_reference = model.incidence_from_creation(deals.head(4), one_day, grid)
    for got, expected in zip(same_day, same_day_reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    few_days_reference = model.incidence_from_creation(deals.head(40), few_days, grid)
    for got, expected in zip(few_days_short, few_days_reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert short[0][:, -1].max() > 0.05  # the curves hold something to compare


@pytest.mark.parametrize(
    ("history_days", "yearly"), [(300.0, False), (729.0, False), (730.0, True)]
)
def test_yearly_calendar_features_need_two_years_of_history(
    history_days: float, yearly: bool
) -> None:
    leads = generate_funnel(50, seed=1).leads
    design = HazardDesign(("industry",)).fit(leads, history_days)
    names = set(design.feature_names_)
    assert all((f"week_{name}" in names) == yearly for name in YEARLY_FEATURES)
    assert all(f"week_{name}" in names for name in SPAN_FEATURES if name not in YEARLY_FEATURES)


# --- against the baseline ------------------------------------------------------------------


def test_beats_the_aalen_johansen_baseline(cycle_run: CycleRun) -> None:
    model = cycle_run.result.metrics
    baseline = cycle_run.result.baselines["aalen_johansen"]
    assert baseline["concordance"] == pytest.approx(0.5)  # one curve for all: every pair ties
    assert model["concordance"] > baseline["concordance"] + 0.005  # the gate's margin
    assert model["integrated_brier"] < baseline["integrated_brier"]
    for days in (30, 60, 90):
        assert model[f"brier_won_{days}d"] < baseline[f"brier_won_{days}d"]
        assert model[f"calibration_error_won_{days}d"] < baseline[f"calibration_error_won_{days}d"]


def test_the_baseline_reproduces_its_training_curve(cycle_run: CycleRun) -> None:
    baseline = cycle_run.result.baseline
    deals = cycle_run.deals.head(3)
    won, lost = baseline.cumulative_incidence(deals, [30, 90])
    assert np.allclose(won, won[0]) and np.allclose(lost, lost[0])  # no features
    assert 0 < won[0, 0] < won[0, 1] < 1 and won[0, 1] + lost[0, 1] <= 1


# --- contracts -----------------------------------------------------------------------------


@pytest.mark.parametrize("age", [0.0, 40.0, 400.0])
def test_incidence_is_monotone_bounded_and_consistent(cycle_run: CycleRun, age: float) -> None:
    deals = cycle_run.deals.head(500)
    model = cycle_run.result.model
    curve = model.incidence_curve(deals, max_days=365, age_days=age)
    assert np.all(curve.won[:, 0] == 0) and np.all(curve.lost[:, 0] == 0)
    assert np.all(np.diff(curve.won, axis=1) >= -1e-12)
    assert np.all(np.diff(curve.lost, axis=1) >= -1e-12)
    assert np.all(curve.won + curve.lost <= 1 + 1e-9)
    frame = model.predict_frame(deals.assign(as_of=deals["created_at"] + age * DAY))
    assert (frame["p_won_30d"] <= frame["p_won_90d"]).all()
    assert (frame["p_won_90d"] <= frame["p_won_horizon"]).all()
    np.testing.assert_allclose(frame["p_won_90d"], curve.won[:, 90])


def test_predict_frame_is_what_the_api_serves(cycle_run: CycleRun) -> None:
    deals = cycle_run.deals.head(50)
    frame = cycle_run.result.model.predict_frame(deals)
    assert list(frame.columns) == [
        "lead_id",
        "p_won_30d",
        "p_won_90d",
        "p_won_horizon",
        "p_lost_horizon",
        "expected_days_to_close",
    ]
    assert frame["lead_id"].tolist() == deals["lead_id"].tolist()
    np.testing.assert_allclose(frame["p_won_30d"], cycle_run.result.model.p_won_within(deals, 30))


def test_age_days_and_as_of_say_the_same(cycle_run: CycleRun) -> None:
    deals = cycle_run.deals.head(200)
    model = cycle_run.result.model
    by_age = model.cumulative_incidence(deals, [10, 45], age_days=40)
    by_moment = model.cumulative_incidence(deals, [10, 45], as_of=deals["created_at"] + 40 * DAY)
    np.testing.assert_allclose(by_age[0], by_moment[0])
    np.testing.assert_allclose(by_age[1], by_moment[1])
    with pytest.raises(ValueError, match="before it was created"):
        model.cumulative_incidence(deals, [10], as_of=deals["created_at"].min() - DAY)


def test_unseen_categories_and_missing_attributes_still_score(cycle_run: CycleRun) -> None:
    deals = cycle_run.deals.head(20).assign(industry="space mining").drop(columns="web_visits")
    won, lost = cycle_run.result.model.cumulative_incidence(deals, [30, 90])
    assert np.isfinite(won).all() and np.isfinite(lost).all()


def test_pickle_round_trip_gives_the_same_scores(cycle_run: CycleRun) -> None:
    deals = cycle_run.deals.head(300)
    model = cycle_run.result.model
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(
        again.predict_frame(deals).to_numpy(), model.predict_frame(deals).to_numpy()
    )


def test_same_seed_and_data_give_the_same_model() -> None:
    funnel = synthetic_funnel(generate_funnel(4000, seed=2))
    first = train_deal_cycle(funnel, seed=5, params=CYCLE_PARAMS)
    second = train_deal_cycle(funnel, seed=5, params=CYCLE_PARAMS)
    assert first.metrics == second.metrics
    deals = funnel.leads.head(200)
    np.testing.assert_array_equal(
        first.model.predict_frame(deals).to_numpy(), second.model.predict_frame(deals).to_numpy()
    )


def test_a_tiny_funnel_still_trains_and_scores() -> None:
    funnel = synthetic_funnel(generate_funnel(300, seed=4))
    result = train_deal_cycle(funnel, params=CYCLE_PARAMS)
    won, lost = result.model.cumulative_incidence(funnel.leads, [30, 90])
    assert np.isfinite(won).all() and (won + lost <= 1).all()


def test_undated_data_is_skipped_with_a_reason() -> None:
    leads = generate_funnel(200, seed=1).leads
    with pytest.raises(ModelSkipped, match="dated"):
        train_deal_cycle(Funnel(leads=leads, dated=False))


# --- building blocks -----------------------------------------------------------------------


def test_open_deals_are_censored_at_the_cutoff_not_dropped() -> None:
    leads = pd.DataFrame(
        {
            "created_at": pd.to_datetime(["2026-01-05 12:00"] * 3),
            "closed_at": pd.to_datetime(pd.Series(["2026-01-15 12:00", "2026-03-01 12:00", None])),
            "outcome": ["won", "lost", "open"],
        }
    )
    outcomes = observed_outcomes(leads, pd.Timestamp("2026-02-04 12:00"))
    assert outcomes.cause.tolist() == [sm.WON, sm.OPEN, sm.OPEN]  # lost after the cutoff
    np.testing.assert_allclose(outcomes.days, [10.0, 30.0, 30.0])
    np.testing.assert_allclose(outcomes.clock, [10.5, 30.5, 30.5])


def test_person_periods_label_the_close_week_and_weight_the_censored_one() -> None:
    outcomes = DealOutcomes(
        days=np.array([17.0, 10.0]), clock=np.array([17.5, 10.5]), cause=np.array([sm.WON, 0])
    )
    profile = WeekProfile()  # every day alike
    created_day = np.array([0, 0])  # both created on 1 January 1970
    rows = person_periods(outcomes, created_day, profile, np.random.default_rng(0), 100)
    assert rows.deal.tolist() == [0, 0, 0, 1, 1]
    assert rows.week.tolist() == [0, 1, 2, 0, 1]
    assert rows.label.tolist() == [0, 0, sm.WON, 0, 0]
    np.testing.assert_allclose(rows.weight, [1, 1, 1, 1, 3.5 / 7])  # 3.5 of 7 days observed


def test_subsampling_keeps_every_close_and_the_expected_weight() -> None:
    rng = np.random.default_rng(1)
    clock = rng.uniform(0, 200, 5000)
    cause = rng.integers(0, 3, 5000)
    outcomes = DealOutcomes(days=clock, clock=clock, cause=cause)
    full = person_periods(outcomes, np.zeros(5000, np.int64), WeekProfile(), rng, 10**9)
    thin = person_periods(outcomes, np.zeros(5000, np.int64), WeekProfile(), rng, 20_000)
    assert thin.negative_rate < 1 and len(thin.label) < len(full.label)
    assert (thin.label > 0).sum() == (full.label > 0).sum()
    assert thin.weight.sum() == pytest.approx(full.weight.sum(), rel=0.02)


def test_kaplan_meier_and_aalen_johansen_on_a_hand_example() -> None:
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    cause = np.array([sm.WON, sm.LOST, 0, sm.WON, 0])
    survival = sm.kaplan_meier(time, cause != 0)
    np.testing.assert_allclose(survival.at([0.5, 1, 2, 3, 4]), [1, 0.8, 0.6, 0.3, 0.3])
    won, lost = sm.aalen_johansen(time, cause)
    np.testing.assert_allclose(won.at([1, 3]), [0.2, 0.2 + 0.6 * 0.5])
    np.testing.assert_allclose(lost.at([2]), [0.8 * 0.25])
    np.testing.assert_allclose(won.at([4]) + lost.at([4]), 1 - survival.at([4]))


def test_concordance_ranks_a_perfect_and_a_reversed_score() -> None:
    time = np.array([5.0, 10.0, 20.0, 30.0, 40.0, 8.0])
    cause = np.array([sm.WON, sm.WON, sm.WON, 0, sm.LOST, sm.LOST])
    censoring = sm.censoring_curve(time, cause)
    perfect = np.array([0.9, 0.8, 0.7, 0.1, 0.05, 0.0])
    assert sm.concordance(time, cause, perfect, tau=90, censoring=censoring) == 1.0
    assert sm.concordance(time, cause, -perfect, tau=90, censoring=censoring) == 0.0
    assert sm.concordance(time, cause, np.zeros(6), tau=90, censoring=censoring) == 0.5


def test_calendar_of_days_and_weeks() -> None:
    stamps = ["2026-03-31 15:00", "2026-03-18 00:00", "2025-12-24 09:30"]
    days = to_days(pd.to_datetime(pd.Series(stamps)))
    calendar = day_calendar(days)
    assert calendar["days_to_quarter_end"].tolist() == [0, 13, 7]
    assert calendar["month_of_quarter"].tolist() == [3, 3, 3]
    assert calendar["weekday"].tolist() == [1, 2, 2]  # Tuesday, Wednesday, Wednesday
    assert calendar["is_holiday_season"].tolist() == [0, 0, 1]
    week = span_calendar(days, 7)
    assert week["quarter_end_inside"].tolist() == [1, 0, 0]
    assert week["quarter_end_share"][1] == 1.0  # 18-24 March: all in the last two weeks
    assert week["holiday_share"][2] == 1.0


def test_evaluate_gives_the_gate_the_same_figures_as_training(cycle_run: CycleRun) -> None:
    evaluation = evaluate_deal_cycle(cycle_run.result.model, cycle_run.funnel)
    assert evaluation.metrics == cycle_run.result.metrics
    assert evaluation.baselines == cycle_run.result.baselines
    assert {"concordance", "integrated_brier"} <= set(evaluation.metrics)  # the gate's criteria
    assert evaluation.rows == {"train": 40_000, "test": 10_000}
