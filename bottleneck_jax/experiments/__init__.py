"""Named, reproducible experiments: one per claim we check.

Each experiment declares its expectations as data (:class:`Expectation`, with :class:`Ref` for
a threshold read from another measurement, and :class:`Metric` documenting what is measured);
``run`` only measures and the registry gives the verdict. See
:mod:`bottleneck_jax.experiments.registry` for the API and an example.

Each experiment module registers itself on import; this package imports them all.
"""

# Experiment modules (each registers its experiments on import).
from bottleneck_jax.experiments import _all  # noqa: E402,F401,I001
from bottleneck_jax.experiments.expectations import Expectation, Metric, MissingMetricError, Ref
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
    "Expectation",
    "Experiment",
    "Metric",
    "MissingMetricError",
    "Ref",
    "RunContext",
    "get",
    "names",
    "parse_overrides",
    "register",
    "resolve_config",
    "run_experiment",
]
