"""Standard NAS: the same searchers, but every candidate is fine-tuned on its own before it is scored.

The paper's expensive reference point. A searcher proposes sub-networks of the *pre-trained* model; each trial
slices its sub-network out, fine-tunes it with plain fine-tuning for a short budget (`--epochs`, default 1) and
scores it like every other baseline. Trials run through the search driver (asynchronous, resumable); worker
threads share the loaded pre-trained model, so no trial reloads it.
"""

from __future__ import annotations

import tempfile
from typing import Any

from transformers import PreTrainedModel

from nas_tune.baselines.base import Baseline, BaselineInputs, BaselineSettings, Scorer
from nas_tune.errors import UserError
from nas_tune.metrics import count_parameters
from nas_tune.models import LoadedModel, ModelShape
from nas_tune.models.bert import BertFamilyAdapter
from nas_tune.search.driver import SearchDriver
from nas_tune.search.executors import LocalExecutor
from nas_tune.search.searchers import SEARCHERS, searcher_class, start_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import Config, make_search_space
from nas_tune.supernet import finetune

# Spaces whose sub-networks have the same heads and units in every kept layer: only those are models of one
# shape (ModelShape), which fine-tuning needs to train and evaluate them.
UNIFORM_SPACES = ("small", "layer")


class ExtractedBertAdapter(BertFamilyAdapter):
    """A BERT adapter that knows the shape of a model `extract` sliced to uniformly fewer heads and units.

    Such a model's config keeps the original head count (BERT derives head_dim from it) and records the real
    counts in `nas_tune_layer_*`; this reads them, so the sliced model can be fine-tuned like any other.
    """

    def shape(self, model: PreTrainedModel) -> ModelShape:
        config, shape = model.config, super().shape(model)
        heads, units = getattr(config, "nas_tune_layer_heads", None), getattr(config, "nas_tune_layer_units", None)
        if heads is None:
            return shape
        if len(set(heads)) > 1 or len(set(units)) > 1:
            raise ValueError("only uniformly sliced models have one shape")
        return ModelShape(num_layers=len(heads), num_heads=heads[0], head_dim=config.nas_tune_head_dim,
                          hidden_size=shape.hidden_size, ffn_size=units[0])


class StandardNAS(Baseline):
    name = "standard_nas"
    prunes_finetuned = False
    default_epochs = 1

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        super().__init__(inputs, settings)
        if settings.search_space not in UNIFORM_SPACES:
            raise UserError(f"standard_nas fine-tunes each sub-network as a model of its own, which needs the same heads and "
                            f"units in every layer; use --search-space {' or '.join(UNIFORM_SPACES)}, not {settings.search_space}.")
        if searcher_class(settings.search.searcher).multi_fidelity:
            single = ", ".join(name for name, cls in SEARCHERS.items() if not cls.multi_fidelity)
            raise UserError(f"standard_nas trains every candidate in full; use a single-fidelity searcher "
                            f"({single}), not {settings.search.searcher}.")
        self.search = make_search_space(settings.search_space, self.shape)

    @property
    def search_space(self) -> str:
        return self.settings.search_space

    def metadata(self) -> dict[str, Any]:
        search = self.settings.search
        return {**super().metadata(), "objectives": search.objectives, "max_params": search.max_params,
                "inner_searcher": search.searcher}

    def trial(self, scorer: Scorer, config: Config) -> dict[str, float]:
        """Slice the sub-network out of the pre-trained model, fine-tune it, score it."""
        loaded = self.inputs.loaded
        subnet = self.search.to_subnetwork(config)
        small = self.adapter.extract(self.model, subnet)
        with tempfile.TemporaryDirectory(prefix="nas-tune-standard-nas-") as output:  # its checkpoint is not kept
            result = finetune(LoadedModel(small, loaded.tokenizer, ExtractedBertAdapter(), loaded.source, loaded.head_is_new), self.inputs.task,
                              self.inputs.train, self.inputs.validation, self.finetune_config(), output, show_progress=False)
        return {**scorer.measure(small.eval(), subnet), "finetune_seconds": result.seconds, "prune_seconds": 0.0}

    def run(self, store: ResultsStore, *, show_progress: bool = True) -> None:
        settings, space = self.settings.search, self.search
        scorer = Scorer(self.inputs)
        searcher = start_searcher(settings.searcher, space, settings.objectives, seed=self.settings.seed)

        def size_of(config: Config) -> float:
            return count_parameters(self.model, self.adapter, space.to_subnetwork(config)).layer_fraction

        with LocalExecutor(lambda config, fidelity: self.trial(scorer, config), settings.workers) as executor:
            SearchDriver(store, searcher, executor, settings, size_of=size_of, show_progress=show_progress).run()
