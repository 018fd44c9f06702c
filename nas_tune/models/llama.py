"""LLaMA-family adapter (LLaMA, Mistral, Qwen2, Qwen3): decoders with grouped-query attention (GQA).

Under GQA query head h reads key/value head h // group_size. A sub-network keeps whole key/value groups
and the same number of query heads in every kept group of a layer, so each pruned layer is again a valid
GQA layer (`SubNetwork.gqa_problem` says why one is not); the search spaces only draw such sub-networks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.errors import UserError
from nas_tune.models.layered import LayeredAdapter
from nas_tune.models.modeling_nas_tune_llama import EmptyAttention
from nas_tune.models.slicing import head_rows
from nas_tune.models.subnetwork import ModelShape, SubNetwork

# Auto classes an exported model loads with, by the suffix of its class name.
AUTO_CLASSES = {"ForCausalLM": "AutoModelForCausalLM", "ForSequenceClassification": "AutoModelForSequenceClassification"}


class LlamaFamilyAdapter(LayeredAdapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    modeling_file = Path(__file__).with_name("modeling_nas_tune_llama.py")

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.base_model.layers

    def _set_layers(self, model: PreTrainedModel, layers: nn.ModuleList) -> None:
        model.base_model.layers = layers

    def _output_projections(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
        return layer.self_attn.o_proj, layer.mlp.down_proj

    def _attention(self, layer: nn.Module) -> nn.Module:
        return layer.self_attn

    def head_bias(self, model: PreTrainedModel) -> nn.Parameter | None:
        return getattr(getattr(model, "score", None), "bias", None)  # the classifier has none by default

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
        """Decoder tokenizers often lack a pad token: pad with end-of-sequence, which the classifier skips."""
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise UserError("the tokenizer has neither a pad nor an end-of-sequence token; use a model folder whose tokenizer defines one.")
            tokenizer.pad_token = tokenizer.eos_token
        # The classifier reads the last token that is not `pad_token_id`.
        model.config.pad_token_id = tokenizer.pad_token_id

    def shape(self, model: PreTrainedModel) -> ModelShape:
        config = model.config
        attention, mlp = self._attention(self.layers(model)[0]), self.layers(model)[0].mlp
        features = {
            "qkv_bias": attention.q_proj.bias is not None,
            "o_bias": attention.o_proj.bias is not None,
            "mlp_bias": mlp.down_proj.bias is not None,
            "qk_norm": hasattr(attention, "q_norm"),
        }
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            head_dim=attention.head_dim,
            hidden_size=config.hidden_size,
            ffn_size=config.intermediate_size,
            num_kv_heads=config.num_key_value_heads,
            features=frozenset(name for name, present in features.items() if present),
        )

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

    def slice_layer(self, layer, heads, units, shape, slice_linear, replace=setattr) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        query_rows = head_rows(heads, shape.head_dim)
        if heads:
            kv_heads = sorted({h // shape.group_size for h in heads})
            kv_rows = head_rows(tuple(kv_heads), shape.head_dim)
            replace(attention, "q_proj", slice_linear(attention.q_proj, query_rows, None))
            replace(attention, "k_proj", slice_linear(attention.k_proj, kv_rows, None))
            replace(attention, "v_proj", slice_linear(attention.v_proj, kv_rows, None))
            replace(attention, "o_proj", slice_linear(attention.o_proj, None, query_rows))
            replace(attention, "num_key_value_groups", len(heads) // len(kv_heads))
        else:
            replace(layer, "self_attn", EmptyAttention(slice_linear(attention.o_proj, None, query_rows)))
        unit_index = torch.tensor(units, dtype=torch.long)
        replace(mlp, "gate_proj", slice_linear(mlp.gate_proj, unit_index, None))
        replace(mlp, "up_proj", slice_linear(mlp.up_proj, unit_index, None))
        replace(mlp, "down_proj", slice_linear(mlp.down_proj, None, unit_index))

    def _pruned_config(self, model: PreTrainedModel, subnet: SubNetwork):
        shape = self.shape(model)
        config = copy.deepcopy(model.config)
        sizes = [(len(h), len(kv), len(u)) for h, kv, u in zip(subnet.kept_heads(), subnet.kept_kv_heads(shape), subnet.kept_units())]
        config.num_hidden_layers = len(subnet.layers)
        config.head_dim = shape.head_dim  # explicit: fewer heads must not change it
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = [config.layer_types[i] for i in subnet.layers]
        if len(set(sizes)) <= 1 and all(heads and units for heads, _, units in sizes):
            if sizes:
                config.num_attention_heads, config.num_key_value_heads, config.intermediate_size = sizes[0]
            return config
        config.nas_tune_layer_heads, config.nas_tune_layer_kv_heads, config.nas_tune_layer_units = (list(s) for s in zip(*sizes))
        class_name = type(model).__name__
        auto_class = next(auto for suffix, auto in AUTO_CLASSES.items() if class_name.endswith(suffix))
        config.architectures = [class_name]
        config.auto_map = {auto_class: f"{self.modeling_file.stem}.{class_name}"}
        return config

    def layer_parameter_count(self, shape: ModelShape, num_heads: int, num_units: int, num_kv_heads: int | None = None) -> int:
        hidden, queries, keys = shape.hidden_size, num_heads * shape.head_dim, self._kv_heads(shape, num_heads, num_kv_heads) * shape.head_dim
        features = shape.features
        attention = hidden * (queries + 2 * keys) + queries * hidden
        attention += (queries + 2 * keys) * ("qkv_bias" in features) + hidden * ("o_bias" in features)
        attention += 2 * shape.head_dim * ("qk_norm" in features and num_heads > 0)
        feed_forward = 3 * hidden * num_units + (2 * num_units + hidden) * ("mlp_bias" in features)
        return attention + feed_forward + 2 * hidden  # two RMSNorms

    def layer_flops(self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int, num_kv_heads: int | None = None) -> int:
        hidden, queries, keys = shape.hidden_size, num_heads * shape.head_dim, self._kv_heads(shape, num_heads, num_kv_heads) * shape.head_dim
        projections = 2 * seq_len * hidden * (2 * queries + 2 * keys)  # q and o, k and v
        attention = 2 * 2 * seq_len * seq_len * queries  # scores and weighted sum, per query head
        feed_forward = 2 * 3 * seq_len * hidden * num_units  # gate, up, down
        return projections + attention + feed_forward

    def output_flops(self, model: PreTrainedModel, seq_len: int) -> int:
        """The LM head over the vocabulary, or the classifier (transformers applies either to every token)."""
        head = model.get_output_embeddings() if hasattr(model, "lm_head") else model.score
        return 2 * seq_len * head.in_features * head.out_features

    @staticmethod
    def _kv_heads(shape: ModelShape, num_heads: int, num_kv_heads: int | None) -> int:
        return -(-num_heads // shape.group_size) if num_kv_heads is None else num_kv_heads
