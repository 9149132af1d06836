"""LightGBM for lead-conversion on a Dask cluster (`funnelcast train --engine dask`).

Only the boosting moves to the cluster; the split, the feature coding, the baselines and the
judging stay those of `training.lead_conversion`, so the two engines' candidates are compared on
the same evaluation slice. The training slice's feature codes (what LightGBM reads: numbers as
they are, categories as level codes) are written as partitioned Parquet to a folder every worker
can read, read back by the workers with `dask.dataframe`, persisted on them and spread evenly;
`lightgbm.dask.DaskLGBMClassifier` then trains on each worker's own partitions (data-parallel
trees). The training rows never travel through this process again.

LightGBM's Dask interface has no early stopping, so the single-machine recipe runs in three
distributed steps: (1) boost on the fit part of the first validation fold `ROUND_CHUNK` rounds at
a time; after each chunk the workers compute the log loss of their validation partitions at
every `CURVE_STEP` rounds, and boosting stops once the best count is `EARLY_STOPPING_ROUNDS`
behind; (2) the held-out raw scores at the best count (one number per validation lead) come back
for the Platt calibration; (3) refit on the whole training slice with the round count scaled to
its size, as the single-machine dated path does.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.conversion import BoostedTrees, LeadConversionModel, PlattCalibration
from scoring.dask_cluster import Cluster, free_loopback_ports, rows_by_worker
from scoring.errors import FunnelcastInputError
from scoring.features import FeatureSpec
from training.lead_conversion_candidates import EARLY_STOPPING_ROUNDS, MAX_ROUNDS, Folds

DASK_MAX_ROUNDS = MAX_ROUNDS
ROUND_CHUNK = 200
CURVE_STEP = 10
ROWS_PER_PARTITION = 100_000
_LABEL = "__label__"
# Settings `DaskLGBMClassifier` sets itself (threads per worker) or that make no sense there.
_DROPPED = ("num_threads", "force_col_wise")


class DaskBoosting:
    """`fit_lightgbm`'s replacement that boosts on a Dask cluster (see the module docstring).

    Args:
        cluster: the connected cluster.
        work_dir: a folder every worker can read and write under the same path; a temporary
            folder inside it holds the partitioned Parquet and is removed afterwards.
    """

    def __init__(self, cluster: Cluster, work_dir: Path) -> None:
        self.cluster = cluster
        self.work_dir = work_dir
        self.rows_by_worker: dict[str, int] = {}

    def __call__(
        self,
        spec: FeatureSpec,
        train: pd.DataFrame,
        folds: Folds,
        settings: dict[str, Any],
        horizon_days: int,
    ) -> LeadConversionModel:
        import dask.dataframe as dd

        fit_rows, validate_rows = folds[0]
        names = list(spec.feature_names_)
        frame = pd.DataFrame(spec.codes(train).astype(np.float32), columns=names)
        frame[_LABEL] = train["label"].to_numpy().astype(np.int8)
        workers = self.cluster.workers
        self.work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="lead-conversion-", dir=self.work_dir))
        try:
            parts = {}
            for name, rows in (("fit", fit_rows), ("validate", validate_rows)):
                _write_partitions(frame.iloc[rows], folder / name, len(workers))
                parts[name] = _spread(self.cluster, folder / name)
            del frame
            self.rows_by_worker = rows_by_worker(self.cluster.client, parts["fit"][1])
            if len(self.rows_by_worker) < min(len(workers), 2):
                raise FunnelcastInputError(
                    f"the training data landed on {len(self.rows_by_worker)} of "
                    f"{len(workers)} Dask workers"
                )
            lightgbm = _lightgbm_params(settings)
            categorical = sorted(spec.categories_)
            (fit, fit_futures), (validate, validate_futures) = parts["fit"], parts["validate"]
            client = self.cluster.client
            fold_booster: lgb.Booster | None = None
            while True:  # early stopping, a chunk of rounds at a time
                fold_booster = self._boost(
                    fit, fit_futures, names, categorical, lightgbm, ROUND_CHUNK, fold_booster
                )
                best, curve = _best_rounds(client, validate, names, fold_booster)
                fitted = fold_booster.current_iteration()
                if fitted - best >= EARLY_STOPPING_ROUNDS or fitted >= DASK_MAX_ROUNDS:
                    break
            held_out, won = _raw_scores(client, validate, names, fold_booster, best)
            calibration = PlattCalibration.fit(held_out, won)
            fit_share = len(fit_rows) / (len(fit_rows) + len(validate_rows))
            rounds = min(MAX_ROUNDS, max(1, round(best / math.sqrt(fit_share))))
            everything = dd.concat([fit, validate])
            booster = self._boost(
                everything, fit_futures + validate_futures, names, categorical, lightgbm, rounds
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        params = {
            **settings,
            "engine": "dask",
            "dask_workers": len(workers),
            "dask_workers_with_data": len(self.rows_by_worker),
            "dask_rows_by_worker": dict(self.rows_by_worker),
            "fold_iterations": [best],
            "fold_rounds_fitted": fold_booster.current_iteration(),
            "validation_logloss_curve": curve,
            "trees": [booster.num_trees()],
        }
        return LeadConversionModel(
            "lightgbm", spec, BoostedTrees((booster,)), horizon_days, calibration, params
        )

    def _boost(
        self,
        data: Any,
        futures: list[Any],
        names: list[str],
        categorical: list[str],
        params: dict[str, Any],
        rounds: int,
        init: lgb.Booster | None = None,
    ) -> lgb.Booster:
        """One distributed fit of `rounds` more rounds (after `init`'s) over `data`'s
        partitions (the results of `futures`) where they are; the fitted booster."""
        from lightgbm.dask import DaskLGBMClassifier

        network: dict[str, Any] = {}
        if self.cluster.local:
            # Every worker is on 127.0.0.1: name LightGBM's machines there, one free port
            # each, instead of letting it search ports on all interfaces.
            holders = rows_by_worker(self.cluster.client, futures)
            ports = free_loopback_ports(len(holders))
            network["machines"] = ",".join(f"127.0.0.1:{port}" for port in ports)
        model = DaskLGBMClassifier(
            client=self.cluster.client, n_estimators=rounds, **params, **network
        )
        model.fit(data[names], data[_LABEL], categorical_feature=categorical, init_model=init)
        booster = model.booster_
        return lgb.Booster(model_str=booster.model_to_string())


def _spread(cluster: Cluster, folder: Path) -> tuple[Any, list[Any]]:
    """The Parquet partitions in `folder` read by the workers in turn (partition i by worker
    i mod n, so every worker holds its share), as a dask DataFrame over those futures."""
    import dask.dataframe as dd
    from distributed import wait

    lazy = dd.read_parquet(str(folder))
    workers = cluster.workers
    futures = [
        cluster.client.compute(part, workers=[workers[index % len(workers)]])
        for index, part in enumerate(lazy.to_delayed())
    ]
    wait(futures)
    return dd.from_delayed(futures, meta=lazy._meta), futures


def _lightgbm_params(settings: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in settings.items() if k not in _DROPPED}
    params["random_state"] = params.pop("seed", 0)
    return params


def _write_partitions(frame: pd.DataFrame, folder: Path, workers: int) -> None:
    """`frame` as `part-NNNNN.parquet` files: at least two per worker, at most
    `ROWS_PER_PARTITION` rows each."""
    count = max(2 * workers, math.ceil(len(frame) / ROWS_PER_PARTITION))
    count = max(1, min(count, len(frame)))
    folder.mkdir(parents=True)
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), count)):
        frame.iloc[rows].to_parquet(folder / f"part-{index:05d}.parquet", index=False)


def _curve_partition(
    part: pd.DataFrame, names: Sequence[str], model: str, grid: Sequence[int]
) -> tuple[np.ndarray, int]:
    """Summed log loss of one partition at each round count of `grid`, and its rows."""
    booster = lgb.Booster(model_str=model)
    matrix = part[list(names)].to_numpy(np.float32)
    won = part[_LABEL].to_numpy()
    raw = np.zeros(len(part))
    losses = np.empty(len(grid))
    done = 0
    for position, rounds in enumerate(grid):
        raw += np.asarray(
            booster.predict(
                matrix,
                raw_score=True,
                start_iteration=done,
                num_iteration=rounds - done,
                num_threads=1,
            )
        )
        done = rounds
        losses[position] = np.sum(np.logaddexp(0.0, raw) - won * raw)
    return losses, len(part)


def _best_rounds(
    client: Any, validate: Any, names: list[str], booster: lgb.Booster
) -> tuple[int, dict[int, float]]:
    """The round count with the lowest validation log loss (on a `CURVE_STEP` grid), computed
    by the workers on their own partitions, and the curve."""
    from dask import delayed

    fitted = booster.current_iteration()
    grid = sorted({*range(CURVE_STEP, fitted + 1, CURVE_STEP), fitted})
    # hash=False: a content-hashed key would be shared with the next send of the same booster,
    # which can race the release of this one on the workers ("lost dependencies").
    model = client.scatter(booster.model_to_string(), broadcast=True, hash=False)
    tasks = [delayed(_curve_partition)(p, names, model, grid) for p in validate.to_delayed()]
    results = client.gather(client.compute(tasks))
    total = sum(losses for losses, _ in results)
    rows = sum(n for _, n in results)
    if rows == 0:
        raise FunnelcastInputError("the validation fold is empty")
    mean = np.asarray(total) / rows
    curve = {rounds: round(float(loss), 6) for rounds, loss in zip(grid, mean, strict=True)}
    return grid[int(np.argmin(mean))], curve


def _raw_partition(
    part: pd.DataFrame, names: Sequence[str], model: str, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    booster = lgb.Booster(model_str=model)
    matrix = part[list(names)].to_numpy(np.float32)
    raw = booster.predict(matrix, raw_score=True, num_iteration=rounds, num_threads=1)
    return np.asarray(raw), part[_LABEL].to_numpy()


def _raw_scores(
    client: Any, validate: Any, names: list[str], booster: lgb.Booster, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out raw scores and labels of the validation leads (one number each)."""
    from dask import delayed

    model = client.scatter(booster.model_to_string(), broadcast=True, hash=False)
    tasks = [delayed(_raw_partition)(p, names, model, rounds) for p in validate.to_delayed()]
    results = client.gather(client.compute(tasks))
    return (
        np.concatenate([raw for raw, _ in results]),
        np.concatenate([won for _, won in results]),
    )
