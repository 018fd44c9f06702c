"""Task data: GLUE / custom loading, seeded splits and cached tokenisation."""

from nas_tune.data.loading import DataConfig, TaskData, load_task_data
from nas_tune.data.tasks import GLUE_TASKS, TaskSpec, get_task
from nas_tune.data.tokenize import TokenizedSplit, default_cache_dir, tokenize_split

__all__ = [
    "GLUE_TASKS",
    "DataConfig",
    "TaskData",
    "TaskSpec",
    "TokenizedSplit",
    "default_cache_dir",
    "get_task",
    "load_task_data",
    "tokenize_split",
]
