"""Model families: the prunable structure of a model and how a sub-network is applied to it."""

from nas_tune.models.adapter import ModelAdapter
from nas_tune.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    adapter_for,
    bundled_model_path,
    load_finetuned,
    load_model,
    resolve_model,
)
from nas_tune.models.subnetwork import ModelShape, SubNetwork

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelAdapter",
    "ModelShape",
    "SubNetwork",
    "adapter_for",
    "bundled_model_path",
    "load_finetuned",
    "load_model",
    "resolve_model",
]
