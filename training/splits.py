"""Labels and train/evaluation splits that respect time.

Lead-conversion label: won within `horizon_days` of creation. A lead's label is *settled* when
it is won (within or after the horizon), lost, or old enough that the horizon has passed by the
time the data was extracted; unsettled leads (open and younger than the horizon) are left out,
never counted as lost. Dated data is split in time: fit on leads created before a validation
date, evaluate on those created after it. Undated data gets a stratified random split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from scoring.funnel import Funnel

DAY = pd.Timedelta(days=1)


def conversion_labels(funnel: Funnel) -> pd.DataFrame:
    """The leads whose conversion label is settled, with a `label` column (1 = converted).

    For undated data the label is the final outcome and open leads are left out.
    """
    leads = funnel.leads
    won = (leads["outcome"] == "won").to_numpy()
    if not funnel.dated:
        settled = (leads["outcome"] != "open").to_numpy()
        labelled = leads[settled].copy()
        labelled["label"] = won[settled].astype(np.int8)
        return labelled
    horizon = pd.Timedelta(days=funnel.horizon_days)
    cycle = leads["closed_at"] - leads["created_at"]
    converted = won & (cycle <= horizon).fillna(False).to_numpy()
    observed = funnel.observed_until or leads[["created_at", "closed_at"]].max().max()
    aged = (leads["created_at"] + horizon <= observed).to_numpy()
    lost = (leads["outcome"] == "lost").to_numpy()
    settled = converted | lost | aged
    labelled = leads[settled].copy()
    labelled["label"] = converted[settled].astype(np.int8)
    return labelled


@dataclass(frozen=True)
class Split:
    """Row positions of a labelled frame for fitting and for evaluation, and how they were made."""

    train: np.ndarray
    test: np.ndarray
    kind: str  # "time" or "stratified-random"
    validation_date: pd.Timestamp | None = None

    def describe(self) -> str:
        if self.kind == "time":
            return f"time split: fit on leads created before {self.validation_date}, evaluate after"
        return "stratified random split (the data has no dates)"


def split_labelled(
    labelled: pd.DataFrame, dated: bool, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Split settled leads: the last `test_fraction` by creation time, or stratified at random."""
    positions = np.arange(len(labelled))
    if not dated:
        train, test = train_test_split(
            positions,
            test_size=test_fraction,
            random_state=seed,
            stratify=labelled["label"].to_numpy(),
        )
        return Split(np.sort(train), np.sort(test), "stratified-random")
    created = labelled["created_at"].to_numpy()
    validation_date = pd.Timestamp(np.quantile(created.astype("int64"), 1 - test_fraction))
    is_test = created >= validation_date.to_datetime64()
    return Split(positions[~is_test], positions[is_test], "time", validation_date)
