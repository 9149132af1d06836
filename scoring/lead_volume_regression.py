"""The count regression behind `LeadVolumeModel` (`scoring.lead_volume`, whose module doc says
what it models and why): the daily design matrix and its priors, a penalised Poisson / binomial
GLM by Newton's method, the marginal-likelihood choice of the prior scales, the extra-Poisson
variance of period totals, and the logit share of a segment level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from scoring.lead_volume_forecaster import FloatArray, IntArray, period_ends, period_starts
from scoring.periods import FREQS, Freq

YEAR_DAYS = 365.25
CHANGEPOINT_RANGE = 0.8  # trend changes are placed over this share of the history
# Prior standard deviations (log scale): growth of tens of percent a year is usual, of e^1 rare;
# weekend flow can be a tenth of a weekday's. The *_SDS are the marginal likelihood's candidates.
_SLOPE_SD = 1.0
_WEEKDAY_SD = 2.0
_HOLIDAY_SD = 1.0
_SHARE_SLOPE_SD = 0.5  # change of a segment's share log-odds per year
_SLOPE_CHANGE_SDS = (0.03, 0.1, 0.3)
_LEVEL_SDS = (0.01, 0.1, 0.3)
_MONTH_SDS = (0.01, 0.1, 0.2, 0.4)


@dataclass(frozen=True)
class Design:
    """The daily regression's columns and priors (days are epoch day numbers)."""

    first_day: int
    last_day: int
    changepoints: tuple[int, ...]
    spacing: int
    months: tuple[int, ...]  # calendar months with an effect of their own (1-12)
    slope_change_sd: float = 0.1
    level_sd: float = 0.1
    month_sd: float = 0.2

    def matrix(self, days: IntArray) -> FloatArray:
        columns = [np.ones((len(days), 1)), (days[:, None] - self.first_day) / YEAR_DAYS]
        columns.append(trend_changes(days, np.asarray(self.changepoints, dtype=np.int64)))
        columns.append((days - period_starts(days, "week"))[:, None] == np.arange(7))
        stamps = days.astype("datetime64[D]")
        months = stamps.astype("datetime64[M]")
        month = months.astype(np.int64) % 12 + 1
        day_of_month = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
        columns.append(month[:, None] == np.asarray(self.months))
        holiday = ((month == 12) & (day_of_month >= 22)) | ((month == 1) & (day_of_month <= 2))
        columns.append(holiday[:, None])
        return np.hstack(columns).astype(np.float64)

    def precision(self) -> FloatArray:
        changes = len(self.changepoints)
        sds = [np.inf, _SLOPE_SD] + [self.level_sd] * changes + [self.slope_change_sd] * changes
        sds += [_WEEKDAY_SD] * 7 + [self.month_sd] * len(self.months) + [_HOLIDAY_SD]
        return np.asarray(1.0 / np.square(sds))

    def future_changes(self, days: IntArray) -> tuple[FloatArray, FloatArray]:
        """Level and slope changes that may come after the history, every `spacing` days from
        its end, and their standard deviations."""
        count = -(-max(int(days.max()) - self.last_day, 0) // self.spacing)
        columns = trend_changes(days, self.last_day + 1 + self.spacing * np.arange(count))
        sds = np.repeat([self.level_sd, self.slope_change_sd], count)
        return columns, sds


def trend_changes(days: IntArray, points: IntArray) -> FloatArray:
    """A level step and a slope change (years since the point) at each point."""
    after = days[:, None] - points[None, :]
    return np.hstack([(after >= 0).astype(np.float64), np.maximum(after, 0) / YEAR_DAYS])


@dataclass(frozen=True)
class CountFit:
    """The total's fitted regression and its uncertainty layers."""

    design: Design
    coef: FloatArray
    cov: FloatArray
    alpha: dict[str, float]  # extra-Poisson variance of period totals, per frequency


def newton(
    x: FloatArray,
    y: FloatArray,
    precision: FloatArray,
    start: FloatArray,
    scale: float = 1.0,
    trials: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, float]:
    """Penalised GLM fit, Poisson (log link) or binomial of `trials` (logit link).

    Minimises (deviance / 2) / scale + ½ Σ precision·β²; returns the coefficients, the Hessian
    at them and the log likelihood (up to a constant).
    """

    def loglik(eta: FloatArray) -> float:
        if trials is None:
            return float(y @ eta - np.exp(eta).sum())
        return float(y @ eta - trials @ np.logaddexp(0.0, eta))

    def objective(beta: FloatArray) -> float:
        return -loglik(np.minimum(x @ beta, 50.0)) / scale + 0.5 * float(precision @ beta**2)

    def curvature(beta: FloatArray) -> tuple[FloatArray, FloatArray]:
        eta = np.minimum(x @ beta, 50.0)
        if trials is None:
            mean = var = np.exp(eta)
        else:
            p = 1.0 / (1.0 + np.exp(-eta))
            mean, var = trials * p, trials * p * (1 - p)
        gradient = x.T @ (mean - y) / scale + precision * beta
        return gradient, (x.T * var) @ x / scale + np.diag(precision)

    beta, current = start.copy(), objective(start)
    for _ in range(100):
        gradient, hessian = curvature(beta)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while (candidate := objective(beta - size * step)) > current and size > 1e-8:
            size /= 2  # step halving keeps every Newton step a descent
        beta, current = beta - size * step, candidate
        if np.max(np.abs(size * step)) < 1e-8:
            break
    return beta, curvature(beta)[1], loglik(np.minimum(x @ beta, 50.0))


def fit_total(design: Design, counts: FloatArray) -> CountFit:
    days = np.arange(design.first_day, design.last_day + 1)
    x = design.matrix(days)
    start = np.zeros(x.shape[1])
    start[0] = np.log(counts.mean() + 0.1)
    beta, _, _ = newton(x, counts, design.precision(), start)
    mu = np.exp(x @ beta)
    # Quasi-likelihood: noisier data (campaigns, bulk imports) count for less against the priors.
    dispersion = max(1.0, float(((counts - mu) ** 2 / mu).sum()) / max(len(days) - len(beta), 1))
    best: tuple[float, Design, FloatArray, FloatArray] | None = None
    for slope_sd, level_sd, month_sd in product(
        _SLOPE_CHANGE_SDS, _LEVEL_SDS, _MONTH_SDS if design.months else _MONTH_SDS[:1]
    ):
        candidate = replace(design, slope_change_sd=slope_sd, level_sd=level_sd, month_sd=month_sd)
        precision = candidate.precision()
        beta, hessian, loglik = newton(x, counts, precision, beta, dispersion)
        # Laplace approximation of the log marginal likelihood, constants dropped.
        evidence = (
            loglik / dispersion
            - 0.5 * precision @ beta**2
            + 0.5 * np.log(precision[precision > 0]).sum()
            - 0.5 * np.linalg.slogdet(hessian)[1]
        )
        if best is None or evidence > best[0]:
            best = (evidence, candidate, beta, hessian)
    assert best is not None
    _, chosen, beta, hessian = best
    mu = np.exp(x @ beta)
    alpha: dict[str, float] = {}
    previous = 0.0
    for freq in FREQS:  # too few periods: borrow the finer frequency's (as if fully correlated)
        estimate = extra_variance(days, counts, mu, freq)
        alpha[freq] = previous = estimate if estimate is not None else previous
    return CountFit(chosen, beta, np.asarray(np.linalg.inv(hessian), dtype=np.float64), alpha)


def extra_variance(days: IntArray, y: FloatArray, mu: FloatArray, freq: Freq) -> float | None:
    """Method-of-moments excess over Poisson of complete in-sample period totals."""
    starts = period_starts(days, freq)
    complete = (starts >= days[0]) & (period_ends(starts, freq) <= days[-1])
    periods, index = np.unique(starts[complete], return_inverse=True)
    if len(periods) < 12:  # too few to estimate (quarters of a short history)
        return None
    actual, fitted = np.bincount(index, y[complete]), np.bincount(index, mu[complete])
    return float(max(0.0, ((actual - fitted) ** 2 - fitted).sum() / (fitted**2).sum()))


def fit_share(years: FloatArray, mine: FloatArray, total: FloatArray) -> tuple[float, float]:
    """Share log-odds intercept and slope per year from daily counts of a level and the total."""
    x = np.column_stack([np.ones(len(years)), years])
    share = (mine.sum() + 0.5) / (total.sum() + 1.0)
    start = np.array([np.log(share / (1 - share)), 0.0])
    precision = np.array([0.0, 1.0 / _SHARE_SLOPE_SD**2])
    beta, _, _ = newton(x, mine, precision, start, trials=total)
    return float(beta[0]), float(beta[1])
