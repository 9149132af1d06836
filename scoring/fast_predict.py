"""LightGBM predictions on float arrays with less per-call overhead than `Booster.predict`.

`Booster.predict` spends about 60-80 µs per call in Python before and after the C library
does its work (parameter strings, a fresh predictor object, array checks): on one lead that
is most of the cost, and the API predicts with several boosters per lead. `predict_array`
makes the same C call (`LGBM_BoosterPredictForMat`) directly. It serves single-output models
(binary, regression) on C-contiguous float32/float64 arrays, and falls back to
`Booster.predict` for anything else; tests hold the two to identical numbers. One-row calls
use LightGBM's prepared single-row predictor (`...SingleRowFast`), a few microseconds each.
A booster compiled by `scoring.compiled_trees` predicts with its compiled function instead.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from lightgbm import basic as _lightgbm_basic

from scoring.compiled_trees import compiled_forest, note_use
from scoring.predict_threads import predict_options

# LightGBM's own handle on its C library (the pinned 4.7 has it; without, the plain path).
_LIB: Any = getattr(_lightgbm_basic, "_LIB", None)
_safe_call: Any = getattr(_lightgbm_basic, "_safe_call", None)

_NORMAL, _RAW_SCORE = 0, 1
_FLOAT32, _FLOAT64 = 0, 1
_ROW_MAJOR = 1


def predict_array(
    booster: Any,
    matrix: npt.NDArray[np.floating[Any]],
    *,
    raw_score: bool = False,
    num_iteration: int | None = None,
) -> npt.NDArray[np.float64]:
    """`booster.predict(matrix, raw_score=..., num_iteration=...)`, one value per row."""
    forest = compiled_forest(booster)
    if (
        forest is not None
        and (
            num_iteration == forest.iterations
            if num_iteration is not None and num_iteration > 0
            else booster.best_iteration <= 0 or booster.best_iteration == forest.iterations
        )
        and isinstance(matrix, np.ndarray)
        and matrix.ndim == 2
    ):
        return forest.predict(matrix, raw_score)
    note_use(booster)
    options = predict_options()
    handle = getattr(booster, "_handle", None)
    usable = (
        _LIB is not None
        and _safe_call is not None
        and handle is not None
        and isinstance(matrix, np.ndarray)
        and matrix.ndim == 2
        and matrix.dtype in (np.float32, np.float64)
        and _single_output(booster)
    )
    if not usable:
        return np.asarray(
            booster.predict(matrix, raw_score=raw_score, num_iteration=num_iteration, **options),
            dtype=np.float64,
        )
    if num_iteration is None:
        num_iteration = booster.best_iteration if booster.best_iteration > 0 else -1
    data = np.ascontiguousarray(matrix)
    rows, columns = data.shape
    out = np.empty(rows, dtype=np.float64)
    written = ctypes.c_int64(0)
    parameters = " ".join(f"{key}={value}" for key, value in options.items())
    if rows == 1:
        config = _fast_config(booster, raw_score, num_iteration, data.dtype, columns, parameters)
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                config,
                data.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return out
    _safe_call(
        _LIB.LGBM_BoosterPredictForMat(
            handle,
            data.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(_FLOAT32 if data.dtype == np.float32 else _FLOAT64),
            ctypes.c_int32(rows),
            ctypes.c_int32(columns),
            ctypes.c_int(_ROW_MAJOR),
            ctypes.c_int(_RAW_SCORE if raw_score else _NORMAL),
            ctypes.c_int(0),
            ctypes.c_int(num_iteration),
            ctypes.c_char_p(parameters.encode()),
            ctypes.byref(written),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
    )
    if written.value != rows:
        raise ValueError(f"LightGBM wrote {written.value} predictions for {rows} rows")
    return out


def _fast_config(
    booster: Any, raw_score: bool, num_iteration: int, dtype: Any, columns: int, parameters: str
) -> ctypes.c_void_p:
    """LightGBM's prepared single-row predictor for this booster and call shape, made once per
    thread (it holds a buffer, so threads must not share it) and freed with the booster."""
    key = (threading.get_ident(), raw_score, num_iteration, str(dtype), columns, parameters)
    configs: dict[tuple[Any, ...], ctypes.c_void_p] | None = getattr(
        booster, "_funnelcast_fast_configs", None
    )
    if configs is None:
        configs = {}
        booster._funnelcast_fast_configs = configs
        weakref.finalize(booster, _free_configs, configs)
    config = configs.get(key)
    if config is None:
        config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_RAW_SCORE if raw_score else _NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_FLOAT32 if dtype == np.float32 else _FLOAT64),
                ctypes.c_int32(columns),
                ctypes.c_char_p(parameters.encode()),
                ctypes.byref(config),
            )
        )
        configs[key] = config
    return config


def _free_configs(configs: dict[tuple[Any, ...], ctypes.c_void_p]) -> None:
    for config in configs.values():
        _LIB.LGBM_FastConfigFree(config)
    configs.clear()


def _single_output(booster: Any) -> bool:
    """One value per row (binary, regression)? Asked once per booster: the call costs ~10 µs."""
    known: bool | None = getattr(booster, "_funnelcast_single_output", None)
    if known is None:
        known = booster.num_model_per_iteration() == 1
        booster._funnelcast_single_output = known
    return known


def averaged_booster(boosters: Sequence[Any]) -> Any:
    """One booster whose raw score is the mean of `boosters`' raw scores.

    Cross-fitting leaves k fold boosters whose raw scores are averaged; predicting with k
    boosters costs k calls. Trees add up, so one model holding every fold's trees with its
    leaf values divided by k gives the same average in one call. Each booster keeps the trees
    it predicts with (its best iteration). Raw scores only: the merged model's `objective`
    transform of the mean is not the mean of the transforms.
    """
    import lightgbm as lgb

    if len(boosters) == 1:
        return boosters[0]
    share = 1.0 / len(boosters)
    header, tail, trees = "", "", []
    for booster in boosters:
        text = booster.model_to_string()
        start, end = text.index("\nTree=0\n"), text.index("\nend of trees")
        if not header:
            header = "\n".join(
                line for line in text[:start].split("\n") if not line.startswith("tree_sizes=")
            )
            tail = text[end:]
        for block in text[start + 1 : end].split("\n\n"):
            if block.strip():
                trees.append(_scaled_tree(block.strip(), share))
    body = "\n\n".join(
        f"Tree={index}\n" + tree.split("\n", 1)[1] for index, tree in enumerate(trees)
    )
    return lgb.Booster(model_str=f"{header}\n{body}\n{tail}")


def _scaled_tree(block: str, share: float) -> str:
    lines = block.split("\n")
    for position, line in enumerate(lines):
        if line.startswith("leaf_value="):
            values = [float(v) * share for v in line.removeprefix("leaf_value=").split()]
            lines[position] = "leaf_value=" + " ".join(repr(v) for v in values)
    return "\n".join(lines)
