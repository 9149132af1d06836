"""The training pipeline end to end: MLflow runs, registry versions, the gate and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from funnelcast.cli import app
from scoring.contract import read_canonical
from scoring.funnel import Funnel
from scoring.lead_volume_naive import SeasonalNaiveVolume
from scoring.registry import ModelReference, load_model
from scoring.settings import Settings
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel, write_funnel
from tests.model.test_lead_volume import step_funnel
from training.pipeline import ModelOutcome, gate, train_models
from training.tracking import configure

LEADS = 5_000


@dataclass(frozen=True)
class TrainedHome:
    home: Path
    funnel: Funnel
    outcomes: dict[str, ModelOutcome]


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedHome]:
    """A FUNNELCAST_HOME with a synthetic funnel in the store and every model trained once."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("FUNNELCAST_HOME", str(home))
    patch.delenv("FUNNELCAST_DATABASE_URL", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = home / "data"
    write_funnel(generate_funnel(LEADS, seed=5), data)
    store = FunnelStore.open(Settings().store_url)
    store.ingest(read_canonical(data), source="test")
    funnel = store.load()
    store.close()
    configure(Settings())
    outcomes = train_models(
        funnel,
        ["lead-conversion", "deal-cycle", "deal-value", "lead-volume", "churn"],
        seed=0,
        promote=True,
    )
    yield TrainedHome(home, funnel, {o.name: o for o in outcomes})
    patch.undo()


def test_every_model_is_registered_and_champion(trained_home: TrainedHome) -> None:
    client = mlflow.MlflowClient()
    for name, outcome in trained_home.outcomes.items():
        assert outcome.status == "trained", outcome.message
        assert outcome.decision is not None and outcome.decision.passed
        version = client.get_model_version_by_alias(name, "champion")
        assert str(version.version) == outcome.version
        assert version.run_id is not None
        run = client.get_run(version.run_id)
        assert run.data.tags["data_fingerprint"]
        assert run.data.tags["split"]
        assert run.data.metrics, name
        artifacts = {a.path for a in client.list_artifacts(version.run_id)}
        assert "model_card.md" in artifacts


def test_lead_conversion_run_logs_plots_and_baselines(trained_home: TrainedHome) -> None:
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("lead-conversion", "champion")
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    assert "roc_auc" in run.data.metrics
    assert any(k.startswith("baseline.") for k in run.data.metrics)
    plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    for plot in ("roc.png", "pr.png", "calibration.png", "gain.png", "feature_importance.png"):
        assert f"plots/{plot}" in plots


def test_gate_refuses_a_deliberately_worse_candidate(trained_home: TrainedHome) -> None:
    full = trained_home.funnel
    few = full.leads.sample(frac=0.05, random_state=0)
    small = full.with_tables(leads=few.reset_index(drop=True), stage_events=None, customers=None)
    [worse] = train_models(small, ["lead-conversion"], seed=0, promote=False)
    assert worse.version is not None
    decision = gate("lead-conversion", worse.version, full)
    assert not decision.passed
    assert "roc_auc" in decision.explain()
    champion = mlflow.MlflowClient().get_model_version_by_alias("lead-conversion", "champion")
    assert str(champion.version) == trained_home.outcomes["lead-conversion"].version

    result = CliRunner().invoke(app, ["promote", f"lead-conversion/{worse.version}"])
    assert result.exit_code == 3, result.output
    assert "refused" in result.stdout
    forced = CliRunner().invoke(
        app,
        [
            "promote",
            f"lead-conversion/{worse.version}",
            "--force",
            "--reason",
            "testing the override",
        ],
    )
    assert forced.exit_code == 0, forced.output
    client = mlflow.MlflowClient()
    moved = client.get_model_version_by_alias("lead-conversion", "champion")
    assert str(moved.version) == worse.version
    assert moved.tags["gate_override"] == "testing the override"
    client.set_registered_model_alias(
        "lead-conversion", "champion", trained_home.outcomes["lead-conversion"].version
    )


def test_evaluate_json_has_the_contract_shape(trained_home: TrainedHome) -> None:
    result = CliRunner().invoke(app, ["evaluate", "lead-conversion@champion", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"model", "version", "split", "metrics", "baselines"}
    assert report["model"] == "lead-conversion"
    assert report["version"] == trained_home.outcomes["lead-conversion"].version
    assert 0.5 < report["metrics"]["roc_auc"] <= 1.0
    assert report["baselines"]
    assert all("roc_auc" in metrics for metrics in report["baselines"].values())


def test_same_seed_same_metrics(trained_home: TrainedHome) -> None:
    [again] = train_models(trained_home.funnel, ["lead-conversion"], seed=0, promote=False)
    first = trained_home.outcomes["lead-conversion"].result
    assert first is not None and again.result is not None
    assert again.result.evaluation.metrics == first.evaluation.metrics


def test_unknown_model_reference_is_a_usage_error(trained_home: TrainedHome) -> None:
    result = CliRunner().invoke(app, ["evaluate", "lead-scoring"])
    assert result.exit_code == 2
    assert "unknown model" in result.stderr


def test_undated_data_skips_time_models_with_a_message(trained_home: TrainedHome) -> None:
    undated = trained_home.funnel.with_tables(dated=False, stage_events=None, customers=None)
    outcomes = {
        o.name: o
        for o in train_models(
            undated, ["deal-cycle", "lead-volume", "churn"], seed=0, promote=False
        )
    }
    for name in ("deal-cycle", "lead-volume", "churn"):
        assert outcomes[name].status == "skipped"
        assert outcomes[name].message


def test_a_seasonal_naive_champion_is_registered_and_served(trained_home: TrainedHome) -> None:
    # A history ending in a level shift: the seasonal naive beats the count regression, so it
    # is what gets logged, registered and (through the gate) made champion.
    [outcome] = train_models(step_funnel(seed=0), ["lead-volume"], seed=0, promote=True)
    assert outcome.result is not None and outcome.version is not None
    assert outcome.result.params["model_kind"] == "seasonal_naive"
    decision = outcome.decision
    assert decision is not None and decision.passed, decision and decision.explain()
    model, version = load_model(ModelReference.parse("lead-volume"), mlflow.get_tracking_uri())
    assert isinstance(model, SeasonalNaiveVolume) and version == outcome.version
    rows = model.predict_frame(pd.DataFrame({"period_start": ["2026-01-01"]}))
    assert rows["p50"][0] > 0
    regression = trained_home.outcomes["lead-volume"].version
    assert regression is not None
    mlflow.MlflowClient().set_registered_model_alias("lead-volume", "champion", regression)
