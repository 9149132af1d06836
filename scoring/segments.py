"""Segment filters: equality on lead columns, with values given as text (CLI, API, goals files).

Keys are ANDed. A value matches a cell when the cell's text equals it, except that numbers compare
as numbers (`3.0` matches "3" and "3.0", an integer id matches "3") and booleans match
true/false, 1/0 or yes/no in any case. Missing cells match nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from scoring.errors import FunnelcastInputError

BoolArray = npt.NDArray[np.bool_]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class SegmentError(FunnelcastInputError):
    """A segment names a column the leads do not have."""


def check_segment(leads: pd.DataFrame, segment: Mapping[str, str]) -> None:
    """Raise `SegmentError` naming every unknown key and listing the lead columns."""
    unknown = [key for key in segment if key not in leads.columns]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        known = ", ".join(str(column) for column in leads.columns)
        raise SegmentError(
            f"unknown segment key{plural} {', '.join(map(repr, unknown))}; "
            f"segments filter on lead columns: {known}"
        )


def segment_mask(frame: pd.DataFrame, segment: Mapping[str, str]) -> BoolArray:
    """Rows of `frame` matching every key of `segment` (keys must be columns of `frame`)."""
    mask = np.ones(len(frame), dtype=bool)
    for key, wanted in segment.items():
        mask &= column_matches(frame[key], str(wanted))
    return mask


def segment_customers(
    customers: pd.DataFrame | None, leads: pd.DataFrame, segment: Mapping[str, str]
) -> pd.DataFrame | None:
    """Customers of the segment: by their own column when they have the key, else by account.

    A key the customers lack selects the customers whose `account_id` belongs to a lead matching
    it; without `account_id` in both tables no customer can be placed, so none is selected.
    """
    check_segment(leads, segment)
    if customers is None or not segment:
        return customers
    own = {key: value for key, value in segment.items() if key in customers.columns}
    through_leads = {key: value for key, value in segment.items() if key not in own}
    mask = segment_mask(customers, own)
    if through_leads:
        if "account_id" in leads.columns and "account_id" in customers.columns:
            matching = leads.loc[segment_mask(leads, through_leads), "account_id"]
            mask &= _is_in(customers["account_id"], matching)
        else:
            mask[:] = False
    return customers.loc[mask]


def _is_in(values: pd.Series, allowed: pd.Series) -> BoolArray:
    """`values.isin(allowed)` through one factorisation: `isin` on Arrow strings loops in Python."""
    codes, _ = pd.factorize(pd.concat([allowed, values], ignore_index=True))
    allowed_codes = codes[: len(allowed)]
    return np.isin(codes[len(allowed) :], allowed_codes[allowed_codes >= 0])


def column_matches(values: pd.Series, wanted: str) -> BoolArray:
    """Cells of `values` equal to the text `wanted` in the sense of this module."""
    dtype = values.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        number = _number(wanted)
        if number is None:
            return np.zeros(len(values), dtype=bool)
        return values.eq(number).to_numpy(dtype=bool, na_value=False)
    # Text, categories, booleans and mixed objects: decide once per distinct value.
    codes, uniques = pd.factorize(values)
    hits = [_cell_matches(candidate, wanted) for candidate in uniques]
    hits.append(False)  # code -1 (a missing cell) picks this last entry
    return np.asarray(hits, dtype=bool)[codes]


def _cell_matches(candidate: object, wanted: str) -> bool:
    if isinstance(candidate, bool | np.bool_):
        return wanted.strip().lower() in (_TRUE if candidate else _FALSE)
    if isinstance(candidate, int | float | np.integer | np.floating):
        number = _number(wanted)
        return number is not None and bool(candidate == number)
    return str(candidate) == wanted


def _number(text: str) -> int | float | None:
    """The number `text` spells, if any (ints stay exact so large ids compare exactly)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
