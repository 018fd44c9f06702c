"""Per-domain-type behaviour of a searcher (how to move, how to describe a hyper-parameter)."""

from __future__ import annotations

from typing import Any

from syne_tune.config_space import Domain

from nas_tune.errors import UserError


def by_domain_type(registry: dict[type, Any], name: str, domain: Domain, searcher: str) -> Any:
    """The registry entry for the domain's class or its nearest base class (e.g. ordinal -> choice)."""
    for cls in type(domain).__mro__:
        if cls in registry:
            return registry[cls]
    kinds = ", ".join(sorted(cls.__name__ for cls in registry))
    raise UserError(
        f"{searcher} cannot search hyper-parameter {name!r} of type {type(domain).__name__}; use one of: {kinds}."
    )
