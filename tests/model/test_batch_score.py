"""`funnelcast score`: batch scoring of files and mapped exports with the registered champions.

The champions are trained once, on a small synthetic funnel, into a FUNNELCAST_HOME of this
module; each test scores files it writes in its own folder.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from funnelcast.cli import app
from scoring.batch_score import (
    NO_CONVERSION_MODEL,
    BatchOptions,
    score_file,
    scorer_from_champions,
)
from scoring.champions import SCORING_MODELS, load_champions
from scoring.contract import validate_leads
from scoring.lead_scores import SCORE_COLUMNS, LeadScorer
from scoring.mapping import apply_mapping
from scoring.mapping_spec import load_mapping
from scoring.predict_threads import predict_options, set_predict_threads
from scoring.settings import Settings
from scoring.synthetic import generate_funnel
from scoring.tables import read_table
from tests.realdata import DATA_FOLDERS, mapped
from training.pipeline import train_models
from training.tracking import configure

LEADS = 4_000
FORMULA_ID = "=cmd|' /C calc'!A0"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class ScoringHome:
    home: Path
    leads: pd.DataFrame  # the generator's leads table, as `funnelcast generate` writes it
    scorer: LeadScorer  # the champions, as `funnelcast score` loads them


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoringHome]:
    """A FUNNELCAST_HOME whose lead-conversion, deal-cycle and deal-value are champions."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("FUNNELCAST_HOME", str(home))
    patch.delenv("FUNNELCAST_DATABASE_URL", raising=False)
    # MLflow exports its tracking URI to the environment: set here, so that teardown clears it.
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    drawn = generate_funnel(LEADS, seed=21)
    settings = Settings()
    configure(settings)
    for outcome in train_models(drawn.as_funnel(), list(SCORING_MODELS), seed=0, promote=True):
        assert outcome.status == "trained", outcome.message
    champions = load_champions(settings.tracking_uri, settings.models_dir, SCORING_MODELS)
    yield ScoringHome(home, drawn.leads, scorer_from_champions(champions))
    patch.undo()


@pytest.fixture(autouse=True)
def one_predict_thread() -> Iterator[None]:
    """Score with one thread, and leave the process's setting as it was found."""
    before = int(predict_options().get("num_threads", 0))
    set_predict_threads(1)
    yield
    set_predict_threads(before)


def score(*args: str) -> Result:
    return CliRunner().invoke(app, ["score", "--threads", "1", *args])


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False, date_format=DATE_FORMAT, lineterminator="\n")
    return path


def reference(scorer: LeadScorer, raw_leads: pd.DataFrame) -> pd.DataFrame:
    """The scores of leads typed as ingest types them, straight from `LeadScorer`."""
    return scorer.score_frame(validate_leads(raw_leads.reset_index(drop=True), "leads"))


def assert_same_scores(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def test_parquet_file_scores_equal_the_lead_scorer(trained: ScoringHome, tmp_path: Path) -> None:
    source = tmp_path / "leads.parquet"
    trained.leads.to_parquet(source, index=False)
    out = tmp_path / "scores.parquet"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert len(scores) == LEADS
    assert_same_scores(scores, reference(trained.scorer, trained.leads))
    assert f"scored {LEADS:,} leads" in result.output
    assert not (tmp_path / "scores.parquet.rejects.csv").exists()
    assert leftovers(tmp_path) == []


def test_csv_file_scores_equal_the_lead_scorer(trained: ScoringHome, tmp_path: Path) -> None:
    """Text from CSV ("true", "42") is typed as ingest types it, so the scores are the same."""
    source = write_csv(trained.leads.head(500), tmp_path / "leads.csv")
    out = tmp_path / "scores.csv"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"lead_id": str, "grade": str})
    expected = trained.scorer.score_frame(validate_leads(read_table(source), str(source)))
    assert_same_scores(scores, expected)
    assert_same_scores(scores, reference(trained.scorer, trained.leads.head(500)))


def test_tiny_chunks_give_the_same_file_as_one_chunk(trained: ScoringHome, tmp_path: Path) -> None:
    source = tmp_path / "leads.parquet"
    trained.leads.head(300).to_parquet(source, index=False)
    whole, chunked = tmp_path / "whole.parquet", tmp_path / "chunked.parquet"

    assert score("--in", str(source), "--out", str(whole)).exit_code == 0
    result = score("--in", str(source), "--out", str(chunked), "--chunk-rows", "7")

    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(chunked), pd.read_parquet(whole))


def test_rejected_rows_are_listed_and_the_rest_scored(trained: ScoringHome, tmp_path: Path) -> None:
    leads = trained.leads.head(50).reset_index(drop=True)
    frame = leads.copy()
    frame["created_at"] = frame["created_at"].dt.strftime(DATE_FORMAT)
    frame["closed_at"] = frame["closed_at"].dt.strftime(DATE_FORMAT)
    frame = frame.astype(object)
    frame.loc[3, "lead_id"] = "  "
    frame.loc[5, "lead_id"] = leads["lead_id"].iloc[4]
    frame.loc[7, "created_at"] = "next tuesday"
    frame.loc[8, "created_at"] = None
    frame.loc[10, "employees"] = "many"  # text in a numeric feature: not given, not a reject
    source = write_csv(frame, tmp_path / "leads.csv")
    out = tmp_path / "scores.csv"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(tmp_path / "scores.csv.rejects.csv", dtype={"lead_id": str})
    assert list(rejects.columns) == ["line", "lead_id", "reason"]
    # The header is line 1, so row i of the frame is line i + 2.
    assert rejects["line"].tolist() == [5, 6, 7, 9, 10]
    reasons = dict(zip(rejects["line"], rejects["reason"], strict=True))
    assert reasons[5] == "lead_id is missing"
    assert reasons[6].startswith("duplicate lead_id: 2 rows") and reasons[6] == reasons[7]
    assert "'next tuesday' is not a date" in reasons[9]
    assert "created_at is missing" in reasons[10]
    assert rejects.loc[rejects["line"] == 6, "lead_id"].item() == leads.loc[4, "lead_id"]

    scores = pd.read_csv(out, dtype={"lead_id": str, "grade": str})
    kept = leads.drop(index=[3, 4, 5, 7, 8])
    assert scores["lead_id"].tolist() == kept["lead_id"].tolist()
    with_text = kept.copy()
    with_text["employees"] = with_text["employees"].astype(float)
    with_text.loc[10, "employees"] = np.nan
    assert_same_scores(scores, reference(trained.scorer, with_text))
    assert "scored 45 leads" in result.output
    assert "rejected 5 rows" in result.output and "scores.csv.rejects.csv" in result.output


def test_when_every_row_is_rejected_exit_2_and_the_rejects_stay(
    trained: ScoringHome, tmp_path: Path
) -> None:
    source = tmp_path / "leads.csv"
    source.write_text("lead_id,created_at\n,2024-01-01\nL2,someday\n")
    out = tmp_path / "scores.csv"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 2, result.output
    assert "all 2 rows were rejected" in result.output
    assert not out.exists()
    rejects = pd.read_csv(tmp_path / "scores.csv.rejects.csv")
    assert rejects["line"].tolist() == [2, 3]


def test_a_second_clean_run_removes_stale_rejects(trained: ScoringHome, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    stale = tmp_path / "scores.parquet.rejects.csv"
    stale.write_text("line,lead_id,reason\n2,x,old\n")
    source = tmp_path / "leads.parquet"
    trained.leads.head(20).to_parquet(source, index=False)

    assert score("--in", str(source), "--out", str(out)).exit_code == 0
    assert not stale.exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("leads.csv", b"lead_id;created_at\nL1;2024-01-01\n", "delimited by ';'"),
        ("leads.csv", b"id,created_at\nL1,2024-01-01\n", "no lead_id column"),
        ("leads.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8"),
        ("leads.csv", b"", "the file is empty"),
        ("leads.csv", b"lead_id,created_at\nL1,2024-01-01\nL2,2024-01-02,x,y\n", "malformed CSV"),
        ("leads.parquet", b"PAR1 this is no parquet", "not a readable Parquet file"),
        ("leads.xlsx", b"whatever", "use .csv or .parquet"),
    ],
)
def test_unreadable_input_is_exit_2_naming_the_file(
    trained: ScoringHome, tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    out = tmp_path / "scores.csv"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 2, result.output
    assert str(source) in result.output and problem in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_failure_midway_leaves_no_output(trained: ScoringHome, tmp_path: Path) -> None:
    source = tmp_path / "leads.parquet"
    trained.leads.head(100).to_parquet(source, index=False)
    out = tmp_path / "scores.parquet"
    broken = copy.copy(trained.scorer)
    calls = []

    def fail_second(leads: pd.DataFrame, explain: bool = False) -> pd.DataFrame:
        calls.append(len(leads))
        if len(calls) == 2:
            raise OSError("disk full")
        return trained.scorer.score_frame(leads, explain)

    broken.score_frame = fail_second  # type: ignore[method-assign]

    with pytest.raises(OSError, match="disk full"):
        score_file(broken, source, out, BatchOptions(text_cell=str, chunk_rows=40))

    assert not out.exists() and leftovers(tmp_path) == []


def test_csv_output_neutralises_formulas(trained: ScoringHome, tmp_path: Path) -> None:
    leads = trained.leads.head(3).copy()
    leads["lead_id"] = [FORMULA_ID, "+41 22 555 01", "L-ok"]
    source = tmp_path / "leads.parquet"
    leads.to_parquet(source, index=False)
    out = tmp_path / "scores.csv"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 0, result.output
    cells = pd.read_csv(out, dtype=str)["lead_id"].tolist()
    assert cells == ["'" + FORMULA_ID, "'+41 22 555 01", "L-ok"]


def test_explain_adds_reasons_as_json(trained: ScoringHome, tmp_path: Path) -> None:
    source = tmp_path / "leads.parquet"
    trained.leads.head(20).to_parquet(source, index=False)
    out = tmp_path / "scores.parquet"

    result = score("--in", str(source), "--out", str(out), "--explain")

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert list(scores.columns) == [*SCORE_COLUMNS, "reasons"]
    first = json.loads(scores["reasons"].iloc[0])
    assert set(first) == {"positive", "negative"}
    assert first["positive"] or first["negative"]


def test_leads_without_created_at_get_no_timing(trained: ScoringHome, tmp_path: Path) -> None:
    source = tmp_path / "leads.parquet"
    trained.leads.head(50).drop(columns=["created_at"]).to_parquet(source, index=False)
    out = tmp_path / "scores.parquet"

    result = score("--in", str(source), "--out", str(out))

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert scores["p_won_30d"].isna().all() and scores["expected_days_to_close"].isna().all()
    expected = reference(trained.scorer, trained.leads.head(50))
    np.testing.assert_allclose(scores["probability"], expected["probability"], rtol=1e-12)
    assert "no created_at" in result.output


MAPPING = """
name: test_crm
dated: true
horizon_days: 180
sources:
  deals: {file: deals.csv}
  accounts: {file: accounts.csv}
leads:
  from: deals
  join:
    - {source: accounts, key: Account}
  columns:
    lead_id: Opportunity ID
    created_at: Created On
    closed_at: Closed On
    account_id: Account
  outcome:
    column: Status
    values: {Open: open, Won: won, Lost: lost}
  rename: {Industry: industry}
  features: [industry, company_size, employees, region, source, seniority, email_opens,
             web_visits, demo_requested]
"""


def write_export(leads: pd.DataFrame, folder: Path, main: str = "deals.csv") -> None:
    """`leads` as a CRM would export them: renamed columns, a status, regions in a side table."""
    folder.mkdir(exist_ok=True)
    deals = pd.DataFrame(
        {
            "Opportunity ID": leads["lead_id"],
            "Created On": leads["created_at"].dt.strftime(DATE_FORMAT),
            "Status": leads["outcome"].str.capitalize(),
            "Closed On": leads["closed_at"].dt.strftime(DATE_FORMAT),
            "Account": leads["account_id"],
            "Industry": leads["industry"],
            **{
                c: leads[c]
                for c in (
                    "company_size",
                    "employees",
                    "source",
                    "seniority",
                    "email_opens",
                    "web_visits",
                    "demo_requested",
                )
            },
        }
    )
    write_csv(deals, folder / main)
    regions = pd.DataFrame({"Account": leads["account_id"], "region": leads["region"]})
    write_csv(regions, folder / "accounts.csv")


def test_mapped_export_scores_as_ingest_maps_it(trained: ScoringHome, tmp_path: Path) -> None:
    leads = trained.leads.head(60).reset_index(drop=True)
    export = tmp_path / "export"
    write_export(leads, export)
    mapping_file = tmp_path / "crm.yaml"
    mapping_file.write_text(MAPPING)
    expected = trained.scorer.score_frame(
        apply_mapping(load_mapping(str(mapping_file)), export).funnel.leads
    )
    bad = pd.read_csv(export / "deals.csv", dtype=str, keep_default_na=False)
    bad.loc[2, "Created On"] = "yesterday"
    bad.to_csv(export / "deals.csv", index=False, lineterminator="\n")
    out = tmp_path / "scores.csv"

    result = score("--mapping", str(mapping_file), "--data-dir", str(export), "--out", str(out))

    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"lead_id": str, "grade": str})
    assert_same_scores(scores, expected.drop(index=2))
    rejects = pd.read_csv(tmp_path / "scores.csv.rejects.csv", dtype=str)
    assert rejects.to_dict("records") == [
        {"line": "4", "lead_id": leads.loc[2, "lead_id"], "reason": "created_at: not a date"}
    ]


def test_a_mapped_export_with_no_good_row_keeps_its_rejects(
    trained: ScoringHome, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    write_export(trained.leads.head(3), export)
    deals = pd.read_csv(export / "deals.csv", dtype=str, keep_default_na=False)
    deals["Created On"] = "soon"
    deals.to_csv(export / "deals.csv", index=False, lineterminator="\n")
    mapping_file = tmp_path / "crm.yaml"
    mapping_file.write_text(MAPPING)
    out = tmp_path / "scores.csv"

    result = score("--mapping", str(mapping_file), "--data-dir", str(export), "--out", str(out))

    assert result.exit_code == 2, result.output
    assert "all 3 rows were rejected" in result.output
    assert not out.exists()
    assert len(pd.read_csv(tmp_path / "scores.csv.rejects.csv")) == 3


def test_in_replaces_the_mapped_main_table(trained: ScoringHome, tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_export(trained.leads.head(30), export)
    fresh = trained.leads.iloc[100:140].reset_index(drop=True)
    write_export(fresh, tmp_path / "fresh", main="new_deals.csv")
    # The side table in the export folder must cover the new leads' accounts.
    write_export(pd.concat([trained.leads.head(30), fresh]), tmp_path / "both")
    (export / "accounts.csv").write_bytes((tmp_path / "both" / "accounts.csv").read_bytes())
    mapping_file = tmp_path / "crm.yaml"
    mapping_file.write_text(MAPPING)
    out = tmp_path / "scores.parquet"

    result = score(
        "--mapping", str(mapping_file), "--data-dir", str(export),
        "--in", str(tmp_path / "fresh" / "new_deals.csv"), "--out", str(out),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert scores["lead_id"].tolist() == fresh["lead_id"].tolist()
    assert_same_scores(scores, reference(trained.scorer, fresh))


def test_without_a_conversion_champion_exit_2_with_the_train_hint(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    source = home / "leads.csv"
    source.write_text("lead_id,created_at\nL1,2024-01-01\n")

    result = score("--in", str(source), "--out", str(home / "scores.csv"))

    assert result.exit_code == 2, result.output
    assert NO_CONVERSION_MODEL in result.output
    assert not (home / "scores.csv").exists()


@pytest.mark.realdata
def test_a_real_export_is_scored_through_its_shipped_mapping(
    trained: ScoringHome, real_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "olist.parquet"

    result = score(
        "--mapping", "olist", "--data-dir", str(real_data_dir / DATA_FOLDERS["olist"]),
        "--out", str(out),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    leads = mapped(real_data_dir, "olist").funnel.leads
    assert scores["lead_id"].tolist() == leads["lead_id"].tolist()
    assert scores["probability"].between(0, 1).all()
