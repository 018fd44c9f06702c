"""Mean pooling: read from a sentence-transformers folder, computed over real tokens only, kept by every save."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoModel

from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.models import load_finetuned, load_model
from nas_tune.models.loading import checkpoint_pooling
from nas_tune.supernet import FinetuneConfig
from nas_tune.supernet.run import finetune_supernet
from tests.conftest import tiny_config, tiny_decoder


def sentence_transformers_folder(path, tokenizer, *, mean: bool = True):
    """A tiny base BERT saved as sentence-transformers saves one: modules.json and a pooling module's config."""
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(path)
    tokenizer.save_pretrained(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    pooling = {"pooling_mode_cls_token": not mean, "pooling_mode_mean_tokens": mean}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return path


@pytest.fixture(scope="module")
def mean_folder(tmp_path_factory, tokenizer):
    return sentence_transformers_folder(tmp_path_factory.mktemp("st_mean"), tokenizer)


def test_the_pooling_is_read_from_the_sentence_transformers_folder(tmp_path, tokenizer, mean_folder):
    assert checkpoint_pooling(str(mean_folder)) == "mean"
    cls_folder = sentence_transformers_folder(tmp_path / "cls", tokenizer, mean=False)
    assert checkpoint_pooling(str(cls_folder)) == "token"
    (cls_folder / "modules.json").write_text("not json")
    assert checkpoint_pooling(str(cls_folder)) == "token"  # unreadable: the family's own token
    assert checkpoint_pooling(str(tmp_path)) == "token"  # a plain Hugging Face folder
    assert checkpoint_pooling("some/hub-name") == "token"


def test_auto_pooling_builds_a_mean_pooled_classifier_that_ignores_padding(mean_folder, tokenizer):
    loaded = load_model(str(mean_folder), 3)
    model = loaded.model
    assert type(model).__name__ == "MeanPooledBertForSequenceClassification"
    assert model.config.model_type == "nas_tune_bert" and model.bert.pooler is None and loaded.head_is_new
    assert type(load_model(str(mean_folder), 3, pooling="token").model).__name__ == "BertForSequenceClassification"
    texts = ["short", "a much longer sentence with many more words in it"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the first row is padded
    with torch.inference_mode():
        logits = model(**batch).logits
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
        states = model.bert(**batch).last_hidden_state
    torch.testing.assert_close(logits[:1], alone, atol=1e-5, rtol=1e-5)  # padding changes nothing
    real = batch["attention_mask"][0].bool()
    by_hand = model.classifier(states[0, real].mean(0))  # dropout is off in eval
    torch.testing.assert_close(logits[0], by_hand, atol=1e-5, rtol=1e-5)
    labels = torch.tensor([0, 2])
    loss = model(**batch, labels=labels).loss
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_a_pooling_the_model_cannot_have_is_refused(tmp_path, tokenizer, tiny_model_dir):
    tiny_decoder("llama").save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"^--pooling mean is not available for this model family; choose one of"):
        load_model(str(tmp_path), 2, pooling="mean", causal_lm=False)
    assert type(load_model(str(tmp_path), 2, causal_lm=False).model).__name__ == "LlamaForSequenceClassification"
    with pytest.raises(UserError, match=r"is a classifier whose head reads token pooling, not mean; drop --pooling"):
        load_model(str(tiny_model_dir), 2, pooling="mean")  # a fine-tuned head keeps what it was trained on


REFUSE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["nas_tune"] = None
    import transformers
    try:
        transformers.AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
    except ValueError as exc:
        print("refused:", "trust_remote_code=True" in str(exc))
    else:
        print("loaded as the stock [CLS] classifier")
    """
)


def test_a_mean_pooled_fine_tuning_saves_a_folder_that_keeps_its_pooling(tmp_path, mean_folder, glue_dir):
    data = DataConfig("rte", data_dir=str(glue_dir), max_train_samples=32, max_validation_samples=32)
    standard = tmp_path / "standard"
    config = FinetuneConfig(strategy="standard", epochs=1, batch_size=16, lr=1e-3)
    finetune_supernet(str(mean_folder), data, config, standard, max_seq_length=32, show_progress=False)
    saved = json.loads((standard / "config.json").read_text())
    assert saved["model_type"] == "nas_tune_bert" and (standard / "modeling_nas_tune.py").is_file()
    assert saved["auto_map"]["AutoModelForSequenceClassification"].endswith("MeanPooledBertForSequenceClassification")
    # nas-tune reads it back as the same mean-pooled model, and takes it as a two-stage start for --model
    again = load_finetuned(str(standard), 2, str(mean_folder), option="--init-from")
    assert type(again.model).__name__ == "MeanPooledBertForSequenceClassification" and not again.head_is_new
    # plain transformers cannot silently read it as a [CLS] classifier
    done = subprocess.run(
        [sys.executable, "-c", REFUSE_SCRIPT, str(standard)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.stdout.strip().endswith("refused: True"), done.stderr[-2000:]  # after transformers asks (no stdin)


def test_the_flops_of_a_mean_pooled_head_count_the_mean_not_a_pooler(mean_folder):
    mean = load_model(str(mean_folder), 2)
    token = load_model(str(mean_folder), 2, pooling="token")
    hidden, labels, tokens = 32, 2, 128
    assert mean.adapter.output_flops(mean.model, tokens) == hidden * tokens + 2 * hidden * labels
    assert token.adapter.output_flops(token.model, tokens) == 2 * hidden * hidden + 2 * hidden * labels
    assert np.isclose(
        sum(p.numel() for p in token.model.parameters()) - sum(p.numel() for p in mean.model.parameters()),
        hidden * hidden + hidden,
    )  # no pooler weights
