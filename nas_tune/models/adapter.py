"""What a model family must tell nas-tune: its prunable structure, how to mask it, how to slice it.

Search spaces, training strategies, the evaluator, export and the pruning tools (reordering through
`permute_layer`, mask tuning through `residual_blocks`) only talk to this interface. A new family
needs an adapter module, its entry in `ADAPTERS` (`models/loading.py`) and, for pruned models its stock
config cannot describe, a standalone modeling file (`modeling_file`); the baselines that hook into
modules (importance, rfp) list the families they support in `Baseline.adapters`.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from nas_tune.models.subnetwork import ModelShape, SubNetwork


@dataclass(frozen=True)
class Tap:
    """A tensor of a layer's forward pass: positional input `argument` of `module`, or (None) its output."""

    module: nn.Module
    argument: int | None = 0


@dataclass(frozen=True)
class ResidualBlock:
    """One block of a layer seen as a sum: the output of `projection` (the Linear reading all heads, or all FFN
    neurons) plus `residual`, whose total is seen at `total`. rfp's mask tuning fits one scale per head / neuron
    of the projection's input so that the pruned model's total matches the unpruned model's."""

    kind: Literal["attention", "ffn"]
    projection: nn.Module
    residual: Tap
    total: Tap


class ModelAdapter(ABC):
    model_types: ClassVar[tuple[str, ...]]  # transformers `config.model_type` values this adapter handles
    # Standalone modeling code (torch + transformers only) that export copies next to pruned models the
    # stock config cannot describe; config.json's auto_map points into it.
    modeling_file: ClassVar[Path]
    # What a classifier's head may read: "token" (the family's own: [CLS], or a decoder's last token),
    # "mean" (the average token state, as sentence-transformers checkpoints were trained).
    poolings: ClassVar[tuple[str, ...]] = ("token",)

    @abstractmethod
    def shape(self, model: PreTrainedModel) -> ModelShape: ...

    @abstractmethod
    def masked(self, model: PreTrainedModel, subnet: SubNetwork) -> AbstractContextManager[PreTrainedModel]:
        """Context in which `model` computes as `subnet` at full size (zeroed heads/neurons, skipped layers).

        The reference implementation of a sub-network: tests and benchmarks compare the others with it.
        """

    @abstractmethod
    def scaled(
        self,
        model: PreTrainedModel,
        head_scales: Sequence[torch.Tensor | None],
        unit_scales: Sequence[torch.Tensor | None],
    ) -> AbstractContextManager[PreTrainedModel]:
        """Context in which layer i's head outputs are multiplied by `head_scales[i]` ([..., heads]) and its FFN
        neurons' activations by `unit_scales[i]` ([..., ffn_size]), broadcast over the tokens (None: unscaled).

        Scales that require grad give dL/dscale, the first-order loss change of removing a head or neuron
        (importance scores); `masked` is the 0/1 case.
        """

    @abstractmethod
    def layer_states(self, model: PreTrainedModel) -> AbstractContextManager[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Context that records, for every forward of `model`, each layer's (input, output) hidden states in layer
        order, into the yielded list (block influence compares them)."""

    @abstractmethod
    def sliced(self, model: PreTrainedModel, subnet: SubNetwork) -> AbstractContextManager[PreTrainedModel]:
        """Context in which `model` computes as `subnet` at its real size, still on the shared weights.

        Same function and gradients as `masked`, but small sub-networks cost less: training uses it.
        """

    @abstractmethod
    def extract(self, model: PreTrainedModel, subnet: SubNetwork) -> PreTrainedModel:
        """A physically smaller, independent copy of `model` that computes `subnet`.

        Its config describes the pruned shape; `save_pretrained` of it is an exportable model folder.
        """

    @abstractmethod
    def permute_layer(self, model: PreTrainedModel, index: int, heads: tuple[int, ...], units: tuple[int, ...]) -> None:
        """Reorder the heads and FFN neurons of layer `index` in place without changing what the model computes.

        Position p then holds the old head `heads[p]` (with its rows and columns in every projection) and the old
        neuron `units[p]`. Under grouped-query attention whole key/value groups move: the query heads at the
        positions of one group all come from one old group. The layer gets new parameter tensors, so reorder
        before an optimizer is built. Reordering is what lets "keep the first k" keep the k most important.
        """

    @abstractmethod
    def layer_parameter_count(
        self, shape: ModelShape, num_heads: int, num_units: int, num_kv_heads: int | None = None
    ) -> int:
        """Parameters of one layer that keeps `num_heads` query heads, `num_kv_heads` key/value heads
        (None: as many as grouped-query attention needs for `num_heads`) and `num_units` FFN neurons."""

    @abstractmethod
    def layer_flops(
        self, shape: ModelShape, num_heads: int, num_units: int, seq_len: int, num_kv_heads: int | None = None
    ) -> int:
        """Floating-point operations (2 per multiply-add) of one layer for one sequence of `seq_len` tokens."""

    @abstractmethod
    def output_flops(self, model: PreTrainedModel, seq_len: int) -> int:
        """FLOPs after the last layer for one sequence (pooler and classifier, or the LM head)."""

    @abstractmethod
    def layers(self, model: PreTrainedModel) -> nn.ModuleList: ...

    def residual_blocks(self, layer: nn.Module) -> tuple[ResidualBlock, ...]:
        """The attention and FFN blocks of one layer as rfp reconstructs them; empty when the family's layers
        are not projection + residual sums (then rfp and --repair refuse it)."""
        return ()

    def classifier_config(self, config: PreTrainedConfig, pooling: str) -> PreTrainedConfig | None:
        """The config of a fresh classifier that reads `pooling` (one of `poolings`); None: the stock one."""
        return None

    def save(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> bool:
        """`save_pretrained` of both, plus the modeling file when config.json's auto_map points into it, so that
        plain transformers loads the folder; True when it does (load it with trust_remote_code=True)."""
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        needs_remote_code = getattr(model.config, "auto_map", None) is not None
        if needs_remote_code:
            shutil.copy(self.modeling_file, Path(folder) / self.modeling_file.name)
        return needs_remote_code

    def pooling_of(self, config: PreTrainedConfig) -> str:
        """What the head of a classifier with this config reads (one of `poolings`)."""
        return "token"

    def stock_model_type(self, model_type: str) -> str:
        """The transformers model type a variant of this family (e.g. a mean-pooled one) was built from."""
        return model_type

    def head_bias(self, model: PreTrainedModel) -> nn.Parameter | None:
        """The output bias of the task head (None when it has none): training starts it at the label prior."""
        return None

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:  # noqa: B027 (optional hook)
        """Make `tokenizer` usable for batched training and evaluation of `model` (e.g. give it a pad token)."""
