"""Training plumbing shared by the experiments: every model is trained by
:func:`bottleneck_jax.train.train`.

So every experiment that trains runs on the mesh that ``scripts/train.py --mesh`` (or
:func:`bottleneck_jax.train.set_default_mesh`) sets, writes Orbax checkpoints under
``workdir/checkpoints/NAME`` (one folder per trained model: variants, sweep members), resumes
from them after a kill, and refuses a checkpoint of another configuration or code version.

Curves that a summary needs (the training loss of every step, for instance) are read back from
``metrics.jsonl`` rather than kept in memory: after a kill and a resume the file holds the whole
run (the resumed steps are replayed bit-identically and logged once), so the summary of a
resumed run equals the uninterrupted run's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from bottleneck_jax.experiments.registry import RunContext


def checkpoint_every(config: Mapping[str, Any], steps: int) -> int:
  """``config["checkpoint_every"]`` when set (> 0), else a quarter of the run."""
  every = int(config.get("checkpoint_every", 0) or 0)
  return every if every > 0 else max(1, steps // 4)


def fit(ctx: RunContext, name: str, model_fn: Callable[[], nnx.Module], tx, loss_fn: Callable,
        data, *, steps: int, batch_size: int | None = None, tags: Mapping[str, Any] | None = None,
        wrt: Any = nnx.Param, eval_fn: Callable | None = None, eval_every: int = 0,
        log_every: int | None = None, seed: int | None = None, desc: str | None = None):
  """One :func:`~bottleneck_jax.train.train` call of an experiment.

  Args:
    ctx: the run context (work directory, configuration, logging).
    name: the model's checkpoint folder under ``ctx.checkpoint_dir`` (``""``: the folder itself).
    model_fn, tx, loss_fn, data: as for ``train`` (``data``: a dict of arrays or a zero-arg
      callable returning a deterministic iterator of batches).
    steps: optimisation steps.
    batch_size: the global batch size.
    tags: extra fields of every logged record (``{"variant": "fused"}``, ``{"member": 3}``);
      they also enter the checkpoint's configuration guard.
    wrt: the trained variables.
    eval_fn, eval_every: as for ``train``.
    log_every: interval of the training records (1 for per-step curves).
    seed: the data-order and step-key seed (``ctx.seed`` by default).
    desc: the progress bar's label.

  Returns:
    The :class:`~bottleneck_jax.train.TrainResult`.
  """
  from bottleneck_jax.train import train
  tags = dict(tags or {})

  def log(step, **metrics):
    ctx.log(step, **tags, **metrics)

  directory = ctx.checkpoint_dir / name if name else ctx.checkpoint_dir
  return train(model_fn, tx, loss_fn, data, steps=int(steps), batch_size=batch_size,
               seed=ctx.seed if seed is None else int(seed), wrt=wrt, eval_fn=eval_fn,
               eval_every=eval_every, checkpoint_dir=directory,
               checkpoint_every=checkpoint_every(ctx.config, int(steps)),
               keep=int(ctx.config.get("keep", 2)), log=log,
               log_every=log_every, progress=ctx.progress, desc=desc or name or "train",
               config={**ctx.config, **{f"tag_{k}": v for k, v in tags.items()}})


def logged_curve(ctx: RunContext, metric: str, *, split: str = "train", **tags
                 ) -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of ``metric`` in ``metrics.jsonl`` for the records with ``split`` and
  ``tags``; the last record of a step wins. Empty on processes other than 0 (they log nothing).
  """
  recs: dict[int, float] = {}
  if ctx.is_main_process and ctx.metrics_path.exists():
    for line in ctx.metrics_path.read_text().splitlines():
      try:
        r = json.loads(line)
      except json.JSONDecodeError:
        continue
      if r.get("split") != split or metric not in r:
        continue
      if all(r.get(k) == v for k, v in tags.items()):
        recs[int(r["step"])] = float(r[metric])
  steps = np.asarray(sorted(recs), np.int64)
  return steps, np.asarray([recs[s] for s in steps.tolist()], np.float64)


def replicated(tree, mesh):
  """Host arrays placed fully replicated on ``mesh`` (evaluation inputs)."""
  from bottleneck_jax.train import put_replicated
  return put_replicated(jax.tree.map(np.asarray, tree), mesh)


def batch_stream(select: Callable[[np.random.Generator], Mapping[str, np.ndarray]], *, seed: int
                 ) -> Callable[[], Any]:
  """A zero-arg factory of an endless, deterministic iterator of batches.

  ``select(rng)`` draws one batch with the iterator's own ``numpy`` generator (seeded with
  ``seed``), so a resume re-creates the stream and skips the batches already used.
  """
  def factory():
    rng = np.random.default_rng(seed)
    while True:
      yield {k: np.asarray(v) for k, v in select(rng).items()}
  return factory


__all__ = ["batch_stream", "checkpoint_every", "fit", "logged_curve", "replicated"]
