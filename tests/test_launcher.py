"""Smoke test of the one-command pipeline on the bundled MiniLM and real RTE data (tiny budget)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "launchers"))
import local

pytestmark = pytest.mark.slow

# Loads each exported folder (argv: path, needs-trust-remote-code pairs) in one plain-transformers process.
LOAD = """
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
for path, remote in zip(sys.argv[1::2], sys.argv[2::2]):
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=remote == "1").eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote == "1")  # as the model card says
    batch = tokenizer(["A man is playing."], ["Someone plays."], return_tensors="pt")
    print(json.dumps({"shape": list(model(**batch).logits.shape), "numel": sum(p.numel() for p in model.parameters()),
                      "nas_tune": "nas_tune" in sys.modules}))
"""


def test_quick_pipeline_on_minilm_rte(tmp_path, glue_dir, capsys):
    output = tmp_path / "run"
    args = [
        "--dataset",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--quick",
        "--max-train-samples",
        "128",
        "--max-validation-samples",
        "48",
        "--max-test-samples",
        "48",
        "--max-seq-length",
        "32",
        "--num-trials",
        "8",
        "--output",
        str(output),
    ]
    assert local.main(args) == 0
    shown = capsys.readouterr().out
    assert "test_accuracy" in shown and str(output) in shown
    summary = json.loads((output / "summary.json").read_text())
    assert summary["trials"] == 8 and summary["task"] == "rte"
    trials = pd.read_csv(output / "search" / "trials.csv")
    assert len(trials) == 8 and trials["error"].between(0, 1).all()
    pareto = pd.read_csv(output / "search" / "pareto.csv")
    assert {"params", "error", "test_accuracy"} <= set(pareto.columns) and len(pareto) >= 1
    for name in ("supernet/supernet.json", "supernet/model.safetensors", "search/pareto.png", "search/hypervolume.png"):
        assert (output / name).is_file(), name
    assert {e["name"] for e in summary["exported"]} >= {"within_1pct", "within_5pct"}
    # the bundled MiniLM averages its tokens (its sentence-transformers pooling): no stock class reads that
    assert all(e["needs_trust_remote_code"] for e in summary["exported"])
    folders = [arg for e in summary["exported"] for arg in (e["path"], "1" if e["needs_trust_remote_code"] else "0")]
    done = subprocess.run([sys.executable, "-c", LOAD, *folders], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-1500:]
    loads = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(loads) == len(summary["exported"])
    for exported, loaded in zip(summary["exported"], loads):
        assert loaded["shape"] == [1, 2] and loaded["numel"] == exported["total_params"] and not loaded["nas_tune"]
    # the same folder is refused without --resume/--overwrite, and nothing is lost
    assert local.main(["--dataset", "rte", "--data-dir", str(glue_dir), "--quick", "--output", str(output)]) == 2
    assert (output / "summary.json").is_file()
    # --resume reuses the finished stages; --repair refits each pick before it is tested and exported
    smallest = min(summary["exported"], key=lambda e: e["layer_fraction"])
    before = load_file(f"{smallest['path']}/model.safetensors")
    assert local.main([*args, "--resume", "--repair"]) == 0
    repaired = json.loads((output / "summary.json").read_text())
    assert repaired["trials"] == 8 and len(pd.read_csv(output / "search" / "trials.csv")) == 8
    assert [e["layer_fraction"] for e in repaired["exported"]] == [e["layer_fraction"] for e in summary["exported"]]
    for exported in repaired["exported"]:
        fit = exported["repair"]
        assert fit["reconstruction_after"] <= fit["reconstruction_before"] + 1e-9
    assert smallest["layer_fraction"] < 1  # a pruned pick, so repair has something to refit
    after = load_file(f"{smallest['path']}/model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (
        local.main(
            [
                "--dataset",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--quick",
                "--max-train-samples",
                "64",
                "--repair",
                "--output",
                str(tmp_path / "few"),
            ]
        )
        == 2
    )
    assert "--repair needs at least 128 training examples" in capsys.readouterr().err
