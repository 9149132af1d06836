"""The canonical funnel: the three tables of the data contract and what is known about them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

OUTCOMES = ("won", "lost", "open")

# Stage order of DESIGN §2. A data set may use a subset; `won`/`lost` close a deal.
DEFAULT_STAGES = ("identified", "lead", "qualified", "contacted", "meeting", "proposal", "won")
CLOSING_STAGES = ("won", "lost")

LEAD_COLUMNS = (
    "lead_id",
    "created_at",
    "outcome",
    "closed_at",
    "amount",
    "stage",
    "owner",
    "account_id",
)
REQUIRED_LEAD_COLUMNS = ("lead_id", "outcome")
REQUIRED_DATED_LEAD_COLUMNS = ("lead_id", "created_at", "outcome")
STAGE_EVENT_COLUMNS = ("lead_id", "stage", "entered_at")
CUSTOMER_COLUMNS = ("account_id", "started_at", "churned_at", "value")
REQUIRED_CUSTOMER_COLUMNS = ("account_id", "started_at")

DEFAULT_HORIZON_DAYS = 180


@dataclass(frozen=True)
class Funnel:
    """A company's funnel history in canonical form.

    Attributes:
        leads: one row per lead; columns `LEAD_COLUMNS` (those present) plus attribute columns.
            Datetimes are naive (`datetime64`), `outcome` is one of `OUTCOMES`.
        stage_events: `lead_id`, `stage`, `entered_at`, or None when the data set has none.
        customers: `account_id`, `started_at`, `churned_at`, `value` plus attributes, or None.
        dated: False for data without dates (labels are final outcomes, no time-based KPIs).
        horizon_days: a lead counts as converted when won within this many days of creation.
        observed_until: the moment the data was extracted; open deals are censored here.
        stages: the stage order of this data set, first to last (`won` last).
        features: the attribute columns that may be used as model features.
        name: the data set's name (a mapping name, or "canonical").
    """

    leads: pd.DataFrame
    stage_events: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    dated: bool = True
    horizon_days: int = DEFAULT_HORIZON_DAYS
    observed_until: pd.Timestamp | None = None
    stages: tuple[str, ...] = DEFAULT_STAGES
    features: tuple[str, ...] = field(default_factory=tuple)
    name: str = "canonical"

    @property
    def attribute_columns(self) -> list[str]:
        """Lead columns that are not part of the canonical schema."""
        return [c for c in self.leads.columns if c not in LEAD_COLUMNS]

    def with_tables(self, **changes: object) -> Funnel:
        """A copy with some tables (or other fields) replaced, e.g. filtered to a segment."""
        return replace(self, **changes)  # type: ignore[arg-type]
