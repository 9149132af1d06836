"""Time-to-close with competing outcomes: observations, estimators and metrics.

A deal's observation is `(time, cause)`: days from creation to close or to censoring, and
`cause` 1 (won), 2 (lost) or 0 (still open when observation stopped); `observed_outcomes` reads
them off the leads as known at a moment. Open deals are data: every estimator here uses them up
to their censoring time.

- `kaplan_meier` / `aalen_johansen`: all-cause survival and cumulative incidence of each outcome
  without features (the baseline, and "observed" incidence in calibration tables).
- IPCW metrics weight each deal by the inverse chance of still being observed (`censoring`, the
  Kaplan-Meier curve of the censoring time), so deals closing late are not under-counted only
  because the evaluation slice is young.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.cycle import deal_clock

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

OPEN, WON, LOST = 0, 1, 2
_DAY_NS = pd.Timedelta(days=1).value


@dataclass(frozen=True)
class DealOutcomes:
    """What was known about each deal at a moment: how long it was observed and how it ended.

    `days` counts from creation to the close (or to the moment, for deals still open then),
    `clock` the same from the midnight of the creation day; `cause` is 1 won, 2 lost, 0 open.
    """

    days: FloatArray
    clock: FloatArray
    cause: IntArray


def observed_outcomes(leads: pd.DataFrame, as_of: pd.Timestamp) -> DealOutcomes:
    """Outcomes as known at `as_of`: a deal closed later was open then (censored at `as_of`)."""
    created = leads["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    closed_at = leads["closed_at"].to_numpy(dtype="datetime64[ns]")
    outcome = leads["outcome"].to_numpy()
    cutoff = pd.Timestamp(as_of).as_unit("ns").value
    closed_ns = np.where(np.isnat(closed_at), np.iinfo(np.int64).max, closed_at.astype(np.int64))
    # A won or lost deal without a close date has an unknown close time: open as far as known.
    closed = np.isin(outcome, ["won", "lost"]) & (closed_ns <= cutoff)
    # A close stamped before creation (a mapping left it unrepaired) counts as a close at once.
    end = np.maximum(np.where(closed, closed_ns, cutoff), created)
    cause = np.where(closed, np.where(outcome == "won", WON, LOST), OPEN)
    return DealOutcomes(
        days=(end - created) / _DAY_NS,
        clock=deal_clock(leads["created_at"], end),
        cause=cause.astype(np.int64),
    )


@dataclass(frozen=True)
class StepCurve:
    """A right-continuous step function: `values[k]` holds on `[times[k], times[k+1])`.

    Before `times[0]` it is `start` (1 for a survival curve, 0 for a cumulative incidence).
    """

    times: FloatArray
    values: FloatArray
    start: float

    def at(self, t: npt.ArrayLike, *, left: bool = False) -> FloatArray:
        """Values at `t`; with `left`, the limit from the left (the value just before `t`)."""
        query = np.asarray(t, dtype=np.float64)
        position = np.searchsorted(self.times, query, side="left" if left else "right")
        padded = np.concatenate([[self.start], self.values])
        return np.asarray(padded[position], dtype=np.float64)


def _risk_table(time: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Distinct times and the number of deals still at risk just before each."""
    times = np.unique(time)
    at_risk = len(time) - np.searchsorted(np.sort(time), times, side="left")
    return times, at_risk.astype(np.float64)


def _counts(time: FloatArray, times: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    index = np.searchsorted(times, time[mask])
    return np.bincount(index, minlength=len(times)).astype(np.float64)


def kaplan_meier(time: npt.ArrayLike, event: npt.ArrayLike) -> StepCurve:
    """Kaplan-Meier survival of `time` where `event` marks an observed end (else censored)."""
    time_f = np.asarray(time, dtype=np.float64)
    ended = np.asarray(event, dtype=bool)
    times, at_risk = _risk_table(time_f)
    ends = _counts(time_f, times, ended)
    survival = np.cumprod(1.0 - ends / at_risk, dtype=np.float64)
    return StepCurve(times, survival, 1.0)


def aalen_johansen(time: npt.ArrayLike, cause: npt.ArrayLike) -> tuple[StepCurve, StepCurve]:
    """Aalen-Johansen cumulative incidence of winning and of losing (causes 1 and 2)."""
    time_f = np.asarray(time, dtype=np.float64)
    cause_i = np.asarray(cause, dtype=np.int64)
    if len(time_f) == 0:
        empty = np.zeros(0)
        return StepCurve(empty, empty, 0.0), StepCurve(empty, empty, 0.0)
    times, at_risk = _risk_table(time_f)
    won = _counts(time_f, times, cause_i == WON)
    lost = _counts(time_f, times, cause_i == LOST)
    survival = np.cumprod(1.0 - (won + lost) / at_risk)
    before = np.concatenate([[1.0], survival[:-1]])  # all-cause survival just before each time
    won_cif = np.cumsum(before * won / at_risk)
    lost_cif = np.cumsum(before * lost / at_risk)
    return StepCurve(times, won_cif, 0.0), StepCurve(times, lost_cif, 0.0)


def censoring_curve(time: npt.ArrayLike, cause: npt.ArrayLike) -> StepCurve:
    """Kaplan-Meier curve of the censoring time (the chance a deal is still observed)."""
    return kaplan_meier(time, np.asarray(cause) == OPEN)


def _inverse(weights: FloatArray) -> FloatArray:
    # A zero censoring survival only happens past the last observation; such deals carry no
    # information at that horizon, so they get no weight rather than an infinite one.
    return np.divide(1.0, weights, out=np.zeros_like(weights), where=weights > 0)


@dataclass(frozen=True)
class _Observed:
    """A slice's outcomes with the inverse censoring weight 1/G(T-) of each deal, computed once."""

    time: FloatArray
    cause: IntArray
    inverse_g_left: FloatArray
    censoring: StepCurve

    @classmethod
    def of(cls, time: npt.ArrayLike, cause: npt.ArrayLike, censoring: StepCurve) -> _Observed:
        time_f = np.asarray(time, dtype=np.float64)
        return cls(
            time_f,
            np.asarray(cause, dtype=np.int64),
            _inverse(censoring.at(time_f, left=True)),
            censoring,
        )

    def weights(self, at_days: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """IPCW weights at `at_days` and which deals had closed by then.

        Deals closed by `at_days` weigh 1/G(T-), deals still open after it 1/G(d), deals
        censored before it nothing.
        """
        closed = (self.time <= at_days) & (self.cause != OPEN)
        later = _inverse(self.censoring.at(np.array([at_days])))[0]
        weight = np.where(closed, self.inverse_g_left, np.where(self.time > at_days, later, 0.0))
        return weight, closed

    def brier(self, predicted: FloatArray, at_days: float, outcome: int) -> float:
        weight, closed = self.weights(at_days)
        happened = (closed & (self.cause == outcome)).astype(np.float64)
        return float(np.mean(weight * (happened - predicted) ** 2))

    def state_brier(self, won: FloatArray, lost: FloatArray, at_days: float) -> float:
        weight, closed = self.weights(at_days)
        total = np.zeros(len(self.time))
        for outcome, p in ((WON, won), (LOST, lost), (OPEN, 1.0 - won - lost)):
            state = closed & (self.cause == outcome) if outcome != OPEN else self.time > at_days
            total += (state.astype(np.float64) - p) ** 2
        return float(np.mean(weight * total))


def brier_score(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    predicted: npt.ArrayLike,
    at_days: float,
    censoring: StepCurve,
    outcome: int = WON,
) -> float:
    """IPCW Brier score of P(`outcome` within `at_days`) (Graf et al., with competing outcomes)."""
    observed = _Observed.of(time, cause, censoring)
    return observed.brier(np.asarray(predicted, dtype=np.float64), at_days, outcome)


def state_brier_score(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    won: npt.ArrayLike,
    lost: npt.ArrayLike,
    at_days: float,
    censoring: StepCurve,
) -> float:
    """IPCW Brier score of the three-way state at `at_days`: won, lost or still open."""
    observed = _Observed.of(time, cause, censoring)
    won_p, lost_p = np.asarray(won, dtype=np.float64), np.asarray(lost, dtype=np.float64)
    return observed.state_brier(won_p, lost_p, at_days)


def integrated_brier(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    won: FloatArray,
    lost: FloatArray,
    days: npt.ArrayLike,
    censoring: StepCurve,
) -> float:
    """Mean over `days` (trapezoid rule) of `state_brier_score`; `won`/`lost` are (n, len(days))."""
    grid = np.asarray(days, dtype=np.float64)
    observed = _Observed.of(time, cause, censoring)
    scores = np.array(
        [observed.state_brier(won[:, k], lost[:, k], grid[k]) for k in range(len(grid))]
    )
    if len(grid) == 1:
        return float(scores[0])
    return float(np.trapezoid(scores, grid) / (grid[-1] - grid[0]))


def concordance(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    risk: npt.ArrayLike,
    *,
    tau: float,
    censoring: StepCurve,
    outcome: int = WON,
) -> float:
    """IPCW concordance for one of two competing outcomes (Wolbers 2009, weights of Blanche 2015).

    A deal with `outcome` at T_i <= `tau` is compared with every deal still open after T_i
    (weight 1/(G(T_i-) G(T_i))) and with every deal that had the other outcome by T_i
    (weight 1/(G(T_i-) G(T_j-))): a deal that was lost can never be won, so it ranks below.
    The pair is concordant when the deal with the outcome has the higher risk; ties count one
    half. Times are compared in whole days (sales work in days; same-day pairs are not ranked),
    which keeps the cost at one pass per distinct case day.
    """
    time_f = np.asarray(time, dtype=np.float64)
    cause_i = np.asarray(cause, dtype=np.int64)
    score = np.asarray(risk, dtype=np.float64)
    day = np.floor(time_f)
    case = (cause_i == outcome) & (time_f <= tau)
    other = (cause_i != outcome) & (cause_i != OPEN)
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    below = np.searchsorted(sorted_score, score, side="left")
    up_to = np.searchsorted(sorted_score, score, side="right")
    g_left = censoring.at(time_f, left=True)
    case_weight = _inverse(g_left * censoring.at(time_f))
    other_weight = np.where(other, _inverse(g_left), 0.0)
    numerator = denominator = 0.0
    for case_day in np.unique(day[case]):
        cases = np.flatnonzero(case & (day == case_day))
        for members, member_weight, pair_weight in (
            (day > case_day, np.ones_like(score), case_weight[cases]),
            (other & (day <= case_day), other_weight, _inverse(g_left[cases])),
        ):
            cumulative = np.concatenate([[0.0], np.cumsum((members * member_weight)[order])])
            lower = cumulative[below[cases]]
            tied = cumulative[up_to[cases]] - lower
            numerator += float(np.sum(pair_weight * (lower + 0.5 * tied)))
            denominator += float(np.sum(pair_weight * cumulative[-1]))
    return numerator / denominator if denominator > 0 else float("nan")


def calibration_table(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    predicted: npt.ArrayLike,
    at_days: float,
    *,
    bins: int = 10,
    outcome: int = WON,
) -> pd.DataFrame:
    """Mean predicted P(`outcome` within `at_days`) per quantile bin next to the observed one.

    Observed is the Aalen-Johansen cumulative incidence of the bin's deals, so open deals count
    up to their censoring time instead of as "not won". Columns: `bin`, `deals`, `predicted`,
    `observed`.
    """
    time_f = np.asarray(time, dtype=np.float64)
    cause_i = np.asarray(cause, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.float64)
    ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    bin_of = ranks * bins // max(len(p), 1)
    rows = []
    for b in range(bins):
        members = bin_of == b
        if not members.any():
            continue
        curves = aalen_johansen(time_f[members], cause_i[members])
        observed = curves[0 if outcome == WON else 1].at(np.array([at_days]))[0]
        rows.append((b, int(members.sum()), float(p[members].mean()), float(observed)))
    return pd.DataFrame(rows, columns=["bin", "deals", "predicted", "observed"])


def calibration_error(table: pd.DataFrame) -> float:
    """Deal-weighted mean absolute gap between predicted and observed in a calibration table."""
    weights = table["deals"].to_numpy(dtype=np.float64)
    gaps = np.abs(table["predicted"].to_numpy() - table["observed"].to_numpy())
    return float(np.sum(weights * gaps) / np.sum(weights))


@dataclass(frozen=True)
class IncidenceReport:
    """Metrics of cumulative-incidence predictions, with the tables behind them for plots.

    `calibration`: per `days` and decile of predicted P(won within days), the mean prediction
    next to the Aalen-Johansen observed incidence. `incidence`: per day, the mean predicted
    cumulative incidence of each outcome next to the observed one.
    """

    metrics: dict[str, float]
    calibration: pd.DataFrame
    incidence: pd.DataFrame


def incidence_report(
    time: npt.ArrayLike,
    cause: npt.ArrayLike,
    won: FloatArray,
    lost: FloatArray,
    *,
    check_days: tuple[int, ...] = (30, 60, 90),
) -> IncidenceReport:
    """Score predictions made at time 0 for days 1 ... tau (`won`, `lost`: shape (n, tau)).

    Metrics: `concordance` (of P(won within tau) for winning by tau), `integrated_brier` (the
    three-state Brier score averaged over days 1 ... tau), and per `d` in `check_days`:
    `brier_won_{d}d` and `calibration_error_won_{d}d`; `mean_p_won_{tau}d` next to
    `observed_won_{tau}d` (Aalen-Johansen) says whether the level is right.
    """
    time_f = np.asarray(time, dtype=np.float64)
    cause_i = np.asarray(cause, dtype=np.int64)
    tau = won.shape[1]
    days = np.arange(1, tau + 1)
    censoring = censoring_curve(time_f, cause_i)
    metrics = {
        "concordance": concordance(time_f, cause_i, won[:, -1], tau=tau, censoring=censoring),
        "integrated_brier": integrated_brier(time_f, cause_i, won, lost, days, censoring),
    }
    tables = []
    for d in (d for d in check_days if d <= tau):
        predicted = won[:, d - 1]
        metrics[f"brier_won_{d}d"] = brier_score(time_f, cause_i, predicted, d, censoring)
        table = calibration_table(time_f, cause_i, predicted, d)
        metrics[f"calibration_error_won_{d}d"] = calibration_error(table)
        tables.append(table.assign(days=d))
    observed_won, observed_lost = aalen_johansen(time_f, cause_i)
    metrics[f"mean_p_won_{tau}d"] = float(won[:, -1].mean())
    metrics[f"observed_won_{tau}d"] = float(observed_won.at(np.array([tau]))[0])
    incidence = pd.DataFrame(
        {
            "days": days,
            "predicted_won": won.mean(axis=0),
            "observed_won": observed_won.at(days),
            "predicted_lost": lost.mean(axis=0),
            "observed_lost": observed_lost.at(days),
        }
    )
    calibration = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return IncidenceReport(metrics, calibration, incidence)
