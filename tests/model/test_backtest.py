"""The back-test: refits at each cutoff, compares with actuals and baselines, DESIGN §7 JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnelcast.cli import app
from scoring.kpis import compute_kpis
from scoring.synthetic import generate_funnel
from training.backtest import BacktestSettings, run_backtest

CUTOFF = date(2026, 3, 31)


def test_a_backtest_compares_each_period_with_its_actual_and_the_baselines() -> None:
    funnel = generate_funnel(3_000, seed=4, end=date(2026, 6, 30)).as_funnel()
    settings = BacktestSettings(periods=2, kpis=("won_deals", "lead_count"), draws=200, threads=1)

    backtest = run_backtest(funnel, [CUTOFF], settings)

    assert [(r.period_start, r.kpi) for r in backtest.runs] == [
        (date(2026, 4, 1), "won_deals"),
        (date(2026, 4, 1), "lead_count"),
        (date(2026, 5, 1), "won_deals"),
        (date(2026, 5, 1), "lead_count"),
    ]
    actual = compute_kpis(funnel, "month", date(2026, 4, 1), date(2026, 5, 31))
    for run in backtest.runs:
        row = actual[actual["period_start"] == run.period_start].iloc[0]
        assert run.actual == pytest.approx(row[run.kpi])
        assert set(run.baselines) == {"weighted_pipeline", "run_rate", "seasonal_naive"}
        figures = run.forecast
        assert figures["p10"] is not None and figures["p90"] is not None
        assert figures["p10"] <= figures["p50"] <= figures["p90"]  # type: ignore[operator]
    # Each run keeps its draws, whose quantiles are the reported ones.
    first = backtest.runs[0]
    assert len(backtest.draws[(first.cutoff, first.period_start, first.kpi)]) == 200


def test_backtest_command_prints_the_design_json_and_logs_a_run(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    generate = ["generate", "--leads", "3000", "--seed", "4", "--out", str(data)]
    assert runner.invoke(app, generate).exit_code == 0
    assert runner.invoke(app, ["ingest", "--data-dir", str(data)]).exit_code == 0

    result = runner.invoke(
        app,
        [
            "backtest",
            "--cutoffs",
            "2026-03-31",
            "--periods",
            "1",
            "--kpis",
            "won_revenue",
            "--draws",
            "200",
            "--format",
            "json",
        ],
    )

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    [run] = report["runs"]
    assert set(run) == {"cutoff", "period_start", "period_end", "kpi", "actual", "forecast",
                        "baselines"}  # fmt: skip
    assert set(run["forecast"]) == {"mean", "p10", "p50", "p90"}
    assert set(report["summary"]["won_revenue"]["funnelcast"]) >= {"mape", "bias", "coverage"}
    assert "logged as MLflow run" in result.stderr


def test_backtest_command_refuses_bad_cutoffs(home: Path) -> None:
    result = CliRunner().invoke(app, ["backtest", "--cutoffs", "2026-02-30"])
    assert result.exit_code == 2
    assert "--cutoffs" in result.stderr
