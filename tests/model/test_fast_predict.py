"""The direct LightGBM predict and the merged fold boosters give LightGBM's own numbers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from scoring.fast_predict import averaged_booster, predict_array
from tests.model.cycle_fixtures import CycleRun, cycle_run_fixture

cycle_run = cycle_run_fixture


def _booster(objective: str, rows: int = 2_000, seed: int = 0) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    x[rng.random(rows) < 0.1, 2] = np.nan
    y = (x[:, 0] + rng.normal(size=rows) > 0).astype(float) if objective == "binary" else x[:, 1]
    params = {"objective": objective, "verbose": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=30), x


def test_predict_array_equals_booster_predict() -> None:
    booster, x = _booster("binary")
    for raw in (False, True):
        one_rows = [x[i : i + 1] for i in range(40)] + [x[:1].astype(np.float32)]
        for matrix in (x, x.astype(np.float32), np.asfortranarray(x), *one_rows):
            expected = booster.predict(matrix, raw_score=raw)
            np.testing.assert_array_equal(predict_array(booster, matrix, raw_score=raw), expected)
    for matrix in (x, x[3:4]):
        np.testing.assert_array_equal(
            predict_array(booster, matrix, num_iteration=7),
            booster.predict(matrix, num_iteration=7),
        )


def test_merged_boosters_score_the_mean_of_the_folds() -> None:
    folds = [_booster("regression", seed=s)[0] for s in range(3)]
    _, x = _booster("regression", seed=9)
    mean = np.mean([b.predict(x, raw_score=True) for b in folds], axis=0)
    merged = averaged_booster(folds)
    assert merged.num_trees() == sum(b.num_trees() for b in folds)
    np.testing.assert_allclose(predict_array(merged, x, raw_score=True), mean, atol=1e-12)


def test_deal_scores_from_merged_boosters_equal_fold_by_fold(cycle_run: CycleRun) -> None:
    design = cycle_run.result.model.design
    attributes = design.attribute_matrix(cycle_run.deals.head(3_000))
    np.testing.assert_allclose(
        design.deal_score_matrix(attributes),
        design._deal_score_matrix_by_fold(attributes),
        atol=1e-12,
    )
