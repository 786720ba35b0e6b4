"""Checkpoints that survive a kill: a small module around ``orbax.checkpoint.CheckpointManager``.

One checkpoint holds everything a run needs to continue exactly where it stopped:

* ``state``: the model and optimizer state (``nnx.state``: parameters, Adam moments, step count,
  any RNG state inside the model), saved with ``ocp.args.StandardSave``;
* ``data``: the data-iterator position (the JSON of grain's ``get_state()``), saved with
  ``ocp.args.JsonSave``; it is snapshotted when ``save`` is called, so a background write never
  sees a later position;
* ``meta``: the step, the seed, the configuration and the last metrics (``ocp.args.JsonSave``).

Saves are asynchronous (the step loop goes on while the arrays are written) and atomic: Orbax
writes into a temporary folder and renames it when complete, so a kill in the middle of a save
leaves the previous checkpoint as the latest one (temporary leftovers are cleaned on the next
start). ``save_interval_steps`` and ``max_to_keep`` give "every N steps, keep K". Call
:meth:`Checkpointer.wait_until_finished` (or use it as a context manager) before exit.

Restoring goes into an *abstract* target: ``ShapeDtypeStruct`` leaves (built from
``nnx.eval_shape``) that carry the shardings the arrays should have, so each host reads only its
shards. Typed PRNG keys (``nnx.Rngs`` state) are stored as their raw key data and wrapped again
on restore.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _keys_to_data(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_keys_to_data(tree):
  def one(x):
    if not _is_key(x):
      return x
    data = jax.eval_shape(jax.random.key_data, x)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=getattr(x, "sharding", None))
  return jax.tree.map(one, tree)


def _data_to_keys(tree, target):
  def one(x, t):
    if not _is_key(t):
      return x
    impl = jax.random.key_impl(t) if not isinstance(t, jax.ShapeDtypeStruct) else t.dtype._impl
    return jax.random.wrap_key_data(x, impl=impl)
  return jax.tree.map(one, tree, target)


def _jsonable(obj):
  """A JSON round trip (deep copy; numpy scalars become Python numbers)."""
  def default(o):
    if isinstance(o, (np.generic,)):
      return o.item()
    if isinstance(o, np.ndarray):
      return o.tolist()
    if isinstance(o, bytes):
      return o.decode()
    if hasattr(o, "tolist"):
      return np.asarray(o).tolist()
    return str(o)
  return json.loads(json.dumps(obj, default=default))


@functools.cache
def code_version() -> dict[str, str | None]:
  """The code that runs: ``{"version": bottleneck_jax.__version__, "commit": git HEAD}``.

  ``commit`` is ``None`` outside a git checkout (an installed wheel) or without ``git``.
  """
  import bottleneck_jax
  commit = None
  root = Path(bottleneck_jax.__file__).resolve().parents[1]
  if (root / ".git").exists():
    try:
      out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=10, check=False)
      commit = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
      commit = None
  return {"version": str(bottleneck_jax.__version__), "commit": commit}


def same_code(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
  """Whether ``saved`` (a :func:`code_version` stored earlier) is the code of ``current``:
  same version, and same commit where both are known. Unknown saved code is not the same."""
  if not isinstance(saved, Mapping) or saved.get("version") != current.get("version"):
    return False
  a, b = saved.get("commit"), current.get("commit")
  return a is None or b is None or a == b


def describe_code(code: Mapping[str, Any] | None) -> str:
  """``bottleneck_jax 0.1.0 (commit 1234abcd)`` for messages."""
  if not isinstance(code, Mapping):
    return "an unknown version"
  commit = code.get("commit")
  return f"bottleneck_jax {code.get('version')}" + (f" (commit {commit[:12]})" if commit else "")


class Checkpointer:
  """Saves and restores ``(state, data position, meta)`` every ``every`` steps, keeping ``keep``.

  Args:
    directory: where the numbered checkpoint folders go (created when missing).
    every: save interval in steps (``save`` with ``force=True`` saves regardless).
    keep: how many of the latest checkpoints to keep.
    async_save: write in a background thread (the default).

  Example:
    >>> with Checkpointer("/tmp/ckpt", every=100, keep=2) as ckpt:   # doctest: +SKIP
    ...   ckpt.save(step, nnx.state((model, optimizer)), data_state=it.get_state(),
    ...             meta={"seed": 0})
  """

  def __init__(self, directory: str | os.PathLike, *, every: int = 1, keep: int = 2,
               async_save: bool = True):
    if not isinstance(every, int) or every < 1:
      raise ValueError(f"Checkpointer: every must be a positive int, got {every!r}")
    if not isinstance(keep, int) or keep < 1:
      raise ValueError(f"Checkpointer: keep must be a positive int, got {keep!r}")
    self.directory = Path(directory).absolute()
    self.every = int(every)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every,
        max_to_keep=keep,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
    self._last_saved: int | None = None
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data", "meta"))

  # -- queries -------------------------------------------------------------------------------
  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or ``None``."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of all complete checkpoints kept."""
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Whether ``save(step)`` would write: ``step`` is a multiple of ``every``."""
    return int(step) % self.every == 0 and int(step) not in self._manager.all_steps()

  def reached_preemption(self, step: int) -> bool:
    """Whether a preemption signal arrived (all hosts agree at this step)."""
    return bool(self._manager.reached_preemption(step))

  # -- save / restore ------------------------------------------------------------------------
  def save(self, step: int, state, *, data_state: Any = None,
           meta: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Saves a checkpoint at ``step`` when the interval says so (or ``force``).

    Args:
      step: the training step (the number of updates done).
      state: a pytree of arrays, e.g. ``nnx.state((model, optimizer))``.
      data_state: the data iterator's ``get_state()`` (JSON-serialisable), or ``None``.
      meta: JSON-serialisable extras (seed, config, metrics); ``step`` is added.
      force: save even when the interval policy says no.

    Returns:
      Whether a save was started.
    """
    if not force and not self.should_save(step):
      return False
    if int(step) == self._last_saved or int(step) in self._manager.all_steps():
      return False  # already saved (or being saved): Orbax refuses a step twice
    self._last_saved = int(step)
    meta = _jsonable({**dict(meta or {}), "step": int(step)})
    data = _jsonable({"state": data_state})
    return bool(self._manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_keys_to_data(state)),
            data=ocp.args.JsonSave(data),
            meta=ocp.args.JsonSave(meta),
        ),
        force=True))  # the interval is decided above (Orbax would also save the first step)

  def read_meta(self, step: int | None = None) -> dict:
    """The meta dict of checkpoint ``step`` (the latest by default), without its arrays: check
    a checkpoint's configuration before restoring it."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"Checkpointer.read_meta: no checkpoint in {self.directory}")
    restored = self._manager.restore(int(step),
                                     args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored["meta"] or {})

  def restore(self, target, *, step: int | None = None) -> tuple[Any, Any, dict]:
    """Restores ``(state, data_state, meta)`` from ``step`` (the latest by default).

    Args:
      target: the abstract state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings), e.g.
        from ``nnx.state(nnx.eval_shape(make_model_and_optimizer))`` and
        :func:`bottleneck_jax.train.sharding.abstract_state`; concrete arrays work too.
      step: which checkpoint; the latest when ``None``.

    Returns:
      The restored state (same structure as ``target``), the data state saved with it, and the
      meta dict.

    Raises:
      FileNotFoundError: when there is no checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"Checkpointer.restore: no checkpoint in {self.directory}")
    abstract = jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct) or _is_key(x) else
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), target)
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract_keys_to_data(abstract)),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore(),
        ))
    state = _data_to_keys(restored["state"], abstract)
    data = restored["data"] or {}
    return state, data.get("state"), dict(restored["meta"] or {})

  # -- lifecycle -----------------------------------------------------------------------------
  def wait_until_finished(self) -> None:
    """Blocks until every asynchronous save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False


__all__ = ["Checkpointer", "code_version", "describe_code", "same_code"]
