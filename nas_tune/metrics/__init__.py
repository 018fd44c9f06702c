"""Measures of a sub-network: size (parameters), compute (FLOPs), speed (latency), task quality."""

from nas_tune.metrics.flops import count_flops
from nas_tune.metrics.latency import measure_latency
from nas_tune.metrics.parameters import ParameterCount, count_parameters

__all__ = ["ParameterCount", "count_flops", "count_parameters", "measure_latency"]
