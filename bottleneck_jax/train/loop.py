"""The Optax training loop for Flax NNX models: sharded, checkpointed, resumable.

One call, :func:`train`, runs ``steps`` optimisation steps of ``loss_fn`` on mini-batches of an
in-memory data set or of any iterator of batches (a grain iterator, a generator function):

* the model and ``nnx.Optimizer(model, tx, wrt=wrt)`` (``wrt=nnx.Param`` by default,
  ``nnx.LoRAParam`` for adapters) are created directly on the device mesh (``('data', 'fsdp')``,
  :mod:`bottleneck_jax.train.sharding`): large weights over ``fsdp``, small ones replicated;
* each host draws its own slice of every global batch (``bottleneck_jax.data.batches`` with
  ``process_index`` / ``process_count``, or its own iterator) and the slices become one global
  array sharded over both mesh axes (``jax.make_array_from_process_local_data``);
* one step is ``nnx.value_and_grad`` over the ``wrt`` variables + ``optimizer.update(model,
  grads)`` under ``nnx.jit`` (a plain ``jax.jit`` step that mutates the optimizer would
  silently drop its state); other state that the loss mutates is kept;
* the step's key is ``fold_in(train_key, step)`` and evaluation's is ``fold_in(eval_key, step)``,
  so nothing random depends on how many times the loop was restarted;
* a checkpoint (model, optimizer, data position, seed, config, code version, last metrics;
  :mod:`bottleneck_jax.train.checkpoint`) is written every ``checkpoint_every`` steps and at the
  end. Calling :func:`train` again with the same ``checkpoint_dir`` checks that the checkpoint
  was written with the same configuration and code, restores the latest one into an abstract
  target and continues; the result is bit-identical to an uninterrupted run. A finished run is
  restored and reported without training;
* metrics go to ``log(step, **metrics)`` (JSON lines) on process 0 only, with a tqdm bar.

Under an Explicit mesh with ``fsdp``-sharded parameters the step all-gathers the parameters
before the forward pass (:func:`bottleneck_jax.train.sharding.gather_params`); under an Auto mesh
XLA does it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.train import sharding as shd
from bottleneck_jax.train.checkpoint import Checkpointer, code_version, describe_code, same_code


def _close(iterator) -> None:
  """Stops a grain iterator's prefetch threads (older grain iterators have no ``close``)."""
  close = getattr(iterator, "close", None)
  if close is not None:
    close()


class PreemptedError(RuntimeError):
  """Raised after the loop saved a checkpoint because the job is being preempted."""


class NonFiniteLossError(FloatingPointError):
  """Raised when the training loss (or a trained variable) becomes NaN or infinite.

  Attributes:
    step: the step whose loss was non-finite (numbered like the logs: updates done after it).
    last_checkpoint: the newest checkpoint step (all checkpoints hold finite state), or ``None``.
  """

  def __init__(self, message: str, *, step: int, last_checkpoint: int | None):
    super().__init__(message)
    self.step, self.last_checkpoint = step, last_checkpoint


@jax.jit
def _first_bad(bad, loss, step):
  """``step`` if ``loss`` is the first non-finite one, else ``bad`` (-1 while all finite)."""
  return jnp.where((bad < 0) & ~jnp.all(jnp.isfinite(loss)), step, bad)


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else \
      jnp.bool_(True)


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


# -- resume guards -----------------------------------------------------------------------------
_ALLOW_CODE_CHANGE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "bottleneck_jax_allow_code_change", default=False)


@contextlib.contextmanager
def allowing_code_change(allow: bool = True):
  """Within this block, :func:`train` resumes checkpoints written by another code version
  (``allow_code_change=None`` reads it; ``bottleneck-jax run --allow-code-change`` sets it)."""
  token = _ALLOW_CODE_CHANGE.set(bool(allow))
  try:
    yield
  finally:
    _ALLOW_CODE_CHANGE.reset(token)


def _code_change_allowed(flag: bool | None) -> bool:
  if flag is not None:
    return bool(flag)
  return _ALLOW_CODE_CHANGE.get() or os.environ.get("BOTTLENECK_JAX_ALLOW_CODE_CHANGE") == "1"


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


def _check_same_code(fn, directory, saved, *, allow: bool) -> None:
  """Resuming with other code would silently mix two programs: refuse unless allowed."""
  current = code_version()
  if allow or same_code(saved, current):
    return
  raise ValueError(f"{fn}: the checkpoint in {directory} was written by another code version "
                   f"({describe_code(saved)}; this is {describe_code(current)}); use a new work "
                   "directory, or allow it explicitly (allow_code_change=True, "
                   "`bottleneck-jax run --allow-code-change`)")


# -- the train step ----------------------------------------------------------------------------
def optimizer_update(optimizer: nnx.Optimizer, model: nnx.Module, grads) -> None:
  """``optimizer.update(model, grads)`` under standard dtype promotion.

  Optax mixes Python floats and int32 counts (``b1 ** count``), which strict dtype promotion
  rejects; the model's own code stays under the caller's promotion rules. Every update of this
  package goes through here (or :func:`apply_optax`).
  """
  with jax.numpy_dtype_promotion("standard"):
    optimizer.update(model, grads)


def apply_optax(tx: optax.GradientTransformation, grads, opt_state, params):
  """The functional twin of :func:`optimizer_update`: ``(new_params, new_opt_state)``."""
  with jax.numpy_dtype_promotion("standard"):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_train_step(loss_fn: Callable, *, wrt: Any = nnx.Param, gather: bool = False
                    ) -> Callable:
  """The jitted step ``(model, optimizer, batch, key, step) -> metrics``.

  Gradients are taken with respect to the variables selected by ``wrt`` only (e.g.
  ``nnx.LoRAParam`` to train adapters and freeze the base weights); any other state that
  ``loss_fn`` mutates (batch statistics, a gradient-norm cache in a custom ``nnx.Variable``, an
  RNG counter) is written back to the model, never differentiated.

  Args:
    loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``.
    wrt: an NNX filter of the differentiated (and optimised) variables; must match the
      optimizer's ``wrt``.
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

    grad_fn = nnx.value_and_grad(objective, argnums=nnx.DiffState(0, wrt), has_aux=True)
    (loss, metrics), grads = grad_fn(model)
    optimizer_update(optimizer, model, grads)
    return {"loss": loss, **dict(metrics or {})}

  return nnx.jit(step_fn)


# -- training data -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Stream:
  """The loop's view of ``train_data``: ``factory()`` gives an iterator from the beginning of
  the stream (or the caller's own iterator), ``owned`` says whether the loop closes it."""

  factory: Callable[[], Any]
  owned: bool
  kind: str  # "arrays", "factory", "iterable" or "iterator"


def _is_stateful(it) -> bool:
  return callable(getattr(it, "get_state", None)) and callable(getattr(it, "set_state", None))


def _stream(fn, train_data, *, batch_size, seed, shuffle, pindex, pcount, resumable) -> _Stream:
  if isinstance(train_data, Mapping):
    if not train_data:
      raise ValueError(f"{fn}: train_data must be a non-empty dict of arrays, got an empty "
                       f"{type(train_data).__name__}")
    if batch_size is None:
      raise ValueError(f"{fn}: batch_size must be given when train_data is a dict of arrays")
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in train_data.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
      raise ValueError(f"{fn}: train_data arrays must share their leading dimension, got {sizes}")
    num_examples = next(iter(sizes.values()))
    if batch_size > num_examples:
      raise ValueError(f"{fn}: batch_size must be <= the number of examples {num_examples}, "
                       f"got {batch_size}")
    from bottleneck_jax.data import batches  # data sits below train
    data = dict(train_data)
    return _Stream(lambda: batches(data, batch_size=batch_size, seed=seed, shuffle=shuffle,
                                   drop_remainder=True, num_epochs=None, process_index=pindex,
                                   process_count=pcount), owned=True, kind="arrays")
  if isinstance(train_data, Iterator):
    if resumable and not _is_stateful(train_data):
      raise ValueError(f"{fn}: train_data is a one-shot {type(train_data).__name__} without "
                       "get_state/set_state, which a resume cannot rewind: pass a zero-arg "
                       "callable returning a fresh iterator (a resume re-creates it and skips "
                       "the batches already used), a grain iterator, or checkpoint_dir=None")
    return _Stream(lambda: train_data, owned=False, kind="iterator")
  if isinstance(train_data, Iterable) and not isinstance(train_data, (str, bytes, np.ndarray)):
    return _Stream(lambda: iter(train_data), owned=True, kind="iterable")
  if callable(train_data):
    def make():
      it = train_data()
      if not isinstance(it, Iterator):
        if not isinstance(it, Iterable):
          raise TypeError(f"{fn}: train_data() must return an iterator of batches, got "
                          f"{type(it).__name__}")
        it = iter(it)
      return it
    return _Stream(make, owned=True, kind="factory")
  raise TypeError(f"{fn}: train_data must be a dict of arrays, an iterable of batches or a "
                  f"zero-arg callable returning an iterator, got {type(train_data).__name__}")


def _check_batch(fn, batch, *, batch_size, pcount, mesh, step) -> int:
  """The global batch size of one batch from an iterator (checked against ``batch_size``)."""
  leaves = jax.tree.leaves(batch)
  if not leaves or any(np.ndim(x) < 1 for x in leaves):
    raise ValueError(f"{fn}: batch {step} from train_data must be a pytree of arrays with a "
                     f"leading batch dimension, got {jax.tree.map(np.shape, batch)}")
  sizes = {int(np.shape(x)[0]) for x in leaves}
  if len(sizes) != 1:
    raise ValueError(f"{fn}: the arrays of batch {step} from train_data must share their "
                     f"leading dimension, got {jax.tree.map(np.shape, batch)}")
  size = sizes.pop() * pcount
  if batch_size is not None and size != batch_size:
    raise ValueError(f"{fn}: batch {step} from train_data has {size} examples (over "
                     f"{pcount} process(es)), expected batch_size={batch_size}")
  shd.check_batch_divisible(size, mesh, fn=fn)
  return size


# -- the loop ----------------------------------------------------------------------------------
def train(model_fn: Callable[[], nnx.Module],
          tx: optax.GradientTransformation,
          loss_fn: Callable,
          train_data: Mapping[str, np.ndarray] | Iterable[Any] | Callable[[], Iterator[Any]],
          *,
          steps: int,
          batch_size: int | None = None,
          seed: int = 0,
          wrt: Any = nnx.Param,
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
          config: Mapping[str, Any] | None = None,
          allow_code_change: bool | None = None) -> TrainResult:
  """Trains an NNX model with Optax; resumes from ``checkpoint_dir`` when it holds a checkpoint.

  Args:
    model_fn: builds the model, e.g. ``lambda: MLP(..., rngs=nnx.Rngs(seed))`` (called under the
      mesh, or under ``nnx.eval_shape`` when restoring).
    tx: the Optax transformation.
    loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``; ``batch`` is a dict of global
      arrays sharded over the mesh, ``key`` the step's key; ``metrics`` a dict of scalars.
    train_data: one of

      * a dict of numpy arrays with a common leading (example) dimension: every host passes
        the same arrays and draws its own slice of each shuffled batch (``batch_size`` needed);
        the position is checkpointed;
      * an iterator of batches (pytrees of arrays, this process's rows) with
        ``get_state``/``set_state``, e.g. a grain ``DatasetIterator``: its state is
        checkpointed and restored;
      * a zero-arg callable returning a fresh iterator of batches from the start of the stream
        (e.g. a generator function), or a re-iterable (a grain dataset, a list of batches): a
        resume at step ``k`` re-creates the iterator (restoring its state when it has
        ``get_state``/``set_state``, else skipping ``k`` batches), so the stream must be
        deterministic;
      * a one-shot iterator without state (a generator object): only without
        ``checkpoint_dir``, since nothing could rewind it on resume.

      Batches from an iterator hold this process's rows; the global batch (over all
      processes) must split evenly over the mesh and equal ``batch_size`` when given.
    steps: total number of optimisation steps.
    batch_size: the global batch size (a multiple of the number of devices); optional for
      iterators (read from the first batch).
    seed: seeds the data order, the step keys and the evaluation keys (not the model: seed
      ``model_fn`` yourself).
    wrt: the NNX filter of the trained variables (``nnx.Param``; e.g. ``nnx.LoRAParam`` for
      adapters only); the optimizer is ``nnx.Optimizer(model, tx, wrt=wrt)`` and other state
      that ``loss_fn`` mutates is kept, not differentiated (:func:`make_train_step`).
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
    shuffle: shuffle the examples every epoch (dict of arrays only).
    progress: show a tqdm bar (process 0).
    desc: the bar's label.
    config: JSON-serialisable configuration saved in every checkpoint; a resume with another
      configuration (apart from ``steps``) is refused.
    allow_code_change: resume a checkpoint written by another code version (package version
      or git commit); ``None`` reads :func:`allowing_code_change` and the environment variable
      ``BOTTLENECK_JAX_ALLOW_CODE_CHANGE=1``; refused by default.

  Returns:
    A :class:`TrainResult`.

  Raises:
    PreemptedError: after saving a checkpoint when a preemption signal arrived.
    NonFiniteLossError: the loss (or a trained variable) became NaN/Inf; the message names the
      step. It is checked at every log step and before every checkpoint, so a checkpoint never
      holds non-finite values.
    ValueError: bad arguments, or a checkpoint of another configuration or code version
      (checked before anything is restored).
    bottleneck_jax.train.checkpoint.CheckpointError: a checkpoint write failed, or no intact
      checkpoint is left (damaged ones are moved aside and the previous one restored).

  Example:
    >>> result = train(lambda: Model(rngs=nnx.Rngs(0)), optax.adam(1e-3), loss_fn,  # doctest: +SKIP
    ...                {"x": x, "y": y}, steps=1000, batch_size=128, checkpoint_dir="ckpt")
  """
  fn = "train"
  _check_positive_int(fn, "steps", steps)
  if batch_size is not None:
    _check_positive_int(fn, "batch_size", batch_size)
  _check_positive_int(fn, "seed", seed, allow_zero=True)
  _check_positive_int(fn, "eval_every", eval_every, allow_zero=True)
  _check_positive_int(fn, "checkpoint_every", checkpoint_every, allow_zero=True)
  _check_positive_int(fn, "keep", keep)
  if log_every is None:
    log_every = _default_log_every(steps)
  _check_positive_int(fn, "log_every", log_every)

  from bottleneck_jax.data import to_global  # data sits below train

  mesh = shd.default_mesh() if mesh is None else mesh
  pcount, pindex = jax.process_count(), jax.process_index()
  is_main = pindex == 0
  stream = _stream(fn, train_data, batch_size=batch_size, seed=seed, shuffle=shuffle,
                   pindex=pindex, pcount=pcount, resumable=checkpoint_dir is not None)
  if batch_size is not None:
    shd.check_batch_divisible(batch_size, mesh, fn=fn)
    if batch_size % pcount:
      raise ValueError(f"{fn}: batch_size must be a multiple of the number of processes "
                       f"{pcount}, got {batch_size}")
  explicit = shd.is_explicit(mesh)
  batch_sharding = shd.batch_sharding(mesh)
  allow_code = _code_change_allowed(allow_code_change)

  train_key, eval_key = jax.random.split(jax.random.key(seed))

  def create():
    model = model_fn()
    return model, nnx.Optimizer(model, tx, wrt=wrt)

  ckpt = None
  if checkpoint_dir is not None:
    ckpt = Checkpointer(checkpoint_dir, every=checkpoint_every or steps, keep=keep,
                        async_save=async_checkpoints)
  iterator = None

  def close_all(quiet: bool):
    if iterator is not None and stream.owned:
      _close(iterator)
    if ckpt is not None:
      try:
        ckpt.close()  # waits for the last background write: its failure is this run's
      except Exception:
        if not quiet:
          raise  # (quiet: an error is already on its way; this one would hide it)

  finished = False
  try:
    with jax.set_mesh(mesh):
      abstract = nnx.eval_shape(create)
      graphdef, abstract_state = nnx.split(abstract)
      target = shd.abstract_state(abstract_state, mesh, min_size=min_shard_size)
      # The newest checkpoint that matches its manifest (damaged ones are moved aside).
      resumed_from = ckpt.latest_intact_step() if ckpt is not None else None
      meta: dict[str, Any] = {}
      if resumed_from is not None:
        # Check first, restore after: a checkpoint of another configuration (another model
        # shape, say) is refused with its reason, never with an Orbax shape error.
        meta = ckpt.read_meta(resumed_from)
        start = int(meta.get("step", resumed_from))
        _check_same_config(fn, checkpoint_dir, meta.get("config"), config)
        _check_same_code(fn, checkpoint_dir, meta.get("code"), allow=allow_code)
        if start > steps:
          raise ValueError(f"{fn}: the checkpoint in {checkpoint_dir} is at step {start}, "
                           f"beyond steps={steps}; use a new work directory")
        state, data_state, _ = ckpt.restore(target, step=resumed_from)
      else:
        shardings = jax.tree.map(lambda t: t.sharding, target)

        @nnx.jit
        def init():
          state = nnx.state(create())
          place = jax.reshard if explicit else jax.lax.with_sharding_constraint
          return jax.tree.map(place, state, shardings)

        state = init()
        start, data_state = 0, None
      iterator = stream.factory()
      stateful = _is_stateful(iterator)
      if start:
        if stateful and data_state is not None:
          iterator.set_state(data_state)
        else:  # replay: the factory starts the stream over; skip what was already used
          for i in range(start):
            try:
              next(iterator)
            except StopIteration:
              raise ValueError(f"{fn}: train_data ended after {i} batches while skipping to "
                               f"the checkpoint's step {start}") from None
      model, optimizer = nnx.merge(graphdef, state)
      gather = explicit and shd.has_sharded_leaf(nnx.state(model, nnx.Param))
      # cached_partial caches the traversal of the model/optimizer graph: less Python per step.
      step_fn = nnx.cached_partial(make_train_step(loss_fn, wrt=wrt, gather=gather), model,
                                   optimizer)

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

      bad = np.int32(-1)  # the first step with a non-finite loss, on device (no sync per step)

      def check_finite(step, *, state=False):
        """Stops at the first non-finite loss (or trained variable) with its step; a
        checkpoint is only ever written after this check."""
        first = int(bad)
        if first < 0 and state and not bool(_all_finite(nnx.state(model, wrt))):
          first = step
        if first < 0:
          return
        last = ckpt.last_saved if ckpt is not None else None
        kept = (f"; the last checkpoint (step {last}) in {checkpoint_dir} holds finite values"
                if last is not None else "; no checkpoint was written")
        what = "the loss" if int(bad) >= 0 else "a trained variable"
        raise NonFiniteLossError(f"{fn}: {what} became non-finite (NaN or Inf) at step "
                                 f"{first}{kept}; lower the learning rate or check the data",
                                 step=first, last_checkpoint=last)

      def save(step, *, force=False):
        if ckpt is None or not (force or ckpt.should_save(step)):
          return  # decide before gathering the state: most steps save nothing
        check_finite(step, state=True)
        ckpt.save(step, nnx.state((model, optimizer)),
                  data_state=iterator.get_state() if stateful else None,
                  meta={"seed": seed, "steps": steps, "config": dict(config or {}),
                        "code": code_version(), "data": "state" if stateful else "replay",
                        "metrics": last_metrics}, force=force)

      bar = None
      if progress and is_main and start < steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc=desc, dynamic_ncols=True, leave=False)
      try:
        step = start
        while step < steps:
          try:
            local = next(iterator)
          except StopIteration:
            raise ValueError(f"{fn}: train_data ended after step {step}, before steps="
                             f"{steps}") from None
          if stream.kind != "arrays":
            _check_batch(fn, local, batch_size=batch_size, pcount=pcount, mesh=mesh, step=step)
          batch = to_global(local, batch_sharding)
          metrics = step_fn(batch, train_key, np.int32(step))
          step += 1
          bad = _first_bad(bad, metrics["loss"], np.int32(step))
          if step % log_every == 0 or step == steps:
            check_finite(step)
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
        check_finite(steps)
      finally:
        if bar is not None:
          bar.close()
    finished = True
  finally:
    close_all(quiet=not finished)
  return TrainResult(model=model, optimizer=optimizer, step=steps, metrics=last_metrics,
                     resumed_from=resumed_from, history=history, mesh=mesh)


def steps_for_epochs(epochs: float, num_examples: int, batch_size: int) -> int:
  """The number of steps for ``epochs`` passes over ``num_examples`` with ``drop_remainder``."""
  return max(1, math.ceil(epochs * (num_examples // batch_size)))


__all__ = ["NonFiniteLossError", "PreemptedError", "TrainResult", "allowing_code_change", "apply_optax",
           "make_train_step", "optimizer_update", "steps_for_epochs", "train"]
