"""Which random sub-networks super-network training draws.

Uniform sampling of the `small` space concentrates on small models (on MiniLM the median draw keeps
27 % of the layer parameters and only 3 % of draws keep more than 75 %), so the large sub-networks a
user is most likely to deploy are rarely trained on their own. `stratified` first draws a size bin
uniformly from [min_params, 1] and then a config inside it (whittle's parameter bins), so every size
gets the same share of steps; `min_params` drops sizes nobody will keep.
"""

from __future__ import annotations

import numpy as np

from nas_tune.metrics.parameters import layer_fraction
from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.subnetwork import ModelShape, SubNetwork
from nas_tune.search_space import SearchSpace
from nas_tune.settings import SAMPLING_CHOICES, SamplingOptions  # noqa: F401  (re-exported)

MAX_DRAWS = 2000  # rejection-sampling attempts per sub-network before the closest draw is taken


class SubnetSampler:
    """Draws random sub-networks of `space` under `options`, by rejection on their layer-parameter fraction.

    Exact for spaces whose uniform draws cover every size (`small`, `layer`); in `medium` / `large` the
    sizes of uniform draws concentrate near one half, so a bin that no draw reaches gets the closest draw.
    """

    def __init__(self, space: SearchSpace, adapter: ModelAdapter, shape: ModelShape, options: SamplingOptions):
        self.space, self.adapter, self.shape, self.options = space, adapter, shape, options

    def fraction(self, subnet: SubNetwork) -> float:
        return layer_fraction(self.adapter, self.shape, subnet)

    def sample(self, rng: np.random.Generator) -> SubNetwork:
        low = self.options.min_params
        if self.options.mode == "stratified":
            width = (1.0 - low) / self.options.bins
            low += width * int(rng.integers(self.options.bins))
            high = low + width
        else:
            high = 1.0
        if low == 0.0 and high == 1.0:
            return self.space.to_subnetwork(self.space.sample(rng))
        best, best_distance = None, np.inf
        for _ in range(MAX_DRAWS):
            subnet = self.space.to_subnetwork(self.space.sample(rng))
            size = self.fraction(subnet)
            distance = max(low - size, size - high, 0.0)
            if distance == 0.0:
                return subnet
            if distance < best_distance:
                best, best_distance = subnet, distance
        return best
