"""Training: an Optax loop for NNX models, Orbax checkpoints, a ``('data', 'fsdp')`` mesh and
multi-host start-up.

``train`` (the loop) resumes bit-identically from its last checkpoint; ``make_mesh`` builds the
mesh; ``Checkpointer`` wraps ``orbax.checkpoint.CheckpointManager``; ``maybe_initialize`` calls
``jax.distributed.initialize()`` only when the environment asks for it.
"""

from bottleneck_jax.train.checkpoint import Checkpointer
from bottleneck_jax.train.distributed import is_main_process, maybe_initialize
from bottleneck_jax.train.loop import (
    PreemptedError,
    TrainResult,
    make_train_step,
    steps_for_epochs,
    train,
)
from bottleneck_jax.train.sharding import (
    abstract_state,
    batch_sharding,
    default_mesh,
    gather_params,
    make_mesh,
    param_spec,
    parse_mesh,
    put_replicated,
    set_default_mesh,
    shard_state,
    state_shardings,
)

__all__ = [
    "Checkpointer",
    "PreemptedError",
    "TrainResult",
    "abstract_state",
    "batch_sharding",
    "default_mesh",
    "gather_params",
    "is_main_process",
    "make_mesh",
    "make_train_step",
    "maybe_initialize",
    "param_spec",
    "parse_mesh",
    "put_replicated",
    "set_default_mesh",
    "shard_state",
    "state_shardings",
    "steps_for_epochs",
    "train",
]
