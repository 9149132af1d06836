"""A corpus of broken files through `funnelcast ingest` and `funnelcast score`, as a user meets it.

Each broken file gets exit code 2 and a message naming the file, the line and the problem, or,
for `score`, a rejects file; nothing crashes; and a failed ingest leaves every table of the
store exactly as it was. The module trains lead-conversion and deal-cycle once, on a small
synthetic funnel that is also the store each ingest test starts from (a copy per test).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from funnelcast.cli import app
from scoring import store_schema
from scoring.contract import read_canonical
from scoring.settings import Settings
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel, write_funnel
from training.pipeline import train_models
from training.tracking import configure

LEADS = 1_500
HEADER = "lead_id,created_at,outcome,closed_at,amount,industry,employees\n"
GOOD_ROWS = [
    "N1,2026-01-05,won,2026-02-01,1200,software,40\n",
    "N2,2026-01-06,lost,2026-01-20,,retail,12\n",
    "N3,2026-01-07,open,,500,software,7\n",
]
FORMULA = "=cmd|' /C calc'!A0"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MEBIBYTE = 1 << 20
BIG_FIELD_MIB = 100


@dataclass(frozen=True)
class TrainedHome:
    home: Path  # the synthetic funnel in funnel.db; lead-conversion and deal-cycle champions
    leads_csv: Path  # the synthetic leads as `funnelcast generate --format csv` writes them


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedHome]:
    home = tmp_path_factory.mktemp("home")
    data = tmp_path_factory.mktemp("data")
    patch = pytest.MonkeyPatch()
    patch.chdir(data)  # no stray .env
    patch.setenv("FUNNELCAST_HOME", str(home))
    patch.delenv("FUNNELCAST_DATABASE_URL", raising=False)
    # MLflow exports its tracking URI to the environment: set here, so that teardown clears it.
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    write_funnel(generate_funnel(LEADS, seed=5), data, file_format="csv")
    settings = Settings()
    store = FunnelStore.open(settings.store_url)
    store.ingest(read_canonical(data), source=str(data))
    funnel = store.load()
    store.close()
    configure(settings)
    names = ["lead-conversion", "deal-cycle"]
    for outcome in train_models(funnel, names, seed=0, promote=True, threads=1):
        assert outcome.status == "trained", outcome.message
    yield TrainedHome(home, data / "leads.csv")
    patch.undo()


@pytest.fixture
def store_home(trained: TrainedHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's FUNNELCAST_HOME: a copy of the trained funnel store."""
    folder = tmp_path / "home"
    folder.mkdir()
    for path in trained.home.glob("funnel.db*"):
        shutil.copy2(path, folder / path.name)
    monkeypatch.setenv("FUNNELCAST_HOME", str(folder))
    return folder


def stored(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the store at `home`."""
    engine = sa.create_engine(f"sqlite:///{home / 'funnel.db'}")
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(
                    (tuple(row) for row in connection.execute(sa.select(table))), key=repr
                )
                for table in store_schema.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def score(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["score", "--threads", "1", *args])
    return result.exit_code, result.output


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _leads(rows: list[str], header: str = HEADER) -> bytes:
    return (header + "".join(rows)).encode()


_TRUNCATED_PARQUET = parquet_bytes(
    pd.DataFrame(
        {
            "lead_id": ["N1", "N2"],
            "created_at": ["2026-01-05", "2026-01-06"],
            "outcome": ["open"] * 2,
        }
    )
)

# (file, content, fragments of the message besides the file's path); the folder may hold
# other files, given after the broken one.
INGEST_CORPUS: dict[str, tuple[dict[str, bytes], list[str]]] = {
    "wrong-delimiter": (
        {"leads.csv": _leads([r.replace(",", ";") for r in GOOD_ROWS], HEADER.replace(",", ";"))},
        ["delimited by ';'"],
    ),
    "tab-delimited": (
        {"leads.csv": _leads([r.replace(",", "\t") for r in GOOD_ROWS], HEADER.replace(",", "\t"))},
        ["delimited by tab"],
    ),
    "missing-column": (
        {
            "leads.csv": _leads(
                [r.replace(f",{r.split(',')[2]},", ",", 1) for r in GOOD_ROWS],
                HEADER.replace("outcome,", ""),
            )
        },
        ["missing required column(s) outcome", "the file has: lead_id, created_at, closed_at"],
    ),
    "bad-dates": (
        {
            "leads.csv": _leads(
                [
                    GOOD_ROWS[0],
                    "N4,2026-02-30,open,,,retail,3\n",
                    "N5,next tuesday,open,,,retail,3\n",
                    "N6,03/15/2026,open,,,retail,3\n",
                ]
            )
        },
        ["column 'created_at'", "3 rows: not a date", "lines 3, 4, 5", "'2026-02-30'"],
    ),
    "duplicate-ids": (
        {"leads.csv": _leads([*GOOD_ROWS, "N1,2026-01-09,open,,,retail,3\n"])},
        ["column 'lead_id'", "duplicate lead_id", "lines 2, 5", "'N1'"],
    ),
    "truncated-csv": (
        {"leads.csv": _leads([*GOOD_ROWS, "N4,2026-01-08,op"])},
        ["looks truncated", "3 of the header's 7 fields", "line 5"],
    ),
    "truncated-parquet": (
        {"leads.parquet": _TRUNCATED_PARQUET[: len(_TRUNCATED_PARQUET) // 2]},
        ["not a readable Parquet file"],
    ),
    "binary-junk": (
        {"leads.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00" + bytes(range(256))},
        ["not valid utf-8", "line 1"],
    ),
    "mixed-encodings": (
        {
            "leads.csv": _leads(GOOD_ROWS[:2], HEADER.replace("industry", "city")).replace(
                b"software", "Malmö".encode()
            )
            + "N3,2026-01-07,open,,500,Malmö,7\n".encode("latin-1")
        },
        ["not valid utf-8", "line 4", "b'\\xf6"],
    ),
    "utf-16": ({"leads.csv": _leads(GOOD_ROWS).decode().encode("utf-16")}, ["not valid utf-8"]),
    "infinite-amount": (
        {"leads.csv": _leads([GOOD_ROWS[0], "N4,2026-01-08,won,2026-02-02,inf,retail,3\n"])},
        ["column 'amount'", "not a finite number", "line 3", "'inf'"],
    ),
    "bad-stage-events": (
        {
            "stage_events.csv": b"lead_id,stage,entered_at\nN1,lead,2026-01-05\nN1,won,soon\n",
            "leads.csv": _leads(GOOD_ROWS),
        },
        ["column 'entered_at'", "not a date", "line 3", "'soon'"],
    ),
}


@pytest.mark.parametrize(("files", "fragments"), INGEST_CORPUS.values(), ids=INGEST_CORPUS)
def test_a_broken_file_is_exit_2_naming_it_and_the_store_is_unchanged(
    store_home: Path, tmp_path: Path, files: dict[str, bytes], fragments: list[str]
) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name, content in files.items():
        (export / name).write_bytes(content)
    before = stored(store_home)
    assert len(before["leads"]) == LEADS

    code, out, err = run("ingest", "--data-dir", str(export))

    assert code == 2, out + err
    assert f"error: {export / next(iter(files))}" in err
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err + out
    assert stored(store_home) == before


def _write_with_big_field(path: Path, before: str, prefix: str, after: str) -> int:
    """Write the lines `before`, a line of `prefix` and 100 MiB of text, the lines `after`;
    streaming, one MiB in memory. Return the big line's length in bytes."""
    chunk = "x" * MEBIBYTE
    with path.open("w", encoding="utf-8", newline="") as stream:
        stream.write(before + prefix)
        for _ in range(BIG_FIELD_MIB):
            stream.write(chunk)
        stream.write("\n" + after)
    return len(prefix.encode()) + BIG_FIELD_MIB * MEBIBYTE


def test_a_100_mb_field_is_refused_before_it_is_parsed(store_home: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    rows = [r.replace("\n", ",short\n") for r in GOOD_ROWS]
    first = HEADER.replace("\n", ",notes\n") + rows[0]
    size = _write_with_big_field(export / "leads.csv", first, GOOD_ROWS[1].strip() + ",", rows[2])
    before = stored(store_home)
    started = time.perf_counter()

    code, out, err = run("ingest", "--data-dir", str(export))

    assert time.perf_counter() - started < 10  # parsing it took 15 s and 1.2 GB
    assert code == 2, out + err
    assert f"a line of {size:,} bytes" in err and "(line 3)" in err
    assert str(export / "leads.csv") in err
    assert stored(store_home) == before


def test_text_that_looks_like_a_formula_is_stored_as_sent(store_home: Path, tmp_path: Path) -> None:
    """The store is not a spreadsheet: neutralising formulas is the job of the CSV exports."""
    export = tmp_path / "export"
    export.mkdir()
    rows = [
        f'"{FORMULA}",2026-01-05,open,,,"=HYPERLINK(""http://x"")",3\n',
        "+46 8 555,2026-01-06,open,,,@SUM(A1),4\n",
    ]
    (export / "leads.csv").write_bytes(_leads(rows))

    code, out, err = run("ingest", "--data-dir", str(export))

    assert code == 0, out + err
    store = FunnelStore.open(Settings().store_url)
    try:
        leads = store.load_leads([FORMULA, "+46 8 555"]).set_index("lead_id")
    finally:
        store.close()
    assert leads["industry"].to_dict() == {
        FORMULA: '=HYPERLINK("http://x")',
        "+46 8 555": "@SUM(A1)",
    }
    assert len(stored(store_home)["leads"]) == LEADS + 2


# -- score -----------------------------------------------------------------------------------


def synthetic_lines(trained: TrainedHome, count: int) -> list[str]:
    """The header and the first `count` leads of the synthetic leads file, as text lines."""
    with trained.leads_csv.open(encoding="utf-8") as stream:
        return [next(stream) for _ in range(count + 1)]


def no_output(out: Path) -> bool:
    rejects = out.with_name(out.name + ".rejects.csv")
    return not out.exists() and not rejects.exists() and not list(out.parent.glob(".*.tmp"))


def test_score_refuses_a_truncated_file(trained: TrainedHome, tmp_path: Path) -> None:
    lines = synthetic_lines(trained, 21)
    source = tmp_path / "leads.csv"
    source.write_text("".join(lines[:-1]) + lines[-1][:30], encoding="utf-8")
    out = tmp_path / "scores.csv"

    code, output = score("--in", str(source), "--out", str(out))

    assert code == 2, output
    assert f"error: {source}" in output and "looks truncated" in output and "(line 22)" in output
    assert no_output(out)


def test_score_names_the_line_of_another_encoding(trained: TrainedHome, tmp_path: Path) -> None:
    lines = [line.encode() for line in synthetic_lines(trained, 40)]
    industry = lines[30].decode().split(",")[8]
    lines[30] = lines[30].replace(f",{industry},".encode(), ",educación,".encode("latin-1"))
    source = tmp_path / "leads.csv"
    source.write_bytes(b"".join(lines))
    out = tmp_path / "scores.csv"

    code, output = score("--in", str(source), "--out", str(out))

    assert code == 2, output
    assert f"error: {source}" in output and "not UTF-8" in output and "(line 31)" in output
    assert no_output(out)


def test_score_reads_past_a_100_mb_field(trained: TrainedHome, tmp_path: Path) -> None:
    """A column no model reads may hold anything: the leads around it and the lead itself are
    scored, in bounded time (the field is parsed, chunk by chunk, and dropped)."""
    header, *rows = synthetic_lines(trained, 3)
    source = tmp_path / "leads.csv"
    before = header.replace("\n", ",notes\n") + rows[0].replace("\n", ",short\n")
    _write_with_big_field(source, before, rows[1].strip() + ",", rows[2].replace("\n", ",short\n"))
    out = tmp_path / "scores.csv"
    started = time.perf_counter()

    code, output = score("--in", str(source), "--out", str(out))

    assert time.perf_counter() - started < 15
    assert code == 0, output
    assert "scored 3 leads" in output and "rejected 0 rows" in output
    ids = [row.split(",")[0] for row in rows]
    assert pd.read_csv(out, dtype=str)["lead_id"].tolist() == ids
    assert out.stat().st_size < 10_000


def test_score_counts_an_infinite_number_as_not_given(trained: TrainedHome, tmp_path: Path) -> None:
    """ "inf" in a numeric attribute scores as an empty cell, as any other text does (it made
    the whole run fail with exit 1)."""
    header, *rows = synthetic_lines(trained, 3)
    column = header.strip().split(",").index("employees")

    def with_employees(values: list[str]) -> Path:
        lines = []
        for row, value in zip(rows, values, strict=True):
            cells = row.strip().split(",")
            cells[column] = value
            lines.append(",".join(cells) + "\n")
        path = tmp_path / f"leads-{len(list(tmp_path.iterdir()))}.csv"
        path.write_text(header + "".join(lines), encoding="utf-8")
        return path

    infinite = with_employees(["inf", "-Infinity", "1e999"])
    empty = with_employees(["", "", ""])

    code, output = score("--in", str(infinite), "--out", str(tmp_path / "infinite.csv"))

    assert code == 0, output
    assert score("--in", str(empty), "--out", str(tmp_path / "empty.csv"))[0] == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "infinite.csv"), pd.read_csv(tmp_path / "empty.csv")
    )


def csv_cells(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def is_formula(cell: str) -> bool:
    if not cell.startswith(FORMULA_PREFIXES):
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def test_score_csv_and_rejects_neutralise_formulas(trained: TrainedHome, tmp_path: Path) -> None:
    header, *rows = synthetic_lines(trained, 5)

    def with_id(row: str, lead_id: str, created_at: str | None = None) -> str:
        cells = next(csv.reader([row]))
        cells[0] = lead_id
        if created_at is not None:
            cells[1] = created_at
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        return buffer.getvalue()

    source = tmp_path / "leads.csv"
    source.write_text(
        header
        + with_id(rows[0], FORMULA)
        + with_id(rows[1], "@SUM(A1:A9)")
        + with_id(rows[2], "@SUM(A1:A9)")  # a duplicate: both rejected
        + with_id(rows[3], "+41 22 555 01", created_at="=1+2")  # no date: rejected
        + with_id(rows[4], "-42"),  # a number stays a number
        encoding="utf-8",
    )
    out = tmp_path / "scores.csv"

    code, output = score("--in", str(source), "--out", str(out), "--explain")

    assert code == 0, output
    scores, rejects = csv_cells(out), csv_cells(tmp_path / "scores.csv.rejects.csv")
    assert [row[0] for row in scores[1:]] == ["'" + FORMULA, "-42"]
    assert [row[:2] for row in rejects[1:]] == [
        ["3", "'@SUM(A1:A9)"],
        ["4", "'@SUM(A1:A9)"],
        ["5", "'+41 22 555 01"],
    ]
    assert "created_at '=1+2' is not a date" in rejects[3][2]
    for cell in (cell for row in scores + rejects for cell in row):
        assert not is_formula(cell), cell
