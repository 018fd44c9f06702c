"""Load a task as train / validation / test DataFrames.

Following the paper, the search optimises on a seeded hold-out of the *training* file (validation) and the
official dev set (GLUE dev.tsv, or a custom validation file) is only used to report results (test).
Plain-text corpora for causal language modelling bring their own validation and test files (see `data/text.py`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nas_tune.data.tasks import TaskSpec, get_task, language_modelling_task
from nas_tune.data.text import CORPORA, corpus_files, is_text_dataset, read_paragraphs
from nas_tune.errors import UserError
from nas_tune.settings import DataConfig  # declared with the other settings; re-exported

HUB_DATASET = "nyu-mll/glue"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass
class TaskData:
    task: TaskSpec
    train: pd.DataFrame  # task.text_columns + "label" (causal LM: "text", one paragraph per row)
    validation: pd.DataFrame  # seeded hold-out of the training file: what the search optimises
    test: pd.DataFrame  # GLUE dev (or custom validation_file): reporting only
    source: str  # where the data came from, for logs and reports


@dataclass(frozen=True)
class GlueLayout:
    directory: str
    columns: dict[str, str]  # tsv column -> DataFrame column (text columns and "label")
    dev_file: str = "dev.tsv"
    header: tuple[str, ...] | None = None  # column names of a headerless file
    hub_test_split: str = "validation"


GLUE_LAYOUTS: dict[str, GlueLayout] = {
    "rte": GlueLayout("RTE", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
    "mrpc": GlueLayout("MRPC", {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"}),
    "cola": GlueLayout(
        "CoLA",
        {"sentence": "sentence", "label": "label"},
        header=("source", "label", "original_label", "sentence"),
    ),
    "stsb": GlueLayout("STS-B", {"sentence1": "sentence1", "sentence2": "sentence2", "score": "label"}),
    "sst2": GlueLayout("SST-2", {"sentence": "sentence", "label": "label"}),
    "qnli": GlueLayout("QNLI", {"question": "question", "sentence": "sentence", "label": "label"}),
    "mnli": GlueLayout(
        "MNLI",
        {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
        dev_file="dev_matched.tsv",
        hub_test_split="validation_matched",
    ),
    "qqp": GlueLayout("QQP", {"question1": "question1", "question2": "question2", "is_duplicate": "label"}),
    "wnli": GlueLayout("WNLI", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}),
}


def load_task_data(config: DataConfig) -> TaskData:
    _check(config)
    if is_text_dataset(config.dataset):
        return _load_text(config)
    if config.train_file or config.dataset.strip().lower() == "custom":
        task, full, test, source = _load_custom(config)
    else:
        task = get_task(config.dataset)
        full, test, source = _load_glue(task, config)
    train, validation = _split(full, config)
    return TaskData(
        task=task,
        train=_subsample(train, config.max_train_samples, config.seed),
        validation=validation,
        test=_subsample(validation if test is None else test, config.max_test_samples, config.seed),
        source=source,
    )


def _check(config: DataConfig) -> None:
    if not 0 < config.validation_fraction < 1:
        raise UserError(f"validation_fraction must lie strictly between 0 and 1, got {config.validation_fraction}.")
    for name in ("max_validation_samples", "max_train_samples", "max_test_samples"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive number of rows (or unset), got {value}.")
    if is_text_dataset(config.dataset):
        _check_text(config)
    elif config.test_file:
        raise UserError(
            "test_file only applies to language modelling on plain text: use dataset 'text', or drop test_file."
        )
    if config.validation_file and not config.train_file:
        raise UserError(
            "validation_file only applies to custom data: pass train_file as well, or drop validation_file."
        )


def _check_text(config: DataConfig) -> None:
    """Refuse the classification options a causal LM task would silently ignore, and a text task without text."""
    given = [
        name
        for name, value in (("text_columns", config.text_columns), ("label_column", config.label_column != "label"))
        if value
    ]
    if given:
        raise UserError(
            f"{' and '.join(given)} only apply to classification data, not to language modelling on "
            f"'{config.dataset}'; drop them."
        )
    name = config.dataset.strip().lower()
    if name == "text" and not config.train_file:
        raise UserError(
            "dataset 'text' needs a plain-text training file: pass train_file (and validation_file, test_file)."
        )
    if name in CORPORA and (config.train_file or config.validation_file or config.test_file):
        raise UserError(
            f"the {name} corpus brings its own files; drop train_file / validation_file / test_file, "
            "or use dataset 'text' for your own."
        )


# --- GLUE ------------------------------------------------------------------------------------------------------


def _load_glue(task: TaskSpec, config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Local GLUE tsv first, then the Hugging Face hub (unless offline)."""
    layout = GLUE_LAYOUTS[task.name]
    mapping = _glue_label_ids(task)
    looked: list[str] = []
    root = _glue_root(config)
    if root is None:
        looked.append("no data_dir or GLUE_DIR given")
    else:
        folder = root / layout.directory
        files = [folder / "train.tsv", folder / layout.dev_file]
        missing = [str(path) for path in files if not path.is_file()]
        if not missing:
            train, test = (_frame(_read_glue_tsv(path, layout), task, "label", mapping, str(path)) for path in files)
            return train, test, f"{folder} (GLUE tsv)"
        looked.append(f"missing {' and '.join(missing)}")
    if _hub_offline():
        looked.append(f"Hugging Face hub skipped because {' or '.join(_OFFLINE_VARIABLES)} is set")
    else:
        try:
            return _load_hub(task, layout, mapping)
        except Exception as exc:  # noqa: BLE001 any hub failure (network, auth, missing config) means "not found here"
            looked.append(f"Hugging Face hub {HUB_DATASET} failed ({type(exc).__name__}: {str(exc).splitlines()[0]})")
    raise UserError(
        f"No {task.name} data found ({'; '.join(looked)}): set GLUE_DIR or --data-dir to a folder in the classic "
        f"GLUE layout (<dir>/{layout.directory}/train.tsv and {layout.dev_file}), or allow downloads from the hub."
    )


def _glue_root(config: DataConfig) -> Path | None:
    if config.data_dir is not None:
        root, origin = Path(config.data_dir).expanduser(), "data_dir"
    elif os.environ.get("GLUE_DIR"):
        root, origin = Path(os.environ["GLUE_DIR"]).expanduser(), "$GLUE_DIR"
    else:
        return None
    if not root.is_dir():
        raise UserError(
            f"The GLUE folder {root} (from {origin}) does not exist: point it at the folder that holds RTE/, MRPC/, ..."
        )
    return root


def _read_glue_tsv(path: Path, layout: GlueLayout) -> pd.DataFrame:
    # GLUE text has unbalanced quotes (QUOTE_NONE keeps rows apart), MRPC's header has a BOM (utf-8-sig), and
    # strings such as "null" or "NA" are sentences, not missing values (keep_default_na=False).
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
            names=layout.header,
            usecols=list(layout.columns),
            dtype=str,
            keep_default_na=False,
        )
    except ValueError as exc:
        raise UserError(f"Could not parse {path} as a GLUE tsv file ({exc}); restore the original file.") from exc
    return frame.rename(columns=layout.columns)


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for name in _OFFLINE_VARIABLES)


def _load_hub(task: TaskSpec, layout: GlueLayout, mapping: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    import datasets  # slow import, only needed without local files

    splits = datasets.load_dataset(HUB_DATASET, task.name)
    where = f"{HUB_DATASET} {task.name}"
    train, test = (
        _frame(splits[name].to_pandas(), task, "label", mapping, f"{where} {name}")
        for name in ("train", layout.hub_test_split)
    )
    return train, test, f"{where} (Hugging Face hub)"


def _glue_label_ids(task: TaskSpec) -> dict[str, int] | None:
    """Files hold either class ids ("0") or names ("entailment"); GLUE names are never digits, so both map."""
    if task.is_regression:
        return None
    return {str(i): i for i in range(task.num_labels)} | {name: i for i, name in enumerate(task.label_names)}


# --- plain text ------------------------------------------------------------------------------------------------


def _load_text(config: DataConfig) -> TaskData:
    """Validation: the validation file, else a seeded hold-out of the training paragraphs; test: the test file,
    else the validation split. Sampled paragraphs keep their order in the file (`_rows`)."""
    name = config.dataset.strip().lower()
    if name in CORPORA:
        train_path, validation_path, test_path = corpus_files(name, config.data_dir)
    else:
        train_path, validation_path, test_path = config.train_file, config.validation_file, config.test_file
    train = read_paragraphs(train_path)
    if validation_path:
        validation = _subsample(read_paragraphs(validation_path), config.max_validation_samples, config.seed)
    else:
        train, validation = _split(train, config)
    test = validation if test_path is None else read_paragraphs(test_path)
    held_out = (
        f"validation = {validation_path or 'a hold-out of the training paragraphs'}, test = {test_path or 'validation'}"
    )
    return TaskData(
        task=language_modelling_task(name),
        train=_subsample(train, config.max_train_samples, config.seed),
        validation=validation,
        test=_subsample(test, config.max_test_samples, config.seed),
        source=f"{train_path} (plain text; {held_out})",
    )


# --- custom files ----------------------------------------------------------------------------------------------


def _load_custom(config: DataConfig) -> tuple[TaskSpec, pd.DataFrame, pd.DataFrame | None, str]:
    if not config.train_file:
        raise UserError("dataset 'custom' needs a training file: pass train_file (.csv, .tsv, .json or .jsonl).")
    raw = _read_table(config.train_file)
    text_columns = tuple(config.text_columns)
    if not 1 <= len(text_columns) <= 2:
        raise UserError(
            f"Custom data needs one or two text_columns, got {len(text_columns)}: "
            f"choose from the columns of {config.train_file}: {', '.join(map(str, raw.columns))}."
        )
    _require_columns(raw, (*text_columns, config.label_column), config.train_file)
    task, mapping = _custom_task(raw[config.label_column], text_columns, config.train_file)
    train = _frame(raw, task, config.label_column, mapping, config.train_file)
    if not config.validation_file:
        return task, train, None, f"{config.train_file} (custom; no validation_file, so test = validation split)"
    held_out = _read_table(config.validation_file)
    test = _frame(held_out, task, config.label_column, mapping, config.validation_file)
    return task, train, test, f"{config.train_file} (custom; test = {config.validation_file})"


def _custom_task(
    labels: pd.Series, text_columns: tuple[str, ...], where: str
) -> tuple[TaskSpec, dict[str, int] | None]:
    """Non-integer float labels mean regression; anything else is a class, numbered by sorted value."""
    known = labels.dropna()
    if pd.api.types.is_float_dtype(known) and not (known % 1 == 0).all():
        return TaskSpec("custom", text_columns, 1, "spearman"), None
    values = known.unique() if pd.api.types.is_numeric_dtype(known) else known.astype(str).unique()
    names = tuple(_label_strings(pd.Series(sorted(values))))
    if len(names) < 2:
        raise UserError(
            f"The label column of {where} has {len(names)} distinct value(s); classification needs at least 2."
        )
    return TaskSpec("custom", text_columns, len(names), "accuracy", names), {name: i for i, name in enumerate(names)}


def _read_table(path_text: str) -> pd.DataFrame:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"The data file {path} does not exist; check the path.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl"):
        raise UserError(
            f"Unsupported data file type {suffix!r} for {path}: use .csv, .tsv, .json or .jsonl "
            "(plain text for language modelling: dataset 'text')."
        )
    try:
        if suffix in (".csv", ".tsv"):
            # Like GLUE, tsv text is taken verbatim (quotes are characters); csv uses standard quoting.
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL,
                encoding="utf-8-sig",
                keep_default_na=False,
                na_values=[""],
            )
        else:
            text = path.read_text(encoding="utf-8-sig")
            lines = suffix == ".jsonl" or not text.lstrip().startswith("[")  # .json may hold JSON lines too
            frame = pd.read_json(io.StringIO(text), lines=lines, dtype=False)
    except ValueError as exc:
        raise UserError(f"Could not parse {path} ({exc}); check that it is valid {suffix[1:]}.") from exc
    if frame.empty:
        raise UserError(f"The data file {path} has no rows.")
    return frame


# --- shared ----------------------------------------------------------------------------------------------------


def _require_columns(raw: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [name for name in columns if name not in raw.columns]
    if missing:
        raise UserError(
            f"{where} has no column {', '.join(map(repr, missing))}; available columns: "
            f"{', '.join(map(str, raw.columns))} (set text_columns / label_column to match)."
        )


def _frame(
    raw: pd.DataFrame, task: TaskSpec, label_column: str, mapping: dict[str, int] | None, where: str
) -> pd.DataFrame:
    """The task's text columns as strings plus an encoded "label" column."""
    _require_columns(raw, (*task.text_columns, label_column), where)
    frame = raw[list(task.text_columns)].fillna("").astype(str).reset_index(drop=True)
    frame["label"] = _encode_labels(raw[label_column].reset_index(drop=True), mapping, where)
    return frame


def _encode_labels(values: pd.Series, mapping: dict[str, int] | None, where: str) -> pd.Series:
    if mapping is None:
        codes = pd.to_numeric(values, errors="coerce")
        expected = "numbers"
    else:
        codes = _label_strings(values).map(mapping)
        expected = ", ".join(mapping)
    bad = values[codes.isna()]
    if len(bad):
        raise UserError(
            f"{where} has {len(bad)} invalid label(s), e.g. {str(bad.iloc[0])!r} in data row {bad.index[0] + 1}; "
            f"expected {expected}."
        )
    return codes.astype("float64" if mapping is None else "int64")


def _label_strings(values: pd.Series) -> pd.Series:
    """Label values as text, with integral floats (1.0 from a csv column with gaps) written as integers."""
    known = values.dropna()
    if pd.api.types.is_float_dtype(values) and (known % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype(str).str.strip()


def _split(frame: pd.DataFrame, config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded hold-out of the training file: (train, validation), disjoint."""
    n = len(frame)
    n_validation = min(round(config.validation_fraction * n), config.max_validation_samples)
    if not 1 <= n_validation < n:
        raise UserError(
            f"Cannot hold out {n_validation} of {n} training rows for validation: "
            "adjust validation_fraction / max_validation_samples or use a larger training file."
        )
    order = np.random.default_rng(config.seed).permutation(n)
    return _rows(frame, order[n_validation:]), _rows(frame, order[:n_validation])


def _subsample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or limit >= len(frame):
        return frame
    return _rows(frame, np.random.default_rng(seed).permutation(len(frame))[:limit])


def _rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """Selected rows in file order, so splits read like the source file."""
    return frame.iloc[np.sort(positions)].reset_index(drop=True)
