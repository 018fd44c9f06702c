"""nas-tune: structural pruning of pre-trained transformers by multi-objective NAS."""

__version__ = "0.1.0"
