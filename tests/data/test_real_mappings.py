"""The shipped mappings on the real data sets: counts match each SOURCE.md, no leak gets in.

Needs FUNNELCAST_DATA_DIR (set by `make test` when ../shared/data exists).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from funnelcast.cli import app
from scoring.mapping import MappedData
from tests.realdata import DATA_FOLDERS, mapped

pytestmark = pytest.mark.realdata


def report(data: MappedData, prefix: str) -> int:
    matches = [r for r in data.reports if r.rule.startswith(prefix)]
    assert len(matches) == 1, [r.rule for r in data.reports]
    return matches[0].rows


def test_maven_counts_match_source(real_data_dir: Path) -> None:
    data = mapped(real_data_dir, "maven")
    leads = data.funnel.leads
    # SOURCE.md: 8,800 opportunities; Won 4238 / Lost 2473 / Engaging 1589 / Prospecting 500.
    assert data.source_rows == 8800
    assert report(data, "drop_missing created_at") == 500
    assert len(leads) + data.dropped_rows == 8800
    assert leads["outcome"].value_counts().to_dict() == {"won": 4238, "lost": 2473, "open": 1589}
    assert report(data, "join products") == 0  # after the GTXPro fix every product joins
    assert report(data, "join teams") == 0
    assert report(data, "fix_values product") > 0
    assert set(leads["stage"]) == {"won", "lost", "meeting"}
    assert (leads["owner"] == leads["owner"]).all()
    assert "owner" in data.funnel.features


def test_maven_has_no_account_feature_and_values_open_deals(real_data_dir: Path) -> None:
    data = mapped(real_data_dir, "maven")
    leads = data.funnel.leads
    assert "account" not in leads.columns
    assert leads["account_id"].isna().all()
    assert not any("account" in f or "close" in f for f in data.funnel.features)
    not_won = leads[leads["outcome"] != "won"]
    assert (not_won["amount"] == not_won["sales_price"]).all()
    assert (leads.loc[leads["outcome"] == "won", "amount"] > 0).all()


def test_olist_counts_match_source(real_data_dir: Path) -> None:
    data = mapped(real_data_dir, "olist")
    funnel = data.funnel
    # SOURCE.md: 8,000 MQLs, 842 closed deals, one won before its first contact.
    assert data.source_rows == 8000 and len(funnel.leads) == 8000 and data.dropped_rows == 0
    assert funnel.leads["outcome"].value_counts().to_dict() == {"open": 7158, "won": 842}
    assert report(data, "clamp_closed_before_created") == 1
    assert (funnel.leads["closed_at"] >= funnel.leads["created_at"]).sum() == 842
    assert funnel.horizon_days == 90  # the mapping says why
    assert funnel.observed_until == pd.Timestamp("2018-11-14 18:04:19")
    assert funnel.features == ("landing_page_id", "origin")
    assert set(funnel.attribute_columns) == {"landing_page_id", "origin"}


def test_x_education_counts_match_source(real_data_dir: Path) -> None:
    data = mapped(real_data_dir, "x_education")
    funnel = data.funnel
    leads = funnel.leads
    # SOURCE.md: 9,240 leads, 3,561 converted; "Select" in 1942 + 5043 + 4146 + 2249 cells.
    assert len(leads) == 9240 and data.dropped_rows == 0
    assert leads["outcome"].value_counts().to_dict() == {"lost": 5679, "won": 3561}
    assert report(data, "missing_values") == 1942 + 5043 + 4146 + 2249
    assert not funnel.dated and funnel.observed_until is None
    assert leads["created_at"].isna().all()
    text = leads.select_dtypes(exclude="number").astype(str)
    assert not text.isin(["Select"]).any().any()
    banned = ("tags", "quality", "last", "asymmetrique", "lead number")
    assert not [c for c in leads.columns if any(b in c.lower() for b in banned)]
    assert len(funnel.features) == 21


@pytest.fixture
def maven_home(real_data_dir: Path, home: Path) -> Path:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["ingest", "--mapping", "maven", "--data-dir", str(real_data_dir / DATA_FOLDERS["maven"])],
    )
    assert result.exit_code == 0, result.output
    assert "dropped 500" in result.output
    return home


def test_maven_monthly_kpis_equal_a_plain_pandas_recount(
    real_data_dir: Path, maven_home: Path
) -> None:
    result = CliRunner().invoke(app, ["kpis", "--freq", "month", "--format", "csv"])
    assert result.exit_code == 0, result.output
    kpis = pd.read_csv(io.StringIO(result.stdout), parse_dates=["period_start"])
    kpis = kpis.set_index(kpis["period_start"].dt.to_period("M"))

    raw = pd.read_csv(
        real_data_dir / DATA_FOLDERS["maven"] / "sales_pipeline.csv",
        parse_dates=["engage_date", "close_date"],
    )
    closed = raw[raw["deal_stage"].isin(["Won", "Lost"])].copy()
    closed["month"] = closed["close_date"].dt.to_period("M")
    won = closed[closed["deal_stage"] == "Won"].copy()
    won["cycle"] = (won["close_date"] - won["engage_date"]).dt.days
    expected = pd.DataFrame(
        {
            "won_revenue": won.groupby("month")["close_value"].sum(),
            "won_deals": won.groupby("month").size(),
            "win_rate": closed.groupby("month")["deal_stage"].apply(lambda s: (s == "Won").mean()),
            "sales_cycle_days": won.groupby("month")["cycle"].median(),
        }
    )
    assert len(expected) == 10  # March to December 2017
    for month in expected.index:
        row, got = expected.loc[month], kpis.loc[month]
        assert got["won_revenue"] == pytest.approx(row["won_revenue"]), month
        assert got["won_deals"] == row["won_deals"], month
        assert got["win_rate"] == pytest.approx(row["win_rate"]), month
        assert got["sales_cycle_days"] == pytest.approx(row["sales_cycle_days"]), month
    before_first_close = kpis[kpis.index < pd.Period("2017-03", "M")]
    assert (before_first_close["won_deals"] == 0).all()
