"""`--repair`: rfp's least-squares output reconstruction applied to sub-networks the NAS search found.

A retraining-free correction after the search: each chosen sub-network of the super-network gets one output
scale per kept head and neuron, fitted layer by layer so that its block outputs match the full super-network's
on training examples (`mask_tuning.tune_masks`). It never increases the per-block reconstruction error it
minimises: a block whose fit would not lower it keeps its weights. Whether that helps the task metric is what
the benchmark measures.
"""

from __future__ import annotations

from nas_tune.data import TokenizedSplit, default_cache_dir, tokenize_split
from nas_tune.errors import UserError
from nas_tune.evaluate.setup import EvaluationSetup
from nas_tune.models import LoadedModel, SubNetwork
from nas_tune.pruning.mask_tuning import MaskTuning, check_reconstructable, tune_masks
from nas_tune.pruning.scores import MIN_SAMPLES, training_sample

DEFAULT_SAMPLES = 256


def check_repair_samples(max_train_samples: int | None) -> None:
    """Refuse a training split capped below what the fit needs, before any work."""
    if (max_train_samples or MIN_SAMPLES) < MIN_SAMPLES:
        raise UserError(
            f"--repair needs at least {MIN_SAMPLES} training examples but --max-train-samples is {max_train_samples}; "
            "raise it or drop --repair."
        )


def repair_subnetwork(
    loaded: LoadedModel,
    subnet: SubNetwork,
    train: TokenizedSplit,
    *,
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    batch_size: int = 32,
) -> MaskTuning:
    """A full-size copy of `loaded.model` whose `subnet` is fitted to the full model's block outputs; export it
    with `export_subnetwork(result.model, ..., subnet, ...)`."""
    check_reconstructable(loaded.model, loaded.adapter, "--repair", "drop --repair")
    samples = training_sample(train, num_samples, seed, "--repair")
    return tune_masks(loaded.model, loaded.adapter, subnet, samples, batch_size=batch_size)


def repair_training_split(setup: EvaluationSetup, max_seq_length: int) -> TokenizedSplit:
    """The searched checkpoint's training split, tokenised like the search's: what `repair_subnetwork` fits on."""
    return tokenize_split(
        setup.data.train, setup.loaded.tokenizer, setup.data.task, max_seq_length, cache_dir=default_cache_dir()
    )
