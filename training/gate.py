"""The quality gate of DESIGN §4: `champion` moves only when the candidate is not worse.

Candidate and current champion are evaluated on the same data; every failed criterion is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Criterion:
    """A metric the candidate must not be worse on, with the slack it is allowed."""

    metric: str
    higher_is_better: bool
    tolerance: float = 0.0

    def failure(self, candidate: float, champion: float) -> str | None:
        """Why the candidate fails this criterion, or None when it passes."""
        if self.higher_is_better:
            if candidate < champion - self.tolerance:
                slack = f" by more than {self.tolerance}" if self.tolerance else ""
                return (
                    f"{self.metric} {candidate:.4f} is below the champion's {champion:.4f}{slack}"
                )
            return None
        if candidate > champion + self.tolerance:
            slack = f" by more than {self.tolerance}" if self.tolerance else ""
            return f"{self.metric} {candidate:.4f} is above the champion's {champion:.4f}{slack}"
        return None


GATES: dict[str, tuple[Criterion, ...]] = {
    "lead-conversion": (Criterion("roc_auc", True, 0.005), Criterion("brier", False)),
    "deal-cycle": (Criterion("concordance", True, 0.005), Criterion("integrated_brier", False)),
    "deal-value": (Criterion("pinball_loss", False),),
    "lead-volume": (Criterion("mase", False),),
    "churn": (Criterion("concordance", True), Criterion("brier", False)),
}


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict on a candidate against the current champion."""

    model: str
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def explain(self) -> str:
        if self.champion_version is None:
            return f"{self.model}/{self.candidate_version}: no champion yet, the candidate passes"
        if self.passed:
            return (
                f"{self.model}/{self.candidate_version} is not worse than champion "
                f"version {self.champion_version} on {', '.join(self.criteria_names)}"
            )
        reasons = "; ".join(self.failures)
        return (
            f"{self.model}/{self.candidate_version} refused against champion version "
            f"{self.champion_version}: {reasons}"
        )

    @property
    def criteria_names(self) -> list[str]:
        return [c.metric for c in GATES[self.model]]


def judge(
    model: str,
    candidate_version: str,
    candidate: dict[str, float],
    champion_version: str | None,
    champion: dict[str, float] | None,
) -> GateDecision:
    """Compare metrics computed on the same data; no champion means the candidate passes."""
    if champion_version is None or champion is None:
        return GateDecision(model, candidate_version, None, candidate)
    failures = []
    for criterion in GATES[model]:
        if criterion.metric not in candidate or criterion.metric not in champion:
            failures.append(f"{criterion.metric} missing from the evaluation")
            continue
        reason = criterion.failure(candidate[criterion.metric], champion[criterion.metric])
        if reason:
            failures.append(reason)
    return GateDecision(
        model, candidate_version, champion_version, candidate, champion, tuple(failures)
    )
