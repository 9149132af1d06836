"""The gate's rules and model references, without training anything."""

from __future__ import annotations

import pytest

from scoring.errors import FunnelcastInputError
from scoring.registry import ModelReference
from training.gate import judge


def test_no_champion_passes() -> None:
    decision = judge("lead-conversion", "1", {"roc_auc": 0.7, "brier": 0.2}, None, None)
    assert decision.passed and "no champion yet" in decision.explain()


def test_small_auc_drop_within_tolerance_passes() -> None:
    decision = judge(
        "lead-conversion",
        "2",
        {"roc_auc": 0.796, "brier": 0.15},
        "1",
        {"roc_auc": 0.800, "brier": 0.15},
    )
    assert decision.passed


def test_each_failed_criterion_is_named() -> None:
    decision = judge(
        "lead-conversion",
        "2",
        {"roc_auc": 0.70, "brier": 0.19},
        "1",
        {"roc_auc": 0.80, "brier": 0.15},
    )
    assert not decision.passed
    text = decision.explain()
    assert "roc_auc 0.7000 is below the champion's 0.8000 by more than 0.005" in text
    assert "brier 0.1900 is above the champion's 0.1500" in text
    assert "lead-conversion/2 refused against champion version 1" in text


def test_lower_is_better_metric() -> None:
    assert judge("deal-value", "3", {"pinball_loss": 10.0}, "2", {"pinball_loss": 11.0}).passed
    assert not judge("deal-value", "3", {"pinball_loss": 12.0}, "2", {"pinball_loss": 11.0}).passed


def test_missing_metric_fails() -> None:
    decision = judge("churn", "2", {"concordance": 0.7}, "1", {"concordance": 0.6, "brier": 0.1})
    assert "brier missing" in decision.explain()


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("lead-conversion", "models:/lead-conversion@champion"),
        ("deal-cycle@challenger", "models:/deal-cycle@challenger"),
        ("churn/12", "models:/churn/12"),
    ],
)
def test_model_references(text: str, uri: str) -> None:
    assert ModelReference.parse(text).uri == uri
    assert str(ModelReference.parse(text)) in (text, f"{text}@champion")


@pytest.mark.parametrize("text", ["lead-conversion/x", "leads", "deal-cycle@", "../etc/passwd"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(FunnelcastInputError):
        ModelReference.parse(text)
