"""What a pipeline run leaves a user: run folders every command accepts, reports that keep everything, picks that
mean something, and exports with labels and a model card (tiny BERT on a custom neg/pos CSV: seconds, offline)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification

from nas_tune.cli import main as cli_main
from nas_tune.data import GLUE_TASKS, DataConfig
from nas_tune.metrics.trivial import trivial_predictor
from nas_tune.pipeline import PipelineConfig, distinct_picks, run_pipeline
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.search.store import ResultsStore, TrialRecord
from nas_tune.supernet import FinetuneConfig

WORDS = "good bad fine awful great poor nice dull bright grim".split()


def _write_csv(path, rows: int, positive_share: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(rows) < positive_share, "pos", "neg")
    texts = [" ".join(rng.choice(WORDS, 6)) for _ in range(rows)]
    pd.DataFrame({"text": texts, "sentiment": labels}).to_csv(path, index=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    """One pipeline run on user data whose labels are words, with an imbalanced test file (trivial accuracy ~0.75)."""
    root = tmp_path_factory.mktemp("pipeline")
    _write_csv(root / "train.csv", 96, 0.5, seed=1)
    _write_csv(root / "test.csv", 40, 0.75, seed=2)
    data = DataConfig(
        "custom",
        train_file=str(root / "train.csv"),
        validation_file=str(root / "test.csv"),
        text_columns=("text",),
        label_column="sentiment",
        max_validation_samples=24,
    )
    config = PipelineConfig(
        model=str(tiny_model_dir),
        data=data,
        finetune=FinetuneConfig(epochs=1, batch_size=16, lr=1e-3),
        search=SearchSettings(searcher="local_search", num_trials=8),
        max_seq_length=16,
    )
    result = run_pipeline(config, root / "run", show_progress=False)
    return root / "run", result


def _cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_picks_are_distinct_and_summary_says_where_they_came_from(run):
    output, _ = run
    summary = json.loads((output / "summary.json").read_text())
    picks = summary["exported"]
    by_name = {p["name"]: p for p in picks}
    assert list(by_name) == ["within_1pct", "within_5pct", "half_size"][: len(picks)]
    trials = pd.read_csv(output / "search" / "trials.csv").set_index("trial_id")
    for entry in picks:
        assert entry["config"] == {
            k[len("config_") :]: int(v) for k, v in trials.loc[entry["trial_id"]].filter(like="config_").items()
        }
        assert entry["validation_error"] == pytest.approx(trials.loc[entry["trial_id"], "error"])
        assert "train.csv" in entry["data_source"] and entry["latency_seconds"] > 0
        if entry["same_as"]:
            first = by_name[entry["same_as"]]
            assert (
                entry["trial_id"] == first["trial_id"] and entry["path"] == first["path"] and first["same_as"] is None
            )
            assert not (output / "models" / entry["name"]).exists()
    assert any(entry["same_as"] for entry in picks), "this seeded run's budgets coincide: the case the dedup is for"
    folders = sorted(p.name for p in (output / "models").iterdir())
    assert folders == sorted(p["name"] for p in picks if not p["same_as"])  # one folder per distinct sub-network
    assert len(folders) == len({p["trial_id"] for p in picks})


def test_a_pick_at_chance_is_flagged_against_the_trivial_predictor(run):
    output, _ = run
    summary = json.loads((output / "summary.json").read_text())
    test = pd.read_csv(output.parent / "test.csv")
    trivial = summary["trivial_predictor"]
    assert trivial["description"] == "always predicting 'pos'"
    assert trivial["test_accuracy"] == pytest.approx((test["sentiment"] == "pos").mean())
    for entry in summary["exported"]:
        flagged = entry["test_accuracy"] <= trivial["test_accuracy"]
        assert bool(entry["no_better_than_trivial"]) == flagged
    assert any(entry["no_better_than_trivial"] for entry in summary["exported"]), (
        "a random tiny model cannot beat 'always pos'"
    )
    card = (output / "models" / summary["exported"][0]["name"] / "README.md").read_text()
    assert ("**Warning**" in card) == bool(summary["exported"][0]["no_better_than_trivial"])


def test_exports_carry_the_users_label_names_and_a_model_card(run):
    output, _ = run
    summary = json.loads((output / "summary.json").read_text())
    for entry in summary["exported"]:
        model = AutoModelForSequenceClassification.from_pretrained(
            entry["path"], trust_remote_code=entry["needs_trust_remote_code"]
        )
        assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
        card = (output / "models" / (entry["same_as"] or entry["name"]) / "README.md").read_text()
        assert card.startswith("---\n") and "library_name: transformers" in card
        assert "custom (labels: neg, pos)" in card and f"{entry['total_params']:,}" in card
        assert (
            f"test accuracy | {entry['test_accuracy']:.4f}" in card
            and f"validation accuracy | {entry['validation_accuracy']:.4f}" in card
        )
        assert "ms per forward (batch 1, 16 tokens" in card and all(
            f'"{k}": {v}' in card for k, v in entry["config"].items()
        )
        assert ("trust_remote_code=True" in card) == entry["needs_trust_remote_code"]
        assert entry["name"] in card  # aliases are named on the card of the folder they share


def test_every_export_path_names_the_users_labels(run, tmp_path, capsys):
    """`nas-tune export` of the pipeline's super-network and `nas-tune baseline --export` name classes as the CSV does."""
    output, _ = run
    code, _, err = _cli(
        capsys, "export", "--model", output / "supernet", "--config", "smallest", "--output", tmp_path / "export"
    )
    assert code == 0, err
    root = output.parent
    code, _, err = _cli(
        capsys,
        "baseline",
        "layer_drop",
        "--model",
        root / "run" / "supernet",
        "--train-file",
        root / "train.csv",
        "--validation-file",
        root / "test.csv",
        "--text-columns",
        "text",
        "--label-column",
        "sentiment",
        "--max-validation-samples",
        "24",
        "--max-seq-length",
        "16",
        "--budgets",
        "0.5",
        "--epochs",
        "1",
        "--export",
        "--output",
        tmp_path / "baseline",
    )
    assert code == 0, err
    for folder in (tmp_path / "export", tmp_path / "baseline" / "models" / "num_layers-1"):
        config = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).config
        assert config.id2label == {0: "neg", 1: "pos"} and config.label2id == {"neg": 0, "pos": 1}, folder


def test_report_on_the_pipeline_folder_keeps_test_metrics_and_picks(run, capsys):
    output, _ = run
    pareto = output / "search" / "pareto.csv"
    written = pd.read_csv(pareto)
    assert {"test_accuracy", "test_error"} <= set(written.columns) and written["test_accuracy"].notna().all()
    png = (output / "search" / "pareto.png").read_bytes()
    for folder in (output, output / "search"):
        code, out, err = _cli(capsys, "report", folder)
        assert code == 0, err
        assert "test_accuracy" in out
        pd.testing.assert_frame_equal(pd.read_csv(pareto), written)
        assert (output / "search" / "pareto.png").read_bytes() == png  # redrawn with the picks, as the pipeline drew it
    page = (output / "report.html").read_text()
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js embedded, nothing fetched: opens offline
    for text in (
        "fraction of layer parameters kept",
        "validation error (1 - accuracy)",
        "test error (1 - accuracy)",
        "unpruned model",
        "Hypervolume over time",
        "within_1pct",
        "super-network fine-tuning",
        "search (wall clock)",
        "sandwich_kd",
    ):
        assert text in page, text


def test_select_and_show_take_the_top_level_folder(run, tmp_path, capsys):
    output, _ = run
    code, out, err = _cli(capsys, "select", output, "--max-params", "0.9", "--output", tmp_path / "mine")
    assert code == 0, err
    assert (
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "mine", trust_remote_code=True).config.id2label[1]
        == "pos"
    )
    assert (tmp_path / "mine" / "README.md").is_file()
    code, out, err = _cli(capsys, "show", output)
    assert code == 0, err
    summary = json.loads((output / "summary.json").read_text())
    for entry in summary["exported"]:
        assert entry["name"] in out and entry["path"] in out
    assert "same sub-network as" in out and "always predicting 'pos'" in out
    code, out, _ = _cli(capsys, "show", output, "--json")
    assert code == 0 and json.loads(out) == summary["exported"]


def test_several_runs_overlay_in_one_report(run, tmp_path, capsys):
    output, _ = run
    other = tmp_path / "random"
    search_checkpoint(output / "supernet", other, SearchSettings(searcher="random", num_trials=4), show_progress=False)
    code, out, err = _cli(capsys, "report", output, other, "--output", tmp_path / "both.html")
    assert code == 0, err
    page = (tmp_path / "both.html").read_text()
    assert "run (local_search)" in page and "random (random)" in page
    assert page.count("* plotly.js v") == 1  # plotly.js embedded once, not once per figure
    elsewhere = tmp_path / "sst2"
    shutil.copytree(other, elsewhere)
    metadata = json.loads((elsewhere / "metadata.json").read_text())
    (elsewhere / "metadata.json").write_text(json.dumps({**metadata, "task": "sst2"}))
    code, _, err = _cli(capsys, "report", output, elsewhere, "--output", tmp_path / "mixed.html")
    assert code == 2 and "different tasks" in err and not (tmp_path / "mixed.html").exists()


def _one_line_refusal(capsys, argv, message):
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_folder_that_is_no_run_is_refused_in_one_sentence(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "half" / "supernet").mkdir(parents=True)
    ResultsStore(tmp_path / "none").write_metadata({"task": "rte", "objectives": ["error", "params"]})
    for command in (["report"], ["show"], ["select", "--max-params", "0.5", "--output", tmp_path / "out"]):
        head, rest = command[0], command[1:]
        _one_line_refusal(
            capsys,
            [head, tmp_path / "empty", *rest],
            "expected a pipeline run folder (summary.json and search/metadata.json",
        )
        _one_line_refusal(capsys, [head, tmp_path / "half", *rest], "holds a super-network but no search yet")
        _one_line_refusal(capsys, [head, tmp_path / "none", *rest], "no completed trials yet")
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["metadata.json"]  # nothing written


def test_report_of_an_older_run_keeps_the_test_metrics_of_its_pareto_csv(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_metadata({"task": "rte", "objectives": ["error", "params"], "searcher": "random"})
    for trial_id, (error, params) in enumerate([(0.3, 1.0), (0.4, 0.5), (0.5, 0.6)]):
        store.append(
            TrialRecord(
                trial_id,
                {"num_layers": trial_id + 1},
                {"error": error, "params": params, "accuracy": 1 - error},
                start_time=trial_id,
                end_time=trial_id + 1,
            )
        )
    pd.DataFrame({"trial_id": [1, 0], "params": [0.5, 1.0], "error": [0.4, 0.3], "test_accuracy": [0.55, 0.61]}).to_csv(
        tmp_path / "pareto.csv", index=False
    )
    assert cli_main(["report", str(tmp_path)]) == 0
    front = pd.read_csv(tmp_path / "pareto.csv").set_index("trial_id")
    assert front.loc[0, "test_accuracy"] == 0.61 and front.loc[1, "test_accuracy"] == 0.55 and 2 not in front.index


@pytest.mark.parametrize(
    ("task", "labels", "description", "metric", "value"),
    [
        ("rte", [0, 0, 1], "always predicting 'entailment'", "accuracy", 2 / 3),
        ("mrpc", [1, 1, 0, 1], "always predicting 'equivalent'", "f1", 6 / 7),
        ("cola", [1, 1, 0], "always predicting 'unacceptable'", "matthews_correlation", 0.0),
        ("stsb", [0.5, 2.0, 4.5], "always predicting 2.33", "spearman", 0.0),
    ],
)
def test_trivial_predictor_is_the_best_constant_prediction(task, labels, description, metric, value):
    trivial = trivial_predictor(GLUE_TASKS[task], np.array(labels))
    assert trivial.description == description and trivial.metrics[metric] == pytest.approx(value)
    same, better = (
        trivial.metrics["error"],
        trivial.metrics["error"] - 0.01,
    )  # compared on the error: lower is better everywhere
    assert (
        trivial.not_beaten_by({metric: value, "error": same})
        and trivial.not_beaten_by({metric: value + 0.01, "error": better}) is None
    )


def test_budgets_that_choose_one_trial_share_one_pick():
    rows = {
        name: pd.Series({"trial_id": trial})
        for name, trial in [("within_1pct", 3), ("within_5pct", 3), ("half_size", 1)]
    }
    assert [(names, int(row["trial_id"])) for names, row in distinct_picks(rows)] == [
        (["within_1pct", "within_5pct"], 3),
        (["half_size"], 1),
    ]


def test_remote_code_export_runs_in_a_transformers_pipeline_without_an_error_log(tmp_path, capsys, tiny_model_dir):
    code, _, err = _cli(
        capsys,
        "export",
        "--model",
        tiny_model_dir,
        "--config",
        '{"num_layers": 2, "num_heads": 2, "num_units": 10}',
        "--output",
        tmp_path / "small",
    )
    assert code == 0, err
    from transformers import logging as hf_logging
    from transformers import pipeline

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    hf_logging.get_logger().addHandler(handler)
    try:
        classify = pipeline("text-classification", model=str(tmp_path / "small"), trust_remote_code=True)
        assert classify("good fine")[0]["label"] in {"LABEL_0", "LABEL_1"}
    finally:
        hf_logging.get_logger().removeHandler(handler)
    assert [r.getMessage() for r in records if "not supported" in r.getMessage()] == []
    assert "trust_remote_code=True" in (tmp_path / "small" / "README.md").read_text()
