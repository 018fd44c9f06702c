"""GPT-2 adapter: fused q/k/v projection (`attn.c_attn`) and `Conv1D` weights (stored transposed against nn.Linear).

GPT-2 derives its head size from `n_embd / n_head`, so a sub-network with fewer heads never fits the stock
config: only dropped layers and a uniform FFN width (`n_inner`) with all heads export to stock classes,
everything else carries the shared decoder modeling file.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from nas_tune.errors import UserError
from nas_tune.models.adapter import ResidualBlock, Tap
from nas_tune.models.decoder import DecoderAdapter, LayerSizes, is_homogeneous
from nas_tune.models.layered import transformer_layer_flops
from nas_tune.models.modeling_nas_tune_decoder import EmptyAttention
from nas_tune.models.slicing import head_rows
from nas_tune.models.subnetwork import ModelShape


class GPT2Adapter(DecoderAdapter):
    model_types = ("gpt2",)
    layer_list, attention_name = "h", "attn"
    output_projection_paths = ("attn.c_proj", "mlp.c_proj")

    def _config_shape(self, model: PreTrainedModel) -> ModelShape:
        config = model.config
        if config.scale_attn_by_inverse_layer_idx:
            raise UserError(
                "GPT-2 models with scale_attn_by_inverse_layer_idx=True cannot be pruned: their attention scale depends on "
                "the layer's position, which dropping layers changes; use a checkpoint without it."
            )
        return ModelShape(
            num_layers=config.n_layer,
            num_heads=config.n_head,
            head_dim=config.n_embd // config.n_head,
            hidden_size=config.n_embd,
            ffn_size=config.n_inner or 4 * config.n_embd,
        )

    def slice_layer(self, layer, heads, units, shape, slice_linear, replace=setattr) -> None:
        attention, mlp = layer.attn, layer.mlp
        rows = head_rows(heads, shape.head_dim)
        if heads:
            # c_attn's outputs are all queries, then all keys, then all values (heads x head size each)
            fused = torch.cat([rows + part * shape.num_heads * shape.head_dim for part in range(3)])
            replace(attention, "c_attn", slice_linear(attention.c_attn, fused, None))
            replace(attention, "c_proj", slice_linear(attention.c_proj, None, rows))
            replace(attention, "split_size", len(rows))
            replace(attention, "num_heads", len(heads))
        else:
            replace(layer, "attn", EmptyAttention("c_proj", slice_linear(attention.c_proj, None, rows)))
        unit_index = torch.tensor(units, dtype=torch.long)
        replace(mlp, "c_fc", slice_linear(mlp.c_fc, unit_index, None))
        replace(mlp, "c_proj", slice_linear(mlp.c_proj, None, unit_index))

    def residual_blocks(self, layer: nn.Module) -> tuple[ResidualBlock, ...]:
        """Pre-norm, like LLaMA: attention adds to the block's input (read by ln_2), the MLP to that."""
        return (
            ResidualBlock("attention", layer.attn.c_proj, Tap(layer), Tap(layer.ln_2)),
            ResidualBlock("ffn", layer.mlp.c_proj, Tap(layer.ln_2), Tap(layer, None)),
        )

    def _stock_sizes(self, shape: ModelShape, sizes: list[LayerSizes]) -> dict[str, Any] | None:
        if not is_homogeneous(sizes) or any(heads != shape.num_heads for heads, _, _ in sizes):
            return None
        return {"n_inner": sizes[0][2]} if sizes else {}

    def layer_parameter_count(
        self, shape: ModelShape, num_heads: int, num_units: int, num_kv_heads: int | None = None
    ) -> int:
        hidden, width = shape.hidden_size, num_heads * shape.head_dim
        attention = 3 * (hidden * width + width) + (width * hidden + hidden)
        feed_forward = (hidden * num_units + num_units) + (num_units * hidden + hidden)
        return attention + feed_forward + 4 * hidden  # two LayerNorms with weight and bias

    def layer_flops(
        self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int, num_kv_heads: int | None = None
    ) -> int:
        width = num_heads * shape.head_dim
        return transformer_layer_flops(seq_len, shape.hidden_size, width, width, num_units, ffn_matrices=2)
