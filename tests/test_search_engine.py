"""The search engine on a tiny super-network (conftest's `supernet`): parallel workers, failures, CLI errors, report, select."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from nas_tune.cli import main as cli_main
from nas_tune.data import DataConfig
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import LocalExecutor
from nas_tune.search.run import search_checkpoint
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet


def search(supernet, output, glue_dir, **settings):
    store, _ = search_checkpoint(
        supernet, output, SearchSettings(**settings), data_dir=str(glue_dir), show_progress=False
    )
    return store.to_frame()


def by_config(frame: pd.DataFrame) -> dict:
    configs = frame.filter(like="config_").astype(int).apply(tuple, axis=1)
    return dict(zip(configs, frame["error"].round(10)))


def test_two_workers_give_the_same_results_as_one(supernet, tmp_path, glue_dir):
    one = search(supernet, tmp_path / "one", glue_dir, searcher="random", num_trials=8, workers=1)
    two = search(supernet, tmp_path / "two", glue_dir, searcher="random", num_trials=8, workers=2)
    assert len(one) == len(two) == 8
    assert sorted(one["trial_id"]) == sorted(two["trial_id"]) == list(range(8))
    assert by_config(one) == by_config(two)
    assert set(two["worker"]) == {"thread-0", "thread-1"}
    first = one.sort_values("trial_id").head(2).filter(like="config_").astype(int).to_dict("records")
    assert first[0] == {"config_num_layers": 3, "config_num_heads": 4, "config_num_units": 37}  # largest first
    assert first[1] == {"config_num_layers": 1, "config_num_heads": 1, "config_num_units": 1}  # then smallest


def test_a_crashing_config_is_recorded_and_the_search_goes_on(tmp_path):
    from syne_tune.config_space import randint

    def flaky(config, fidelity):
        if config["x"] == 3:
            raise RuntimeError("boom")
        return {"error": config["x"] / 10, "params": 1 - config["x"] / 10}

    space = {"x": randint(0, 9)}
    store = ResultsStore(tmp_path)
    settings = SearchSettings(searcher="random", num_trials=10, workers=2)
    searcher = make_searcher("random", space, ["error", "params"], initial_configs=[{"x": 3}])
    with LocalExecutor(flaky, 2) as executor:
        frame = SearchDriver(store, searcher, executor, settings, show_progress=False).run()
    assert len(frame) == 10
    failed = frame[frame["status"] == "failed"]
    assert (failed["config_x"] == 3).all() and len(failed) >= 1
    assert "boom" in failed["error_message"].iloc[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["search", "--checkpoint", "CKPT", "--searcher", "bogus", "--output", "OUT"], "unknown searcher"),
        (["search", "--checkpoint", "NOPE", "--output", "OUT"], "supernet.json"),
        (["search", "--checkpoint", "CKPT", "--objectives", "error,size", "--output", "OUT"], "--objectives"),
        (["search", "--checkpoint", "CKPT", "--search-space", "large", "--output", "OUT"], "--force"),
        (["search", "--checkpoint", "CKPT", "--max-params", "1.5", "--output", "OUT"], "--max-params"),
    ],
)
def test_search_cli_rejects_bad_input_with_exit_code_2(supernet, tmp_path, capsys, arguments, message):
    argv = [
        a.replace("CKPT", str(supernet)).replace("NOPE", str(tmp_path)).replace("OUT", str(tmp_path / "out"))
        for a in arguments
    ]
    try:
        code = cli_main(argv)
    except SystemExit as exit_:  # argparse rejects unknown searchers itself, also with code 2
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "trials.jsonl").exists()


def test_report_and_select_budget_queries(supernet, tmp_path, glue_dir, capsys):
    frame = search(supernet, tmp_path / "run", glue_dir, searcher="local_search", num_trials=10)
    assert cli_main(["report", str(tmp_path / "run"), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    front = pd.read_csv(tmp_path / "run" / "pareto.csv")
    assert len(reported["pareto"]) == len(front) >= 1
    assert 0 < reported["hypervolume"] <= 1
    assert (tmp_path / "run" / "pareto.png").stat().st_size > 1000
    # every trial is dominated by or on the front
    for _, row in frame.iterrows():
        assert ((front["error"] <= row["error"]) & (front["params"] <= row["params"])).any()

    code = cli_main(
        [
            "select",
            str(tmp_path / "run"),
            "--max-params",
            "0.5",
            "--output",
            str(tmp_path / "half"),
            "--data-dir",
            str(glue_dir),
        ]
    )
    assert code == 0
    chosen = json.loads((tmp_path / "half" / "nas_tune_export.json").read_text())
    fitting = frame[frame["params"] <= 0.5]
    assert chosen["layer_fraction"] <= 0.5 and chosen["validation_error"] == pytest.approx(fitting["error"].min())
    assert "test_metrics" in chosen
    assert (
        cli_main(["select", str(tmp_path / "run"), "--max-params", "0.0001", "--output", str(tmp_path / "tiny")]) == 2
    )
    assert "no evaluated sub-network" in capsys.readouterr().err


def test_select_with_repair_exports_a_corrected_model(tmp_path, tiny_model_dir, glue_dir, capsys):
    data = DataConfig(
        "rte", data_dir=str(glue_dir), max_train_samples=160, max_validation_samples=32, max_test_samples=32
    )
    finetune_supernet(
        str(tiny_model_dir),
        data,
        FinetuneConfig(epochs=1, batch_size=32, lr=1e-3),
        tmp_path / "ckpt",
        max_seq_length=32,
        show_progress=False,
    )
    search(tmp_path / "ckpt", tmp_path / "run", glue_dir, searcher="random", num_trials=6)
    argv = ["select", str(tmp_path / "run"), "--max-params", "0.9", "--data-dir", str(glue_dir)]
    assert cli_main([*argv, "--output", str(tmp_path / "plain")]) == 0
    assert cli_main([*argv, "--output", str(tmp_path / "repaired"), "--repair"]) == 0
    assert "reconstruction error" in capsys.readouterr().out
    plain = json.loads((tmp_path / "plain" / "nas_tune_export.json").read_text())
    repaired = json.loads((tmp_path / "repaired" / "nas_tune_export.json").read_text())
    assert repaired["config"] == plain["config"] and repaired["layer_params"] == plain["layer_params"]
    assert repaired["repair"]["reconstruction_after"] <= repaired["repair"]["reconstruction_before"]
    from safetensors.torch import load_file

    a, b = (
        load_file(str(tmp_path / "plain" / "model.safetensors")),
        load_file(str(tmp_path / "repaired" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)  # output projections were refitted
