"""Errors a user can cause with their data or configuration, with messages that say where."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: which column, which rows, what."""

    message: str
    column: str | None = None
    rows: Sequence[int] = field(default_factory=tuple)
    examples: Sequence[object] = field(default_factory=tuple)

    def describe(self, unit: str = "row") -> str:
        where = f"column '{self.column}': " if self.column else ""
        text = f"{where}{self.message}"
        if self.rows:
            shown = ", ".join(str(r) for r in list(self.rows)[:MAX_ROWS_SHOWN])
            more = f" and {len(self.rows) - MAX_ROWS_SHOWN} more" if len(self.rows) > 5 else ""
            plural = "s" if len(self.rows) > 1 else ""
            text += f" ({unit}{plural} {shown}{more})"
        if self.examples:
            text += "; e.g. " + ", ".join(repr(e) for e in list(self.examples)[:3])
        return text


class FunnelcastInputError(ValueError):
    """Bad input a user can fix; the CLI prints it and exits with code 2."""


class DataContractError(FunnelcastInputError):
    """A table breaks the data contract. Nothing from it is loaded."""

    def __init__(self, source: str, problems: Sequence[Problem], unit: str = "row") -> None:
        self.source = source
        self.problems = list(problems)
        self.unit = unit
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0].describe(self.unit)}"
        lines = [f"{self.source}: {len(self.problems)} problems, nothing was loaded:"]
        lines += [f"  - {p.describe(self.unit)}" for p in self.problems]
        return "\n".join(lines)


class MappingError(FunnelcastInputError):
    """A dataset mapping file is invalid or does not fit the data it is applied to."""
