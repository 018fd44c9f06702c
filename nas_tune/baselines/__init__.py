"""Pruning baselines that write the same results-store rows as a search: layer dropping, first-order
importance, retraining-free pruning (RFP) and standard (train-every-candidate) NAS; and a search run's front
scored the same way, plain or repaired (`front`), so the benchmarks can measure whether the pipeline's
add-ons in `nas_tune.pruning` help (README's table: repair lowered the hypervolume on SST-2 and STS-B)."""

from nas_tune.baselines.base import (
    DEFAULT_BUDGETS,
    Baseline,
    BaselineInputs,
    BaselineSettings,
    Candidate,
    GridBaseline,
    Scorer,
    load_inputs,
    run_baseline,
)
from nas_tune.baselines.importance import Importance
from nas_tune.baselines.layer_drop import LayerDrop
from nas_tune.baselines.rfp import RFP
from nas_tune.baselines.standard_nas import StandardNAS
from nas_tune.errors import UserError
from nas_tune.settings import BASELINE_NAMES

BASELINES: dict[str, type[Baseline]] = {cls.name: cls for cls in (LayerDrop, Importance, RFP, StandardNAS)}
assert tuple(BASELINES) == BASELINE_NAMES, (
    "nas_tune.settings.BASELINE_NAMES lists every baseline, for the fast command line"
)


def baseline_class(name: str) -> type[Baseline]:
    if name not in BASELINES:
        raise UserError(f"unknown baseline '{name}'; choose one of: {', '.join(BASELINES)}.")
    return BASELINES[name]


__all__ = [
    "BASELINES",
    "DEFAULT_BUDGETS",
    "Baseline",
    "BaselineInputs",
    "BaselineSettings",
    "Candidate",
    "GridBaseline",
    "Scorer",
    "baseline_class",
    "load_inputs",
    "run_baseline",
]
