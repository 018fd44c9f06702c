"""The benchmarks compare like with like: what they hold fixed really is the same on both sides."""

from __future__ import annotations

import argparse
import importlib
import json

import pandas as pd
import pytest
import torch
from conftest import REPO, tiny_model

from benchmarks import decoder_pruning
from benchmarks.export_speed import dense_reference, shapes_of
from nas_tune.models import adapter_for


def test_dense_reference_has_exactly_the_exports_parameters_and_runs():
    model = tiny_model("bert")
    adapter = adapter_for("bert")
    full = adapter.shape(model)
    shapes = shapes_of(full)
    assert {(s.layers, s.heads, s.units) for s in shapes} >= {(3, 2, 18), (1, 4, 37), (3, 4, 37)}
    for shape in shapes:
        exported = adapter.extract(model, shape.subnetwork(full))
        dense = dense_reference(model, full, shape)
        assert type(dense).__name__ == "BertForSequenceClassification"
        assert {n: p.shape for n, p in dense.named_parameters()} == {n: p.shape for n, p in exported.named_parameters()}
        assert all(p.is_contiguous() for p in dense.parameters())
        with torch.inference_mode():
            logits = dense(
                input_ids=torch.randint(1000, 2000, (2, 9)), attention_mask=torch.ones(2, 9, dtype=torch.long)
            ).logits
        assert logits.shape == (2, 2)


def test_exhaustive_table_replay_finds_the_same_front_as_a_live_search(tmp_path, tiny_model_dir, glue_dir):
    from benchmarks.exhaustive_front import (
        OBJECTIVES,
        TabulatedTrial,
        UnitGrid,
        front_of,
        load_setup,
        run_search,
        tabulate,
    )
    from nas_tune.data import DataConfig
    from nas_tune.search.objectives import TrialFunction
    from nas_tune.search.store import ResultsStore
    from nas_tune.supernet import FinetuneConfig
    from nas_tune.supernet.run import finetune_supernet

    checkpoint = tmp_path / "supernet"
    data = DataConfig("rte", data_dir=str(glue_dir), max_train_samples=32, max_validation_samples=32)
    finetune_supernet(
        str(tiny_model_dir),
        data,
        FinetuneConfig(epochs=1, batch_size=16, lr=1e-3),
        checkpoint,
        max_seq_length=32,
        show_progress=False,
    )
    setup = load_setup(checkpoint, str(glue_dir))
    shape = setup.evaluator.search_space.shape
    grid = UnitGrid(shape.num_layers, shape.num_heads, shape.ffn_size, levels=2)  # 3 x 4 x 2 = 24 configs
    table = ResultsStore(tmp_path / "table")
    tabulate(setup, grid, table, fidelities=(1.0,))
    assert len(TabulatedTrial(table)) == len(grid.configs()) == 24
    # local search learns from every result, so the same trials in the same order mean the same numbers came back
    live = run_search("local_search", grid, TrialFunction(setup.evaluator, OBJECTIVES), 12, 0, tmp_path / "live")
    replay = run_search("local_search", grid, TabulatedTrial(table), 12, 0, tmp_path / "replay")
    columns = ["trial_id", "config_num_layers", "config_num_heads", "config_num_units", *OBJECTIVES]
    pd.testing.assert_frame_equal(
        live[columns].sort_values("trial_id").reset_index(drop=True),
        replay[columns].sort_values("trial_id").reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(front_of(live), front_of(replay))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "rte"], "benchmarks causal language modelling, not 'rte'"),
        (["--budgets", "0.5,2"], "budget 2.0 is outside (0, 1)"),
        (["--budgets", "half"], "--budgets must be comma-separated fractions"),
        (["--steps", "0"], "--steps must be positive"),
        (["--resume", "--overwrite"], "pass one of them"),
    ],
)
def test_decoder_pruning_refuses_bad_settings_in_one_sentence(argv, message, tmp_path, capsys):
    assert decoder_pruning.main([*argv, "--work", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "work").exists()


def test_decoder_pruning_resumes_only_a_run_with_the_same_settings(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "state.json").write_text(
        json.dumps(
            {
                "settings": decoder_pruning.identity(decoder_pruning.parse_args([])),
                "commands": [],
                "units": {},
                "points": [],
            }
        )
    )
    assert decoder_pruning.main(["--work", str(work)]) == 2
    assert "already holds a decoder_pruning run; pass --resume" in capsys.readouterr().err
    assert decoder_pruning.main(["--work", str(work), "--resume", "--steps", "7"]) == 2
    assert "holds a run with other settings (steps)" in capsys.readouterr().err
    assert json.loads((work / "state.json").read_text())["settings"]["steps"] == 36  # nothing overwritten


@pytest.mark.parametrize("script", sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports_against_the_current_package(script):
    """A benchmark nothing imports breaks silently when the package moves on (paper_comparison did once)."""
    importlib.import_module(f"benchmarks.{script}")


def test_memory_levers_refuses_zero_steps_and_reports_ratios_to_plain(tmp_path, monkeypatch, capsys):
    from benchmarks import memory_levers

    assert memory_levers.main(["--steps", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err
    monkeypatch.setattr(memory_levers, "RESULTS", tmp_path)
    rows = [
        {"round": r, "variant": v, "peak_rss_mb": peak, "train_seconds": s}
        for r, (v, peak, s) in enumerate([("plain", 3000, 100), ("checkpointing", 1500, 130), ("plain", 3200, 110)])
    ]
    table = memory_levers.write_results(rows, ["--steps", "4"], argparse.Namespace())
    ratios = table.set_index("variant")
    assert ratios.loc["plain", "peak_rss_mb"] == 3100 and ratios.loc["checkpointing", "peak / plain"] == 0.48
    assert ratios.loc["checkpointing", "seconds / plain"] == pytest.approx(130 / 105, abs=0.01)
    assert json.loads((tmp_path / "memory_levers.json").read_text())["command"].endswith("--steps 4")
