"""SMART sales goals (DESIGN §2): what a goal is, how one is validated, and the goals file.

A goal names a KPI of `scoring.kpis` with a numeric target and a direction (`at_least` /
`at_most`), over a period of whole days (both ends inclusive), optionally for a segment (lead
column = value, filtered as the KPIs filter) and with an owner. Goals come from a YAML file
(`goals import`), the CLI and the API; all three go through `parse_goal`, so a bad goal gets the
same message wherever it comes from, naming the goal and the field.

Segment keys are checked against the lead columns of the funnel in the store, which the caller
passes in (`segment_keys`): `None` skips the check, an empty collection means the store holds no
funnel yet (a segment cannot be checked, so it is refused).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import yaml

from scoring.errors import FunnelcastInputError
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX

Direction = Literal["at_least", "at_most"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
GoalStatus = Literal["on_track", "at_risk", "off_track"]
GOAL_STATUSES: tuple[str, ...] = get_args(GoalStatus)
# A check of a period that is over says whether the goal was met instead of a forecast status.
CHECK_STATUSES: tuple[str, ...] = (*GOAL_STATUSES, "met", "missed")
RATE_KPIS = frozenset({"conversion_rate", "win_rate", "churn_rate"})
REQUIRED_FIELDS = ("name", "kpi", "direction", "target", "period_start", "period_end")
GOAL_FIELDS = (*REQUIRED_FIELDS, "segment", "owner")
MAX_TEXT_LENGTH = 255  # names, owners and segment keys fit the store's VARCHAR(255)
MAX_STAGE_LENGTH = 64  # stage names are VARCHAR(64) in the store
# Goal periods must fit the nanosecond timestamps the KPI engine computes with (years to 2262).
FIRST_YEAR, LAST_YEAR = 1900, 2199
DEFAULT_ON_TRACK, DEFAULT_AT_RISK = 0.7, 0.3


def is_rate_kpi(kpi: str) -> bool:
    """Whether the KPI is a share between 0 and 1 (conversion, win, churn, stage conversion)."""
    return kpi in RATE_KPIS or kpi.startswith(STAGE_CONVERSION_PREFIX)


def goal_status(
    probability: float, on_track: float = DEFAULT_ON_TRACK, at_risk: float = DEFAULT_AT_RISK
) -> GoalStatus:
    """`on_track` from a probability of meeting the goal of `on_track` up, `at_risk` from
    `at_risk` up, `off_track` below."""
    if not 0 <= at_risk <= on_track <= 1:
        raise FunnelcastInputError(
            f"status thresholds need 0 <= at_risk <= on_track <= 1; "
            f"got at_risk={at_risk}, on_track={on_track}"
        )
    if not 0 <= probability <= 1:  # NaN fails too
        raise ValueError(f"a probability is between 0 and 1; got {probability}")
    if probability >= on_track:
        return "on_track"
    return "at_risk" if probability >= at_risk else "off_track"


@dataclass(frozen=True)
class GoalProblem:
    """One thing wrong with a goal: which goal, which field (None: the goal as a whole)."""

    goal: str | None
    field: str | None
    message: str

    def describe(self) -> str:
        where = [self.goal] if self.goal else []
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class GoalError(FunnelcastInputError):
    """One or more goals are invalid; `problems` says which goal, which field and why."""

    def __init__(self, problems: Sequence[GoalProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + self.problems[0].describe()
        lines = [f"{prefix}{len(self.problems)} problems, no goal was saved:"]
        lines += [f"  - {p.describe()}" for p in self.problems]
        return "\n".join(lines)


class _FieldError(Exception):
    """A field's value is wrong; the message says how (internal to parsing)."""


@dataclass(frozen=True)
class Goal:
    """A valid goal. Constructing one validates and normalises every field (names stripped,
    target as float, segment values as text); segment keys are checked by `parse_goal`."""

    name: str
    kpi: str
    direction: Direction
    target: float
    period_start: date
    period_end: date
    segment: dict[str, str] = field(default_factory=dict, hash=False)
    owner: str | None = None

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in GOAL_FIELDS}
        normalised, problems = _check_fields(values, _label(None, values.get("name")))
        if problems:
            raise GoalError(problems)
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def is_rate(self) -> bool:
        return is_rate_kpi(self.kpi)

    def is_met_by(self, value: float) -> bool:
        """Whether a KPI value meets the target in the goal's direction."""
        return value >= self.target if self.direction == "at_least" else value <= self.target

    def summary(self) -> str:
        """One line for people: `won_revenue at least 500,000, 2026-01-01 to 2026-03-31`."""
        target = f"{self.target:.1%}" if self.is_rate else f"{self.target:,.10g}"
        text = (
            f"{self.kpi} {self.direction.replace('_', ' ')} {target}, "
            f"{self.period_start.isoformat()} to {self.period_end.isoformat()}"
        )
        if self.segment:
            text += " (" + ", ".join(f"{k}={v}" for k, v in self.segment.items()) + ")"
        return text

    def as_record(self) -> dict[str, Any]:
        """The goal's fields, JSON-ready (dates as YYYY-MM-DD)."""
        return {
            "name": self.name,
            "kpi": self.kpi,
            "direction": self.direction,
            "target": self.target,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "segment": dict(self.segment),
            "owner": self.owner,
        }


# -- one goal -----------------------------------------------------------------------------------


def parse_goal(
    raw: object,
    segment_keys: Collection[str] | None = None,
    *,
    position: int | None = None,
) -> Goal:
    """A `Goal` from its fields as a file, the CLI or the API gives them; `GoalError` listing
    every problem otherwise. `position` (1-based) names the goal when it comes from a file."""
    goal, problems = _goal_or_problems(raw, segment_keys, position)
    if goal is None:
        raise GoalError(problems)
    return goal


def parse_goals(
    raws: Sequence[object],
    segment_keys: Collection[str] | None = None,
    source: str | None = None,
) -> list[Goal]:
    """Goals from a list of field mappings; `GoalError` with the problems of every bad goal."""
    goals: list[Goal] = []
    problems: list[GoalProblem] = []
    for position, raw in enumerate(raws, start=1):
        goal, found = _goal_or_problems(raw, segment_keys, position)
        problems += found
        if goal is not None:
            goals.append(goal)
    if problems:
        raise GoalError(problems, source)
    return goals


def _label(position: int | None, name: object) -> str:
    """How messages name a goal: by its position in a file and its name, when it has them."""
    named = name.strip() if isinstance(name, str) else ""
    if position is None:
        return f"goal {named!r}" if named else "the goal"
    return f"goal {position} ({named!r})" if named else f"goal {position}"


def _goal_or_problems(
    raw: object, segment_keys: Collection[str] | None, position: int | None
) -> tuple[Goal | None, list[GoalProblem]]:
    if not isinstance(raw, Mapping):
        label = _label(position, None)
        message = f"must be a mapping of fields (name: ..., kpi: ...), got {_kind(raw)}"
        return None, [GoalProblem(label, None, message)]
    label = _label(position, raw.get("name"))
    problems = [
        GoalProblem(label, str(key), _unknown_field(str(key)))
        for key in raw
        if key not in GOAL_FIELDS
    ]
    problems += [
        GoalProblem(label, name, f"missing; every goal needs {', '.join(REQUIRED_FIELDS)}")
        for name in REQUIRED_FIELDS
        if raw.get(name) is None
    ]
    given = {name: raw[name] for name in GOAL_FIELDS if raw.get(name) is not None}
    values, field_problems = _check_fields(given, label)
    problems += field_problems
    if "segment" in values and segment_keys is not None:
        problems += [
            GoalProblem(label, "segment", m)
            for m in _segment_key_problems(values["segment"], segment_keys)
        ]
    if problems:
        return None, problems
    return Goal(**values), []


def _unknown_field(key: str) -> str:
    close = difflib.get_close_matches(key, GOAL_FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field{hint}; a goal has {', '.join(GOAL_FIELDS)}"


def _check_fields(
    values: Mapping[str, object], label: str
) -> tuple[dict[str, Any], list[GoalProblem]]:
    """Each given field parsed on its own, then the checks that span fields."""
    parsed: dict[str, Any] = {}
    problems: list[GoalProblem] = []
    for name, value in values.items():
        if value is None and name not in REQUIRED_FIELDS:
            parsed[name] = None if name == "owner" else {}
            continue
        try:
            parsed[name] = _PARSERS[name](value)
        except _FieldError as invalid:
            problems.append(GoalProblem(label, name, str(invalid)))
    start, end = parsed.get("period_start"), parsed.get("period_end")
    if start is not None and end is not None and end < start:
        problems.append(GoalProblem(label, "period_end", f"{end} is before period_start {start}"))
    kpi, target = parsed.get("kpi"), parsed.get("target")
    if kpi is not None and target is not None:
        message = _target_problem(kpi, target)
        if message:
            problems.append(GoalProblem(label, "target", message))
    return parsed, problems


def _target_problem(kpi: str, target: float) -> str | None:
    if is_rate_kpi(kpi) and not 0 <= target <= 1:
        hint = f" (write {target:g} % as {target / 100:g})" if 1 < target <= 100 else ""
        return f"{kpi} is a share between 0 and 1; got {target:g}{hint}"
    if target < 0:
        return f"{kpi} cannot be negative; got {target:g}"
    return None


def _segment_key_problems(segment: Mapping[str, str], known: Collection[str]) -> list[str]:
    if not segment:
        return []
    if not known:
        return [
            "the funnel store holds no leads yet, so the segment cannot be checked: ingest "
            "data first (`funnelcast ingest`), or leave the segment out"
        ]
    problems = []
    for key in segment:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"unknown segment key '{key}'{hint}; segments filter on lead columns: "
                + ", ".join(known)
            )
    return problems


# -- fields ---------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _text(value: object, what: str, max_length: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"must be text, got {_kind(value)}")
    text = value.strip()
    if not text:
        raise _FieldError(f"{what} is empty")
    if len(text) > max_length:
        raise _FieldError(f"is {len(text)} characters; at most {max_length}")
    if "\x00" in text:
        raise _FieldError("must not contain NUL characters")
    return text


def _parse_name(value: object) -> str:
    return _text(value, "the name")


def _parse_owner(value: object) -> str | None:
    if isinstance(value, str) and not value.strip():
        return None
    return _text(value, "the owner")


def _parse_kpi(value: object) -> str:
    kpi = _text(value, "the KPI")
    if kpi in KPI_IDS:
        return kpi
    if kpi.startswith(STAGE_CONVERSION_PREFIX):
        stage = kpi.removeprefix(STAGE_CONVERSION_PREFIX)
        if stage.strip() and len(stage) <= MAX_STAGE_LENGTH:
            return kpi
    close = difflib.get_close_matches(kpi, KPI_IDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise _FieldError(
        f"unknown KPI '{kpi}'{hint}; valid ids: {', '.join(KPI_IDS)}, "
        f"or {STAGE_CONVERSION_PREFIX}<stage>"
    )


def _parse_direction(value: object) -> Direction:
    if isinstance(value, str) and value.strip() in DIRECTIONS:
        return cast(Direction, value.strip())
    shown = repr(value) if isinstance(value, str) else _kind(value)
    raise _FieldError(f"unknown direction {shown}; use at_least or at_most")


def _parse_target(value: object) -> float:
    if isinstance(value, str):  # PyYAML reads 5e5 (no dot) as text
        try:
            value = float(value.strip())
        except ValueError:
            raise _FieldError(f"must be a number, got text {value!r}") from None
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _FieldError(f"must be a number, got {_kind(value)}")
    try:
        target = float(value)
    except OverflowError:
        raise _FieldError("is too large") from None
    if not math.isfinite(target):
        raise _FieldError(f"must be a finite number, got {target}")
    return target


def _parse_date(value: object) -> date:
    if isinstance(value, datetime):
        if value.time() != datetime.min.time() or value.tzinfo is not None:
            raise _FieldError(f"must be a date without a time, got {value.isoformat()}")
        value = value.date()
    if isinstance(value, str):
        try:
            value = datetime.strptime(value.strip(), "%Y-%m-%d").date()
        except ValueError:
            raise _FieldError(f"{value!r} is not a valid date in YYYY-MM-DD") from None
    if not isinstance(value, date):
        raise _FieldError(f"must be a date in YYYY-MM-DD, got {_kind(value)}")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise _FieldError(f"{value} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
    return value


def _parse_segment(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _FieldError(
            f"must be a mapping of lead column to value, e.g. {{region: Nordics}}; "
            f"got {_kind(value)}"
        )
    segment: dict[str, str] = {}
    for key, item in value.items():
        name = _text(key, "a segment key") if isinstance(key, str) else None
        if name is None:
            raise _FieldError(f"segment keys are lead column names (text), got {_kind(key)}")
        if isinstance(item, bool):
            segment[name] = "true" if item else "false"
        elif isinstance(item, int | float) and not (
            isinstance(item, float) and not math.isfinite(item)
        ):
            segment[name] = str(item)
        elif isinstance(item, str) and "\x00" not in item:
            segment[name] = item
        else:
            raise _FieldError(f"the value of '{name}' must be text or a number, got {_kind(item)}")
    return segment


_PARSERS: dict[str, Callable[[object], Any]] = {
    "name": _parse_name,
    "kpi": _parse_kpi,
    "direction": _parse_direction,
    "target": _parse_target,
    "period_start": _parse_date,
    "period_end": _parse_date,
    "segment": _parse_segment,
    "owner": _parse_owner,
}


# -- the goals file -----------------------------------------------------------------------------

FILE_FORMAT_HINT = "a goals file is `goals:` followed by a list of goals (`- name: ...`)"


class _GoalsLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (nothing but plain data) that keeps dates as text, so a bad date is a
    problem of its goal and field rather than a crash of the parser, and refuses a key given
    twice instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _keep_text(loader: _GoalsLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


_GoalsLoader.add_constructor("tag:yaml.org,2002:timestamp", _keep_text)


def load_goals_yaml(
    path_or_text: Path | str, segment_keys: Collection[str] | None = None
) -> list[Goal]:
    """The goals of a goals file (a `Path`) or of YAML text (a `str`), in file order.

    Raises `GoalError`: for malformed YAML (with its line), a top level other than
    `goals: [...]`, or the problems of every bad goal (all of them, not only the first).
    """
    source, text = _read(path_or_text)
    try:
        document = yaml.load(text, Loader=_GoalsLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise GoalError([GoalProblem(None, None, _yaml_problem(error))], source) from None
    return parse_goals(_goal_list(document, source), segment_keys, source)


def _read(path_or_text: Path | str) -> tuple[str, str]:
    if isinstance(path_or_text, str):
        return "goals", path_or_text
    source = str(path_or_text)
    try:
        return source, path_or_text.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoalError([GoalProblem(None, None, "no such file")], source) from None
    except IsADirectoryError:
        raise GoalError(
            [GoalProblem(None, None, "is a folder, not a goals file")], source
        ) from None
    except UnicodeDecodeError:
        raise GoalError([GoalProblem(None, None, "is not UTF-8 text")], source) from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = error.problem or error.context or "malformed"
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"not valid YAML: {error}"


def _goal_list(document: object, source: str) -> list[object]:
    def fail(message: str) -> GoalError:
        return GoalError([GoalProblem(None, None, message)], source)

    if document is None:
        raise fail(f"is empty; {FILE_FORMAT_HINT}")
    if not isinstance(document, Mapping) or "goals" not in document:
        got = (
            f"keys {', '.join(map(repr, document))}"
            if isinstance(document, Mapping)
            else _kind(document)
        )
        hint = " (to read a file, pass a Path)" if isinstance(document, str) else ""
        raise fail(f"the top level must be `goals:`, got {got}{hint}; {FILE_FORMAT_HINT}")
    extra = [str(key) for key in document if key != "goals"]
    if extra:
        raise fail(f"unknown top-level key {', '.join(map(repr, extra))}; {FILE_FORMAT_HINT}")
    goals = document["goals"]
    if goals is None:
        return []
    if not isinstance(goals, list):
        raise fail(f"`goals:` must be a list of goals, got {_kind(goals)}; {FILE_FORMAT_HINT}")
    return goals
