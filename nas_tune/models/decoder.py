"""What all decoder families share: task heads (LM head or classifier), pad tokens, GQA checks and export configs.

A family adapter (LLaMA, GPT-2) adds its module names, how one layer is cut and which stock config fields
describe a homogeneous sub-network; sub-networks no stock config describes export with the shared
`modeling_nas_tune_decoder.py`.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any, ClassVar

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.errors import UserError
from nas_tune.models.layered import LayeredAdapter
from nas_tune.models.subnetwork import ModelShape, SubNetwork

# Auto classes an exported model loads with, by the suffix of its class name.
AUTO_CLASSES = {
    "ForCausalLM": "AutoModelForCausalLM",
    "LMHeadModel": "AutoModelForCausalLM",
    "ForSequenceClassification": "AutoModelForSequenceClassification",
}

LayerSizes = tuple[int, int, int]  # query heads, key/value heads, FFN neurons of one kept layer


class DecoderAdapter(LayeredAdapter):
    modeling_file = Path(__file__).with_name("modeling_nas_tune_decoder.py")
    layer_list: ClassVar[str]  # the base model's attribute holding the decoder layers
    attention_name: ClassVar[str]  # a layer's attribute holding its self-attention
    output_projection_paths: ClassVar[
        tuple[str, str]
    ]  # in a layer: the Linear reading all heads, the one reading FFN neurons

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return getattr(model.base_model, self.layer_list)

    def _set_layers(self, model: PreTrainedModel, layers: nn.ModuleList) -> None:
        setattr(model.base_model, self.layer_list, layers)

    def _output_projections(self, layer: nn.Module) -> tuple[nn.Module, nn.Module]:
        heads, units = self.output_projection_paths
        return attrgetter(heads)(layer), attrgetter(units)(layer)

    def _attention(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.attention_name)

    @abstractmethod
    def _stock_sizes(self, shape: ModelShape, sizes: list[LayerSizes]) -> dict[str, Any] | None:
        """The stock config fields that describe kept layers of these sizes, or None when no stock config can."""

    def head_bias(self, model: PreTrainedModel) -> nn.Parameter | None:
        return getattr(getattr(model, "score", None), "bias", None)  # the classifier has none by default

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
        """Decoder tokenizers often lack a pad token: pad with end-of-sequence, which the classifier skips."""
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise UserError(
                    "the tokenizer has neither a pad nor an end-of-sequence token; use a model folder whose tokenizer defines one."
                )
            tokenizer.pad_token = tokenizer.eos_token
        # The classifier reads the last token that is not `pad_token_id`.
        model.config.pad_token_id = tokenizer.pad_token_id

    def output_flops(self, model: PreTrainedModel, seq_len: int) -> int:
        """The LM head over the vocabulary, or the classifier (transformers applies either to every token)."""
        head = model.lm_head if hasattr(model, "lm_head") else model.score
        return 2 * seq_len * head.in_features * head.out_features

    def check(self, shape: ModelShape, subnet: SubNetwork) -> None:
        super().check(shape, subnet)
        problem = subnet.gqa_problem(shape)
        if problem:
            raise UserError(f"this sub-network is not a valid grouped-query attention model: {problem}.")

    @contextmanager
    def _only_layers(self, model: PreTrainedModel, kept: tuple[int, ...]) -> Iterator[nn.ModuleList]:
        """Also give the kept layers their own attention types (Qwen2/3 look them up by position)."""
        types = getattr(model.config, "layer_types", None)
        with super()._only_layers(model, kept) as layers:
            if types is not None:
                model.config.layer_types = [types[i] for i in kept]
            try:
                yield layers
            finally:
                if types is not None:
                    model.config.layer_types = types

    def _pruned_config(self, model: PreTrainedModel, subnet: SubNetwork):
        shape = self.shape(model)
        config = copy.deepcopy(model.config)
        sizes = [
            (len(h), len(kv), len(u))
            for h, kv, u in zip(subnet.kept_heads(), subnet.kept_kv_heads(shape), subnet.kept_units())
        ]
        config.num_hidden_layers = len(subnet.layers)
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = [config.layer_types[i] for i in subnet.layers]
        stock = self._stock_sizes(shape, sizes)
        if stock is not None:
            for key, value in stock.items():
                setattr(config, key, value)
            return config
        config.nas_tune_layer_heads, config.nas_tune_layer_kv_heads, config.nas_tune_layer_units = (
            list(s) for s in zip(*sizes)
        )
        config.nas_tune_head_dim = shape.head_dim
        class_name = type(model).__name__
        auto_class = next(auto for suffix, auto in AUTO_CLASSES.items() if class_name.endswith(suffix))
        config.architectures = [class_name]
        config.auto_map = {auto_class: f"{self.modeling_file.stem}.{class_name}"}
        return config


def is_homogeneous(sizes: list[LayerSizes]) -> bool:
    """All kept layers alike, each with some heads and some FFN neurons (what a stock decoder config can say)."""
    return len(set(sizes)) <= 1 and all(heads and units for heads, _, units in sizes)
