"""Dataset mappings: the YAML format, its errors, and rules that report what they touched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from scoring.errors import DataContractError, MappingError
from scoring.mapping import apply_mapping
from scoring.mapping_spec import load_mapping

DEALS = """deal,first_seen,state,closed,value,product,rep,secret
D1,2026-01-02,Won,2026-02-01,900,basic,ana,x
D2,2026-01-03,Lost,2026-01-10,0,pro,bo,y
D3,2026-01-04,Working,,,pro,ana,z
D4,,Working,,,basic,bo,w
D5,2026-01-09,Won,2026-01-05,400,basic,ana,v
"""
PRODUCTS = "product,list_price\nbasic,500\npro,1500\n"

MAPPING = """
name: tiny
horizon_days: 90
sources:
  deals: {file: deals.csv}
  products: {file: products.csv}
leads:
  from: deals
  join:
    - {source: products, key: product}
  columns: {lead_id: deal, created_at: first_seen, closed_at: closed, owner: rep}
  outcome:
    column: state
    values: {Won: won, Lost: lost, Working: open}
  amount:
    column: value
    by_outcome: {open: list_price, lost: list_price}
  features: [owner, product, list_price]
  exclude: {secret: only filled in after the deal closes}
rules:
  - drop_missing: [created_at]
    why: no date at all
  - clamp_closed_before_created: true
    why: a close recorded before creation is a typo
"""


def write(folder: Path, mapping: str = MAPPING, deals: str = DEALS) -> Path:
    (folder / "deals.csv").write_text(deals)
    (folder / "products.csv").write_text(PRODUCTS)
    path = folder / "tiny.yaml"
    path.write_text(mapping)
    return path


def test_mapping_builds_canonical_leads_and_reports_rules(tmp_path: Path) -> None:
    data = apply_mapping(load_mapping(str(write(tmp_path))), tmp_path)
    leads = data.funnel.leads.set_index("lead_id")
    assert list(leads.index) == ["D1", "D2", "D3", "D5"]
    assert leads["outcome"].tolist() == ["won", "lost", "open", "won"]
    assert leads["amount"].tolist() == [900.0, 1500.0, 1500.0, 400.0]
    assert leads.at["D5", "closed_at"] == pd.Timestamp("2026-01-09")
    assert "secret" not in leads.columns
    rules = {r.rule: (r.rows, r.action) for r in data.reports}
    assert rules["drop_missing created_at"] == (1, "dropped")
    assert rules["clamp_closed_before_created"] == (1, "repaired")
    assert rules["join products"] == (0, "unmatched")
    assert data.source_rows == 5 and data.dropped_rows == 1
    assert data.funnel.horizon_days == 90
    assert data.funnel.features == ("owner", "product", "list_price")


def test_builtin_mapping_names_resolve() -> None:
    assert load_mapping("maven").name == "maven"
    with pytest.raises(MappingError, match="built-in: maven, olist, x_education"):
        load_mapping("salesforce")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("features: [owner, product, list_price]", "features: [owner, list_price]"),
            "columns ['product'] are not declared",
        ),
        (
            ("  exclude: {secret: only filled in after the deal closes}\n", ""),
            "columns ['secret'] are not declared",
        ),
        (("Working: open", "Working: pending"), "leads.outcome.values.Working"),
        (("horizon_days: 90", "horizon_days: -3"), "horizon_days"),
        (("  columns:", "  colums:"), "colums"),
        (
            ("{source: products, key: product}", "{source: prices, key: product}"),
            "unknown source(s) ['prices']",
        ),
        (("    why: no date at all\n", ""), "rules.0.why"),
        (
            (
                "features: [owner, product, list_price]",
                "features: [owner, product, list_price, secret]",
            ),
            "both in features and exclude",
        ),
    ],
)
def test_mapping_mistakes_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in MAPPING
    path = write(tmp_path, MAPPING.replace(old, new))
    with pytest.raises(MappingError) as caught:
        apply_mapping(load_mapping(str(path)), tmp_path)
    assert message in str(caught.value)


def test_yaml_syntax_error_is_a_mapping_error(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(str(path))


def test_unknown_outcome_value_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, deals=DEALS + "D6,2026-01-09,Stalled,,,basic,ana,q\n")
    with pytest.raises(DataContractError) as caught:
        apply_mapping(load_mapping(str(path)), tmp_path)
    assert "deals.csv" in str(caught.value) and "'Stalled'" in str(caught.value)
    assert "line 7" in str(caught.value)


def test_bad_date_names_the_source_line(tmp_path: Path) -> None:
    path = write(tmp_path, deals=DEALS + "D6,09/01/2026,Working,,,basic,ana,q\n")
    with pytest.raises(DataContractError) as caught:
        apply_mapping(load_mapping(str(path)), tmp_path)
    assert "created_at" in str(caught.value) and "line 7" in str(caught.value)


def test_join_key_must_be_unique(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "products.csv").write_text(PRODUCTS + "basic,600\n")
    with pytest.raises(MappingError, match="not unique"):
        apply_mapping(load_mapping(str(path)), tmp_path)


def test_sql_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path)
    database = tmp_path / "crm.db"
    with sqlite3.connect(database) as connection:
        pd.read_csv(tmp_path / "deals.csv", dtype=str).to_sql("deals", connection, index=False)
    monkeypatch.setenv("CRM_URL", f"sqlite:///{database}")
    mapping = MAPPING.replace(
        "deals: {file: deals.csv}", "deals: {sql: {url_env: CRM_URL, query: 'SELECT * FROM deals'}}"
    )
    path = tmp_path / "sql.yaml"
    path.write_text(mapping)
    data = apply_mapping(load_mapping(str(path)), tmp_path)
    assert sorted(data.funnel.leads["lead_id"]) == ["D1", "D2", "D3", "D5"]


def test_sql_source_needs_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path)
    monkeypatch.delenv("CRM_URL", raising=False)
    path = tmp_path / "sql.yaml"
    path.write_text(
        MAPPING.replace(
            "deals: {file: deals.csv}", "deals: {sql: {url_env: CRM_URL, table: deals}}"
        )
    )
    with pytest.raises(MappingError, match="set the environment variable CRM_URL"):
        apply_mapping(load_mapping(str(path)), tmp_path)
