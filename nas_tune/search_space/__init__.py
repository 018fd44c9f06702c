"""Search spaces: Syne Tune config spaces that map configs to sub-networks."""

from nas_tune.search_space.spaces import (
    SEARCH_SPACES,
    Config,
    SearchSpace,
    config_key,
    make_search_space,
    sample_config,
)

__all__ = ["SEARCH_SPACES", "Config", "SearchSpace", "config_key", "make_search_space", "sample_config"]
