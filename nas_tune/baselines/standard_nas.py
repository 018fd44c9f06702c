"""Standard NAS: the same searchers, but every candidate is fine-tuned on its own before it is scored.

The paper's expensive reference point. A searcher proposes sub-networks of the *pre-trained* model; each trial
slices its sub-network out, fine-tunes it with plain fine-tuning for a short budget (`--epochs`, default 1) and
scores it like every other baseline. Trials run through the search driver (asynchronous, resumable); worker
threads share the loaded pre-trained model, so no trial reloads it.
"""

from __future__ import annotations

from typing import Any

from nas_tune.baselines.base import Baseline, BaselineInputs, BaselineSettings, Scorer
from nas_tune.errors import UserError
from nas_tune.metrics import count_parameters
from nas_tune.search.driver import SearchDriver
from nas_tune.search.executors import LocalExecutor
from nas_tune.search.searchers import SEARCHERS, searcher_class, start_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import Config, make_search_space

# Spaces whose sub-networks have the same heads and units in every kept layer: only those are models of one
# shape (ModelShape, which the adapter reads from an extracted model's config), which fine-tuning needs.
UNIFORM_SPACES = ("small", "layer")


class StandardNAS(Baseline):
    name = "standard_nas"
    prunes_finetuned = False
    default_epochs = 1

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        if settings.search_space not in UNIFORM_SPACES:
            raise UserError(
                f"standard_nas fine-tunes each sub-network as a model of its own, which needs the same heads and "
                f"units in every layer; use --search-space {' or '.join(UNIFORM_SPACES)}, not {settings.search_space}."
            )
        if searcher_class(settings.search.searcher).multi_fidelity:
            single = ", ".join(name for name, cls in SEARCHERS.items() if not cls.multi_fidelity)
            raise UserError(
                f"standard_nas trains every candidate in full; use a single-fidelity searcher "
                f"({single}), not {settings.search.searcher}."
            )
        self.search = make_search_space(settings.search_space, self.shape)

    @property
    def search_space(self) -> str:
        return self.settings.search_space

    def metadata(self) -> dict[str, Any]:
        search = self.settings.search
        return {
            **super().metadata(),
            "objectives": search.objectives,
            "max_params": search.max_params,
            "inner_searcher": search.searcher,
        }

    def trial(self, scorer: Scorer, config: Config) -> dict[str, float]:
        """Slice the sub-network out of the pre-trained model, fine-tune it, score it."""
        subnet = self.search.to_subnetwork(config)
        small, seconds = self.finetune_extracted(subnet)
        return {**scorer.measure(small.eval(), subnet), "finetune_seconds": seconds, "prune_seconds": 0.0}

    def run(self, store: ResultsStore, *, show_progress: bool = True) -> None:
        settings, space = self.settings.search, self.search
        scorer = Scorer(self.inputs)
        searcher = start_searcher(settings.searcher, space, settings.objectives, seed=self.settings.seed)

        def size_of(config: Config) -> float:
            return count_parameters(self.model, self.adapter, space.to_subnetwork(config)).layer_fraction

        with LocalExecutor(lambda config, fidelity: self.trial(scorer, config), settings.workers) as executor:
            SearchDriver(store, searcher, executor, settings, size_of=size_of, show_progress=show_progress).run()
