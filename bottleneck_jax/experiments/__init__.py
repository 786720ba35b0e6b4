"""Named, reproducible experiments: one per claim we check.

Each experiment module registers itself on import; this package imports them all.
"""

# Experiment modules (each registers its experiments on import).
from bottleneck_jax.experiments import _all  # noqa: E402,F401
from bottleneck_jax.experiments.registry import (
    Experiment,
    RunContext,
    get,
    names,
    parse_overrides,
    register,
    resolve_config,
    run_experiment,
)

__all__ = [
    "Experiment",
    "RunContext",
    "get",
    "names",
    "parse_overrides",
    "register",
    "resolve_config",
    "run_experiment",
]
