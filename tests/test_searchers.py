"""Searchers through the real Syne Tune / Optuna / BoTorch classes, on a cheap synthetic problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from syne_tune.config_space import Integer, choice, randint

from nas_tune.errors import UserError
from nas_tune.pareto import hypervolume
from nas_tune.search.searchers import SEARCHERS, make_searcher

SMALL = {"num_layers": randint(1, 6), "num_heads": randint(1, 12), "num_units": randint(1, 1536)}
LARGEST = {"num_layers": 6, "num_heads": 12, "num_units": 1536}
SMALLEST = {"num_layers": 1, "num_heads": 1, "num_units": 1}
OBJECTIVES = ["error", "params"]
BINARY = {f"unit_{i}": choice([0, 1]) for i in range(500)}
NUM_TRIALS = {"ehvi": 6}  # BoTorch takes ~1 s per model-based suggestion (from the 6th on here)
DEFAULT_TRIALS = 20
CHEAP = {"ehvi": {"num_restarts": 2, "num_raw_samples": 32}}  # fewer acquisition restarts, same code path


def evaluate(config: dict) -> dict:
    """Error falls with the product of sizes, params grows with their sum: a real trade-off."""
    layers, heads, units = config["num_layers"], config["num_heads"], config["num_units"]
    result = {"error": 1 / (1 + layers * heads * units / 2000), "params": layers * (heads / 12 + units / 1536) / 12}
    if "fidelity" in config:
        result["fidelity"] = config["fidelity"]
    return result


def run(searcher, num_trials: int, outstanding: int = 1) -> list[dict]:
    """Suggestions in order; with `outstanding` > 1, results come back out of order and via JSON."""
    suggested, pending = [], []
    for step in range(num_trials):
        while len(pending) < outstanding and len(suggested) < num_trials:
            config = searcher.suggest()
            suggested.append(config)
            pending.append(config)
        config = json.loads(json.dumps(pending.pop(step * 7 % len(pending))))
        searcher.on_trial_complete(config, evaluate(config))
    return suggested


def new_configs(suggested: list[dict]) -> list[dict]:
    """Distinct configs (without the fidelity) in the order they were first suggested."""
    firsts = {json.dumps({k: v for k, v in c.items() if k != "fidelity"}, sort_keys=True): None for c in suggested}
    return [json.loads(key) for key in firsts]


def assert_valid(config: dict, space: dict) -> None:
    assert set(config) - {"fidelity"} == set(space)
    for name, domain in space.items():
        assert domain.is_valid(config[name]), (name, config[name])
        if isinstance(domain, Integer):
            assert type(config[name]) is int


def hv(configs: list[dict]) -> float:
    return hypervolume(np.array([[evaluate(c)[o] for o in OBJECTIVES] for c in configs]))


@pytest.mark.parametrize("name", sorted(SEARCHERS))
@pytest.mark.parametrize("outstanding", [1, 3])
def test_suggestions_are_valid_start_with_initial_configs_and_are_seeded(name, outstanding):
    num_trials = NUM_TRIALS.get(name, DEFAULT_TRIALS)
    initial = [LARGEST, SMALLEST]
    first, second, other_seed = [
        run(
            make_searcher(name, SMALL, OBJECTIVES, seed=seed, initial_configs=initial, **CHEAP.get(name, {})),
            num_trials,
            outstanding,
        )
        for seed in (3, 3, 4)
    ]
    assert first == second
    assert len(first) == num_trials
    for config in first:
        assert_valid(config, SMALL)
    assert new_configs(first)[:2] == initial
    assert new_configs(other_seed)[2:5] != new_configs(first)[2:5]


@pytest.mark.parametrize("name", ["local_search", "morea", "nsga2"])
def test_search_improves_the_front_beyond_its_first_trials(name):
    options = {} if name == "local_search" else {"population_size": 8}
    searcher = make_searcher(name, SMALL, OBJECTIVES, seed=0, initial_configs=[LARGEST, SMALLEST], **options)
    configs = run(searcher, 40, outstanding=2)
    assert hv(configs) > hv(configs[:5]) + 0.01


@pytest.mark.parametrize("step_fraction", [1.0, 0.05])
def test_local_search_moves_to_unseen_neighbours(step_fraction):
    searcher = make_searcher(
        "local_search", SMALL, OBJECTIVES, seed=0, initial_configs=[LARGEST, SMALLEST], step_fraction=step_fraction
    )
    configs = run(searcher, 30)
    assert len(new_configs(configs)) == len(configs)
    # Each suggestion after the initial ones is one move away from an earlier config.
    max_step = max(1, round(step_fraction * 1535))
    for k, config in enumerate(configs[2:], start=2):
        assert any(
            sum(config[n] != earlier[n] for n in SMALL) == 1
            and abs(config["num_units"] - earlier["num_units"]) <= max_step
            for earlier in configs[:k]
        )


@pytest.mark.parametrize("outstanding", [1, 3])
def test_moasha_promotes_some_configs_to_higher_fidelities(outstanding):
    searcher = make_searcher("moasha", SMALL, OBJECTIVES, seed=0, initial_configs=[LARGEST, SMALLEST])
    suggested = run(searcher, 60, outstanding)
    fidelities = [c["fidelity"] for c in suggested]
    assert all(0.1 <= f <= 1.0 for f in fidelities)
    assert sorted(set(fidelities)) == pytest.approx([1 / 9, 1 / 3, 1.0])
    assert suggested[0]["fidelity"] == pytest.approx(1 / 9)
    assert_promotions_climb_one_rung(suggested)
    at_full = sum(f == 1.0 for f in fidelities)
    at_lowest = sum(f < 0.2 for f in fidelities)
    assert 0 < at_full < at_lowest / 2  # some promoted all the way, most stopped early


def assert_promotions_climb_one_rung(suggested: list[dict]) -> None:
    seen_at = {}
    for config in suggested:
        key = json.dumps({k: config[k] for k in SMALL}, sort_keys=True)
        if config["fidelity"] > 0.2:  # a promotion: this config ran one rung lower before
            assert seen_at[key] == pytest.approx(config["fidelity"] / 3)
        seen_at[key] = config["fidelity"]


def test_moasha_fidelity_range_follows_min_and_max():
    searcher = make_searcher("moasha", SMALL, OBJECTIVES, min_fidelity=0.25, max_fidelity=0.5, reduction_factor=2)
    fidelities = {c["fidelity"] for c in run(searcher, 20)}
    assert fidelities == {0.25, 0.5}
    with pytest.raises(UserError, match="min_fidelity"):
        make_searcher("moasha", SMALL, OBJECTIVES, min_fidelity=0.5, max_fidelity=0.25)


@pytest.mark.parametrize("name", ["random", "local_search", "morea", "nsga2", "moasha"])
def test_high_dimensional_binary_space(name):
    initial = [{k: 1 for k in BINARY}, {k: 0 for k in BINARY}]
    options = {"population_size": 4} if name in ("morea", "nsga2") else {}
    searcher = make_searcher(name, BINARY, OBJECTIVES, seed=0, initial_configs=initial, **options)
    configs = []
    for _ in range(8):
        config = searcher.suggest()
        assert_valid(config, BINARY)
        share = sum(config[k] for k in BINARY) / len(BINARY)
        result = {"error": 1 - share / 2, "params": share, "fidelity": config.get("fidelity", 1.0)}
        searcher.on_trial_complete(config, result)
        configs.append(config)
    assert new_configs(configs)[:2] == initial


def test_ehvi_refuses_spaces_it_cannot_model():
    with pytest.raises(UserError, match="local_search"):
        make_searcher("ehvi", BINARY, OBJECTIVES)


def test_ehvi_model_based_suggestions_never_compile_botorch_kernels():
    """BoTorch must not start compiling its C++ kernel (minutes, and a hang after a kill); timing lives in benchmarks."""
    from botorch.acquisition.multi_objective import logei

    searcher = make_searcher("ehvi", SMALL, OBJECTIVES, seed=0, initial_configs=[LARGEST, SMALLEST], **CHEAP["ehvi"])
    assert logei._load_attempted  # so the compile can never start
    run(searcher, 8)  # 2 initial + 3 random, then the GP


def test_ehvi_fits_each_config_with_its_own_result_when_results_arrive_out_of_order():
    searcher = make_searcher("ehvi", SMALL, OBJECTIVES, seed=0)
    configs = [searcher.suggest() for _ in range(3)]
    for config in reversed(configs):
        searcher.on_trial_complete(config, evaluate(config))
    ehvi = searcher.scheduler.searcher  # the GP's training pairs, as Syne Tune's EHVI builds them
    raw = np.array([[evaluate(c)[o] for o in OBJECTIVES] for c in ehvi._configs_with_results()])
    low, high = raw.min(axis=0), raw.max(axis=0)
    # min-max normalised below BoTorch's fixed reference point (2, after negation)
    assert ehvi.objectives() == pytest.approx((raw - low) / (high - low) - 3.1)


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_failed_trials_do_not_stop_the_search(name):
    searcher = make_searcher(name, SMALL, OBJECTIVES, seed=0, initial_configs=[LARGEST])
    searcher.on_trial_failed(searcher.suggest())
    config = searcher.suggest()
    searcher.on_trial_complete(config, evaluate(config))
    assert_valid(searcher.suggest(), SMALL)


def test_unknown_searcher_lists_the_valid_names():
    with pytest.raises(UserError) as error:
        make_searcher("bayes", SMALL, OBJECTIVES)
    assert ", ".join(sorted(SEARCHERS)) in str(error.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"initial_configs": [{"num_layers": 7, "num_heads": 1, "num_units": 1}]}, "num_layers"),
        ({"initial_configs": [{"num_layers": 1}]}, "num_heads"),
        ({"population_size": 10}, "population_size"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        make_searcher("local_search", SMALL, OBJECTIVES, **kwargs)


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_a_resumed_search_learns_from_replayed_history(name):
    """Results a searcher never suggested (a resumed search whose replay fell out of step) are learnt from.

    With a new seed here: with the old one, random draws would repeat the first run's.
    """

    def fresh(seed):
        return make_searcher(
            name, SMALL, OBJECTIVES, seed=seed, initial_configs=[LARGEST, SMALLEST], **CHEAP.get(name, {})
        )

    history = run(fresh(0), 6, outstanding=2)
    runs = []
    for _ in range(2):
        searcher = fresh(1)
        for config in history:
            config = json.loads(json.dumps(config))
            searcher.on_trial_complete(config, evaluate(config))
        searcher.on_trial_failed({**LARGEST, "num_units": 7, **({"fidelity": 1.0} if name == "moasha" else {})})
        runs.append(run(searcher, 4, outstanding=2))
    later = runs[0]
    assert runs[1] == later
    for config in later:
        assert_valid(config, SMALL)
        assert config not in history  # in particular, the initial configs are not evaluated again
    if name == "moasha":
        assert_promotions_climb_one_rung(history + later)
    if name == "local_search":  # neighbours of the replayed front, not a fresh start
        assert all(any(sum(c[n] != h[n] for n in SMALL) == 1 for h in history + later) for c in later)
