"""The whole pipeline on a decoder, offline: a tiny GQA LLaMA and a few Shakespeare blocks through `launchers/local.py`
(fine-tuning, search, report, export); every export loads with plain `AutoModelForCausalLM`, generates, and its
model card speaks of perplexity and generate(), not of labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForCausalLM

from nas_tune.report.summary import format_table
from tests.conftest import save_tiny_llama, write_text_splits

sys.path.insert(0, str(Path(__file__).parents[1] / "launchers"))
import local


def test_pipeline_fine_tunes_searches_and_exports_a_causal_lm_that_generates(tmp_path, tokenizer, capsys):
    save_tiny_llama(tmp_path / "llama", tokenizer, num_layers=3)
    splits = write_text_splits(tmp_path, {"train": (0, 3000), "validation": (3000, 4500), "test": (4500, 6000)})
    files = [arg for split, path in splits.items() for arg in (f"--{split}-file", str(path))]
    output = tmp_path / "run"
    argv = [
        "--dataset",
        "text",
        *files,
        "--model",
        str(tmp_path / "llama"),
        "--quick",
        "--max-seq-length",
        "16",
        "--max-steps",
        "2",
        "--num-trials",
        "4",
        "--output",
        str(output),
    ]
    assert local.main(argv) == 0
    shown = capsys.readouterr().out
    assert "test_perplexity" in shown
    summary = json.loads((output / "summary.json").read_text())
    assert summary["task"] == "text" and summary["trials"] == 4
    prompt = torch.tensor([[101, 2000, 2022, 2030]])
    for pick in summary["exported"]:
        assert pick["test_error"] == 1 - 1 / pick["test_perplexity"]
        if pick["same_as"]:
            continue
        folder = Path(pick["path"])
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=pick["needs_trust_remote_code"]).eval()
        assert sum(p.numel() for p in model.parameters()) == pick["total_params"]
        tokens = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, min_new_tokens=3, do_sample=False
        )
        assert tokens.shape == (1, 7)
        card = (folder / "README.md").read_text()
        assert "pipeline_tag: text-generation" in card and "test perplexity" in card and "AutoModelForCausalLM" in card
        assert "model.generate(" in card and "labels" not in card and "AutoModelForSequenceClassification" not in card
        assert "key/value heads per kept layer" in card  # grouped-query attention: 2 key/value heads of 4 query heads


def test_the_terminal_table_shows_a_ruined_perplexity_in_scientific_notation():
    front = pd.DataFrame(
        {"trial_id": [0, 1], "params": [1.0, 0.0333], "error": [0.9868, 1.0], "perplexity": [75.68876, 9.4775e45]}
    )
    lines = format_table(front, "perplexity").splitlines()
    assert "75.6888" in lines[1] and "9.477e+45" in lines[2] and max(map(len, lines)) < 60
