"""`--repair`: rfp's least-squares output reconstruction applied to sub-networks the NAS search found.

A retraining-free correction after the search: each chosen sub-network of the super-network gets one output
scale per kept head and neuron, fitted layer by layer so that its layer outputs match the full super-network's
on training examples (`rfp.tune_masks`). It never increases the per-block reconstruction error it minimises:
a block whose fit would not lower it keeps its weights. Whether that helps the task metric is what the
benchmark measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate, GridBaseline, load_inputs, run_baseline
from nas_tune.baselines.importance import training_sample
from nas_tune.baselines.rfp import MaskTuning, tune_masks
from nas_tune.data import TokenizedSplit, default_cache_dir, tokenize_split
from nas_tune.evaluate.setup import EvaluationSetup, read_checkpoint
from nas_tune.models import LoadedModel, SubNetwork
from nas_tune.pareto import pareto_front
from nas_tune.report.summary import load_run
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import Config, make_search_space
from nas_tune.select import config_of

DEFAULT_SAMPLES = 256


def repair_subnetwork(loaded: LoadedModel, subnet: SubNetwork, train: TokenizedSplit, *, num_samples: int = DEFAULT_SAMPLES,
                      seed: int = 0, batch_size: int = 32) -> MaskTuning:
    """A full-size copy of `loaded.model` whose `subnet` is fitted to the full model's layer outputs; export it
    with `export_subnetwork(result.model, ..., subnet, ...)`."""
    samples = training_sample(train, num_samples, seed, "--repair")
    return tune_masks(loaded.model, loaded.adapter, subnet, samples, batch_size=batch_size)


def repair_training_split(setup: EvaluationSetup, max_seq_length: int) -> TokenizedSplit:
    """The searched checkpoint's training split, tokenised like the search's: what `repair_subnetwork` fits on."""
    return tokenize_split(setup.data.train, setup.loaded.tokenizer, setup.data.task, max_seq_length, cache_dir=default_cache_dir())


class SearchedFront(GridBaseline):
    """The sub-networks of a search run (its configs) on the searched checkpoint, scored like a baseline's
    models: the same rows plus test metrics and measured latency."""

    name = "front"
    prunes_finetuned = True

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings, search_space: str, configs: list[Config], searcher: str):
        self.space, self.searched, self.searcher = search_space, configs, searcher
        super().__init__(inputs, settings)
        self.search = make_search_space(search_space, self.shape)

    def configs(self) -> list[Config]:
        return self.searched

    def prune(self, config: Config) -> Candidate:
        return Candidate(config, self.search.to_subnetwork(config), self.model)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "searcher": self.searcher}


class Repair(SearchedFront):
    """A search run's sub-networks, each repaired before it is scored."""

    name = "repair"

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings, search_space: str, configs: list[Config], searcher: str):
        super().__init__(inputs, settings, search_space, configs, searcher)
        training_sample(inputs.train, settings.tune_samples, settings.seed, "--repair")  # fail before any work

    def prune(self, config: Config) -> Candidate:
        subnet = self.search.to_subnetwork(config)
        s = self.settings
        repaired = repair_subnetwork(self.inputs.loaded, subnet, self.inputs.train, num_samples=s.tune_samples, seed=s.seed,
                                     batch_size=s.batch_size)
        return Candidate(config, subnet, repaired.model, repaired.summary())

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "searcher": f"{self.searcher}+repair"}


def score_front(run_dir: str | Path, output: str | Path, *, repair: bool = False, settings: BaselineSettings | None = None,
                data_dir: str | None = None, resume: bool = False, overwrite: bool = False, show_progress: bool = True) -> ResultsStore:
    """Score every Pareto sub-network of the search run `run_dir` (repaired first when `repair`) into `output`."""
    _, metadata, trials = load_run(run_dir)
    front = pareto_front(trials, metadata["objectives"])
    trained = read_checkpoint(metadata["checkpoint"])
    settings = settings or BaselineSettings(seed=metadata.get("seed", 0))
    inputs = load_inputs(metadata["checkpoint"], trained.data_config(data_dir), max_seq_length=trained.max_seq_length,
                         seed=settings.seed)
    configs = [config_of(row) for _, row in front.iterrows()]
    method = (Repair if repair else SearchedFront)(inputs, settings, metadata["search_space"], configs, metadata["searcher"])
    return run_baseline(method, output, resume=resume, overwrite=overwrite, show_progress=show_progress)
