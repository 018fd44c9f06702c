"""Shared fixtures: tiny randomly initialised models (offline) and the shared GLUE data folder."""

from __future__ import annotations

import os
from pathlib import Path

import preforked
import pytest
import torch
import transformers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from nas_tune.data import DataConfig
from nas_tune.models import adapter_for, bundled_model_path
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("GLUE_DIR", REPO.parent / "shared" / "data" / "glue")).resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_finish(session):
    """Start the fork server of the kill-and-resume tests now: its imports overlap the tests before them (2 cores)."""
    if any(getattr(getattr(item, "module", None), "preforked", None) for item in session.items):
        preforked.start_server()


SHAKESPEARE = Path(
    os.environ.get("NAS_TUNE_TEXT_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "text")
)  # the text corpora folder: shakespeare/{train,validation,test}.txt


def tiny_llama(num_layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """LLaMA with grouped-query attention (4 query / 2 key-value heads) and tied embeddings, as SmolLM2; MiniLM's vocab."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def save_tiny_llama(folder: Path, tokenizer, num_layers: int = 2) -> Path:
    """`tiny_llama` saved with the MiniLM tokenizer: a model folder `--model` takes."""
    tiny_llama(num_layers).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_text_splits(folder: Path, bounds: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """Character ranges of the Shakespeare test text written as `<split>.txt` files, for `--dataset text`."""
    source = (SHAKESPEARE / "shakespeare" / "test.txt").read_text()
    paths = {name: folder / f"{name}.txt" for name in bounds}
    for name, (start, stop) in bounds.items():
        paths[name].write_text(source[start:stop])
    return paths


def tiny_config(model_type: str, num_labels: int = 2, attn_implementation: str = "sdpa"):
    common = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=80,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if num_labels == 1:
        common["problem_type"] = "regression"
    config = BertConfig(**common) if model_type == "bert" else RobertaConfig(pad_token_id=1, **common)
    config._attn_implementation = attn_implementation
    return config


# Tiny decoders (offline, random): query / key-value heads and head size chosen to cover GQA with groups of
# 2 and 3, multi-query attention and plain multi-head attention, and a head size that is not hidden / heads.
DECODER_VOCAB = 96
LLAMA_SIZES = dict(
    vocab_size=DECODER_VOCAB, hidden_size=32, num_hidden_layers=3, intermediate_size=37, max_position_embeddings=80
)
DECODERS = {  # family: (transformers class prefix, causal LM class, config)
    "llama": ("Llama", "LlamaForCausalLM", dict(LLAMA_SIZES, num_attention_heads=4, num_key_value_heads=2, head_dim=8)),
    "mistral": (
        "Mistral",
        "MistralForCausalLM",
        dict(LLAMA_SIZES, num_attention_heads=4, num_key_value_heads=4, head_dim=8),
    ),
    "qwen2": ("Qwen2", "Qwen2ForCausalLM", dict(LLAMA_SIZES, num_attention_heads=6, num_key_value_heads=2, head_dim=8)),
    "qwen3": (
        "Qwen3",
        "Qwen3ForCausalLM",
        dict(LLAMA_SIZES, num_attention_heads=4, num_key_value_heads=1, head_dim=16),
    ),
    "gpt2": (
        "GPT2",
        "GPT2LMHeadModel",
        dict(
            vocab_size=DECODER_VOCAB,
            n_embd=32,
            n_layer=3,
            n_head=4,
            n_inner=37,
            n_positions=80,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=1,
            eos_token_id=2,
        ),
    ),
}


def tiny_decoder(
    family: str,
    *,
    classifier: bool = False,
    num_labels: int = 2,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    **config_overrides,
):
    """A random 3-layer decoder causal LM (or sequence classifier, padded with token 0)."""
    prefix, causal_lm, sizes = DECODERS[family]
    config = getattr(transformers, f"{prefix}Config")(
        num_labels=num_labels, pad_token_id=0, **{**sizes, **config_overrides}
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return getattr(transformers, f"{prefix}ForSequenceClassification" if classifier else causal_lm)(config).eval()


def tiny_model(model_type: str = "bert", num_labels: int = 2, seed: int = 0, attn_implementation: str = "sdpa"):
    """A tiny random model of a family; "<decoder>-cls" is a decoder's sequence classifier, "bert-mean" /
    "roberta-mean" a classifier that reads the mean token state."""
    family, _, task = model_type.partition("-")
    if family in DECODERS:
        return tiny_decoder(
            family, classifier=task == "cls", num_labels=num_labels, seed=seed, attn_implementation=attn_implementation
        )
    torch.manual_seed(seed)
    config = tiny_config(family, num_labels, attn_implementation)
    if task == "mean":
        config = adapter_for(family).classifier_config(config, "mean")
        config._attn_implementation = attn_implementation
        return transformers.AutoModelForSequenceClassification.from_config(config).eval()
    cls = BertForSequenceClassification if family == "bert" else RobertaForSequenceClassification
    return cls(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled MiniLM tokenizer (offline, real vocabulary); tiny models share its vocab size."""
    return AutoTokenizer.from_pretrained(bundled_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A tiny BERT classifier saved as a Hugging Face folder, as a user's fine-tuned checkpoint would be."""
    path = tmp_path_factory.mktemp("tiny_bert")
    tiny_model("bert").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_mean_model_dir(tmp_path_factory, tokenizer):
    """The same as a mean-pooled classifier (its own model type, the modeling file beside it)."""
    path = tmp_path_factory.mktemp("tiny_bert_mean")
    model = tiny_model("bert-mean")
    adapter_for(model.config.model_type).save(model, tokenizer, path)
    return path


@pytest.fixture(scope="session")
def glue_dir():
    if not (GLUE_DIR / "RTE" / "train.tsv").is_file():
        pytest.fail(f"GLUE data not found at {GLUE_DIR}; set GLUE_DIR to ../shared/data/glue")
    return GLUE_DIR


@pytest.fixture(scope="session")
def supernet(tmp_path_factory, tiny_model_dir, glue_dir):
    """A tiny BERT fine-tuned as a super-network on 32 RTE examples (seconds, offline)."""
    output = tmp_path_factory.mktemp("supernet") / "ckpt"
    data = DataConfig(
        "rte", data_dir=str(glue_dir), max_train_samples=32, max_validation_samples=48, max_test_samples=32
    )
    finetune_supernet(
        str(tiny_model_dir),
        data,
        FinetuneConfig(epochs=1, batch_size=16, lr=1e-3),
        output,
        max_seq_length=48,
        show_progress=False,
    )
    return output
