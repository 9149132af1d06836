"""Compiled trees (lleaves) give LightGBM's numbers, are cached, and fall back when they cannot.

The models are copies of the session's `trained_forecast` ones (a pickle round trip makes new
booster objects), so compiling them here changes nothing for the other tests.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from scoring.champions import compile_scorer
from scoring.compiled_trees import compile_boosters, compiled_forest
from scoring.fast_predict import predict_array
from scoring.lead_scores import SCORE_COLUMNS, LeadScorer
from scoring.settings import Settings
from tests.model.conftest import Trained

# Every number a score carries (not the id, the integer score or the grade, checked apart).
SCORE_FIELDS = tuple(c for c in SCORE_COLUMNS if c not in ("lead_id", "score", "grade"))


def _fresh_scorer(trained: Trained) -> LeadScorer:
    models = pickle.loads(pickle.dumps(trained.models))
    return LeadScorer(models.conversion, models.cycle, models.value)


def test_compiled_scores_equal_lightgbm_scores(trained_forecast: Trained, tmp_path: Path) -> None:
    scorer = _fresh_scorer(trained_forecast)
    leads = trained_forecast.funnel.leads.head(500)
    records: list[dict[str, object]] = [
        {str(k): v for k, v in row.items()} for row in leads[scorer.attributes].to_dict("records")
    ]
    created = leads["created_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    before = scorer.score(records, created)
    one_before = scorer.score(records[:1], created[:1])

    compiled = compile_scorer(scorer, tmp_path / "cache")
    # lead-conversion, deal-cycle's closing, winning and deal-score boosters, deal-value.
    assert compiled >= 5
    assert compiled_forest(scorer.cycle.closing) is not None  # type: ignore[union-attr]
    after = scorer.score(records, created)
    one_after = scorer.score(records[:1], created[:1])
    for field in SCORE_FIELDS:
        expected, got = getattr(before, field), getattr(after, field)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=field)
        np.testing.assert_allclose(
            getattr(one_after, field), getattr(one_before, field), rtol=1e-12, atol=1e-12
        )
    assert after.grade == before.grade
    assert np.array_equal(after.score, before.score)
    # Percentiles are equal exactly, even for leads scored like a training lead (ties).
    assert np.array_equal(after.percentile, before.percentile)


def test_the_cache_is_reused_by_the_next_process(trained_forecast: Trained, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _fresh_scorer(trained_forecast)
    compile_scorer(first, cache)
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert files and all(name.endswith(".o") for name in files)
    assert not [name for name in files if name.startswith(".")]  # no half-written file left

    second = _fresh_scorer(trained_forecast)  # new boosters, as another process has
    assert compiled_forest(second.conversion.scorer.averaged()) is None  # type: ignore[attr-defined]
    compile_scorer(second, cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files  # loaded, not rebuilt
    assert compiled_forest(second.conversion.scorer.averaged()) is not None  # type: ignore[attr-defined]


def test_unsupported_objectives_keep_lightgbm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 3))
    counts = rng.poisson(np.exp(features[:, 0]))
    booster = lgb.train(
        {"objective": "poisson", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(features, counts),
        num_boost_round=5,
    )
    expected = np.asarray(booster.predict(features))
    assert np.allclose(predict_array(booster, features), expected)
    assert compile_boosters([booster], tmp_path) == 0
    assert compiled_forest(booster) is None  # exp() of the raw score: not compiled
    assert np.allclose(predict_array(booster, features), expected)


def test_compiling_can_be_turned_off(
    trained_forecast: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNELCAST_HOME", str(tmp_path))
    monkeypatch.setenv("FUNNELCAST_COMPILED_TREES", "false")
    settings = Settings()
    assert settings.compiled_cache is None
    scorer = _fresh_scorer(trained_forecast)
    assert compile_scorer(scorer, settings.compiled_cache) == 0
    assert compiled_forest(scorer.cycle.closing) is None  # type: ignore[union-attr]
