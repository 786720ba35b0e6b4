"""Vmapped sweeps: several members (learning rates, seeds, loss weights) trained in one program.

:func:`sweep` stacks the members' models and optimizer states along a leading *member* axis and
runs one ``jax.jit(jax.vmap(step))`` per step, so ``M`` small models cost about one compile and
one dispatch per step instead of ``M``. Every member sees the same batches and the same step
keys as :func:`bottleneck_jax.train.train` with the same ``seed``: member ``i`` of a sweep
computes what ``train(lambda: model_fn(members[i]), tx_fn(members[i]), ...)`` computes, up to
float rounding (a vmapped matmul may sum in another order).

A member is a dict of numbers (``{"lr": 1e-2, "seed": 0, "beta": 1e-3}``); inside the sweep
its values are float32 / int32 scalars (traced), which ``model_fn``, ``tx_fn`` and ``loss_fn``
use like Python numbers: ``optax.adam(member["lr"])``, ``loss + member["beta"] * kl``; an
integer seed becomes a key with ``nnx.Rngs(jax.random.key(member["seed"]))`` (``nnx.Rngs``
takes a Python int or a key, not an int array).

Sweeps keep everything on one device and write no checkpoints: they are for the many short
runs of a hyperparameter scan; a long run goes through :func:`~bottleneck_jax.train.train`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.train.loop import (
    _check_positive_int,
    _close,
    _default_log_every,
    _stream,
    _to_float_dict,
    apply_optax,
)


@dataclasses.dataclass
class SweepResult:
  """What :func:`sweep` returns.

  Attributes:
    members: the members' hyperparameters (Python numbers), in order.
    labels: one label per member (``"lr=0.01, seed=0"``).
    histories: per member, the records ``{"step", "split": "train" | "eval", **metrics}``.
    metrics: per member, the last evaluation metrics (the last training metrics without
      ``eval_fn``).
    step: the number of updates done.
    graphdef: the models' graph definition.
    params: the trained variables (``wrt``), stacked along a leading member axis.
    rest: the other model state, stacked likewise.
  """

  members: list[dict[str, float | int]]
  labels: list[str]
  histories: list[list[dict[str, Any]]]
  metrics: list[dict[str, float]]
  step: int
  graphdef: Any
  params: Any
  rest: Any

  def model(self, i: int) -> nnx.Module:
    """Member ``i``'s trained model."""
    if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.members):
      raise ValueError(f"SweepResult.model: i must be an int in [0, {len(self.members)}), "
                       f"got {i!r}")
    take = lambda x: x[i]  # noqa: E731
    return nnx.merge(self.graphdef, jax.tree.map(take, self.params),
                     jax.tree.map(take, self.rest))

  def curves(self, metric: str = "loss", *, split: str = "train"
             ) -> dict[str, tuple[list[int], list[float]]]:
    """``{label: (steps, values)}`` of one metric, for :func:`bottleneck_jax.train.plot_curves`."""
    out = {}
    for label, hist in zip(self.labels, self.histories):
      recs = [r for r in hist if r.get("split") == split and metric in r]
      out[label] = ([r["step"] for r in recs], [r[metric] for r in recs])
    if not any(steps for steps, _ in out.values()):
      raise ValueError(f"SweepResult.curves: no {split!r} record has metric {metric!r}")
    return out


def _members(fn: str, members) -> tuple[list[dict], dict[str, np.ndarray]]:
  if isinstance(members, Mapping) or not isinstance(members, Sequence) or not members:
    raise ValueError(f"{fn}: members must be a non-empty list of dicts of numbers, got "
                     f"{type(members).__name__}")
  keys = None
  out = []
  for i, m in enumerate(members):
    if not isinstance(m, Mapping):
      raise ValueError(f"{fn}: members[{i}] must be a dict of numbers, got {type(m).__name__}")
    if keys is None:
      keys = sorted(m)
    elif sorted(m) != keys:
      raise ValueError(f"{fn}: every member must have the same keys, got {keys} for members[0] "
                       f"and {sorted(m)} for members[{i}]")
    row = {}
    for k, v in m.items():
      if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{fn}: members[{i}][{k!r}] must be a number, got "
                         f"{type(v).__name__} {v!r}")
      if not np.isfinite(v):
        raise ValueError(f"{fn}: members[{i}][{k!r}] must be finite, got {v!r}")
      row[k] = v.item() if isinstance(v, np.generic) else v
    out.append(row)
  stacked = {}
  for k in keys or []:
    vals = [m[k] for m in out]
    integer = all(isinstance(v, int) for v in vals)
    stacked[k] = np.asarray(vals, dtype=np.int32 if integer else np.float32)
  return out, stacked


def _label(member: Mapping[str, Any]) -> str:
  return ", ".join(f"{k}={v:g}" for k, v in member.items()) or "member"


def sweep(model_fn: Callable[[dict], nnx.Module],
          tx_fn: Callable[[dict], optax.GradientTransformation],
          loss_fn: Callable,
          train_data: Mapping[str, np.ndarray] | Iterable[Any] | Callable[[], Iterator[Any]],
          *,
          members: Sequence[Mapping[str, float | int]],
          steps: int,
          batch_size: int | None = None,
          seed: int = 0,
          wrt: Any = nnx.Param,
          eval_fn: Callable | None = None,
          eval_every: int = 0,
          log: Callable[..., None] | None = None,
          log_every: int | None = None,
          shuffle: bool = True,
          progress: bool = True,
          desc: str = "sweep") -> SweepResult:
  """Trains every member of a hyperparameter sweep at once, vmapped over a member axis.

  Args:
    model_fn: ``model_fn(member) -> nnx.Module``; ``member`` maps each hyperparameter to a
      scalar (traced), e.g. ``lambda m: MLP(..., rngs=nnx.Rngs(jax.random.key(m["seed"])))``. The structure
      (shapes) may not depend on the member.
    tx_fn: ``tx_fn(member) -> optax.GradientTransformation``, e.g.
      ``lambda m: optax.adam(m["lr"])``.
    loss_fn: ``loss_fn(model, batch, key, member) -> (loss, metrics)``.
    train_data: as for :func:`~bottleneck_jax.train.train` (a dict of arrays, an iterable of
      batches or a zero-arg callable returning an iterator); every member sees the same batches.
    members: the members, a list of dicts of numbers with the same keys.
    steps: optimisation steps per member.
    batch_size: the batch size (needed for a dict of arrays).
    seed: seeds the data order, the step keys and the evaluation keys, as in ``train``.
    wrt: the NNX filter of the trained variables.
    eval_fn: ``eval_fn(model, key, member) -> dict`` of scalars, every ``eval_every`` steps and
      at the end.
    eval_every: evaluation interval (0: only at the end).
    log: ``log(step, split=..., member=i, **hyperparameters, **metrics)`` per member.
    log_every: interval for training metrics (default: about 100 records).
    shuffle: shuffle the examples every epoch (dict of arrays only).
    progress: show a tqdm bar.
    desc: the bar's label.

  Returns:
    A :class:`SweepResult` with the per-member curves and models.

  Example:
    >>> res = sweep(lambda m: Model(rngs=nnx.Rngs(jax.random.key(m["seed"]))),  # doctest: +SKIP
    ...             lambda m: optax.adam(m["lr"]), lambda model, b, k, m: loss(model, b), data,
    ...             members=[{"lr": lr, "seed": 0} for lr in (1e-3, 1e-2)], steps=500,
    ...             batch_size=64)
    >>> plot_curves("loss.png", res.curves("loss"), ylabel="loss", logy=True)  # doctest: +SKIP
  """
  fn = "sweep"
  _check_positive_int(fn, "steps", steps)
  if batch_size is not None:
    _check_positive_int(fn, "batch_size", batch_size)
  _check_positive_int(fn, "seed", seed, allow_zero=True)
  _check_positive_int(fn, "eval_every", eval_every, allow_zero=True)
  if log_every is None:
    log_every = _default_log_every(steps)
  _check_positive_int(fn, "log_every", log_every)
  if jax.process_count() != 1:
    raise ValueError(f"{fn}: sweeps run in one process, got process_count="
                     f"{jax.process_count()}; use train() on several hosts")
  member_list, stacked = _members(fn, members)
  labels = [_label(m) for m in member_list]
  stream = _stream(fn, train_data, batch_size=batch_size, seed=seed, shuffle=shuffle,
                   pindex=0, pcount=1, resumable=False)

  hps = {k: jnp.asarray(v) for k, v in stacked.items()}
  first = {k: v[0] for k, v in hps.items()}
  graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: model_fn(first)), wrt, ...)
  train_key, eval_key = jax.random.split(jax.random.key(seed))

  def init_one(hp):
    _, params, rest = nnx.split(model_fn(hp), wrt, ...)
    return params, rest, tx_fn(hp).init(params)

  def step_one(params, rest, opt_state, hp, batch, key):
    def objective(params):
      model = nnx.merge(graphdef, params, rest)
      loss, metrics = loss_fn(model, batch, key, hp)
      _, _, new_rest = nnx.split(model, wrt, ...)
      return loss, (dict(metrics or {}), new_rest)

    (loss, (metrics, new_rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    params, opt_state = apply_optax(tx_fn(hp), grads, opt_state, params)
    return params, new_rest, opt_state, {"loss": loss, **metrics}

  def eval_one(params, rest, hp, key):
    return dict(eval_fn(nnx.merge(graphdef, params, rest), key, hp))

  init = jax.jit(jax.vmap(init_one))

  @jax.jit
  def step_all(params, rest, opt_state, hps, batch, step):
    key = jax.random.fold_in(train_key, step)
    return jax.vmap(step_one, in_axes=(0, 0, 0, 0, None, None))(params, rest, opt_state, hps,
                                                                   batch, key)

  @jax.jit
  def eval_all(params, rest, hps, step):
    key = jax.random.fold_in(eval_key, step)
    return jax.vmap(eval_one, in_axes=(0, 0, 0, None))(params, rest, hps, key)

  params, rest, opt_state = init(hps)
  histories: list[list[dict[str, Any]]] = [[] for _ in member_list]
  last: list[dict[str, float]] = [{} for _ in member_list]

  def record(step, split, metrics):
    host = _to_float_dict(metrics)  # each value: a list over members
    for i, m in enumerate(member_list):
      rec = {k: v[i] for k, v in host.items()}
      histories[i].append({"step": step, "split": split, **rec})
      if split == "eval" or eval_fn is None:
        last[i] = rec
      if log is not None:
        log(step, split=split, member=i, **m, **rec)

  iterator = stream.factory()
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=steps, desc=desc, dynamic_ncols=True, leave=False)
  try:
    for step in range(steps):
      try:
        batch = next(iterator)
      except StopIteration:
        raise ValueError(f"{fn}: train_data ended after step {step}, before steps={steps}"
                         ) from None
      if batch_size is not None and stream.kind != "arrays":
        sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(batch)}
        if sizes != {batch_size}:
          raise ValueError(f"{fn}: batch {step} from train_data has leading sizes "
                           f"{sorted(sizes)}, expected batch_size={batch_size}")
      params, rest, opt_state, metrics = step_all(params, rest, opt_state, hps, batch,
                                                  np.int32(step))
      done = step + 1
      if done % log_every == 0 or done == steps:
        record(done, "train", metrics)
      if eval_fn is not None and ((eval_every and done % eval_every == 0) or done == steps):
        record(done, "eval", eval_all(params, rest, hps, np.int32(done)))
      if bar is not None:
        bar.update(1)
  finally:
    if bar is not None:
      bar.close()
    if stream.owned:
      _close(iterator)
  return SweepResult(members=member_list, labels=labels, histories=histories, metrics=last,
                     step=steps, graphdef=graphdef, params=params, rest=rest)


__all__ = ["SweepResult", "sweep"]
