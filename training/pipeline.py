"""The training pipeline: fit the models of DESIGN §4, log each to MLflow, register it, and move
`champion` through the gate when asked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import matplotlib.pyplot as plt
import mlflow

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.registry import MODEL_NAMES, ModelReference, load_model
from training.gate import GateDecision, judge
from training.model_card import render
from training.result import Evaluation, ModelSkipped, TrainingResult
from training.tracking import Candidate, champion_version, data_fingerprint, log_candidate
from training.tracking import set_champion as move_champion

if TYPE_CHECKING:
    from training.lead_conversion import Boosting

Trainer = Callable[..., TrainingResult]
Evaluator = Callable[..., Evaluation]

# registered name -> (module, train function, evaluate function)
_MODULES = {
    "lead-conversion": (
        "training.lead_conversion",
        "train_lead_conversion_result",
        "evaluate_lead_conversion",
    ),
    "deal-cycle": ("training.deal_cycle_run", "train_deal_cycle_result", "evaluate_deal_cycle"),
    "deal-value": ("training.deal_value", "train_deal_value", "evaluate_deal_value"),
    "lead-volume": ("training.lead_volume", "train_lead_volume", "evaluate_lead_volume"),
    "churn": ("training.churn", "train_churn", "evaluate_churn"),
}


_THREADED = ("lead-conversion", "deal-cycle", "deal-value", "churn")  # take `threads`


def _functions(name: str) -> tuple[Trainer, Evaluator]:
    module_name, train_name, evaluate_name = _MODULES[name]
    module = importlib.import_module(module_name)
    evaluate = getattr(module, evaluate_name, None)
    if evaluate is None:  # the run module wraps training; evaluation lives with the model code
        evaluate = getattr(importlib.import_module(module_name.removesuffix("_run")), evaluate_name)
    return getattr(module, train_name), evaluate


@dataclass
class ModelOutcome:
    """What happened to one model in a training run."""

    name: str
    status: Literal["trained", "skipped"]
    message: str = ""
    version: str | None = None
    result: TrainingResult | None = None
    decision: GateDecision | None = None


def parse_model_names(text: str | None) -> list[str]:
    if not text:
        return list(MODEL_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise FunnelcastInputError(
            f"unknown model(s) {', '.join(unknown)}; models: {', '.join(MODEL_NAMES)}"
        )
    return names


def train_models(
    funnel: Funnel,
    names: Sequence[str],
    *,
    seed: int = 0,
    tune: bool = False,
    promote: bool = False,
    extra_tags: dict[str, str] | None = None,
    threads: int | None = None,
    boosting: Boosting | None = None,
) -> list[ModelOutcome]:
    """Train, log and register each model; with `promote`, run the gate for each.

    `boosting`: fits lead-conversion's LightGBM candidate instead of the single-machine fit
    (`training.lead_conversion_dask.DaskBoosting` trains it on a Dask cluster).

    `threads`: LightGBM training threads of every model that uses LightGBM (None: each
    model's default, 1 but for deal-cycle's 2). One suits thousands of leads and shared cores,
    more suits hundreds of thousands on cores of their own (bench/train.py).
    """
    outcomes = []
    fingerprint = data_fingerprint(funnel.leads)
    for name in names:
        train, evaluate = _functions(name)
        options: dict[str, Any] = {"seed": seed}
        if name == "lead-conversion":
            options["tune"] = tune
            if boosting is not None:
                options["boosting"] = boosting
        if threads is not None and name in _THREADED:
            options["threads"] = threads
        try:
            result = train(funnel, **options)
        except (ModelSkipped, FunnelcastInputError) as skipped:
            # One model the data cannot support must not stop the others from training.
            outcomes.append(ModelOutcome(name, "skipped", str(skipped)))
            continue
        tags = {
            "data_fingerprint": fingerprint,
            "dataset": funnel.name,
            "split": result.evaluation.split,
            "seed": str(seed),
            **{f"rows.{k}": str(v) for k, v in result.evaluation.rows.items()},
            **result.tags,
            **(extra_tags or {}),
        }
        candidate = Candidate(
            name=name,
            model=result.model,
            metrics=result.evaluation.metrics,
            baselines=result.evaluation.baselines,
            params=result.params,
            tags=tags,
            figures=result.figures,
            input_example=_input_example(name, funnel, result.model),
            card=render(result, funnel),
        )
        version = log_candidate(candidate)
        outcome = ModelOutcome(name, "trained", version=version, result=result)
        if promote:
            outcome.decision = gate(
                name,
                version,
                funnel,
                seed=seed,
                evaluate=evaluate,
                candidate_evaluation=result.evaluation,
            )
            if outcome.decision.passed:
                move_champion(mlflow.MlflowClient(), name, version)
        outcomes.append(outcome)
    return outcomes


def _input_example(name: str, funnel: Funnel, model: Any) -> Any:
    """A few rows of what the model takes, for its MLflow signature and input example."""
    if name == "lead-volume":
        from training.lead_volume import input_example

        return input_example(model)
    if name == "churn":
        return None if funnel.customers is None else funnel.customers.head(5)
    # What a scorer sends: the lead's id, creation and features; never its outcome, close date
    # or amount (a signature with those would demand labels of the leads to score).
    known = ["lead_id", *(["created_at"] if funnel.dated else []), *funnel.features]
    return funnel.leads[[c for c in known if c in funnel.leads.columns]].head(5)


def gate(
    name: str,
    version: str,
    funnel: Funnel,
    *,
    seed: int = 0,
    evaluate: Evaluator | None = None,
    candidate_evaluation: Evaluation | None = None,
) -> GateDecision:
    """Evaluate candidate and champion on the same data and judge the candidate."""
    evaluate = evaluate or _functions(name)[1]
    client = mlflow.MlflowClient()
    current = champion_version(client, name)
    tracking_uri = mlflow.get_tracking_uri()
    candidate_model, _ = load_model(ModelReference(name, version=version), tracking_uri)
    if candidate_evaluation is None or current is not None:
        candidate_evaluation = evaluate(candidate_model, funnel, seed=seed)
    if current is None or current == version:
        return judge(name, version, candidate_evaluation.metrics, None, None)
    champion_model, _ = load_model(ModelReference(name, version=current), tracking_uri)
    champion_evaluation = evaluate(champion_model, funnel, seed=seed)
    return judge(name, version, candidate_evaluation.metrics, current, champion_evaluation.metrics)


def evaluate_reference(
    reference: ModelReference, funnel: Funnel, *, seed: int = 0
) -> tuple[str, Evaluation]:
    """Evaluate a registered model on this funnel's evaluation slice."""
    model, version = load_model(reference, mlflow.get_tracking_uri())
    return version, _functions(reference.name)[1](model, funnel, seed=seed)


def set_champion(name: str, version: str, reason: str | None = None) -> None:
    move_champion(mlflow.MlflowClient(), name, version, forced_reason=reason)


def fit_models(
    funnel: Funnel,
    names: Sequence[str],
    *,
    seed: int = 0,
    threads: int | None = None,
    final: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Train each model in memory, with no tracking or registry (back-tests refit this way).

    With `final`, deal-cycle is fitted on everything known (outcomes as of the end of the data)
    rather than on the deals before its validation date: a forecast from the end of the data
    needs the latest waves of closes, which the evaluation split holds back; the registered
    model keeps being the evaluated one. Returns the fitted models by name and, for the ones the
    data cannot support, why not.
    """
    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if final and name == "deal-cycle":
            try:
                models[name] = _final_deal_cycle(funnel, seed, threads)
            except (ModelSkipped, FunnelcastInputError) as reason:
                skipped[name] = str(reason)
            continue
        train, _ = _functions(name)
        options: dict[str, Any] = {"seed": seed}
        if threads is not None and name in _THREADED:
            options["threads"] = threads
        try:
            result = train(funnel, **options)
        except (ModelSkipped, FunnelcastInputError) as reason:
            skipped[name] = str(reason)
            continue
        models[name] = result.model
        for figure in result.figures.values():  # nobody looks at them: free them now
            plt.close(figure)
    return models, skipped


def _final_deal_cycle(funnel: Funnel, seed: int, threads: int | None) -> Any:
    from training.deal_cycle import CycleParams, fit_deal_cycle, observed_until

    if not funnel.dated:
        raise ModelSkipped("deal-cycle needs dated data")
    params = CycleParams() if threads is None else CycleParams(threads=threads)
    model, _ = fit_deal_cycle(
        funnel.leads,
        as_of=observed_until(funnel),
        features=tuple(funnel.features),
        horizon_days=funnel.horizon_days,
        seed=seed,
        params=params,
    )
    return model
