"""How far each lead got through the stage order (for `stage_conversion.<stage>` KPIs).

A lead reached a stage if it has an event at that stage or at any later stage of the order:
CRMs skip stages, and a skipped stage counts as passed. Reaching `won` means outcome `won`, and a
won lead has passed every stage. Events at stages outside the order (`lost`, `customer`, ...)
say nothing about progress and are ignored; all of a lead's events count, whenever they happened.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scoring.funnel import Funnel
from scoring.periods import BoolArray, IntArray

WON = "won"


def conversion_stages(funnel: Funnel) -> list[str]:
    """The stages that get a conversion: those after the first stage of the order in the data.

    "In the data" means some event is at that stage, or, for `won`, some lead is won. Stages
    before the first one present are not part of this data set's funnel; later ones that never
    occur are kept, as they were skipped by everybody (their conversion is then 1 or the next's).
    """
    if funnel.stage_events is None:
        return []
    present = set(funnel.stage_events["stage"].dropna().astype(str).unique())
    if WON in funnel.stages and funnel.leads["outcome"].eq(WON).any():
        present.add(WON)
    for index, stage in enumerate(funnel.stages):
        if stage in present:
            return list(funnel.stages[index + 1 :])
    return []


def furthest_stage(
    events: pd.DataFrame, stages: Sequence[str], lead_ids: pd.Series, won: BoolArray
) -> IntArray:
    """For each lead of `lead_ids`, the index in `stages` of the furthest stage reached, or -1."""
    rank_of = {stage: i for i, stage in enumerate(stages)}
    # Few distinct stage names: rank each once rather than mapping millions of strings.
    stage_codes, stage_names = pd.factorize(events["stage"])
    stage_rank = np.array([rank_of.get(str(name), -1) for name in stage_names] + [-1])
    ranks = stage_rank[stage_codes].astype(np.int64)  # -1: outside the order or missing
    # One factorisation of both id columns puts events and leads on the same integer codes: a
    # hash join at a fraction of the cost of a groupby on string ids plus a reindex.
    codes, uniques = pd.factorize(pd.concat([lead_ids, events["lead_id"]], ignore_index=True))
    lead_codes, event_codes = codes[: len(lead_ids)], codes[len(lead_ids) :]
    known = event_codes >= 0
    furthest = np.full(len(uniques) + 1, -1, dtype=np.int64)  # last slot: leads without an id
    np.maximum.at(furthest, event_codes[known], ranks[known])
    result = furthest[lead_codes]
    if WON in rank_of:
        result = np.where(won, np.maximum(result, rank_of[WON]), result)
    return np.asarray(result, dtype=np.int64)


def reached(furthest: IntArray, won: BoolArray, stages: Sequence[str], stage: str) -> BoolArray:
    """Which leads reached `stage` (a stage of `stages`), given `furthest_stage`."""
    if stage == WON:
        return won
    return np.asarray(furthest >= list(stages).index(stage))
