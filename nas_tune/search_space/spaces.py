"""The paper's search spaces: a Syne Tune config space plus `config -> SubNetwork` for one model shape.

Parameter names follow the paper's reference code, so configs and results compare with it.
"Keep k" always means the first k heads / neurons / layers (the reference convention).

Under grouped-query attention (a model with fewer key/value heads than query heads) a head count is two
parameters, so that every config is a valid GQA sub-network: `num_kv_groups` (key/value heads kept, the
first ones) and `num_heads_per_group` (query heads kept in each kept group, the first ones of the group).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from syne_tune.config_space import Categorical, Domain, Integer, choice, randint

from nas_tune.errors import UserError
from nas_tune.models.subnetwork import ModelShape, SubNetwork
from nas_tune.settings import SEARCH_SPACE_NAMES

Config = dict[str, Any]


def config_key(config: Config) -> str:
    """Canonical text of a config, so one that went through JSON still finds its trial."""
    return json.dumps(config, sort_keys=True)


def sample_config(config_space: dict[str, Any], rng: np.random.RandomState) -> Config:
    """A uniformly random config of a Syne Tune config space, drawn from `rng` (not numpy's global RNG)."""
    return {k: v.sample(random_state=rng) if isinstance(v, Domain) else v for k, v in config_space.items()}


class SearchSpace(ABC):
    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, shape: ModelShape):
        self.shape = shape
        self._domains: dict[str, Domain] = self._build_domains()

    @abstractmethod
    def _build_domains(self) -> dict[str, Domain]: ...

    @abstractmethod
    def _subnetwork(self, config: Config) -> SubNetwork: ...

    def config_space(self) -> dict[str, Domain]:
        """The Syne Tune config space (a fresh dict: schedulers may keep a reference)."""
        return dict(self._domains)

    def to_subnetwork(self, config: Config) -> SubNetwork:
        return self._subnetwork(self.validate(config))

    def validate(self, config: Config) -> Config:
        """Check that `config` names exactly this space's parameters with values inside it; return it cast."""
        unknown = sorted(set(config) - set(self._domains))
        missing = sorted(set(self._domains) - set(config))
        if unknown or missing:
            problem = f"unknown parameters {unknown[:5]}" if unknown else f"missing parameters {missing[:5]}"
            raise UserError(
                f"config does not fit the '{self.name}' space of this {self.shape.num_layers}-layer model: {problem}; "
                f"expected {self.describe_parameters()}."
            )
        cast = {}
        for key, domain in self._domains.items():
            value = config[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not domain.is_valid(value):
                raise UserError(f"config value {key}={value!r} is outside the '{self.name}' space ({domain})")
            cast[key] = value
        return cast

    def describe_parameters(self) -> str:
        names = list(self._domains)
        shown = ", ".join(f"{k}: {self._domains[k]}" for k in names[:4])
        return shown + (f" ... ({len(names)} parameters)" if len(names) > 4 else "")

    def largest(self) -> Config:
        return {k: _bound(d, upper=True) for k, d in self._domains.items()}

    def smallest(self) -> Config:
        return {k: _bound(d, upper=False) for k, d in self._domains.items()}

    def sample(self, rng: np.random.Generator) -> Config:
        """A uniformly random config drawn from `rng`'s bit stream (super-network training draws with this)."""
        return sample_config(self._domains, np.random.RandomState(rng.bit_generator))

    @property
    def _grouped(self) -> bool:
        return self.shape.group_size > 1

    def _head_count_domains(self, suffix: str, *, lower: int) -> dict[str, Domain]:
        """How many heads a layer keeps: at least `lower` query heads, or under GQA `lower` key/value groups."""
        s = self.shape
        if not self._grouped:
            return {f"num_heads{suffix}": randint(lower, s.num_heads)}
        return {
            f"num_kv_groups{suffix}": randint(lower, s.kv_heads),
            f"num_heads_per_group{suffix}": randint(1, s.group_size),
        }

    def _first_heads(self, config: Config, suffix: str) -> tuple[int, ...]:
        """The heads a count keeps: the first n, or under GQA the first q query heads of each of the first g groups."""
        if not self._grouped:
            return tuple(range(config[f"num_heads{suffix}"]))
        size = self.shape.group_size
        return tuple(
            g * size + j
            for g in range(config[f"num_kv_groups{suffix}"])
            for j in range(config[f"num_heads_per_group{suffix}"])
        )


def _bound(domain: Domain, *, upper: bool):
    if isinstance(domain, Integer):
        return domain.upper if upper else domain.lower
    if isinstance(domain, Categorical):
        return max(domain.categories) if upper else min(domain.categories)
    raise TypeError(f"unsupported domain {domain}")


class SmallSpace(SearchSpace):
    name = "small"
    description = (
        "num_layers, num_heads (GQA: num_kv_groups, num_heads_per_group), num_units shared by all kept layers "
        "(the paper's best for weight sharing)"
    )

    def _build_domains(self):
        s = self.shape
        return {
            "num_layers": randint(1, s.num_layers),
            **self._head_count_domains("", lower=1),
            "num_units": randint(1, s.ffn_size),
        }

    def _subnetwork(self, config):
        n = self.shape.num_layers
        return SubNetwork.from_layers(
            range(config["num_layers"]), [self._first_heads(config, "")] * n, [range(config["num_units"])] * n
        )


class MediumSpace(SearchSpace):
    name = "medium"
    description = "num_heads_i in [0, H] (GQA: num_kv_groups_i, num_heads_per_group_i) and num_units_i in [0, F] for every layer i"

    def _build_domains(self):
        s = self.shape
        domains = {}
        for i in range(s.num_layers):
            domains.update(self._head_count_domains(f"_{i}", lower=0))
            domains[f"num_units_{i}"] = randint(0, s.ffn_size)
        return domains

    def _subnetwork(self, config):
        n = self.shape.num_layers
        heads = [self._first_heads(config, f"_{i}") for i in range(n)]
        units = [range(config[f"num_units_{i}"]) for i in range(n)]
        return SubNetwork.from_layers(range(n), heads, units)


class LayerSpace(SearchSpace):
    name = "layer"
    description = "layer_i in {0, 1}: keep or drop each whole layer"

    def _build_domains(self):
        return {f"layer_{i}": choice([0, 1]) for i in range(self.shape.num_layers)}

    def _subnetwork(self, config):
        s = self.shape
        kept = [i for i in range(s.num_layers) if config[f"layer_{i}"]]
        all_heads, all_units = tuple(range(s.num_heads)), tuple(range(s.ffn_size))
        return SubNetwork.from_layers(kept, [all_heads] * s.num_layers, [all_units] * s.num_layers)


class LargeSpace(SearchSpace):
    name = "large"
    description = (
        "head_i_j and unit_i_k in {0, 1}: every head and every FFN neuron on or off "
        "(GQA: group_i_g per key/value group, group_head_i_j per query head of a group, shared by the kept groups)"
    )

    def _build_domains(self):
        s = self.shape
        domains = {}
        for i in range(s.num_layers):
            if self._grouped:
                domains.update({f"group_{i}_{g}": choice([0, 1]) for g in range(s.kv_heads)})
                domains.update({f"group_head_{i}_{j}": choice([0, 1]) for j in range(s.group_size)})
            else:
                domains.update({f"head_{i}_{j}": choice([0, 1]) for j in range(s.num_heads)})
            domains.update({f"unit_{i}_{k}": choice([0, 1]) for k in range(s.ffn_size)})
        return domains

    def _kept_heads(self, config: Config, i: int) -> list[int]:
        s = self.shape
        if not self._grouped:
            return [j for j in range(s.num_heads) if config[f"head_{i}_{j}"]]
        return [
            g * s.group_size + j
            for g in range(s.kv_heads)
            if config[f"group_{i}_{g}"]
            for j in range(s.group_size)
            if config[f"group_head_{i}_{j}"]
        ]

    def _subnetwork(self, config):
        s = self.shape
        heads = [self._kept_heads(config, i) for i in range(s.num_layers)]
        units = [[k for k in range(s.ffn_size) if config[f"unit_{i}_{k}"]] for i in range(s.num_layers)]
        return SubNetwork.from_layers(range(s.num_layers), heads, units)


SEARCH_SPACES: dict[str, type[SearchSpace]] = {
    cls.name: cls for cls in (SmallSpace, MediumSpace, LayerSpace, LargeSpace)
}
assert tuple(SEARCH_SPACES) == SEARCH_SPACE_NAMES, (
    "nas_tune.settings.SEARCH_SPACE_NAMES lists every space, for the fast command line"
)


def make_search_space(name: str, shape: ModelShape) -> SearchSpace:
    if name not in SEARCH_SPACES:
        raise UserError(f"unknown search space '{name}'; choose one of: {', '.join(SEARCH_SPACES)}.")
    return SEARCH_SPACES[name](shape)
