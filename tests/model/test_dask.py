"""Dask: lead-conversion trained on a 2-worker local cluster, and scoring on it (issue 7).

The cluster is started once for the module (worker processes on 127.0.0.1). The single-machine
references are the session's runs: `large_run` (50,000 synthetic leads) for training, and the
`trained_forecast` models for scoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import scoring.dask_cluster
from funnelcast.cli import app
from scoring.batch_output import rejects_path
from scoring.batch_score import BatchOptions, score_file
from scoring.batch_score_dask import score_parquet_dask, scores_frame
from scoring.dask_cluster import Cluster, dask_client
from scoring.errors import FunnelcastInputError
from scoring.lead_scores import LeadScorer
from tests.model.conftest import SyntheticRun, Trained
from training.lead_conversion import train_lead_conversion
from training.lead_conversion_dask import _LABEL, DaskBoosting, _best_rounds, _raw_scores


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with dask_client(None, workers=2) as started:
        assert started.local and len(started.workers) == 2
        yield started


def test_training_spreads_the_data_and_matches_single_machine_auc(
    cluster: Cluster, large_run: SyntheticRun, tmp_path: Path
) -> None:
    boosting = DaskBoosting(cluster, tmp_path / "work")
    result = train_lead_conversion(large_run.funnel, seed=0, boosting=boosting)
    single = large_run.result
    # The same evaluation slice (the split does not depend on the engine) ...
    assert np.array_equal(result.evaluation_lead_ids, single.evaluation_lead_ids)
    # ... and both workers held training partitions: neither had all of them.
    held = boosting.rows_by_worker
    assert sorted(held) == cluster.workers, held
    fit_rows = sum(held.values())
    assert all(0 < rows < fit_rows for rows in held.values()), held
    params = result.candidates["lightgbm"].params
    assert params["engine"] == "dask" and params["dask_workers_with_data"] == 2
    dask_auc = result.metrics["lightgbm"]["roc_auc"]
    single_auc = single.metrics["lightgbm"]["roc_auc"]
    print(f"ROC-AUC on the evaluation slice: dask {dask_auc:.4f}, single machine {single_auc:.4f}")
    assert abs(dask_auc - single_auc) <= 0.01
    # The calibration is fitted on held-out leads: mean prediction near the base rate.
    metrics = result.metrics["lightgbm"]
    assert abs(metrics["mean_prediction"] - metrics["base_rate"]) < 0.03
    assert not list((tmp_path / "work").iterdir())  # the partitioned Parquet is removed


def test_the_same_booster_can_be_sent_to_the_workers_twice_in_a_row(cluster: Cluster) -> None:
    """The fit sends one booster for the validation curve, then again for the held-out scores.
    A content-hashed scatter gave both the same key, and the second could race the release of
    the first ("lost dependencies", a failed CI run): each send must stand on its own."""
    import dask.dataframe as dd
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    frame[_LABEL] = (frame["x"] + rng.normal(size=400) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(frame[["x", "y"]], frame[_LABEL]),
        num_boost_round=20,
    )
    validate = dd.from_pandas(frame, npartitions=4)
    expected = booster.predict(frame[["x", "y"]].to_numpy(np.float32), raw_score=True)
    for _ in range(5):
        best, _curve = _best_rounds(cluster.client, validate, ["x", "y"], booster)
        raw, won = _raw_scores(cluster.client, validate, ["x", "y"], booster, 20)
        assert 10 <= best <= 20
        np.testing.assert_allclose(raw, expected, rtol=1e-6)
        assert np.array_equal(won, frame[_LABEL].to_numpy())


def _leads_to_score(trained: Trained) -> pd.DataFrame:
    leads = trained.funnel.leads.head(3000).copy()
    leads = leads[["lead_id", "created_at", *trained.funnel.features]].reset_index(drop=True)
    ids = leads["lead_id"].astype(str).to_numpy(dtype=object)
    ids[5] = ids[6]  # a duplicate id: both rows rejected
    ids[2700] = None  # no id: rejected
    leads["lead_id"] = ids
    leads.loc[2500, "created_at"] = pd.NaT  # no creation date: rejected (timing needs it)
    return leads


def test_dask_scoring_equals_single_machine_scoring(
    cluster: Cluster, trained_forecast: Trained, tmp_path: Path
) -> None:
    models = trained_forecast.models
    scorer = LeadScorer(models.conversion, models.cycle, models.value, {"lead-conversion": "t"})
    leads = _leads_to_score(trained_forecast)
    parts = tmp_path / "leads"
    parts.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(leads)), 4)):
        leads.iloc[rows].to_parquet(parts / f"part-{index}.parquet", index=False)
    whole = tmp_path / "leads.parquet"
    leads.to_parquet(whole, index=False)

    options = BatchOptions(str)
    single = score_file(scorer, whole, tmp_path / "single.parquet", options)
    out = tmp_path / "scores"
    dask = score_parquet_dask(cluster, scorer, parts, out, options)

    assert (dask.scored, dask.rejected) == (single.scored, single.rejected) == (2996, 4)
    expected = pd.read_parquet(tmp_path / "single.parquet").sort_values("lead_id")
    got = scores_frame(out).sort_values("lead_id")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert {p.name for p in out.iterdir()} <= {f"part-{i:05d}.parquet" for i in range(4)}
    expected_rejects = pd.read_csv(rejects_path(tmp_path / "single.parquet"))
    got_rejects = pd.read_csv(rejects_path(out)).sort_values("line")
    pd.testing.assert_frame_equal(
        got_rejects.reset_index(drop=True), expected_rejects.reset_index(drop=True)
    )

    # A second run replaces the first run's parts; a folder holding anything else is refused.
    score_parquet_dask(cluster, scorer, parts, out, options)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(FunnelcastInputError, match="holds other files"):
        score_parquet_dask(cluster, scorer, parts, tmp_path / "other", options)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


def test_cli_trains_and_scores_on_a_local_cluster(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _run("generate", "--leads", "3000", "--seed", "3", "--out", str(data))[0] == 0
    assert _run("ingest", "--data-dir", str(data))[0] == 0
    code, text = _run("train", "--engine", "dask", "--models", "lead-conversion", "--promote")
    assert code == 0, text
    assert "Dask: 2 workers (local, 127.0.0.1)" in text
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("lead-conversion", "champion")
    run = client.get_run(str(version.run_id))
    assert run.data.tags["lightgbm_engine"] == "dask"
    assert run.data.tags["engine"] == "dask"
    assert run.data.params["lightgbm.dask_workers_with_data"] == "2"

    leads = pd.read_parquet(data / "leads.parquet").head(500)
    (tmp_path / "in").mkdir()
    leads.iloc[:250].to_parquet(tmp_path / "in" / "a.parquet", index=False)
    leads.iloc[250:].to_parquet(tmp_path / "in" / "b.parquet", index=False)
    code, text = _run("score", "--engine", "dask", "--in", str(tmp_path / "in"),
                      "--out", str(tmp_path / "scores"))  # fmt: skip
    assert code == 0, text
    assert "scored 500 leads" in text
    scores = scores_frame(tmp_path / "scores")
    assert sorted(scores["lead_id"]) == sorted(leads["lead_id"].astype(str))
    assert scores["probability"].between(0, 1).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--in", "leads.csv"], "--engine dask reads Parquet"),
        (["--in", "missing"], "no such file or folder"),
        (["--in", "empty"], "holds no .parquet files"),
        (["--in", "leads.parquet", "--mapping", "x"], "--mapping runs on one machine"),
        (["--in", "leads.parquet", "--out", "taken.txt"], "is a file"),
    ],
)
def test_cli_dask_scoring_refuses_bad_arguments(
    home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "leads.csv").write_text("lead_id\nL1\n")
    pd.DataFrame({"lead_id": ["L1"]}).to_parquet(tmp_path / "leads.parquet")
    (tmp_path / "empty").mkdir()
    (tmp_path / "taken.txt").write_text("x")
    out = [] if "--out" in args else ["--out", "scores"]
    code, text = _run("score", "--engine", "dask", *args, *out)
    assert code == 2, text
    assert message in text
    assert "Traceback" not in text


def test_an_unreachable_scheduler_is_a_clear_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring.dask_cluster, "CONNECT_SECONDS", 2)
    code, text = _run("train", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2, text
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in text
    assert "Traceback" not in text


def test_the_local_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    psutil = pytest.importorskip("psutil")
    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {psutil.Process().pid}
    listening = [
        c.laddr
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours
    ]
    assert listening, "the cluster should be listening somewhere"
    assert all(address.ip == "127.0.0.1" for address in listening), listening
