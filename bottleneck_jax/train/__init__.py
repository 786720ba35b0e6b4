"""Training: an Optax loop for NNX models, Orbax checkpoints, a ``('data', 'fsdp')`` mesh and
multi-host start-up.

``train`` (the loop) resumes bit-identically from its last checkpoint; ``sweep`` trains the
members of a hyperparameter sweep at once (vmapped); ``plot_curves`` writes a PNG of curves;
``make_mesh`` builds the mesh; ``Checkpointer`` wraps ``orbax.checkpoint.CheckpointManager``;
``maybe_initialize`` calls ``jax.distributed.initialize()`` only when the environment asks for
it.
"""

from bottleneck_jax.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointWarning,
    code_version,
)
from bottleneck_jax.train.distributed import is_main_process, maybe_initialize
from bottleneck_jax.train.loop import (
    NonFiniteLossError,
    PreemptedError,
    TrainResult,
    allowing_code_change,
    apply_optax,
    make_train_step,
    optimizer_update,
    steps_for_epochs,
    train,
)
from bottleneck_jax.train.plots import plot_curves, pyplot, save_figure
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
from bottleneck_jax.train.sweeps import SweepResult, sweep

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "Checkpointer",
    "NonFiniteLossError",
    "PreemptedError",
    "SweepResult",
    "TrainResult",
    "abstract_state",
    "allowing_code_change",
    "apply_optax",
    "batch_sharding",
    "code_version",
    "default_mesh",
    "gather_params",
    "is_main_process",
    "make_mesh",
    "make_train_step",
    "maybe_initialize",
    "optimizer_update",
    "param_spec",
    "parse_mesh",
    "plot_curves",
    "put_replicated",
    "pyplot",
    "save_figure",
    "set_default_mesh",
    "shard_state",
    "state_shardings",
    "steps_for_epochs",
    "sweep",
    "train",
]
