"""The Optax training loop for Flax NNX models: sharded, checkpointed, resumable.

One call, :func:`train`, runs ``steps`` optimisation steps of ``loss_fn`` on mini-batches of an
in-memory data set:

* the model and ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` are created directly on the device
  mesh (``('data', 'fsdp')``, :mod:`bottleneck_jax.train.sharding`): large weights over ``fsdp``,
  small ones replicated;
* each host draws its own slice of every global batch (``bottleneck_jax.data.batches`` with
  ``process_index`` / ``process_count``) and the slices become one global array sharded over
  both mesh axes (``jax.make_array_from_process_local_data``);
* one step is ``nnx.value_and_grad`` + ``optimizer.update(model, grads)`` under ``nnx.jit``
  (a plain ``jax.jit`` step that mutates the optimizer would silently drop its state);
* the step's key is ``fold_in(train_key, step)`` and evaluation's is ``fold_in(eval_key, step)``,
  so nothing random depends on how many times the loop was restarted;
* a checkpoint (model, optimizer, data position, seed, config, last metrics;
  :mod:`bottleneck_jax.train.checkpoint`) is written every ``checkpoint_every`` steps and at the
  end. Calling :func:`train` again with the same ``checkpoint_dir`` restores the latest one into
  an abstract target and continues; the result is bit-identical to an uninterrupted run. A
  finished run is restored and reported without training;
* metrics go to ``log(step, **metrics)`` (JSON lines) on process 0 only, with a tqdm bar.

Under an Explicit mesh with ``fsdp``-sharded parameters the step all-gathers the parameters
before the forward pass (:func:`bottleneck_jax.train.sharding.gather_params`); under an Auto mesh
XLA does it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.train import sharding as shd
from bottleneck_jax.train.checkpoint import Checkpointer


def _close(iterator) -> None:
  """Stops a grain iterator's prefetch threads (older grain iterators have no ``close``)."""
  close = getattr(iterator, "close", None)
  if close is not None:
    close()


class PreemptedError(RuntimeError):
  """Raised after the loop saved a checkpoint because the job is being preempted."""


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns.

  Attributes:
    model: the trained model (its arrays live on the mesh).
    optimizer: the ``nnx.Optimizer``.
    step: the number of updates done (``steps`` when finished).
    metrics: the last evaluation metrics (or the last training metrics without ``eval_fn``).
    resumed_from: the checkpoint step this call started from (``None`` for a fresh start).
    history: the evaluation records of this call, ``[{"step": s, **metrics}, ...]``.
    mesh: the mesh used.
  """

  model: nnx.Module
  optimizer: nnx.Optimizer
  step: int
  metrics: dict[str, float]
  resumed_from: int | None
  history: list[dict[str, float]]
  mesh: Any


def _to_float_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
  out = {}
  for k, v in metrics.items():
    a = np.asarray(jax.device_get(v))
    out[k] = float(a) if a.shape == () else a.tolist()
  return out


def _check_positive_int(fn, arg, v, *, allow_zero=False):
  ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and (
      v >= 0 if allow_zero else v >= 1)
  if not ok:
    what = "a non-negative int" if allow_zero else "a positive int"
    raise ValueError(f"{fn}: {arg} must be {what}, got {v!r}")


def _default_log_every(steps: int) -> int:
  return max(1, steps // 100)


def _check_same_config(fn, directory, saved, current) -> None:
  """Resuming with another configuration would silently mix two runs: refuse (``steps`` may
  change, to extend a run)."""
  if saved is None:
    return
  def norm(c):
    c = json.loads(json.dumps(dict(c or {}), default=str))
    return {k: v for k, v in c.items() if k != "steps"}

  a, b = norm(saved), norm(current)
  if a != b:
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    raise ValueError(f"{fn}: the checkpoint in {directory} was written with another "
                     f"configuration (differs in {diff}); use a new work directory")


def make_train_step(loss_fn: Callable, *, gather: bool = False) -> Callable:
  """The jitted step ``(model, optimizer, batch, key, step) -> metrics``.

  Args:
    loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``.
    gather: all-gather sharded parameters before the forward pass (Explicit mesh + FSDP).

  Returns:
    An ``nnx.jit`` function that updates ``model`` and ``optimizer`` in place and returns the
    step's metrics (``loss`` included) as device scalars.
  """

  def step_fn(model, optimizer, batch, key, step):
    step_key = jax.random.fold_in(key, step)

    def objective(model):
      if gather:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        full = nnx.merge(graphdef, shd.gather_params(params), rest)
        loss, metrics = loss_fn(full, batch, step_key)
        nnx.update(model, nnx.state(full, nnx.Not(nnx.Param)))  # e.g. batch statistics
        return loss, metrics
      return loss_fn(model, batch, step_key)

    (loss, metrics), grads = nnx.value_and_grad(objective, has_aux=True)(model)
    # Optax mixes Python floats and int32 counts (``b1 ** count``), which strict dtype promotion
    # rejects; the model's own code stays under the caller's promotion rules.
    with jax.numpy_dtype_promotion("standard"):
      optimizer.update(model, grads)
    return {"loss": loss, **dict(metrics or {})}

  return nnx.jit(step_fn)


def train(model_fn: Callable[[], nnx.Module],
          tx: optax.GradientTransformation,
          loss_fn: Callable,
          train_data: Mapping[str, np.ndarray],
          *,
          steps: int,
          batch_size: int,
          seed: int = 0,
          eval_fn: Callable | None = None,
          eval_every: int = 0,
          checkpoint_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 0,
          keep: int = 2,
          async_checkpoints: bool = True,
          log: Callable[..., None] | None = None,
          log_every: int | None = None,
          mesh=None,
          min_shard_size: int = shd.DEFAULT_MIN_SIZE,
          shuffle: bool = True,
          progress: bool = True,
          desc: str = "train",
          config: Mapping[str, Any] | None = None) -> TrainResult:
  """Trains an NNX model with Optax; resumes from ``checkpoint_dir`` when it holds a checkpoint.

  Args:
    model_fn: builds the model, e.g. ``lambda: MLP(..., rngs=nnx.Rngs(seed))`` (called under the
      mesh, or under ``nnx.eval_shape`` when restoring).
    tx: the Optax transformation.
    loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``; ``batch`` is a dict of global
      arrays sharded over the mesh, ``key`` the step's key; ``metrics`` a dict of scalars.
    train_data: dict of numpy arrays with a common leading (example) dimension; every host
      passes the same arrays and draws its own slice of each batch.
    steps: total number of optimisation steps.
    batch_size: the global batch size (a multiple of the number of devices).
    seed: seeds the data order, the step keys and the evaluation keys (not the model: seed
      ``model_fn`` yourself).
    eval_fn: ``eval_fn(model, key) -> dict`` of scalars, called every ``eval_every`` steps and at
      the end.
    eval_every: evaluation interval (0: only at the end).
    checkpoint_dir: where checkpoints go (``None``: no checkpoints, no resume).
    checkpoint_every: checkpoint interval in steps (0: only at the end).
    keep: how many checkpoints to keep.
    async_checkpoints: write checkpoints in the background.
    log: ``log(step, **metrics)``, e.g. ``RunContext.log``; called on process 0 only.
    log_every: interval for training metrics (default: about 100 records per run).
    mesh: a ``('data', 'fsdp')`` mesh; :func:`~bottleneck_jax.train.sharding.default_mesh`
      (data parallelism over all devices unless ``set_default_mesh`` said otherwise) when
      ``None``.
    min_shard_size: parameters with at least this many elements are sharded over ``fsdp``.
    shuffle: shuffle the examples every epoch.
    progress: show a tqdm bar (process 0).
    desc: the bar's label.
    config: JSON-serialisable configuration saved in every checkpoint.

  Returns:
    A :class:`TrainResult`.

  Raises:
    PreemptedError: after saving a checkpoint when a preemption signal arrived.

  Example:
    >>> result = train(lambda: Model(rngs=nnx.Rngs(0)), optax.adam(1e-3), loss_fn,  # doctest: +SKIP
    ...                {"x": x, "y": y}, steps=1000, batch_size=128, checkpoint_dir="ckpt")
  """
  fn = "train"
  _check_positive_int(fn, "steps", steps)
  _check_positive_int(fn, "batch_size", batch_size)
  _check_positive_int(fn, "seed", seed, allow_zero=True)
  _check_positive_int(fn, "eval_every", eval_every, allow_zero=True)
  _check_positive_int(fn, "checkpoint_every", checkpoint_every, allow_zero=True)
  _check_positive_int(fn, "keep", keep)
  if log_every is None:
    log_every = _default_log_every(steps)
  _check_positive_int(fn, "log_every", log_every)
  if not isinstance(train_data, Mapping) or not train_data:
    raise ValueError(f"{fn}: train_data must be a non-empty dict of arrays, got "
                     f"{type(train_data).__name__}")
  sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in train_data.items()}
  if len(set(sizes.values())) != 1 or None in sizes.values():
    raise ValueError(f"{fn}: train_data arrays must share their leading dimension, got {sizes}")
  num_examples = next(iter(sizes.values()))
  if batch_size > num_examples:
    raise ValueError(f"{fn}: batch_size must be <= the number of examples {num_examples}, got "
                     f"{batch_size}")

  from bottleneck_jax.data import batches, to_global  # data sits below train

  mesh = shd.default_mesh() if mesh is None else mesh
  shd.check_batch_divisible(batch_size, mesh, fn=fn)
  pcount, pindex = jax.process_count(), jax.process_index()
  is_main = pindex == 0
  if batch_size % pcount:
    raise ValueError(f"{fn}: batch_size must be a multiple of the number of processes "
                     f"{pcount}, got {batch_size}")
  explicit = shd.is_explicit(mesh)
  batch_sharding = shd.batch_sharding(mesh)

  train_key, eval_key = jax.random.split(jax.random.key(seed))
  iterator = batches(dict(train_data), batch_size=batch_size, seed=seed, shuffle=shuffle,
                     drop_remainder=True, num_epochs=None, process_index=pindex,
                     process_count=pcount)

  def create():
    model = model_fn()
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  ckpt = None
  if checkpoint_dir is not None:
    ckpt = Checkpointer(checkpoint_dir, every=checkpoint_every or steps, keep=keep,
                        async_save=async_checkpoints)

  with jax.set_mesh(mesh):
    abstract = nnx.eval_shape(create)
    graphdef, abstract_state = nnx.split(abstract)
    target = shd.abstract_state(abstract_state, mesh, min_size=min_shard_size)
    resumed_from = ckpt.latest_step() if ckpt is not None else None
    meta: dict[str, Any] = {}
    if resumed_from is not None:
      state, data_state, meta = ckpt.restore(target, step=resumed_from)
      if data_state is not None:
        iterator.set_state(data_state)
      start = int(meta.get("step", resumed_from))
      try:
        _check_same_config(fn, checkpoint_dir, meta.get("config"), config)
        if start > steps:
          raise ValueError(f"{fn}: the checkpoint in {checkpoint_dir} is at step {start}, "
                           f"beyond steps={steps}; use a new work directory")
      except ValueError:
        ckpt.close()
        _close(iterator)
        raise
    else:
      shardings = jax.tree.map(lambda t: t.sharding, target)

      @nnx.jit
      def init():
        state = nnx.state(create())
        place = jax.reshard if explicit else jax.lax.with_sharding_constraint
        return jax.tree.map(place, state, shardings)

      state = init()
      start = 0
    model, optimizer = nnx.merge(graphdef, state)
    gather = explicit and shd.has_sharded_leaf(nnx.state(model, nnx.Param))
    # cached_partial caches the traversal of the model/optimizer graph: less Python per step.
    step_fn = nnx.cached_partial(make_train_step(loss_fn, gather=gather), model, optimizer)

    history: list[dict[str, float]] = []
    last_metrics: dict[str, float] = dict(meta.get("metrics") or {})

    def evaluate(step):
      nonlocal last_metrics
      if eval_fn is None:
        return
      metrics = _to_float_dict(eval_fn(model, jax.random.fold_in(eval_key, step)))
      last_metrics = metrics
      history.append({"step": step, **metrics})
      if log is not None and is_main:
        log(step, split="eval", **metrics)

    def save(step, *, force=False):
      if ckpt is None or not (force or ckpt.should_save(step)):
        return  # decide before gathering the state: most steps save nothing
      ckpt.save(step, nnx.state((model, optimizer)), data_state=iterator.get_state(),
                meta={"seed": seed, "steps": steps, "config": dict(config or {}),
                      "metrics": last_metrics}, force=force)

    bar = None
    if progress and is_main and start < steps:
      from tqdm.auto import tqdm
      bar = tqdm(total=steps, initial=start, desc=desc, dynamic_ncols=True, leave=False)
    try:
      step = start
      while step < steps:
        local = next(iterator)
        batch = to_global(local, batch_sharding)
        metrics = step_fn(batch, train_key, np.int32(step))
        step += 1
        if step % log_every == 0 or step == steps:
          train_metrics = _to_float_dict(metrics)
          if eval_fn is None:
            last_metrics = train_metrics
          if log is not None and is_main:
            log(step, split="train", **train_metrics)
          if bar is not None:
            bar.set_postfix(loss=f"{train_metrics['loss']:.4g}", refresh=False)
        if (eval_every and step % eval_every == 0) or step == steps:
          evaluate(step)
        if bar is not None:
          bar.update(1)
        save(step, force=step == steps)
        if ckpt is not None and step < steps and ckpt.reached_preemption(step):
          save(step, force=True)
          ckpt.wait_until_finished()
          raise PreemptedError(f"{fn}: preempted at step {step}; checkpoint saved in "
                               f"{checkpoint_dir}")
      if start == steps and not last_metrics and eval_fn is not None:
        evaluate(steps)
    finally:
      if bar is not None:
        bar.close()
      if ckpt is not None:
        ckpt.close()
      _close(iterator)
  return TrainResult(model=model, optimizer=optimizer, step=steps, metrics=last_metrics,
                     resumed_from=resumed_from, history=history, mesh=mesh)


def steps_for_epochs(epochs: float, num_examples: int, batch_size: int) -> int:
  """The number of steps for ``epochs`` passes over ``num_examples`` with ``drop_remainder``."""
  return max(1, math.ceil(epochs * (num_examples // batch_size)))


__all__ = ["PreemptedError", "TrainResult", "make_train_step", "steps_for_epochs", "train"]
