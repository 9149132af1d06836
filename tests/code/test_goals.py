"""Goals: validation messages that name the goal and field, the goals file, the store (CRUD,
checks, cascade, all-or-nothing import) and `funnelcast goals add|list|remove|import`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from funnelcast.cli import app
from scoring import store_schema
from scoring.goal_store import (
    GoalCheck,
    GoalNotFoundError,
    add_goal,
    check_history,
    funnel_segment_keys,
    get_goal,
    import_goals,
    list_goals,
    record_check,
    remove_goal,
    update_goal,
)
from scoring.goals import (
    Goal,
    GoalError,
    goal_status,
    is_rate_kpi,
    load_goals_yaml,
    parse_goal,
)
from scoring.kpis import KPI_IDS
from scoring.settings import Settings
from scoring.store import MIGRATIONS, FunnelStore
from scoring.synthetic import generate_funnel

KEYS = frozenset({"lead_id", "created_at", "outcome", "region", "industry"})

GOOD: dict[str, Any] = {
    "name": "Q1 new revenue, Nordics",
    "kpi": "won_revenue",
    "direction": "at_least",
    "target": 500000,
    "period_start": "2026-01-01",
    "period_end": "2026-03-31",
    "segment": {"region": "Nordics"},
    "owner": "nordics-team",
}

DESIGN_EXAMPLE = """\
goals:
  - name: Q1 new revenue, Nordics
    kpi: won_revenue
    direction: at_least
    target: 500000
    period_start: 2026-01-01
    period_end: 2026-03-31
    segment: {region: Nordics}
    owner: nordics-team
"""


def problems_of(raw: object, keys: frozenset[str] | None = KEYS) -> list[tuple[str | None, str]]:
    with pytest.raises(GoalError) as caught:
        parse_goal(raw, keys)
    return [(p.field, p.message) for p in caught.value.problems]


# -- validation -------------------------------------------------------------------------------


def test_a_good_goal_is_normalised() -> None:
    goal = parse_goal({**GOOD, "name": "  Q1  ", "owner": ""}, KEYS)
    assert goal.name == "Q1"
    assert goal.target == 500000.0 and isinstance(goal.target, float)
    assert goal.period_start == date(2026, 1, 1) and goal.period_end == date(2026, 3, 31)
    assert goal.segment == {"region": "Nordics"}
    assert goal.owner is None
    assert goal.is_met_by(500000) and not goal.is_met_by(499999.99)
    at_most = parse_goal({**GOOD, "kpi": "churn_rate", "direction": "at_most", "target": 0.05})
    assert at_most.is_met_by(0.05) and not at_most.is_met_by(0.051)


def test_an_unknown_kpi_lists_the_valid_ids() -> None:
    ((field, message),) = problems_of({**GOOD, "kpi": "revenue_won"})
    assert field == "kpi"
    assert "unknown KPI 'revenue_won'" in message
    assert all(kpi in message for kpi in KPI_IDS)
    assert "stage_conversion.<stage>" in message
    (_, typo), *_ = problems_of({**GOOD, "kpi": "won_revenu"})
    assert "did you mean 'won_revenue'" in typo


def test_stage_conversion_kpis_are_accepted() -> None:
    goal = parse_goal({**GOOD, "kpi": "stage_conversion.meeting", "target": 0.4}, KEYS)
    assert goal.kpi == "stage_conversion.meeting" and goal.is_rate
    assert problems_of({**GOOD, "kpi": "stage_conversion."})[0][0] == "kpi"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("lots", "must be a number, got text 'lots'"),
        (True, "must be a number, got bool True"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
        ("nan", "must be a finite number"),
        ([1], "must be a number, got a list"),
    ],
    ids=["text", "bool", "nan", "inf", "nan-text", "list"],
)
def test_a_target_must_be_a_finite_number(target: object, says: str) -> None:
    ((field, message),) = problems_of({**GOOD, "target": target})
    assert field == "target"
    assert message.startswith(says)


def test_a_target_in_number_text_is_read() -> None:
    # PyYAML reads `5e5` (an exponent without a dot) as text
    assert parse_goal({**GOOD, "target": "5e5"}, KEYS).target == 500000.0


def test_the_period_must_not_end_before_it_starts() -> None:
    problems = problems_of({**GOOD, "period_start": "2026-04-01", "period_end": "2026-03-31"})
    assert problems == [("period_end", "2026-03-31 is before period_start 2026-04-01")]
    one_day = parse_goal({**GOOD, "period_start": "2026-04-01", "period_end": "2026-04-01"})
    assert one_day.period_start == one_day.period_end


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-02-30", "'2026-02-30' is not a valid date in YYYY-MM-DD"),
        ("31/03/2026", "is not a valid date in YYYY-MM-DD"),
        (20260331, "must be a date in YYYY-MM-DD, got int 20260331"),
        ("1850-01-01", "outside the years 1900-2199"),
        (datetime(2026, 3, 31, 12), "must be a date without a time"),
    ],
)
def test_dates_are_checked(value: object, says: str) -> None:
    ((field, message),) = problems_of({**GOOD, "period_end": value})
    assert field == "period_end"
    assert says in message


def test_dates_may_be_date_objects() -> None:
    goal = parse_goal({**GOOD, "period_start": date(2026, 1, 1), "period_end": date(2026, 2, 1)})
    assert goal.period_end == date(2026, 2, 1)


@pytest.mark.parametrize(
    ("kpi", "target"),
    [("win_rate", 1.5), ("conversion_rate", -0.1), ("churn_rate", 5), ("stage_conversion.x", 2)],
)
def test_a_rate_target_is_between_0_and_1(kpi: str, target: float) -> None:
    ((field, message),) = problems_of({**GOOD, "kpi": kpi, "target": target})
    assert field == "target"
    assert f"{kpi} is a share between 0 and 1; got {target:g}" in message


def test_a_rate_target_of_25_suggests_0_25() -> None:
    ((_, message),) = problems_of({**GOOD, "kpi": "win_rate", "target": 25})
    assert "write 25 % as 0.25" in message


def test_a_count_or_amount_target_cannot_be_negative() -> None:
    assert problems_of({**GOOD, "kpi": "lead_count", "target": -5}) == [
        ("target", "lead_count cannot be negative; got -5")
    ]


def test_an_unknown_segment_key_lists_the_lead_columns() -> None:
    ((field, message),) = problems_of({**GOOD, "segment": {"regoin": "Nordics"}})
    assert field == "segment"
    assert "unknown segment key 'regoin' (did you mean 'region'?)" in message
    assert all(key in message for key in KEYS)


def test_a_segment_needs_a_funnel_in_the_store() -> None:
    ((field, message),) = problems_of(GOOD, keys=frozenset())
    assert field == "segment"
    assert "ingest data first" in message
    assert parse_goal({**GOOD, "segment": {}}, frozenset()).segment == {}


def test_segment_values_become_text() -> None:
    goal = parse_goal({**GOOD, "segment": {"region": "Nordics", "industry": 3}}, KEYS)
    assert goal.segment == {"region": "Nordics", "industry": "3"}
    assert problems_of({**GOOD, "segment": "region=Nordics"})[0][0] == "segment"
    assert problems_of({**GOOD, "segment": {"region": None}})[0][0] == "segment"


def test_an_unknown_direction_says_which_exist() -> None:
    assert problems_of({**GOOD, "direction": "more"}) == [
        ("direction", "unknown direction 'more'; use at_least or at_most")
    ]


@pytest.mark.parametrize("missing", ["name", "kpi", "direction", "target", "period_end"])
def test_a_missing_field_is_named(missing: str) -> None:
    raw = {k: v for k, v in GOOD.items() if k != missing}
    ((field, message),) = problems_of(raw)
    assert field == missing
    assert message.startswith("missing; every goal needs name, kpi, direction, target")


def test_an_unknown_field_is_named_with_a_suggestion() -> None:
    ((field, message),) = problems_of({**GOOD, "taget": 5})
    assert field == "taget"
    assert "unknown field (did you mean 'target'?)" in message


@pytest.mark.parametrize("name", ["", "   ", 42])
def test_a_goal_needs_a_name(name: object) -> None:
    ((field, _),) = problems_of({**GOOD, "name": name})
    assert field == "name"


def test_messages_name_the_goal_and_field_and_every_problem_is_reported() -> None:
    bad = {**GOOD, "kpi": "nope", "direction": "up", "target": "x"}
    with pytest.raises(GoalError) as caught:
        parse_goal(bad, KEYS)
    text = str(caught.value)
    assert text.startswith("3 problems")
    assert "goal 'Q1 new revenue, Nordics', field 'kpi'" in text
    assert "field 'direction'" in text and "field 'target'" in text
    assert isinstance(caught.value, ValueError)  # a FunnelcastInputError: exit code 2


def test_a_goal_validates_itself() -> None:
    with pytest.raises(GoalError, match="win_rate is a share"):
        Goal("x", "win_rate", "at_least", 3.0, date(2026, 1, 1), date(2026, 2, 1))


def test_rate_kpis() -> None:
    rates = {kpi for kpi in KPI_IDS if is_rate_kpi(kpi)}
    assert rates == {"conversion_rate", "win_rate", "churn_rate"}
    assert is_rate_kpi("stage_conversion.meeting")


def test_goal_status_thresholds() -> None:
    assert [goal_status(p) for p in (1.0, 0.7, 0.69, 0.3, 0.29, 0.0)] == [
        "on_track",
        "on_track",
        "at_risk",
        "at_risk",
        "off_track",
        "off_track",
    ]
    assert goal_status(0.85, on_track=0.9, at_risk=0.5) == "at_risk"
    assert goal_status(0.5, on_track=0.5, at_risk=0.5) == "on_track"
    for on_track, at_risk in ((0.3, 0.7), (1.2, 0.3), (0.7, -0.1)):
        with pytest.raises(ValueError, match="0 <= at_risk <= on_track <= 1"):
            goal_status(0.5, on_track=on_track, at_risk=at_risk)
    with pytest.raises(ValueError, match="between 0 and 1"):
        goal_status(math.nan)


# -- the goals file -----------------------------------------------------------------------------


def test_the_design_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "goals.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    (goal,) = load_goals_yaml(path, KEYS)
    assert goal == parse_goal(GOOD, KEYS)
    assert load_goals_yaml(DESIGN_EXAMPLE, KEYS) == [goal]  # text works too


def test_a_malformed_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "goals.yaml"
    path.write_text(DESIGN_EXAMPLE.replace("kpi: won_revenue", "kpi: [won_revenue"))
    with pytest.raises(GoalError, match=r"goals.yaml: not valid YAML at line \d+, column \d+"):
        load_goals_yaml(path, KEYS)


def test_a_key_given_twice_is_refused() -> None:
    text = DESIGN_EXAMPLE + "    target: 600000\n"
    with pytest.raises(GoalError, match="line 10, column 5: key 'target' is given twice"):
        load_goals_yaml(text, KEYS)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("- name: x\n", "the top level must be `goals:`, got a list"),
        ("goal:\n  - name: x\n", "the top level must be `goals:`, got keys 'goal'"),
        (DESIGN_EXAMPLE + "extra: 1\n", "unknown top-level key 'extra'"),
        ("goals: {name: x}\n", "`goals:` must be a list of goals, got a mapping"),
    ],
)
def test_the_top_level_must_be_a_goals_list(text: str, says: str) -> None:
    with pytest.raises(GoalError, match="a goals file is `goals:` followed by a list") as caught:
        load_goals_yaml(text, KEYS)
    assert says in str(caught.value)


def test_every_bad_goal_of_a_file_is_reported() -> None:
    text = (
        DESIGN_EXAMPLE
        + """\
  - name: Win rate
    kpi: win_rate
    direction: at_least
    target: 40
    period_start: 2026-01-01
    period_end: 2026-06-30
  - name: Leads
    kpi: leads
    direction: at_least
    target: 100
    period_start: 2026-03-01
    period_end: 2026-02-01
"""
    )
    with pytest.raises(GoalError) as caught:
        load_goals_yaml(text, KEYS)
    message = str(caught.value)
    assert message.startswith("goals: 3 problems, no goal was saved:")
    assert "goal 2 ('Win rate'), field 'target': win_rate is a share" in message
    assert "goal 3 ('Leads'), field 'kpi': unknown KPI 'leads'" in message
    assert "goal 3 ('Leads'), field 'period_end'" in message
    assert "goal 1" not in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(GoalError, match=r"nope\.yaml: no such file"):
        load_goals_yaml(tmp_path / "nope.yaml", KEYS)


# -- the store --------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FunnelStore]:
    opened = FunnelStore.open(f"sqlite:///{tmp_path / 'funnel.db'}")
    yield opened
    opened.close()


def goal(name: str = "Q1", **changes: Any) -> Goal:
    return parse_goal({**GOOD, "name": name, **changes}, KEYS)


def count_checks(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        query = sa.select(sa.func.count()).select_from(store_schema.goal_checks)
        return int(connection.execute(query).scalar_one())


def test_the_goal_tables_match_the_migration(store: FunnelStore) -> None:
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), store_schema.metadata) == []
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            (head,)
        ]


def test_the_goals_migration_downgrades_and_upgrades(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'funnel.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    for revision, has_goals in (("head", True), ("0002", False), ("head", True)):
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step = command.upgrade if revision == "head" else command.downgrade
            step(config, revision)
        assert sa.inspect(engine).has_table("goal_checks") is has_goals
    engine.dispose()


def test_add_get_list_update_remove(store: FunnelStore) -> None:
    engine = store.engine
    first = add_goal(engine, goal("Q1"))
    second = add_goal(engine, goal("Q2", owner="emea"))
    assert (first.id, second.id) == (1, 2)
    assert first.created_at == first.updated_at
    assert first.created_at.tzinfo is UTC
    assert get_goal(engine, 1) == first
    assert [s.goal.name for s in list_goals(engine)] == ["Q1", "Q2"]
    assert [s.id for s in list_goals(engine, owner="emea")] == [2]
    assert list_goals(engine, owner="nobody") == []

    replaced = update_goal(engine, 1, goal("Q1 win rate", kpi="win_rate", target=0.3))
    assert replaced.id == 1 and replaced.goal.kpi == "win_rate"
    assert replaced.created_at == first.created_at
    assert replaced.updated_at >= first.updated_at
    assert get_goal(engine, 1) == replaced

    removed = remove_goal(engine, 2)
    assert removed == second
    assert [s.id for s in list_goals(engine)] == [1]
    # A removed goal's id is never given to another: clients may still hold it.
    assert add_goal(engine, goal("Q3")).id == 3


def test_unknown_ids_are_goal_not_found(store: FunnelStore) -> None:
    engine = store.engine
    check = GoalCheck(status="on_track")
    calls: list[Callable[[], object]] = [
        lambda: get_goal(engine, 7),
        lambda: update_goal(engine, 7, goal()),
        lambda: remove_goal(engine, 7),
        lambda: record_check(engine, 7, check),
        lambda: check_history(engine, 7),
    ]
    for call in calls:
        with pytest.raises(GoalNotFoundError, match="no goal with id 7"):
            call()


def test_checks_are_recorded_in_order_and_removed_with_their_goal(store: FunnelStore) -> None:
    engine = store.engine
    kept = add_goal(engine, goal("kept"))
    gone = add_goal(engine, goal("gone"))
    start = datetime(2026, 2, 1, tzinfo=UTC)
    for day in (3, 1, 2):  # recorded out of order; history is by checked_at
        record_check(
            engine,
            gone.id,
            GoalCheck(
                status="at_risk",
                actual=100.0 * day,
                forecast_p10=1.0,
                forecast_p50=2.0,
                forecast_p90=3.0,
                probability=0.5,
                detail={"day": day},
                checked_at=start + timedelta(days=day),
            ),
        )
    record_check(engine, kept.id, GoalCheck(status="on_track", probability=0.9))
    history = check_history(engine, gone.id)
    assert [c.check.detail for c in history] == [{"day": 1}, {"day": 2}, {"day": 3}]
    assert history[0].check.checked_at == start + timedelta(days=1)
    assert history[0].check.forecast_p50 == 2.0 and history[0].goal_id == gone.id
    assert [c.check.actual for c in check_history(engine, gone.id, limit=2)] == [200.0, 300.0]

    remove_goal(engine, gone.id)
    assert count_checks(engine) == 1
    (left,) = check_history(engine, kept.id)
    assert left.check.status == "on_track" and left.check.actual is None


def test_the_foreign_key_cascades_on_sqlite(store: FunnelStore) -> None:
    engine = store.engine
    stored = add_goal(engine, goal())
    record_check(engine, stored.id, GoalCheck(status="off_track", probability=0.1))
    with engine.begin() as connection:  # not through remove_goal: the database itself cascades
        connection.execute(store_schema.goals.delete())
    assert count_checks(engine) == 0


def test_a_check_with_an_unknown_status_or_nan_is_refused(store: FunnelStore) -> None:
    stored = add_goal(store.engine, goal())
    with pytest.raises(ValueError, match="unknown goal status"):
        record_check(store.engine, stored.id, GoalCheck(status="great"))
    with pytest.raises(ValueError, match="probability must be a finite number"):
        record_check(store.engine, stored.id, GoalCheck(status="at_risk", probability=math.nan))
    assert count_checks(store.engine) == 0


def test_import_is_all_or_nothing(store: FunnelStore) -> None:
    engine = store.engine
    stored = import_goals(engine, [goal("a"), goal("b")])
    assert [s.id for s in stored] == [1, 2]
    with pytest.raises(AttributeError):
        import_goals(engine, [goal("c"), cast(Goal, object())])  # fails after "c" is inserted
    assert [s.goal.name for s in list_goals(engine)] == ["a", "b"]


def test_segment_keys_are_the_lead_columns_of_the_stored_funnel(store: FunnelStore) -> None:
    assert funnel_segment_keys(store.engine) == frozenset()
    store.ingest(generate_funnel(200, seed=1).as_funnel(), source="test")
    keys = funnel_segment_keys(store.engine)
    assert {"lead_id", "owner", "region", "industry"} <= keys
    assert keys == frozenset(store.load().leads.columns)


# -- the command line ---------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["goals", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def funnel_home(home: Path) -> Path:
    """A home whose store holds a small synthetic funnel (region is a lead column)."""
    store = FunnelStore.open(Settings().store_url)
    store.ingest(generate_funnel(200, seed=1).as_funnel(), source="test")
    store.close()
    return home


ADD = ("add", "--kpi", "won_revenue", "--target", "500000", "--start", "2026-01-01")


def test_cli_add_list_remove(funnel_home: Path) -> None:
    code, out, err = run(*ADD, "--name", "Q1 Nordics", "--end", "2026-03-31",
                         "--segment", "region=Nordics", "--owner", "nordics")  # fmt: skip
    assert code == 0, err
    assert "added goal 1: Q1 Nordics" in out
    code, out, err = run(*ADD, "--name", "Churn", "--kpi", "churn_rate", "--direction", "at_most",
                         "--target", "0.05", "--end", "2026-12-31")  # fmt: skip
    assert code == 0, err

    result = CliRunner().invoke(app, ["goals", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    out = result.stdout
    assert "Q1 Nordics" in out and "Churn" in out and "region=Nordics" in out
    code, out, _ = run("list", "--format", "json")
    records = json.loads(out)
    assert [r["id"] for r in records] == [1, 2]
    assert records[0] | {"created_at": None, "updated_at": None} == {
        "id": 1,
        "name": "Q1 Nordics",
        "kpi": "won_revenue",
        "direction": "at_least",
        "target": 500000.0,
        "period_start": "2026-01-01",
        "period_end": "2026-03-31",
        "segment": {"region": "Nordics"},
        "owner": "nordics",
        "created_at": None,
        "updated_at": None,
    }
    assert records[1]["kpi"] == "churn_rate" and records[1]["direction"] == "at_most"
    code, out, _ = run("list", "--owner", "nordics", "--format", "json")
    assert [r["id"] for r in json.loads(out)] == [1]

    code, out, err = run("remove", "1")
    assert code == 0, err
    assert "removed goal 1: Q1 Nordics" in out
    code, out, _ = run("list", "--format", "json")
    assert [r["id"] for r in json.loads(out)] == [2]
    code, _, err = run("remove", "1")
    assert code == 2
    assert "no goal with id 1" in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (("--end", "2025-12-31"), "field 'period_end': 2025-12-31 is before period_start"),
        (("--end", "2026-03-31", "--kpi", "win_rate"), "win_rate is a share between 0 and 1"),
        (("--end", "2026-03-31", "--segment", "country=SE"), "unknown segment key 'country'"),
        (("--end", "2026-03-31", "--direction", "above"), "unknown direction 'above'"),
        (("--end", "2026-03-31", "--name", " "), "field 'name': the name is empty"),
        (("--end", "March"), "'March' is not a valid date"),
    ],
)
def test_cli_a_bad_goal_exits_2_and_says_why(
    funnel_home: Path, options: tuple[str, ...], says: str
) -> None:
    code, out, err = run(*ADD, "--name", "Q1", *options)
    assert code == 2, out
    assert says in err
    assert json.loads(run("list", "--format", "json")[1]) == []


def test_cli_a_segment_on_an_empty_store_says_to_ingest_first(home: Path) -> None:
    code, _, err = run(*ADD, "--name", "Q1", "--end", "2026-03-31", "--segment", "region=Nordics")
    assert code == 2
    assert "ingest data first" in err
    code, _, err = run(*ADD, "--name", "Q1", "--end", "2026-03-31")
    assert code == 0, err


def test_cli_import(funnel_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "goals.yaml"
    second = DESIGN_EXAMPLE.split("\n", 1)[1].replace("Q1 new revenue", "Q2 new revenue")
    path.write_text(DESIGN_EXAMPLE + second.replace("2026-01-01", "2026-04-01").replace(
        "2026-03-31", "2026-06-30"))  # fmt: skip
    code, out, err = run("import", str(path))
    assert code == 0, err
    assert "imported 2 goals (ids 1, 2)" in out
    records = json.loads(run("list", "--format", "json")[1])
    assert [r["period_end"] for r in records] == ["2026-03-31", "2026-06-30"]


def test_cli_import_of_a_bad_file_imports_nothing(funnel_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "goals.yaml"
    path.write_text(DESIGN_EXAMPLE + DESIGN_EXAMPLE.split("\n", 1)[1].replace("region", "regio"))
    code, _, err = run("import", str(path))
    assert code == 2
    assert "goal 2 ('Q1 new revenue, Nordics'), field 'segment': unknown segment key" in err
    assert json.loads(run("list", "--format", "json")[1]) == []
    code, _, err = run("import", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "no such file" in err
