"""What each task is (inputs, label space, primary metric), so loading, training and scoring agree."""

from __future__ import annotations

from dataclasses import dataclass

from nas_tune.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[str, ...]
    num_labels: int  # 1 means regression
    metric: str  # primary key of the dict that nas_tune.metrics.task.score returns
    label_names: tuple[str, ...] = ()  # label_names[i] is the name of class id i (empty for regression)
    causal_lm: bool = False  # next-token prediction on blocks of text instead of one label per example

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


LANGUAGE_MODELLING_METRIC = "perplexity"


def language_modelling_task(name: str) -> TaskSpec:
    """A causal language-modelling task: no labels, the model's own vocabulary, scored by perplexity."""
    return TaskSpec(name, ("text",), 0, LANGUAGE_MODELLING_METRIC, causal_lm=True)


def _classification(name: str, text_columns: tuple[str, ...], metric: str, *label_names: str) -> TaskSpec:
    return TaskSpec(name, text_columns, len(label_names), metric, label_names)


# Column names and label ids follow the Hugging Face `nyu-mll/glue` dataset, so local tsv files and the hub
# give identical DataFrames (note WNLI: 1 = entailment, unlike RTE/QNLI).
GLUE_TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        _classification("rte", ("sentence1", "sentence2"), "accuracy", "entailment", "not_entailment"),
        _classification("mrpc", ("sentence1", "sentence2"), "f1", "not_equivalent", "equivalent"),
        _classification("cola", ("sentence",), "matthews_correlation", "unacceptable", "acceptable"),
        TaskSpec("stsb", ("sentence1", "sentence2"), 1, "spearman"),
        _classification("sst2", ("sentence",), "accuracy", "negative", "positive"),
        _classification("qnli", ("question", "sentence"), "accuracy", "entailment", "not_entailment"),
        _classification("mnli", ("premise", "hypothesis"), "accuracy", "entailment", "neutral", "contradiction"),
        _classification("qqp", ("question1", "question2"), "f1", "not_duplicate", "duplicate"),
        _classification("wnli", ("sentence1", "sentence2"), "accuracy", "not_entailment", "entailment"),
    )
}


def get_task(name: str) -> TaskSpec:
    """Look a GLUE task up by any common spelling ("STS-B", "sst_2", "rte")."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise UserError(
            f"Unknown dataset {name!r}: use one of {', '.join(GLUE_TASKS)}, "
            "or 'custom' with a train file for your own data."
        )
    return GLUE_TASKS[key]
