"""Pruning baselines on tiny models: budgets, store rows the report reads, RFP's mask tuning, reordering,
repair, importance scores, and bad input at the command line."""

from __future__ import annotations

import copy
import json
from unittest import mock

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertModel, GPT2Config, GPT2ForSequenceClassification

from nas_tune.baselines import BASELINES, BaselineSettings, load_inputs, run_baseline
from nas_tune.baselines.base import BaselineInputs
from nas_tune.baselines.front import score_front
from nas_tune.baselines.importance import search_mask
from nas_tune.baselines.rfp import FisherBlocks, greedy_rearrange, pruned_fisher_loss
from nas_tune.cli import main as cli_main
from nas_tune.data import DataConfig, TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.metrics import count_parameters
from nas_tune.models import LoadedModel, ModelAdapter, ModelShape, SubNetwork, adapter_for
from nas_tune.pruning.mask_tuning import tune_masks
from nas_tune.pruning.reorder import Reordering, reorder_by_importance
from nas_tune.pruning.repair import repair_subnetwork
from nas_tune.pruning.scores import Scores, first_order_scores, mask_gradients
from nas_tune.report.summary import report_run
from nas_tune.search.driver import SearchSettings
from nas_tune.search.run import search_checkpoint
from nas_tune.search.store import ResultsStore
from nas_tune.search_space import config_key
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet
from tests.conftest import DECODER_VOCAB, tiny_config, tiny_decoder, tiny_model

ADAPTER = adapter_for("bert")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run far faster on one thread than on two cores shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_options(glue_dir):
    return DataConfig(
        "rte", data_dir=str(glue_dir), max_train_samples=128, max_validation_samples=48, max_test_samples=32
    )


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, data_options) -> BaselineInputs:
    return load_inputs(str(tiny_model_dir), data_options, max_seq_length=48)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, tiny_model_dir, data_options, glue_dir):
    """A tiny super-network and a short search on it."""
    root = tmp_path_factory.mktemp("nas")
    finetune_supernet(
        str(tiny_model_dir),
        data_options,
        FinetuneConfig(epochs=1, batch_size=16, lr=1e-3),
        root / "ckpt",
        max_seq_length=48,
        show_progress=False,
    )
    search_checkpoint(
        root / "ckpt",
        root / "run",
        SearchSettings(searcher="random", num_trials=6),
        data_dir=str(glue_dir),
        show_progress=False,
    )
    return root


def toy_split(n: int = 40, length: int = 12, seed: int = 0) -> TokenizedSplit:
    """Random tokens of random lengths (padded), so every fit and measurement must skip padding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (n, length), generator=generator)
    lengths = torch.randint(4, length + 1, (n,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return TokenizedSplit(ids * mask, mask, torch.zeros_like(ids), torch.randint(0, 2, (n,), generator=generator))


def block_errors(student, teacher, subnet: SubNetwork, data: TokenizedSplit) -> list[float]:
    """Independent measurement: mean squared difference of every kept block's LayerNorm input, student vs. teacher."""
    sums, counts, current = {}, {}, {}

    def watch(model, tag):
        handles = []
        for i in subnet.layers:
            layer = ADAPTER.layers(model)[i]
            for block, norm in (("attention", layer.attention.output.LayerNorm), ("ffn", layer.output.LayerNorm)):
                handles.append(
                    norm.register_forward_pre_hook(
                        lambda m, args, key=(tag, i, block): current.__setitem__(key, args[0])
                    )
                )
        return handles

    handles = watch(student, "s") + watch(teacher, "t")
    try:
        with torch.no_grad(), ADAPTER.masked(student, subnet):
            for batch in data.batches(16):
                batch.pop("labels")
                student(**batch), teacher(**batch)
                real = batch["attention_mask"].bool()
                for i in subnet.layers:
                    for block in ("attention", "ffn"):
                        diff = (current[("s", i, block)] - current[("t", i, block)])[real].double()
                        sums[(i, block)] = sums.get((i, block), 0.0) + float(diff.pow(2).sum())
                        counts[(i, block)] = counts.get((i, block), 0) + diff.numel()
    finally:
        for handle in handles:
            handle.remove()
    return [sums[key] / counts[key] for key in sorted(sums, key=lambda k: (k[0], k[1] != "attention"))]


# --- every baseline: within budget, rows the report reads --------------------------------------------------------


@pytest.mark.parametrize("name", ["importance", "rfp", "layer_drop"])
def test_grid_baselines_stay_within_budget_and_write_reportable_rows(name, inputs, tmp_path):
    settings = BaselineSettings(budgets=(0.4, 0.7), epochs=1, batch_size=16, lr=1e-3)
    store = run_baseline(BASELINES[name](inputs, settings), tmp_path / "run", show_progress=False)
    frame = store.to_frame()
    configs = frame.filter(like="config_")
    if name == "layer_drop":  # whole layers: 3 layers -> k = 1 (0.4) and 2 (0.7)
        assert sorted(configs["config_num_layers"]) == [1, 2]
        assert np.allclose(sorted(frame["params"]), [1 / 3, 2 / 3])
        assert (frame["finetune_seconds"] > 0).all()
    else:
        assert sorted(configs["config_budget"]) == [0.4, 0.7]
        assert (frame["params"] <= frame["config_budget"]).all()
        assert (frame["params"] > frame["config_budget"] - 0.1).all()  # the budget is used, not wasted
    for column in (
        "error",
        "test_error",
        "test_accuracy",
        "latency",
        "latency_seconds",
        "total_fraction",
        "prune_seconds",
    ):
        assert frame[column].notna().all(), column
    metadata = store.read_metadata()
    assert metadata["searcher"] == name and metadata["objectives"] == ["error", "params"] and metadata["task"] == "rte"
    report = report_run(tmp_path / "run")
    assert len(report.front) >= 1 and 0 <= report.hypervolume <= 1
    assert (tmp_path / "run" / "pareto.csv").is_file()


def test_standard_nas_fine_tunes_every_trial_through_a_real_searcher(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("nas_tune.search.executors.os.cpu_count", lambda: 1)  # the executor would pick 2 threads
    settings = BaselineSettings(
        epochs=1, batch_size=16, lr=1e-3, search=SearchSettings(searcher="random", num_trials=3)
    )
    store = run_baseline(BASELINES["standard_nas"](inputs, settings), tmp_path / "run", show_progress=False)
    frame = store.to_frame()
    assert len(frame) == 3 and (frame["status"] == "completed").all()
    assert frame["params"].max() == 1.0 and frame["params"].min() < 0.1  # starts with the largest and smallest
    assert (frame["finetune_seconds"] > 0).all()
    assert store.read_metadata()["inner_searcher"] == "random"
    assert len(report_run(tmp_path / "run").front) >= 1
    again = run_baseline(
        BASELINES["standard_nas"](inputs, settings), tmp_path / "run", resume=True, show_progress=False
    )
    assert len(again.records()) == 3  # nothing left to do


# --- RFP -----------------------------------------------------------------------------------------------------------


def test_rfp_mask_tuning_lowers_the_reconstruction_error_it_minimises():
    teacher = tiny_model("bert")
    shape = ADAPTER.shape(teacher)
    subnet = SubNetwork.from_layers(range(3), [(0, 2), (1, 3), (0,)], [tuple(range(0, 37, 2))] * 3)
    data = toy_split()
    tuning = tune_masks(teacher, ADAPTER, subnet, data, batch_size=16)
    assert [(f.layer, f.block) for f in tuning.fits] == [(i, b) for i in range(3) for b in ("attention", "ffn")]
    assert all(f.after <= f.before for f in tuning.fits)
    before = block_errors(copy.deepcopy(teacher), teacher, subnet, data)
    after = block_errors(tuning.model, teacher, subnet, data)
    # the fitted objective is the real layer-output error: measured independently, it matches
    assert np.allclose(after, [f.after for f in tuning.fits], rtol=1e-4)
    assert np.isclose(before[0], tuning.fits[0].before, rtol=1e-4)
    assert sum(after) < 0.9 * sum(before)
    # only the kept heads' / neurons' output columns change; the teacher is untouched
    assert torch.equal(
        teacher.bert.encoder.layer[0].attention.output.dense.weight,
        tiny_model("bert").bert.encoder.layer[0].attention.output.dense.weight,
    )
    dense = tuning.model.bert.encoder.layer[0].attention.output.dense.weight
    assert torch.equal(dense[:, 8:16], teacher.bert.encoder.layer[0].attention.output.dense.weight[:, 8:16])
    assert count_parameters(teacher, ADAPTER, subnet).layer_fraction < 0.6 and shape.num_heads == 4


def decoder_split(n: int = 40, length: int = 12, seed: int = 0) -> TokenizedSplit:
    """Random tokens of the tiny decoders' vocabulary, right-padded with their pad id 0."""
    split = toy_split(n, length, seed)
    return TokenizedSplit(
        split.input_ids % (DECODER_VOCAB - 3) + 3 * split.attention_mask,
        split.attention_mask,
        split.token_type_ids,
        split.labels,
    )


def layer_output_errors(student, teacher, adapter, subnet: SubNetwork, data: TokenizedSplit) -> list[float]:
    """Independent measurement: mean squared difference of every kept layer's output on real tokens, student vs. teacher."""
    outputs, sums, counts = {}, {}, {}

    def watch(model, tag):
        return [
            layer.register_forward_hook(
                lambda m, args, out, key=(tag, i): outputs.__setitem__(key, out[0] if isinstance(out, tuple) else out)
            )
            for i, layer in enumerate(adapter.layers(model))
        ]

    handles = watch(student, "s") + watch(teacher, "t")
    try:
        with torch.no_grad(), adapter.masked(student, subnet):
            for batch in data.batches(16):
                batch.pop("labels")
                student(**batch), teacher(**batch)
                real = batch["attention_mask"].bool()
                for i in subnet.layers:
                    diff = (outputs[("s", i)] - outputs[("t", i)])[real].double()
                    sums[i] = sums.get(i, 0.0) + float(diff.pow(2).sum())
                    counts[i] = counts.get(i, 0) + diff.numel()
    finally:
        for handle in handles:
            handle.remove()
    return [sums[i] / counts[i] for i in subnet.layers]


@pytest.mark.parametrize(
    ("family", "classifier"), [("llama", False), ("qwen2", False), ("qwen3", False), ("gpt2", False), ("llama", True)]
)
def test_mask_tuning_refits_decoder_blocks_to_the_full_models_residual_stream(family, classifier):
    teacher = tiny_decoder(
        family, classifier=classifier, initializer_range=0.2
    )  # blocks that matter beside the residual
    adapter = adapter_for(teacher.config.model_type)
    shape = adapter.shape(teacher)
    reference = copy.deepcopy(teacher)
    subnet = SubNetwork.first_k(shape, 3, [shape.num_heads // 2] * 3, [20] * 3)  # half the heads: whole GQA groups
    data = decoder_split()
    tuning = tune_masks(teacher, adapter, subnet, data, batch_size=16)
    assert [(f.layer, f.block) for f in tuning.fits] == [(i, b) for i in range(3) for b in ("attention", "ffn")]
    assert all(f.after <= f.before for f in tuning.fits)
    assert sum(f.after for f in tuning.fits) < 0.97 * sum(f.before for f in tuning.fits)
    # an FFN block's total is its layer's output: measured independently, the fitted error is the real one
    after = layer_output_errors(tuning.model, teacher, adapter, subnet, data)
    assert np.allclose(after, [f.after for f in tuning.fits if f.block == "ffn"], rtol=1e-4)
    before = layer_output_errors(copy.deepcopy(teacher), teacher, adapter, subnet, data)
    assert all(a < b for a, b in zip(after, before))
    assert all(
        torch.equal(p, q) for p, q in zip(teacher.parameters(), reference.parameters())
    )  # the teacher is untouched


def test_mask_rearrangement_never_raises_the_block_fisher_loss():
    grads = torch.randn(64, 20, generator=torch.Generator().manual_seed(0)) @ torch.randn(20, 20)  # correlated units
    gram = FisherBlocks.from_gradients(mock.Mock(heads=grads[:, None, :4], units=grads[:, None, :])).units[0]
    for keep in (0, 5, 10, 19, 20):
        kept = greedy_rearrange(gram, keep)
        diagonal_choice = torch.argsort(gram.diagonal(), descending=True)[:keep].tolist()
        assert len(kept) == keep
        assert pruned_fisher_loss(gram, kept) <= pruned_fisher_loss(gram, diagonal_choice) + 1e-9


# --- repair, reorder, importance -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subnet",
    [
        SubNetwork.first_k(ADAPTER.shape(tiny_model()), 2, [1] * 3, [5] * 3),  # small space: first layers, heads, units
        SubNetwork.from_layers((0, 2), [tuple(range(4))] * 3, [tuple(range(37))] * 3),  # a middle layer dropped
    ],
)
def test_repair_never_increases_the_reconstruction_error(subnet):
    teacher = tiny_model("bert")
    train = toy_split(160, seed=1)
    repaired = repair_subnetwork(
        LoadedModel(teacher, None, ADAPTER, "tiny"), subnet, train, num_samples=128, batch_size=32
    )
    assert repaired.fits and all(f.after <= f.before for f in repaired.fits)
    held_out = toy_split(40, seed=2)
    before = block_errors(copy.deepcopy(teacher), teacher, subnet, held_out)
    after = block_errors(repaired.model, teacher, subnet, held_out)
    assert sum(after) <= sum(before) + 1e-9


def test_repair_of_the_full_network_keeps_its_function():
    teacher = tiny_model("bert")
    subnet = SubNetwork.full(ADAPTER.shape(teacher))  # nothing pruned: nothing to repair
    repaired = repair_subnetwork(
        LoadedModel(teacher, None, ADAPTER, "tiny"), subnet, toy_split(160, seed=1), num_samples=128, batch_size=32
    )
    assert repaired.fits and all(f.after <= f.before for f in repaired.fits)
    batch = next(toy_split(40, seed=2).batches(40))
    batch.pop("labels")
    with torch.no_grad():
        assert torch.allclose(repaired.model(**batch).logits, teacher(**batch).logits, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_reorder_keeps_the_network_function_and_puts_important_units_first(family):
    model = tiny_model(family, attn_implementation="sdpa")
    adapter = adapter_for(family)
    train = toy_split(160, seed=3)
    batch = next(toy_split(32, seed=4).batches(32))
    batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    scores = first_order_scores(mask_gradients(model, adapter, train.subset(range(128))))
    reordering = reorder_by_importance(LoadedModel(model, None, adapter, "tiny"), train, num_samples=128, seed=0)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, logits, atol=1e-5, rtol=0)
    assert any(order != tuple(range(4)) for order in reordering.heads)  # something really moved
    after = first_order_scores(mask_gradients(model, adapter, train.subset(range(128))))
    for i in range(3):
        assert torch.allclose(after.heads[i], scores.heads[i][list(reordering.heads[i])], rtol=1e-3, atol=1e-7)
        assert (after.units[i][:-1] >= after.units[i][1:] - 1e-6).all()  # best first


def test_reordering_by_scores_moves_whole_key_value_groups_best_first():
    shape = ModelShape(num_layers=1, num_heads=4, head_dim=8, hidden_size=32, ffn_size=3, num_kv_heads=2)
    reordering = Reordering.by_scores(
        Scores(torch.tensor([[0.1, 0.5, 0.4, 0.3]]), torch.tensor([[1.0, 3.0, 2.0]])), shape
    )
    assert reordering.heads == ((2, 3, 1, 0),)  # group 1 (0.7) before group 0 (0.6), each group's best head first
    assert reordering.units == ((1, 2, 0),)


def test_importance_ranks_a_zeroed_head_and_neuron_lowest():
    model = tiny_model("bert")
    layer = model.bert.encoder.layer[1]
    with torch.no_grad():
        layer.attention.output.dense.weight[:, 16:24] = 0  # head 2 of layer 1 no longer reaches the output
        layer.output.dense.weight[:, 7] = 0  # neuron 7 of layer 1 neither
    scores = first_order_scores(mask_gradients(model, ADAPTER, toy_split(64)))
    assert int(scores.heads.flatten().argmin()) == 1 * 4 + 2 and scores.heads[1, 2] == 0
    assert int(scores.units.flatten().argmin()) == 1 * 37 + 7
    assert (scores.heads.flatten().sort().values[1:] > 0).all()
    # and the mask search drops it first: a budget just below the full size loses exactly that head
    shape = ADAPTER.shape(model)
    full = 3 * ADAPTER.layer_parameter_count(shape, 4, 37)
    budget = (full - ADAPTER.layer_parameter_count(shape, 1, 0) + ADAPTER.layer_parameter_count(shape, 0, 0)) / full
    subnet = search_mask(
        Scores(scores.heads, scores.units + 1e9), shape, ADAPTER, budget
    )  # neurons far too valuable to drop
    assert subnet.heads[1] == (0, 1, 3) and all(len(h) == 4 for i, h in enumerate(subnet.heads) if i != 1)


def test_a_search_front_scores_as_in_the_search_and_repair_keeps_its_promise(search_run, glue_dir):
    searched = {config_key(r.config): r.metrics["error"] for r in ResultsStore(search_run / "run").records()}
    front = score_front(search_run / "run", search_run / "front", data_dir=str(glue_dir), show_progress=False).records()
    repaired = score_front(
        search_run / "run", search_run / "repair", repair=True, data_dir=str(glue_dir), show_progress=False
    )
    assert len(front) == len(repaired.records()) >= 1
    for record in front:  # the same validation error as the search measured: the rows mean the same
        assert record.metrics["error"] == pytest.approx(searched[config_key(record.config)])
        assert "test_error" in record.metrics and "latency_seconds" in record.metrics
    assert all(r.metrics["reconstruction_after"] <= r.metrics["reconstruction_before"] for r in repaired.records())
    assert repaired.read_metadata()["searcher"] == "random+repair"
    assert len(report_run(repaired.run_dir).front) >= 1


# --- bad input -----------------------------------------------------------------------------------------------------


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["bogus"], "unknown baseline 'bogus'; choose one of: layer_drop, importance, rfp, standard_nas"),
        (["rfp", "--budgets", "0.5,1.5"], "budget 1.5 is outside (0, 1)"),
        (["importance", "--budgets", "half"], "--budgets must be comma-separated fractions"),
        (["rfp", "--max-train-samples", "50"], "needs at least 128 training examples"),
        (["rfp", "--num-samples", "64"], "needs at least 128 training examples"),
        (["standard_nas", "--search-space", "large"], "use --search-space small or layer"),
    ],
)
def test_cli_rejects_bad_input_with_one_sentence_and_exit_code_2(
    extra, message, tiny_model_dir, glue_dir, tmp_path, capsys
):
    argv = [
        "baseline",
        *extra,
        "--model",
        str(tiny_model_dir),
        "--data-dir",
        str(glue_dir),
        "--max-seq-length",
        "48",
        "--output",
        str(tmp_path / "out"),
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "trials.jsonl").exists()


def test_a_family_a_baseline_does_not_support_is_a_user_error(inputs):
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=100))
    other = BaselineInputs(
        LoadedModel(gpt2, None, mock.Mock(spec=ModelAdapter), "gpt2"),
        inputs.task,
        inputs.train,
        inputs.validation,
        inputs.test,
    )
    for name in (
        "rfp",
        "standard_nas",
    ):  # rfp inherits importance's class, not its families (importance takes every family)
        with pytest.raises(UserError, match=f"{name} supports bert, roberta models, not 'gpt2'"):
            BASELINES[name](other, BaselineSettings())


def test_a_family_without_residual_blocks_is_refused_by_rfp_and_repair(inputs):
    class Opaque(type(ADAPTER)):
        def residual_blocks(self, layer):
            return ()

    loaded = LoadedModel(inputs.loaded.model, inputs.loaded.tokenizer, Opaque(), "tiny")
    with pytest.raises(
        UserError,
        match="^rfp refits each layer's attention and FFN outputs, which the adapter of 'bert' models "
        "does not describe; use importance or layer_drop.$",
    ):
        BASELINES["rfp"](
            BaselineInputs(loaded, inputs.task, inputs.train, inputs.validation, inputs.test), BaselineSettings()
        )
    with pytest.raises(UserError, match="^--repair refits .* drop --repair.$"):
        repair_subnetwork(loaded, SubNetwork.full(ADAPTER.shape(loaded.model)), inputs.train)


def test_cli_runs_a_baseline_resumes_it_and_exports_its_models(tiny_model_dir, glue_dir, tmp_path, capsys):
    argv = [
        "baseline",
        "importance",
        "--model",
        str(tiny_model_dir),
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "128",
        "--max-validation-samples",
        "48",
        "--max-test-samples",
        "32",
        "--max-seq-length",
        "48",
        "--budgets",
        "0.5",
        "--export",
        "--output",
        str(tmp_path / "run"),
    ]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0 and "importance: 1 pruned models" in out and "test_error" in out
    assert (
        json.loads((tmp_path / "run" / "models" / "budget-0.5" / "nas_tune_export.json").read_text())["baseline"]
        == "importance"
    )
    exported = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "run" / "models" / "budget-0.5", trust_remote_code=True
    )
    assert exported.config.id2label == {0: "entailment", 1: "not_entailment"}  # GLUE's names, not LABEL_0 / LABEL_1
    assert exported.config.label2id == {"entailment": 0, "not_entailment": 1}
    code, _, _ = run_cli([*argv, "--resume"], capsys)
    assert code == 0 and len((tmp_path / "run" / "trials.jsonl").read_text().splitlines()) == 1


def test_pruning_a_pre_trained_model_or_another_split_is_refused(search_run, glue_dir, tokenizer, tmp_path, capsys):
    base = tmp_path / "base"
    BertModel(tiny_config("bert")).save_pretrained(base)
    tokenizer.save_pretrained(base)
    common = [
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "128",
        "--max-validation-samples",
        "48",
        "--max-seq-length",
        "48",
        "--output",
        str(tmp_path / "out"),
    ]
    code, _, err = run_cli(["baseline", "rfp", "--model", str(base), *common], capsys)
    assert code == 2 and "rfp prunes a model fine-tuned on the task" in err
    code, _, err = run_cli(
        ["baseline", "importance", "--model", str(search_run / "ckpt"), "--seed", "1", *common], capsys
    )
    assert code == 2 and "was fine-tuned with seed=0 but this run uses 1" in err
