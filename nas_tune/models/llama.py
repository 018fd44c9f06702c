"""LLaMA-family adapter (LLaMA, Mistral, Qwen2, Qwen3): decoders with grouped-query attention (GQA).

Under GQA query head h reads key/value head h // group_size. A sub-network keeps whole key/value groups
and the same number of query heads in every kept group of a layer, so each pruned layer is again a valid
GQA layer (`SubNetwork.gqa_problem` says why one is not); the search spaces only draw such sub-networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from nas_tune.models.adapter import ResidualBlock, Tap
from nas_tune.models.decoder import DecoderAdapter, LayerSizes, is_homogeneous
from nas_tune.models.layered import transformer_layer_flops
from nas_tune.models.modeling_nas_tune_decoder import EmptyAttention
from nas_tune.models.slicing import head_rows
from nas_tune.models.subnetwork import ModelShape


class LlamaFamilyAdapter(DecoderAdapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    layer_list, attention_name = "layers", "self_attn"
    output_projection_paths = ("self_attn.o_proj", "mlp.down_proj")

    def _config_shape(self, model: PreTrainedModel) -> ModelShape:
        """From the config alone, so it also answers inside a `sliced` context (layers swapped)."""
        config = model.config
        attention_bias = getattr(config, "attention_bias", False)
        features = {
            "qkv_bias": config.model_type == "qwen2" or attention_bias,  # Qwen2 always has q/k/v biases
            "o_bias": config.model_type != "qwen2" and attention_bias,
            "mlp_bias": getattr(config, "mlp_bias", False),
            "qk_norm": config.model_type == "qwen3",  # per-head RMSNorms of size head_dim on queries and keys
        }
        return ModelShape(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            hidden_size=config.hidden_size,
            ffn_size=config.intermediate_size,
            num_kv_heads=config.num_key_value_heads,
            features=frozenset(name for name, present in features.items() if present),
        )

    def slice_layer(self, layer, heads, units, shape, slice_linear, replace=setattr) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        query_rows = head_rows(heads, shape.head_dim)
        if heads:
            # in the order the query heads name them: ascending for a sub-network, moved whole by `permute_layer`
            kv_heads = list(dict.fromkeys(h // shape.group_size for h in heads))
            kv_rows = head_rows(tuple(kv_heads), shape.head_dim)
            replace(attention, "q_proj", slice_linear(attention.q_proj, query_rows, None))
            replace(attention, "k_proj", slice_linear(attention.k_proj, kv_rows, None))
            replace(attention, "v_proj", slice_linear(attention.v_proj, kv_rows, None))
            replace(attention, "o_proj", slice_linear(attention.o_proj, None, query_rows))
            replace(attention, "num_key_value_groups", len(heads) // len(kv_heads))
        else:
            replace(layer, "self_attn", EmptyAttention("o_proj", slice_linear(attention.o_proj, None, query_rows)))
        unit_index = torch.tensor(units, dtype=torch.long)
        replace(mlp, "gate_proj", slice_linear(mlp.gate_proj, unit_index, None))
        replace(mlp, "up_proj", slice_linear(mlp.up_proj, unit_index, None))
        replace(mlp, "down_proj", slice_linear(mlp.down_proj, None, unit_index))

    def residual_blocks(self, layer: nn.Module) -> tuple[ResidualBlock, ...]:
        """Pre-norm: attention adds to the layer's input, which the post-attention norm reads; the FFN adds to
        that and gives the layer's output."""
        norm = layer.post_attention_layernorm
        return (
            ResidualBlock("attention", layer.self_attn.o_proj, Tap(layer), Tap(norm)),
            ResidualBlock("ffn", layer.mlp.down_proj, Tap(norm), Tap(layer, None)),
        )

    def _stock_sizes(self, shape: ModelShape, sizes: list[LayerSizes]) -> dict[str, Any] | None:
        """Uniformly fewer heads and KV groups fit: LLaMA-family configs carry an explicit `head_dim`."""
        if not is_homogeneous(sizes):
            return None
        stock = {"head_dim": shape.head_dim}  # explicit: fewer heads must not change it
        if sizes:
            stock["num_attention_heads"], stock["num_key_value_heads"], stock["intermediate_size"] = sizes[0]
        return stock

    def layer_parameter_count(
        self, shape: ModelShape, num_heads: int, num_units: int, num_kv_heads: int | None = None
    ) -> int:
        hidden, queries, keys = (
            shape.hidden_size,
            num_heads * shape.head_dim,
            self._kv_heads(shape, num_heads, num_kv_heads) * shape.head_dim,
        )
        features = shape.features
        attention = hidden * (queries + 2 * keys) + queries * hidden
        attention += (queries + 2 * keys) * ("qkv_bias" in features) + hidden * ("o_bias" in features)
        attention += 2 * shape.head_dim * ("qk_norm" in features and num_heads > 0)
        feed_forward = 3 * hidden * num_units + (2 * num_units + hidden) * ("mlp_bias" in features)
        return attention + feed_forward + 2 * hidden  # two RMSNorms

    def layer_flops(
        self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int, num_kv_heads: int | None = None
    ) -> int:
        kv_width = self._kv_heads(shape, num_heads, num_kv_heads) * shape.head_dim
        return transformer_layer_flops(
            seq_len, shape.hidden_size, num_heads * shape.head_dim, kv_width, num_units, ffn_matrices=3
        )

    @staticmethod
    def _kv_heads(shape: ModelShape, num_heads: int, num_kv_heads: int | None) -> int:
        return -(-num_heads // shape.group_size) if num_kv_heads is None else num_kv_heads
