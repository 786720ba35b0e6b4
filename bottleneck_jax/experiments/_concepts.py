"""Helpers shared by the concepts-family experiments: one Adam fit through
:func:`bottleneck_jax.train.train` (via :func:`~bottleneck_jax.experiments._training.fit`) and
evaluation of the trained model on the training mesh."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit, replicated
from bottleneck_jax.experiments.registry import RunContext


class Linear(nnx.Module):
  """A linear map ``d_in -> d_out`` (a head or a probe), optionally without bias."""

  def __init__(self, d_in: int, d_out: int, *, use_bias: bool = True, zero_init: bool = False,
               rngs: nnx.Rngs):
    self.layer = nnx.Linear(d_in, d_out, use_bias=use_bias, rngs=rngs,
                            kernel_init=nnx.initializers.zeros if zero_init
                            else nnx.initializers.lecun_normal())

  def __call__(self, x):
    return self.layer(x)


def adam_fit(ctx: RunContext, name: str, model_fn: Callable[[], nnx.Module], loss_fn: Callable,
             data: Mapping[str, np.ndarray], *, steps: int, lr: float, batch_size: int,
             tags: Mapping[str, Any] | None = None, tx=None):
  """Trains ``model_fn()`` with Adam(``lr``) (or ``tx``) on ``data`` through ``train()``."""
  return fit(ctx, name, model_fn, tx if tx is not None else optax.adam(float(lr)), loss_fn,
             {k: np.asarray(v) for k, v in data.items()}, steps=int(steps),
             batch_size=int(batch_size), tags=dict(tags or {"model": name}), desc=name)


def evaluate(result, fn: Callable, **arrays) -> Any:
  """``fn(model, **arrays)`` under the training mesh, arrays replicated; numpy results."""
  with jax.set_mesh(result.mesh):
    reps = replicated(arrays, result.mesh)
    out = nnx.jit(fn)(result.model, **reps)
  return jax.tree.map(np.asarray, out)


def accuracy(logits, y) -> float:
  return float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(y)))


__all__ = ["Linear", "accuracy", "adam_fit", "evaluate"]
