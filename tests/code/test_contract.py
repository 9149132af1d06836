"""Bad input gets one clear error naming the file, column, lines and problem; nothing loads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring.contract import read_canonical
from scoring.errors import DataContractError

HEADER = "lead_id,created_at,outcome,closed_at,amount,industry\n"
GOOD_ROWS = [
    "L1,2026-01-05,won,2026-02-01,1200,software\n",
    "L2,2026-01-06,lost,2026-01-20,,retail\n",
    "L3,2026-01-07,open,,500,software\n",
]


def write_leads(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "leads.csv"
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


def contract_error(folder: Path) -> str:
    with pytest.raises(DataContractError) as caught:
        read_canonical(folder)
    return str(caught.value)


def test_good_file_loads_typed(tmp_path: Path) -> None:
    write_leads(tmp_path, GOOD_ROWS)
    funnel = read_canonical(tmp_path)
    leads = funnel.leads
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]
    assert pd.api.types.is_datetime64_any_dtype(leads["created_at"])
    assert leads.loc[2, "closed_at"] is pd.NaT
    assert leads["amount"].isna().tolist() == [False, True, False]
    assert funnel.features == ("industry",)
    assert funnel.observed_until == pd.Timestamp("2026-02-01")


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        pytest.param(
            GOOD_ROWS,
            "lead_id,created_at,closed_at\n",
            ["missing required column", "outcome"],
            id="missing-column",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-02-30,open,,,x\n"],
            HEADER,
            ["created_at", "not a date", "line 5", "2026-02-30"],
            id="bad-date",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-03-10,won,2026-03-01,10,x\n"],
            HEADER,
            ["closed_at", "before created_at", "line 5"],
            id="closed-before-created",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-03-10,lost,,10,x\n"],
            HEADER,
            ["closed_at", "won or lost lead needs closed_at", "line 5"],
            id="closed-without-date",
        ),
        pytest.param(
            [*GOOD_ROWS, "L2,2026-03-10,open,,10,x\n"],
            HEADER,
            ["lead_id", "duplicate", "lines 3, 5", "'L2'"],
            id="duplicate-id",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-03-10,maybe,,10,x\n"],
            HEADER,
            ["outcome", "must be one of won, lost, open", "line 5", "'maybe'"],
            id="unknown-outcome",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-03-10,open,,-5,x\n"],
            HEADER,
            ["amount", "negative amount", "line 5"],
            id="negative-amount",
        ),
        pytest.param(
            [*GOOD_ROWS, "L4,2026-03-10,open,,lots,x\n"],
            HEADER,
            ["amount", "not a number", "line 5", "'lots'"],
            id="amount-not-number",
        ),
    ],
)
def test_each_bad_input_is_named(
    tmp_path: Path, rows: list[str], header: str, expected: list[str]
) -> None:
    path = write_leads(tmp_path, rows, header)
    message = contract_error(tmp_path)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    write_leads(tmp_path, [*GOOD_ROWS, "L4,yesterday,maybe,,-1,x\n"])
    message = contract_error(tmp_path)
    assert "3 problems" in message
    assert "not a date" in message and "must be one of" in message and "negative" in message


def test_row_list_is_cut_after_five(tmp_path: Path) -> None:
    rows = [f"L{i},2026-01-01,unknown,,,x\n" for i in range(20)]
    message = contract_error(tmp_path) if write_leads(tmp_path, rows) else ""
    assert "lines 2, 3, 4, 5, 6 and 15 more" in message


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_bytes(b"")
    assert "the file is empty" in contract_error(tmp_path)


def test_header_only(tmp_path: Path) -> None:
    write_leads(tmp_path, [])
    assert "header but no leads" in contract_error(tmp_path)


def test_wrong_delimiter(tmp_path: Path) -> None:
    rows = [r.replace(",", ";") for r in GOOD_ROWS]
    write_leads(tmp_path, rows, HEADER.replace(",", ";"))
    message = contract_error(tmp_path)
    assert "delimited by ';'" in message


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = write_leads(tmp_path, GOOD_ROWS)
    path.write_bytes(path.read_bytes() + "L9,2026-01-01,open,,,Malm\u00f6\n".encode("latin-1"))
    message = contract_error(tmp_path)
    assert "not valid utf-8" in message and "line 5" in message


def test_missing_leads_file(tmp_path: Path) -> None:
    assert "no leads.parquet or leads.csv" in contract_error(tmp_path)


def test_undated_data_is_valid(tmp_path: Path) -> None:
    write_leads(tmp_path, ["A,won,1\n", "B,lost,0\n"], "lead_id,outcome,visits\n")
    funnel = read_canonical(tmp_path, dated=False)
    assert not funnel.dated
    assert funnel.observed_until is None
    assert funnel.leads["outcome"].tolist() == ["won", "lost"]


def test_undated_data_fails_as_dated(tmp_path: Path) -> None:
    write_leads(tmp_path, ["A,won,1\n"], "lead_id,outcome,visits\n")
    assert "created_at" in contract_error(tmp_path)


def test_trailing_delimiter_column_is_dropped(tmp_path: Path) -> None:
    write_leads(tmp_path, [r.rstrip("\n") + ",\n" for r in GOOD_ROWS], HEADER.rstrip() + ",\n")
    funnel = read_canonical(tmp_path)
    assert funnel.attribute_columns == ["industry"]


def test_attribute_types_are_inferred(tmp_path: Path) -> None:
    write_leads(
        tmp_path,
        ["A,2026-01-01,open,,,3,true,x\n", "B,2026-01-02,open,,,,false,y\n"],
        "lead_id,created_at,outcome,closed_at,amount,visits,demo,city\n",
    )
    leads = read_canonical(tmp_path).leads
    assert leads["visits"].dtype == "float64" and leads["visits"].isna().tolist() == [False, True]
    assert leads["demo"].tolist() == [True, False]
    assert leads["city"].tolist() == ["x", "y"]


def test_parquet_with_timezones_is_converted_to_utc(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "lead_id": ["A"],
            "created_at": pd.to_datetime(["2026-01-01 10:00"]).tz_localize("Europe/Stockholm"),
            "outcome": ["open"],
        }
    )
    frame.to_parquet(tmp_path / "leads.parquet")
    leads = read_canonical(tmp_path).leads
    assert leads.loc[0, "created_at"] == pd.Timestamp("2026-01-01 09:00")


def test_stage_events_must_name_known_leads_and_stages(tmp_path: Path) -> None:
    write_leads(tmp_path, GOOD_ROWS)
    (tmp_path / "stage_events.csv").write_text(
        "lead_id,stage,entered_at\nL1,lead,2026-01-05\nL9,lead,2026-01-05\nL1,haggling,2026-01-09\n"
    )
    message = contract_error(tmp_path)
    assert "stage_events.csv" in message
    assert "not in the leads table" in message and "'L9'" in message
    assert "unknown stage" in message and "'haggling'" in message


def test_customers_checked(tmp_path: Path) -> None:
    write_leads(tmp_path, GOOD_ROWS)
    (tmp_path / "customers.csv").write_text(
        "account_id,started_at,churned_at,value\nA1,2026-02-01,2026-01-01,10\nA1,2026-02-01,,5\n"
    )
    message = contract_error(tmp_path)
    assert "customers.csv" in message
    assert "churned_at is before started_at" in message and "duplicate account_id" in message
