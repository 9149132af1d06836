"""The command line as a user and other programs see it: outputs, formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnelcast.cli import app

KPI_COLUMNS = [
    "period_start",
    "period_end",
    "lead_count",
    "conversion_rate",
    "conversion_mature",
    "win_rate",
    "avg_deal_size",
    "median_deal_size",
    "sales_cycle_days",
    "mean_cycle_days",
    "won_revenue",
    "won_deals",
    "pipeline_value",
    "churn_rate",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def loaded_home(home: Path, tmp_path: Path) -> Path:
    """A store holding a small synthetic funnel."""
    code, _, err = run("generate", "--leads", "3000", "--seed", "3", "--out", str(tmp_path / "d"))
    assert code == 0, err
    code, out, err = run("ingest", "--data-dir", str(tmp_path / "d"))
    assert code == 0, err
    assert "3,000 new" in out
    return home


def test_help_lists_the_commands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in ("generate", "ingest", "kpis", "demo"):
        assert command in out


def test_kpis_csv_has_the_contract_columns(loaded_home: Path) -> None:
    code, out, err = run("kpis", "--freq", "quarter", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    header = list(rows[0])
    assert header[: len(KPI_COLUMNS)] == KPI_COLUMNS
    assert all(c.startswith("stage_conversion.") for c in header[len(KPI_COLUMNS) :])
    assert len(header) > len(KPI_COLUMNS)  # the generator writes stage events
    assert sum(int(r["lead_count"]) for r in rows) == 3000


def test_kpis_json_is_a_list_of_the_same_records(loaded_home: Path) -> None:
    code, out, _ = run("kpis", "--freq", "month", "--format", "json")
    assert code == 0
    records = json.loads(out)
    code, text, _ = run("kpis", "--freq", "month", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == len(rows)
    assert list(records[0])[: len(KPI_COLUMNS)] == KPI_COLUMNS
    assert [r["lead_count"] for r in records] == [int(r["lead_count"]) for r in rows]
    assert all(isinstance(r["conversion_mature"], bool) for r in records)


def test_kpis_segment_and_range(loaded_home: Path) -> None:
    code, out, _ = run("kpis", "--format", "json", "--segment", "region=Nordics")
    assert code == 0
    nordics = sum(r["lead_count"] for r in json.loads(out))
    code, out, _ = run("kpis", "--format", "json")
    everyone = sum(r["lead_count"] for r in json.loads(out))
    assert 0 < nordics < everyone
    code, out, _ = run("kpis", "--format", "json", "--from", "2025-01-01", "--to", "2025-03-31")
    assert [r["period_start"] for r in json.loads(out)] == [
        "2025-01-01",
        "2025-02-01",
        "2025-03-01",
    ]


def test_kpis_table_output(loaded_home: Path, tmp_path: Path) -> None:
    code, out, _ = run("kpis", "--freq", "quarter")
    assert code == 0
    assert "lead count" in out and "%" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("kpis", "--segment", "planet=Mars"), "planet"),
        (("kpis", "--segment", "region"), "key=value"),
        (("kpis", "--from", "01/02/2025"), "YYYY-MM-DD"),
        (("ingest", "--data-dir", "/no/such/folder"), "not a folder"),
        (("ingest", "--mapping", "salesforce", "--data-dir", "."), "no built-in mapping"),
    ],
)
def test_user_mistakes_exit_2_with_a_message(
    loaded_home: Path, args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_kpis_on_an_empty_store_says_what_to_do(home: Path) -> None:
    code, _, err = run("kpis")
    assert code == 2
    assert "funnelcast ingest" in err


def test_failed_ingest_leaves_the_store_unchanged(loaded_home: Path, tmp_path: Path) -> None:
    _, before, _ = run("kpis", "--format", "csv")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "leads.csv").write_text(
        "lead_id,created_at,outcome\nNEW1,2026-01-01,open\nNEW2,2026-01-02,unknown\n"
    )
    code, _, err = run("ingest", "--data-dir", str(bad))
    assert code == 2
    assert "line 3" in err and "outcome" in err
    _, after, _ = run("kpis", "--format", "csv")
    assert after == before


def test_same_ingest_twice_reports_nothing_new(loaded_home: Path, tmp_path: Path) -> None:
    code, out, _ = run("ingest", "--data-dir", str(tmp_path / "d"))
    assert code == 0
    assert "0 new, 0 updated, 3,000 unchanged" in out


def test_undated_store_prints_one_overall_row(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "undated"
    folder.mkdir()
    (folder / "leads.csv").write_text("lead_id,outcome,source\nA,won,web\nB,lost,web\nC,lost,ad\n")
    from scoring.contract import read_canonical
    from scoring.settings import Settings
    from scoring.store import FunnelStore

    store = FunnelStore.open(Settings().store_url)
    store.ingest(read_canonical(folder, dated=False), source="test")
    store.close()
    code, out, err = run("kpis", "--format", "json")
    assert code == 0, err
    assert "need dated data" in err
    [row] = json.loads(out)
    assert row["lead_count"] == 3
    assert row["conversion_rate"] == pytest.approx(1 / 3)


def test_demo_prints_monthly_kpis(home: Path) -> None:
    code, out, err = run("demo", "--leads", "2000", "--months", "6", "--no-train")
    assert code == 0, err
    assert "monthly KPIs" in out and "conversion rate" in out
    assert (home / "funnel.db").exists()
