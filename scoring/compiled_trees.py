"""LightGBM boosters compiled to machine code (lleaves), for the predictions that serve scores.

LightGBM's own predict spends most of its time per row outside the trees (a sparse copy of each
row, a predictor object): on the API's 27 deal-week rows per lead that is 5-15 ms for 100 leads.
lleaves compiles a booster's trees with LLVM into one function over float64 rows, 4-10 times
faster here and equal to LightGBM's raw scores to the last few ulps (`tests/model/
test_compiled_trees.py` holds them to 1e-12 on every booster of the trained models).

`scoring.champions.compile_scorer` scores one warm-up lead inside `recording_use` (which notes
every booster `scoring.fast_predict.predict_array` predicts with) and compiles those with
`compile_boosters`; from then on `predict_array` calls the compiled function for them. The
machine code is cached in `cache_dir` under the SHA-256 of the booster's model text (with the
lleaves and llvmlite versions and the CPU): a restart, another worker process or the next
command loads it in milliseconds instead of compiling again (a few seconds per booster).
The cache holds native code that the service loads, so it lives with the local model copies in
`$FUNNELCAST_HOME/models/` and gets the same protection (docs/security.md).

Only whole boosters (all iterations) with one output are compiled, and only objectives whose
transform is known here (binary: sigmoid; regression kinds: identity); anything else, or any
failure to compile, keeps LightGBM's predict, with a warning in the log.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Objectives whose predict is the raw score, or its sigmoid.
_IDENTITY = frozenset(
    {"regression", "regression_l2", "regression_l1", "huber", "fair", "quantile", "mape"}
)
_OBJECTIVE = re.compile(r"^objective=(\S+)(.*)$", re.MULTILINE)
_SIGMOID = re.compile(r"sigmoid:([0-9.eE+-]+)")

_FORESTS: weakref.WeakKeyDictionary[Any, CompiledForest] = weakref.WeakKeyDictionary()
_RECORDING = threading.local()
# lleaves' entry point (rows in, raw scores out, first row, end row), declared with plain
# addresses: building two `POINTER(c_double)` arguments per call cost ~10 us, a tenth of a
# one-lead request's seven predictions.
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class CompiledForest:
    """A booster's trees as one compiled function; `predict` mirrors `Booster.predict`."""

    model: Any  # lleaves.Model, compiled to raw scores (it owns the machine code)
    sigmoid: float | None  # binary: probability = 1 / (1 + exp(-sigmoid * raw)); None: identity
    iterations: int  # the booster's, all of which are compiled
    entry: Any  # the model's compiled function, as `_ENTRY`

    def predict(self, matrix: npt.NDArray[np.floating[Any]], raw_score: bool) -> FloatArray:
        data = matrix
        if data.dtype != np.float64 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=np.float64)
        rows, columns = data.shape
        if columns != self.model.num_feature() or rows >= 2**31 - 1:
            raise ValueError(f"{rows} x {columns} rows for a model of {self.model.num_feature()}")
        raw = np.empty(rows, dtype=np.float64)
        # lleaves' entry point, called directly: its `predict` costs ~50 us a call in checks
        # and copies, which is most of the time of the API's few-row predictions. ctypes
        # releases the GIL for the call.
        self.entry(data.ctypes.data, raw.ctypes.data, 0, rows)
        if raw_score or self.sigmoid is None:
            return raw
        return np.asarray(1.0 / (1.0 + np.exp(-self.sigmoid * raw)), dtype=np.float64)


def compiled_forest(booster: Any) -> CompiledForest | None:
    """The compiled trees of `booster`, when `compile_boosters` compiled it in this process."""
    try:
        return _FORESTS.get(booster)
    except TypeError:  # not weak-referenceable: never compiled
        return None


def _transform(model_text: str) -> tuple[bool, float | None]:
    """(supported, sigmoid) from the model text's objective line."""
    found = _OBJECTIVE.search(model_text)
    if found is None:
        return False, None
    name, rest = found.group(1), found.group(2)
    if name == "binary":
        sigmoid = _SIGMOID.search(rest)
        return True, float(sigmoid.group(1)) if sigmoid else 1.0
    return name in _IDENTITY, None


def _cache_key(model_text: str) -> str:
    import lleaves
    import llvmlite
    import llvmlite.binding as llvm

    versions = (
        f"{getattr(lleaves, '__version__', '?')}|{llvmlite.__version__}|{llvm.get_host_cpu_name()}"
    )
    return hashlib.sha256((versions + "\n" + model_text).encode()).hexdigest()


def _compile(booster: Any, cache_dir: Path | None) -> CompiledForest | None:
    import lleaves

    text = booster.model_to_string(num_iteration=-1)
    supported, sigmoid = _transform(text)
    if not supported or booster.num_model_per_iteration() != 1:
        return None
    with tempfile.TemporaryDirectory(prefix="funnelcast-trees-") as scratch:
        model_file = Path(scratch) / "model.txt"
        model_file.write_text(text, encoding="utf-8")
        model = lleaves.Model(model_file=str(model_file))
        if cache_dir is None:
            model.compile(raw_score=True)
        else:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cached = cache_dir / f"{_cache_key(text)}.o"
            if cached.exists():
                model.compile(cache=str(cached), raw_score=True)
            else:
                # Compile into a private name, then rename: other processes never see half a file.
                private = cache_dir / f".{cached.name}.{os.getpid()}.{threading.get_ident()}"
                model.compile(cache=str(private), raw_score=True)
                private.replace(cached)
    if getattr(model, "_c_entry_func", None) is None:  # another lleaves than the pinned one
        return None
    address = ctypes.cast(model._c_entry_func, ctypes.c_void_p).value
    if not address:
        return None
    return CompiledForest(model, sigmoid, booster.current_iteration(), _ENTRY(address))


def note_use(booster: Any) -> None:
    """Called by `predict_array` for each booster that predicts with LightGBM: inside
    `recording_use`, the booster is noted (so that a warm-up call finds a scorer's boosters)."""
    noted: list[Any] | None = getattr(_RECORDING, "boosters", None)
    if noted is not None:
        noted.append(booster)


@contextmanager
def recording_use() -> Iterator[list[Any]]:
    """The boosters that predict (on this thread) inside the block, in a list."""
    noted: list[Any] = []
    _RECORDING.boosters = noted
    try:
        yield noted
    finally:
        _RECORDING.boosters = None


def compile_boosters(boosters: Iterable[Any], cache_dir: Path | None = None) -> int:
    """Compile each of `boosters` not compiled yet in this process; returns how many of them are
    compiled now. Failures are logged, never raised: the booster keeps LightGBM's predict."""
    compiled = 0
    for booster in {id(b): b for b in boosters}.values():
        if compiled_forest(booster) is not None:
            compiled += 1
            continue
        try:
            forest = _compile(booster, cache_dir)
        except Exception as error:  # a compiler failure must not stop scoring
            log.warning("compiling a booster failed; LightGBM predicts it: %s", error)
            continue
        if forest is not None:
            with _LOCK:
                _FORESTS[booster] = forest
            compiled += 1
    return compiled
