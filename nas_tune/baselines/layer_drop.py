"""Layer dropping: whole layers go, chosen one of two ways (`--layer-choice`).

- top (Sajjad et al., "On the effect of dropping layers of pre-trained transformer models"), their best strategy:
  keep the bottom k layers of the pre-trained model, then fine-tune what is left on the task (default 3 epochs).
- block_influence (Men et al. 2024, "ShortGPT"): drop the layers whose output hidden states are most like their
  input, by block influence BI_i = 1 - mean cosine(input_i, output_i) over the tokens of calibration examples,
  scored once on the unpruned model; no retraining (default 0 epochs), so it prunes a trained model.

One model per k; k is the largest number of whole layers within each budget (budgets below one layer are skipped),
so the budget grid maps onto k = 1 .. L-1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from nas_tune.baselines.base import BaselineInputs, BaselineSettings, Candidate, GridBaseline
from nas_tune.data import TokenizedSplit
from nas_tune.errors import UserError
from nas_tune.evaluate import lm_batch_size
from nas_tune.models import ModelAdapter, SubNetwork
from nas_tune.pruning.scores import is_causal_lm, training_sample
from nas_tune.search_space import Config
from nas_tune.settings import FinetuneConfig


def block_influence(
    model: PreTrainedModel, adapter: ModelAdapter, data: TokenizedSplit, *, batch_size: int = 32
) -> torch.Tensor:
    """ShortGPT's block influence of every layer, [layers]: 1 - the mean cosine similarity of each token's hidden
    state before and after the layer (padding skipped). Near 0: the layer barely changes what flows through it."""
    causal_lm = is_causal_lm(data)
    similarity = torch.zeros(adapter.shape(model).num_layers, dtype=torch.float64)
    tokens = 0
    with torch.inference_mode(), adapter.layer_states(model) as states:
        for batch in data.batches(lm_batch_size(data, batch_size) if causal_lm else batch_size):
            batch.pop("labels")
            real = batch["attention_mask"].bool()
            states.clear()
            model(**batch, **({"use_cache": False} if causal_lm else {}))
            for i, (inputs, outputs) in enumerate(states):
                similarity[i] += F.cosine_similarity(inputs.double(), outputs.double(), dim=-1)[real].sum()
            tokens += int(real.sum())
    return 1 - similarity / tokens


class LayerDrop(GridBaseline):
    name = "layer_drop"
    space = "layer"
    prunes_finetuned = False
    adapters = (ModelAdapter,)  # slicing, fine-tuning and `adapter.layer_states`: every family
    default_epochs = 3

    def __init__(self, inputs: BaselineInputs, settings: BaselineSettings):
        top = settings.layer_choice == "top"
        self.epochs = settings.epochs if settings.epochs is not None else (self.default_epochs if top else 0)
        self.prunes_finetuned = self.epochs == 0  # without retraining the task head must already be trained
        super().__init__(inputs, settings)
        self.samples = (
            None
            if top
            else training_sample(
                inputs.train, settings.num_samples, settings.seed, "layer_drop --layer-choice block_influence"
            )
        )

    def configs(self) -> list[Config]:
        layers = self.shape.num_layers
        kept = sorted({math.floor(budget * layers + 1e-9) for budget in self.settings.budgets} - {0})
        if not kept:
            raise UserError(
                f"layer_drop keeps whole layers, and every budget is below one of the {layers} layers; "
                f"use budgets of at least {1 / layers:.3f}."
            )
        return [{"num_layers": k} for k in kept]

    def finetune_config(self) -> FinetuneConfig:
        return replace(super().finetune_config(), epochs=self.epochs)

    def prepare(self) -> None:
        """Block influence: the layers, most influential first (top: bottom layers first)."""
        if self.samples is None:
            self.ranking = list(range(self.shape.num_layers))
            return
        influence = block_influence(self.model, self.adapter, self.samples, batch_size=self.settings.batch_size)
        self.ranking = torch.argsort(influence, descending=True, stable=True).tolist()

    def prune(self, config: Config) -> Candidate:
        shape = self.shape
        subnet = SubNetwork.from_layers(
            self.ranking[: config["num_layers"]],
            [range(shape.num_heads)] * shape.num_layers,
            [range(shape.ffn_size)] * shape.num_layers,
        )
        if self.epochs == 0:
            return Candidate(config, subnet, self.model)
        small, seconds = self.finetune_extracted(subnet)
        return Candidate(config, subnet, self._full_size(small, subnet).eval(), {"finetune_seconds": seconds})

    def _full_size(self, small: PreTrainedModel, subnet: SubNetwork) -> PreTrainedModel:
        """A full-size copy with the fine-tuned weights of `small` in their places (dropped layers keep theirs, unused)."""
        model = copy.deepcopy(self.model)
        small_layers = self.adapter.layers(small)
        in_layers = {id(tensor) for tensor in small_layers.state_dict(keep_vars=True).values()}
        outside = {
            name: tensor.detach()
            for name, tensor in small.state_dict(keep_vars=True).items()
            if id(tensor) not in in_layers
        }
        unexpected = model.load_state_dict(outside, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"fine-tuned parameters without a place in the full model: {unexpected[:3]}")
        for index, layer in zip(subnet.layers, small_layers):
            self.adapter.layers(model)[index].load_state_dict(layer.state_dict())
        return model
