"""Synthetic B2B funnel with a known, exactly computable ground truth.

Used by the demo, scale runs and model judging. `generate_funnel` draws every table with one
`numpy.random.default_rng(seed)`; `write_funnel` writes them (byte-identical for equal arguments).

Generative model (coefficients are the module constants below; `z = log10(employees)`):

- Arrival: `n_leads` creation days drawn over `years` before `end` with the lead intensity of
  `scoring.synthetic_calendar` (growth, weekdays, summer and year-end dips), at a uniform second
  in business hours 08:00-18:00. Region, industry are fixed mixes; the source mix drifts
  (`_SOURCE_DRIFT` per year: paid ads and outbound grow, events shrink); `z ~ N(1.9 + shift by
  source, 0.75)` rounded to whole employees; seniority depends on size (c-level contacts are
  common at small firms); engagement counts are gamma-Poisson with means by source and seniority;
  `demo_requested` depends on web visits and source. `owner`: one of 47 reps of the lead's region,
  each rep with a skill effect drawn once per seed.
- Won: `won ~ Bernoulli(sigmoid(f(x)))`, with `f` (`_won_logit`) =
  intercept + industry + source + seniority effects
  - 0.9 (z - 2.4)^2                        (inverted U: ~250 employees is the sweet spot)
  + seniority slope × (z - 2.4)             (c-level sells at small firms, managers at large ones)
  + 1.6 (1 - exp(-web_visits / 3))          (saturating engagement)
  + 0.8 [email_opens ≥ 5] - 1.3 [email_opens ≥ 25]   (threshold; huge counts are bots)
  + source × region                         (referrals in the Nordics, partners in APAC/LATAM ...)
  + demo_requested × industry               (a demo matters in software, not in education)
  + rep skill of the owner.
- Timing: a won deal closes after `m(x)` days (7-30, by size and source) with daily hazard
  `b(x) g(day)`, `g` the closing calendar (quarter-end push, weekends, holidays). A non-won deal
  is lost: it stops at a stage that is further for a better lead, then loses with its own
  hazard (minimum delay and speed by that stage, no quarter-end push). A deal not closed by
  `end` is open; its stage is the last one entered by `end`. The time of day of a close is again
  uniform in business hours, so `closed_at - created_at ≤ d days` iff the close day offset
  `k < d`, or `k = d` and the close time of day is not later than the creation one (chance
  `q = (n + 1) / 2n`, `n = 36000` seconds).
- Stages `lead → qualified → contacted → meeting → proposal → won|lost`: a deal's time to close is
  split among the stages it passes with Dirichlet fractions (a 2 % floor keeps them ordered).
- Amount: lognormal, `log amount ~ N(mu(x), 0.7²)`, `mu` by size, industry, and a premium for
  large financial-services and healthcare firms; drawn independently of timing. Every deal
  carries it from creation (the rep's estimate, which the won deal then books), so historical
  pipeline values do not depend on when the data was extracted.
- Churn: each won account is a customer from `closed_at` with a Weibull lifetime (shape 0.7, so
  risk falls with tenure; scale in days by size, industry and source); `value` is the amount times
  a lognormal factor (sd 0.1).

Truth layout: `truth` (written to `truth.parquet`) has one row per lead: `lead_id`, `account_id`,
`logit`, `p_won` (eventual), `p_won_30d`, `p_won_90d`, `p_won_horizon` (180 days), all as seen at
creation and exact under the calendar; `median_days_to_close` (day offset, given won),
`amount_log_mean`, `amount_log_sd`, `expected_amount`, `expected_value` (= p_won ×
expected_amount); and, for leads won by `end` (whose account is a customer; NaN otherwise),
`churn_shape`, `churn_scale_days`, `p_churn_365d`. One lead is one account, so `account_id`
joins truth to customers. Ingest never reads `truth.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.contract import validate_leads
from scoring.funnel import LEAD_COLUMNS, Funnel
from scoring.synthetic_calendar import (
    FloatArray,
    IntArray,
    build_calendar,
    close_cdf,
    median_offset,
    sample_close_offsets,
)

DEFAULT_END = pd.Timestamp("2026-06-30 23:59:59")
HORIZON_DAYS = 180
STAGES = ("lead", "qualified", "contacted", "meeting", "proposal", "won", "lost")
INDUSTRIES = (
    "software", "financial_services", "healthcare", "manufacturing",
    "retail", "education", "logistics", "media",
)  # fmt: skip
REGIONS = ("North America", "Europe", "Nordics", "APAC", "LATAM")
SOURCES = ("inbound_web", "referral", "event", "outbound", "partner", "paid_ads")
SENIORITIES = ("individual", "manager", "director", "vp", "c_level")
SIZE_BANDS = ("1-10", "11-50", "51-200", "201-1000", "1000+")
_SIZE_EDGES = np.array([10, 50, 200, 1000])
_REPS_PER_REGION = np.array([16, 12, 6, 8, 5])
_DAY_S = 86_400
_OPEN_S, _CLOSE_S = 8 * 3600, 18 * 3600
_TIE_SHARE = (_CLOSE_S - _OPEN_S + 1) / (2 * (_CLOSE_S - _OPEN_S))

_REGION_MIX = np.array([0.35, 0.28, 0.12, 0.15, 0.10])
_INDUSTRY_MIX = np.array([0.22, 0.12, 0.11, 0.14, 0.12, 0.09, 0.10, 0.10])
_SOURCE_MIX = np.array([0.30, 0.12, 0.12, 0.20, 0.10, 0.16])
_SOURCE_DRIFT = np.array([0.0, 0.0, -0.2, 0.1, 0.0, 0.25])
_SENIORITY_MIX = np.array([0.30, 0.30, 0.20, 0.12, 0.08])
_SOURCE_SIZE_SHIFT = np.array([-0.2, 0.0, 0.2, 0.45, 0.2, -0.3])

_WON_INTERCEPT = -2.2
_INDUSTRY_WON = np.array([0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.1, -0.1])
_SOURCE_WON = np.array([0.1, 0.4, 0.0, -0.4, 0.2, -0.3])
_SENIORITY_WON = np.array([-0.5, 0.0, 0.2, 0.2, 0.3])
_SENIORITY_SLOPE = np.array([0.3, 0.8, 0.4, -0.4, -1.3])
_SOURCE_REGION_WON = np.array(
    # North America, Europe, Nordics, APAC, LATAM
    [
        [0.3, 0.0, -0.3, 0.0, -0.2],  # inbound_web
        [-0.2, 0.4, 1.0, -0.3, 0.0],  # referral
        [-0.3, 0.5, 0.2, -0.2, 0.3],  # event
        [0.3, -0.3, -0.6, 0.2, 0.0],  # outbound
        [-0.5, -0.2, 0.0, 0.8, 0.8],  # partner
        [-0.6, 0.0, 0.2, 0.4, 0.5],  # paid_ads
    ]
)
_DEMO_INDUSTRY_WON = np.array([1.3, 1.0, 0.6, -0.3, 0.3, -0.4, 0.2, 0.6])

_AMOUNT_SD = 0.7
_INDUSTRY_AMOUNT = np.array([0.2, 0.35, 0.3, 0.1, -0.2, -0.4, 0.0, -0.1])
_CHURN_SHAPE = 0.7
_INDUSTRY_CHURN = np.array([0.0, 0.3, 0.3, 0.2, -0.3, 0.1, 0.0, -0.4])


@dataclass(frozen=True)
class SyntheticFunnel:
    """The generated tables (canonical columns of `scoring.funnel`), the truth and `end`."""

    leads: pd.DataFrame
    stage_events: pd.DataFrame
    customers: pd.DataFrame
    truth: pd.DataFrame
    end: pd.Timestamp

    def as_funnel(self) -> Funnel:
        """The tables as a canonical `Funnel`, as `ingest` would load them (truth left out)."""
        leads = validate_leads(self.leads, "synthetic funnel")
        return Funnel(
            leads=leads,
            stage_events=self.stage_events,
            customers=self.customers,
            horizon_days=HORIZON_DAYS,
            observed_until=self.end,
            features=tuple(c for c in leads.columns if c not in LEAD_COLUMNS),
            name="synthetic",
        )


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _draw_rows(rng: np.random.Generator, logits: FloatArray) -> IntArray:
    """One category per row from per-row logits (inverse CDF, vectorised)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(logits)) * cdf[:, -1]
    return np.asarray((u[:, None] > cdf[:, :-1]).sum(axis=1), dtype=np.int64)


def _gamma_poisson(rng: np.random.Generator, mean: FloatArray, shape: float) -> IntArray:
    return rng.poisson(mean * rng.gamma(shape, 1.0 / shape, len(mean))).astype(np.int64)


def _attributes(rng: np.random.Generator, years_in: FloatArray) -> dict[str, IntArray]:
    """Lead attributes as integer codes (categoricals) or counts."""
    n = len(years_in)
    region = rng.choice(len(REGIONS), n, p=_REGION_MIX)
    industry = rng.choice(len(INDUSTRIES), n, p=_INDUSTRY_MIX)
    source_logits = np.log(_SOURCE_MIX) + np.outer(years_in, _SOURCE_DRIFT)
    source_logits[:, SOURCES.index("partner")] += 0.5 * (region >= REGIONS.index("APAC"))
    source = _draw_rows(rng, source_logits)
    log_size = rng.normal(1.9 + _SOURCE_SIZE_SHIFT[source], 0.75).clip(0.0, 4.7)
    employees = np.maximum(np.rint(10.0**log_size), 1).astype(np.int64)
    z = np.log10(employees)
    seniority_logits = np.tile(np.log(_SENIORITY_MIX), (n, 1))
    seniority_logits[:, -1] -= 0.9 * (z - 2.0)
    seniority_logits[:, 0] += 0.3 * (z - 2.0)
    seniority = _draw_rows(rng, seniority_logits)
    visit_mean = np.exp(1.0 + np.array([0.6, 0.0, 0.2, -0.7, -0.2, 0.4])[source])
    web_visits = _gamma_poisson(rng, visit_mean, 0.8)
    open_mean = np.exp(1.6 + 0.3 * (source == 3) - 0.4 * (seniority == 4))
    email_opens = _gamma_poisson(rng, open_mean, 0.6)
    demo_logit = -1.6 + 0.5 * np.log1p(web_visits) + np.array([0.4, 0, 0, -0.6, 0, 0.2])[source]
    demo = (rng.random(n) < _sigmoid(demo_logit)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(_REPS_PER_REGION)[:-1]])
    owner = offsets[region] + (rng.random(n) * _REPS_PER_REGION[region]).astype(np.int64)
    return {
        "region": region, "industry": industry, "source": source, "employees": employees,
        "seniority": seniority, "web_visits": web_visits, "email_opens": email_opens,
        "demo_requested": demo, "owner": owner,
    }  # fmt: skip


def _won_logit(x: dict[str, IntArray], rep_skill: FloatArray) -> FloatArray:
    """The true log-odds of eventually winning, `f(x)` of the module docstring."""
    z = np.log10(x["employees"]) - 2.4
    industry, source, seniority = x["industry"], x["source"], x["seniority"]
    opens = x["email_opens"]
    return np.asarray(
        _WON_INTERCEPT
        + _INDUSTRY_WON[industry]
        + _SOURCE_WON[source]
        + _SENIORITY_WON[seniority]
        - 0.9 * z**2
        + _SENIORITY_SLOPE[seniority] * z
        + 1.6 * (1.0 - np.exp(-x["web_visits"] / 3.0))
        + 0.8 * (opens >= 5)
        - 1.3 * (opens >= 25)
        + _SOURCE_REGION_WON[source, x["region"]]
        + x["demo_requested"] * _DEMO_INDUSTRY_WON[industry]
        + rep_skill[x["owner"]]
    )


def _won_timing(x: dict[str, IntArray]) -> tuple[IntArray, FloatArray]:
    """Minimum delay (days) and base daily hazard of closing a deal that will be won."""
    z, source = np.log10(x["employees"]), x["source"]
    delay = 7 + 8 * (z - 1.0) + np.array([0, -3, 2, 6, 4, 0])[source]
    speed = -0.25 * (z - 2.0) + np.array([0.1, 0.2, 0.0, -0.2, -0.1, 0.1])[source]
    base = 0.03 * np.exp(speed + 0.3 * x["demo_requested"])
    return np.rint(delay).clip(7, 30).astype(np.int64), base.clip(0.02, 0.09)


def _lost_stop_stage(rng: np.random.Generator, logit: FloatArray) -> IntArray:
    """Index in `STAGES` of the last stage a lost deal reaches: better leads get further."""
    hurdles = np.array([1.2, 0.7, 0.2, -0.3])
    passes = rng.random((len(logit), 4)) < _sigmoid(hurdles + 0.6 * (logit[:, None] + 1.5))
    return np.asarray(np.cumprod(passes, axis=1).sum(axis=1), dtype=np.int64)


# Gamma shapes of the time spent before entering each stage (Dirichlet weights; index: STAGES).
_INTERVAL_SHAPE = np.array([1.0, 1.5, 1.0, 2.0, 2.5, 2.0, 2.0])
_MIN_FRACTION = 0.02


def _stage_events(
    rng: np.random.Generator,
    won: np.ndarray,
    stop: IntArray,
    created_s: IntArray,
    close_s: IntArray,
) -> tuple[IntArray, IntArray, IntArray]:
    """Planned events of every deal: (lead index, stage code, entered second), in time order."""
    n_events = stop + 2
    starts = np.cumsum(n_events) - n_events
    lead = np.repeat(np.arange(len(stop)), n_events)
    pos = np.arange(len(lead)) - starts[lead]
    final = pos == n_events[lead] - 1
    code = np.where(final, np.where(won[lead], 5, 6), pos)
    weight = np.where(pos == 0, 0.0, rng.gamma(_INTERVAL_SHAPE[code]))
    share = weight / np.bincount(lead, weights=weight)[lead]
    # The floor keeps consecutive events apart even for a one-day deal.
    fraction = np.where(
        pos == 0, 0.0, _MIN_FRACTION + (1 - _MIN_FRACTION * (stop + 1)[lead]) * share
    )
    cumulative = np.cumsum(fraction)
    cumulative -= cumulative[starts][lead]
    duration = (close_s - created_s)[lead]
    entered = created_s[lead] + np.rint(cumulative * duration).astype(np.int64)
    entered = np.where(final, close_s[lead], entered)
    return lead, code, entered


def _to_datetime(seconds: IntArray, present: np.ndarray | None = None) -> np.ndarray:
    values = seconds.astype("datetime64[s]").astype("datetime64[ns]")
    return values if present is None else np.where(present, values, np.datetime64("NaT", "ns"))


_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default "str" dtype


def _text(values: pa.Array, codes: IntArray | None = None) -> pd.Series:
    """A `str` column (taking `codes` from `values` when given), built in Arrow for speed."""
    taken = values if codes is None else values.take(pa.array(codes))
    return pd.Series(taken.to_pandas(types_mapper={pa.string(): _STR}.get))


def _labels(levels: tuple[str, ...], codes: IntArray) -> pd.Series:
    return _text(pa.array(levels, pa.string()), codes)


def _resolve_end(end: date | pd.Timestamp | None) -> pd.Timestamp:
    if end is None:
        return DEFAULT_END
    stamp = pd.Timestamp(end)
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if not isinstance(end, datetime):  # a bare date means "up to the end of that day"
        stamp += pd.Timedelta(days=1, seconds=-1)
    return stamp.floor("s")


def generate_funnel(
    n_leads: int, seed: int = 0, end: date | pd.Timestamp | None = None, years: float = 3.0
) -> SyntheticFunnel:
    """Draw a funnel of `n_leads` leads created over `years` before `end` (see module doc).

    Args:
        n_leads: number of leads (at least 1).
        seed: seed of the one random generator; equal arguments give equal tables.
        end: the extraction moment (a date means its last second); default 2026-06-30 23:59:59.
        years: length of the creation window.
    """
    if n_leads < 1 or years <= 0:
        raise ValueError("n_leads must be at least 1 and years positive")
    rng = np.random.default_rng(seed)
    end_ts = _resolve_end(end)
    end_s = end_ts.value // 10**9
    # The last creation day is the last one whose business hours all precede `end`.
    last_day = (end_ts - pd.Timedelta(hours=18)).normalize()
    creation_days = max(1, round(years * 365.25))
    first_day = last_day - pd.Timedelta(days=creation_days - 1)
    first_s = first_day.value // 10**9
    calendar = build_calendar(first_day, creation_days)

    day = rng.choice(creation_days, n_leads, p=calendar.lead_intensity)
    created_s = np.sort(first_s + day * _DAY_S + rng.integers(_OPEN_S, _CLOSE_S, n_leads))
    day = (created_s - first_s) // _DAY_S
    x = _attributes(rng, day / 365.25)
    rep_skill = rng.normal(0.0, 0.25, _REPS_PER_REGION.sum())
    logit = _won_logit(x, rep_skill)
    p_won = _sigmoid(logit)
    won = rng.random(n_leads) < p_won
    stop = np.where(won, 4, _lost_stop_stage(rng, logit))

    won_delay, won_base = _won_timing(x)
    lost_delay = 1 + 4 * stop
    lost_base = 0.05 * np.exp(-0.3 * stop)
    delay = np.where(won, won_delay, lost_delay)
    base = np.where(won, won_base, lost_base)
    draws = rng.standard_exponential(n_leads)
    offset = np.where(
        won,
        sample_close_offsets(calendar.won_cum, day, delay, base, draws),
        sample_close_offsets(calendar.lost_cum, day, delay, base, draws),
    )
    # Deals closing beyond the calendar are open at `end`; any later date serves as their plan.
    offset = np.where(offset < 0, len(calendar.won_cum) - day, offset)
    close_s = first_s + (day + offset) * _DAY_S + rng.integers(_OPEN_S, _CLOSE_S, n_leads)
    closed = close_s <= end_s

    lead, code, entered = _stage_events(rng, won, stop, created_s, close_s)
    seen = entered <= end_s
    starts = np.cumsum(stop + 2) - (stop + 2)
    stage = code[starts + np.bincount(lead[seen], minlength=n_leads) - 1]

    z = np.log10(x["employees"])
    industry = x["industry"]
    amount_mu = (
        np.log(6000.0)
        + 0.9 * (z - 1.5)
        + _INDUSTRY_AMOUNT[industry]
        + 0.5 * ((z >= 3.0) & np.isin(industry, [1, 2]))
    )
    amount = np.round(np.exp(amount_mu + _AMOUNT_SD * rng.standard_normal(n_leads)), 2)
    value = np.round(amount * np.exp(0.1 * rng.standard_normal(n_leads)), 2)
    source = x["source"]
    churn_scale = 4800.0 * np.exp(
        0.3 * (z - 2.0) + _INDUSTRY_CHURN[industry] + 0.3 * (source == 1) - 0.4 * (source == 5)
    )
    lifetime_s = churn_scale * rng.standard_exponential(n_leads) ** (1 / _CHURN_SHAPE) * _DAY_S
    customer = won & closed
    churned = customer & (close_s + lifetime_s <= end_s)
    churn_s = np.where(churned, close_s + np.maximum(np.ceil(lifetime_s), 1), 0).astype(np.int64)

    numbers = pd.Series(np.arange(1, n_leads + 1)).astype("str").str.zfill(7)
    ids, accounts = "L" + numbers, "A" + numbers
    outcome = np.where(closed, np.where(won, 2, 1), 0)
    size_band = np.searchsorted(_SIZE_EDGES, x["employees"], side="left")
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": _to_datetime(created_s),
            "outcome": _labels(("open", "lost", "won"), outcome),
            "closed_at": _to_datetime(close_s, closed),
            "amount": amount,
            "stage": _labels(STAGES, stage),
            "owner": _labels(tuple(f"R{i + 1:02d}" for i in range(len(rep_skill))), x["owner"]),
            "account_id": accounts,
            "industry": _labels(INDUSTRIES, industry),
            "company_size": _labels(SIZE_BANDS, size_band),
            "employees": x["employees"],
            "region": _labels(REGIONS, x["region"]),
            "source": _labels(SOURCES, source),
            "seniority": _labels(SENIORITIES, x["seniority"]),
            "email_opens": x["email_opens"],
            "web_visits": x["web_visits"],
            "demo_requested": x["demo_requested"].astype(bool),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": _text(pa.array(ids), lead[seen]),
            "stage": _labels(STAGES, code[seen]),
            "entered_at": _to_datetime(entered[seen]),
        }
    )
    attributes = ["industry", "region", "company_size", "employees", "source"]
    customers = pd.DataFrame(
        {
            "account_id": accounts[customer],
            "started_at": _to_datetime(close_s[customer]),
            "churned_at": _to_datetime(churn_s[customer], churned[customer]),
            "value": value[customer],
        }
    ).reset_index(drop=True)
    customers[attributes] = leads.loc[customer, attributes].reset_index(drop=True)

    def p_within(days: int) -> FloatArray:
        before = close_cdf(calendar.won_cum, day, won_delay, won_base, days - 1)
        upto = close_cdf(calendar.won_cum, day, won_delay, won_base, days)
        return p_won * (before + _TIE_SHARE * (upto - before))

    expected_amount = np.exp(amount_mu + _AMOUNT_SD**2 / 2)
    p_churn = 1.0 - np.exp(-((365.0 / churn_scale) ** _CHURN_SHAPE))
    truth = pd.DataFrame(
        {
            "lead_id": ids,
            "account_id": accounts,
            "logit": logit,
            "p_won": p_won,
            "p_won_30d": p_within(30),
            "p_won_90d": p_within(90),
            "p_won_horizon": p_within(HORIZON_DAYS),
            "median_days_to_close": median_offset(calendar.won_cum, day, won_delay, won_base),
            "amount_log_mean": amount_mu,
            "amount_log_sd": _AMOUNT_SD,
            "expected_amount": expected_amount,
            "expected_value": p_won * expected_amount,
            "churn_shape": np.where(customer, _CHURN_SHAPE, np.nan),
            "churn_scale_days": np.where(customer, churn_scale, np.nan),
            "p_churn_365d": np.where(customer, p_churn, np.nan),
        }
    )
    return SyntheticFunnel(leads, events, customers, truth, end_ts)


def write_funnel(
    funnel: SyntheticFunnel, out_dir: Path, file_format: Literal["parquet", "csv"] = "parquet"
) -> list[Path]:
    """Write `leads`, `stage_events`, `customers` as `file_format` and `truth.parquet`.

    Files are byte-identical for identical funnels (no index, no timestamps in metadata).
    """
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"file_format must be parquet or csv, not {file_format!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        f"leads.{file_format}": funnel.leads,
        f"stage_events.{file_format}": funnel.stage_events,
        f"customers.{file_format}": funnel.customers,
        "truth.parquet": funnel.truth,
    }
    paths = []
    for name, frame in tables.items():
        path = out_dir / name
        if path.suffix == ".csv":
            frame.to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S", lineterminator="\n")
        else:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        paths.append(path)
    return paths
