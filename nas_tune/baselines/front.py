"""A search run's Pareto front scored like a baseline's models (test metrics, measured latency), plain or with
each sub-network repaired first (`pruning.repair`): how the benchmarks put NAS and `--repair` beside the baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate, GridBaseline, load_inputs, run_baseline
from nas_tune.evaluate.setup import read_checkpoint
from nas_tune.pareto import pareto_front
from nas_tune.pruning.mask_tuning import check_reconstructable
from nas_tune.pruning.repair import repair_subnetwork
from nas_tune.pruning.scores import training_sample
from nas_tune.report.summary import load_run
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import Config, make_search_space
from nas_tune.select import config_of


class SearchedFront(GridBaseline):
    """The sub-networks of a search run (its configs) on the searched checkpoint, scored like a baseline's
    models: the same rows plus test metrics and measured latency."""

    name = "front"
    prunes_finetuned = True

    def __init__(
        self,
        inputs: BaselineInputs,
        settings: BaselineSettings,
        search_space: str,
        configs: list[Config],
        searcher: str,
    ):
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

    def __init__(
        self,
        inputs: BaselineInputs,
        settings: BaselineSettings,
        search_space: str,
        configs: list[Config],
        searcher: str,
    ):
        super().__init__(inputs, settings, search_space, configs, searcher)
        check_reconstructable(self.model, self.adapter, "--repair", "drop --repair")  # fail before any work
        training_sample(inputs.train, settings.tune_samples, settings.seed, "--repair")

    def prune(self, config: Config) -> Candidate:
        subnet = self.search.to_subnetwork(config)
        s = self.settings
        repaired = repair_subnetwork(
            self.inputs.loaded,
            subnet,
            self.inputs.train,
            num_samples=s.tune_samples,
            seed=s.seed,
            batch_size=s.batch_size,
        )
        return Candidate(config, subnet, repaired.model, repaired.summary())

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "searcher": f"{self.searcher}+repair"}


def score_front(
    run_dir: str | Path,
    output: str | Path,
    *,
    repair: bool = False,
    settings: BaselineSettings | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ResultsStore:
    """Score every Pareto sub-network of the search run `run_dir` (repaired first when `repair`) into `output`."""
    _, metadata, trials = load_run(run_dir)
    front = pareto_front(trials, metadata["objectives"])
    trained = read_checkpoint(metadata["checkpoint"])
    settings = settings or BaselineSettings(seed=metadata.get("seed", 0))
    inputs = load_inputs(
        metadata["checkpoint"], trained.data_config(data_dir), max_seq_length=trained.max_seq_length, seed=settings.seed
    )
    configs = [config_of(row) for _, row in front.iterrows()]
    method = (Repair if repair else SearchedFront)(
        inputs, settings, metadata["search_space"], configs, metadata["searcher"]
    )
    return run_baseline(method, output, resume=resume, overwrite=overwrite, show_progress=show_progress)
