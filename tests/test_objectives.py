"""One scoring path: the Evaluator scores sub-networks, objectives come from one registry, latency is timed alike."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nas_tune.baselines import Scorer
from nas_tune.baselines.base import BaselineInputs
from nas_tune.errors import UserError
from nas_tune.evaluate import Evaluator, LatencySettings
from nas_tune.metrics import latency as latency_module
from nas_tune.metrics.latency import measure_latency
from nas_tune.models import LoadedModel, adapter_for
from nas_tune.search.objectives import OBJECTIVES, TrialFunction, objective_metrics, parse_objectives
from nas_tune.search_space import make_search_space
from tests.conftest import tiny_model
from tests.test_supernet import TASK, toy_split

ADAPTER = adapter_for("bert")
SEQ_LEN = 8  # toy_split's length: the run's --max-seq-length


def _evaluator(model=None, space=True) -> Evaluator:
    model = model if model is not None else tiny_model("bert")
    search_space = make_search_space("small", ADAPTER.shape(model)) if space else None
    return Evaluator(model, ADAPTER, search_space, TASK, toy_split(24), batch_size=8, flops_seq_len=SEQ_LEN)


def test_evaluate_is_evaluate_subnetwork_of_the_config():
    evaluator = _evaluator()
    config = {"num_layers": 2, "num_heads": 2, "num_units": 20}
    by_config = evaluator.evaluate(config)
    subnet = evaluator.search_space.to_subnetwork(config)
    direct = evaluator.evaluate_subnetwork(subnet)
    assert by_config.config == config and direct.config == {}
    assert by_config.metrics == direct.metrics
    assert (by_config.layer_fraction, by_config.flops) == (direct.layer_fraction, direct.flops)
    # Cut from other weights (a baseline's tuned copy): its predictions, the evaluator's model's sizes.
    other = tiny_model("bert", seed=5)
    tuned = evaluator.evaluate_subnetwork(subnet, extracted=ADAPTER.extract(other, subnet))
    assert tuned.metrics == _evaluator(other).evaluate(config).metrics
    assert tuned.layer_fraction == direct.layer_fraction


def test_trial_function_times_reference_and_trials_alike_and_does_not_clip():
    evaluator = _evaluator()
    function = TrialFunction(evaluator, ["error", "params", "latency"], LatencySettings(repeats=2, warmup=0))
    reference = function.reference
    assert reference.settings.seq_len == SEQ_LEN  # the run's sequence length, not a fixed 128
    assert reference.settings.threads == torch.get_num_threads()
    timed = []

    def recording(model, **settings):
        timed.append(settings)
        return 2.5 * reference.seconds  # a sub-network slower than the full model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nas_tune.evaluate.evaluator.measure_latency", recording)
        metrics = function({"num_layers": 1, "num_heads": 1, "num_units": 4})
    assert timed == [vars(reference.settings)]  # the trial is timed exactly as the reference was
    assert metrics["latency_seconds"] == pytest.approx(2.5 * reference.seconds)
    assert metrics["latency"] == pytest.approx(2.5)  # no min(1, ...): the bias stays visible
    untimed = TrialFunction(evaluator, ["error", "params"])({"num_layers": 1, "num_heads": 1, "num_units": 4})
    assert untimed.keys() >= {"error", "params"} and "latency" not in untimed and "latency_seconds" not in untimed


def test_objectives_registry_drives_parsing_and_rows():
    assert list(OBJECTIVES) == ["error", "params", "latency"]
    assert [o.name for o in OBJECTIVES.values() if o.timed] == ["latency"]
    assert OBJECTIVES["params"].bounded and not OBJECTIVES["latency"].bounded
    assert parse_objectives("error,latency") == ["error", "latency"]
    with pytest.raises(UserError, match="error, params, latency"):
        parse_objectives("error,flops")
    result = _evaluator().evaluate({"num_layers": 1, "num_heads": 1, "num_units": 4})
    row = objective_metrics(result, None)
    assert row["error"] == result.error and row["params"] == result.layer_fraction and "latency" not in row


def test_measure_latency_times_one_model_at_a_time_with_the_given_threads():
    seen = []

    class Probe(nn.Module):
        config = type("Config", (), {"vocab_size": 2000})()

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask):
            seen.append(
                (latency_module._ONE_TIMING_AT_A_TIME.locked(), torch.get_num_threads(), tuple(input_ids.shape))
            )
            return input_ids

    before = torch.get_num_threads()
    measure_latency(Probe(), batch_size=2, seq_len=5, warmup=1, repeats=3, threads=before + 1)
    assert seen and all(entry == (True, before + 1, (2, 5)) for entry in seen)
    assert torch.get_num_threads() == before
    assert not latency_module._ONE_TIMING_AT_A_TIME.locked()


def test_baseline_scorer_scores_as_the_evaluator_does():
    model = tiny_model("bert")
    inputs = BaselineInputs(
        LoadedModel(model, None, ADAPTER, "tiny"),
        TASK,
        toy_split(16),
        toy_split(24),
        toy_split(20, seed=3),
        max_seq_length=SEQ_LEN,
    )
    scorer = Scorer(inputs)
    assert scorer.reference.settings.seq_len == SEQ_LEN
    evaluator = _evaluator(copy.deepcopy(model))
    config = {"num_layers": 2, "num_heads": 1, "num_units": 10}
    subnet = evaluator.search_space.to_subnetwork(config)
    row = scorer.measure(ADAPTER.extract(model, subnet).eval(), subnet)
    expected = evaluator.evaluate(config)
    assert (
        row["error"] == expected.error and row["params"] == expected.layer_fraction and row["flops"] == expected.flops
    )
    assert row["latency"] == pytest.approx(row["latency_seconds"] / scorer.reference.seconds)
    assert {"test_error", f"test_{TASK.metric}"} <= row.keys()
