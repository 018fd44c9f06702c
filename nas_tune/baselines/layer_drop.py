"""Layer dropping (Sajjad et al., "On the effect of dropping layers of pre-trained transformer models").

Top-layer dropping, their best strategy: keep the bottom k layers of the *pre-trained* model, then fine-tune
what is left on the task. One fine-tuning run per k; k is the largest number of whole layers within each
budget (budgets below one layer are skipped), so the budget grid maps onto k = 1 .. L-1.
"""

from __future__ import annotations

import copy
import math
import tempfile

from nas_tune.baselines.base import Candidate, GridBaseline
from nas_tune.errors import UserError
from nas_tune.models import LoadedModel, ModelAdapter, SubNetwork
from nas_tune.search_space import Config
from nas_tune.supernet import finetune


class LayerDrop(GridBaseline):
    name = "layer_drop"
    space = "layer"
    prunes_finetuned = False
    adapters = (ModelAdapter,)  # only slicing and fine-tuning: every family
    default_epochs = 3

    def configs(self) -> list[Config]:
        layers = self.shape.num_layers
        kept = sorted({math.floor(budget * layers + 1e-9) for budget in self.settings.budgets} - {0})
        if not kept:
            raise UserError(f"layer_drop keeps whole layers, and every budget is below one of the {layers} layers; "
                            f"use budgets of at least {1 / layers:.3f}.")
        return [{"num_layers": k} for k in kept]

    def prune(self, config: Config) -> Candidate:
        shape, loaded = self.shape, self.inputs.loaded
        subnet = SubNetwork.first_k(shape, config["num_layers"], [shape.num_heads] * shape.num_layers,
                                    [shape.ffn_size] * shape.num_layers)
        small = self.adapter.extract(self.model, subnet)
        with tempfile.TemporaryDirectory(prefix="nas-tune-layer-drop-") as output:  # its checkpoint is not kept
            result = finetune(LoadedModel(small, loaded.tokenizer, self.adapter, loaded.source, loaded.head_is_new), self.inputs.task,
                              self.inputs.train, self.inputs.validation, self.finetune_config(), output, show_progress=False)
        # The kept layers are the first k, so the small model's parameter names are the full model's: load the
        # fine-tuned weights into a full-size copy (the dropped layers keep their weights and stay unused).
        model = copy.deepcopy(self.model)
        unexpected = model.load_state_dict(small.state_dict(), strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"fine-tuned parameters without a place in the full model: {unexpected[:3]}")
        return Candidate(config, subnet, model.eval(), {"finetune_seconds": result.seconds})
