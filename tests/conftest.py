"""Shared fixtures: tiny randomly initialised models (offline) and the shared GLUE data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

from nas_tune.data import DataConfig
from nas_tune.models import bundled_model_path
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet

REPO = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("GLUE_DIR", REPO.parent / "shared" / "data" / "glue")).resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_config(model_type: str, num_labels: int = 2, attn_implementation: str = "sdpa"):
    common = dict(
        vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=80, num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    if num_labels == 1:
        common["problem_type"] = "regression"
    config = BertConfig(**common) if model_type == "bert" else RobertaConfig(pad_token_id=1, **common)
    config._attn_implementation = attn_implementation
    return config


def tiny_model(model_type: str = "bert", num_labels: int = 2, seed: int = 0, attn_implementation: str = "sdpa"):
    torch.manual_seed(seed)
    cls = BertForSequenceClassification if model_type == "bert" else RobertaForSequenceClassification
    return cls(tiny_config(model_type, num_labels, attn_implementation)).eval()


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
def glue_dir():
    if not (GLUE_DIR / "RTE" / "train.tsv").is_file():
        pytest.fail(f"GLUE data not found at {GLUE_DIR}; set GLUE_DIR to ../shared/data/glue")
    return GLUE_DIR


@pytest.fixture(scope="session")
def supernet(tmp_path_factory, tiny_model_dir, glue_dir):
    """A tiny BERT fine-tuned as a super-network on 32 RTE examples (seconds, offline)."""
    output = tmp_path_factory.mktemp("supernet") / "ckpt"
    data = DataConfig("rte", data_dir=str(glue_dir), max_train_samples=32, max_validation_samples=48, max_test_samples=32)
    finetune_supernet(str(tiny_model_dir), data, FinetuneConfig(epochs=1, batch_size=16, lr=1e-3), output, max_seq_length=48, show_progress=False)
    return output
