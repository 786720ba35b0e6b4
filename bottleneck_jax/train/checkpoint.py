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

Faults:

* every checkpoint carries ``bottleneck_manifest.json`` (size and sha256 of each file), written
  into the finished temporary folder just before Orbax's atomic rename;
  :meth:`Checkpointer.latest_intact_step` verifies the newest checkpoints and moves a truncated,
  bit-flipped or partial one into ``directory/damaged/`` (a :class:`CheckpointWarning`), so a
  resume continues from the previous intact step; with none left, :class:`CheckpointError`;
* a failed write (read-only or full disk) raises :class:`CheckpointError`, one line naming the
  path, from ``save``, ``wait_until_finished`` or ``close``. Orbax's directories are created in
  the caller's thread: created in the background, a failed ``mkdir`` leaves Orbax's writer
  threads waiting forever for a "directory created" signal, and the process never exits.

Restoring goes into an *abstract* target: ``ShapeDtypeStruct`` leaves (built from
``nnx.eval_shape``) that carry the shardings the arrays should have, so each host reads only its
shards. Typed PRNG keys (``nnx.Rngs`` state) are stored as their raw key data and wrapped again
on restore.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import time
import warnings
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


class CheckpointError(OSError):
  """A checkpoint could not be written or read; the message is one line naming the path."""


class CheckpointWarning(UserWarning):
  """A damaged or unverifiable checkpoint was moved aside."""


MANIFEST = "bottleneck_manifest.json"
DAMAGED = "damaged"
# Orbax rewrites these when it commits the step (after the manifest): checked as JSON only.
_REWRITTEN_AT_COMMIT = ("_CHECKPOINT_METADATA", "commit_success.txt")


def _reason(e: BaseException) -> str:
  """One line: the innermost OS error of the chain (``[Errno 28] No space left on device:
  '/path'``), else the exception's type and first line."""
  seen, cur, found = set(), e, None
  while cur is not None and id(cur) not in seen:
    seen.add(id(cur))
    if isinstance(cur, OSError) and cur.strerror and not isinstance(cur, CheckpointError):
      found = cur
    cur = cur.__cause__ or cur.__context__
  if found is not None:
    text = f"[Errno {found.errno}] {found.strerror}" if found.errno else str(found.strerror)
    return text + (f": '{found.filename}'" if found.filename else "")
  first = (str(e).strip().splitlines() or [""])[0]
  return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def write_manifest(step_dir: str | os.PathLike, step: int) -> Path:
  """Writes ``bottleneck_manifest.json`` (size and sha256 of every file) into ``step_dir``.

  :class:`Checkpointer` calls it when a save is complete and before Orbax renames the temporary
  folder into place, so a finished checkpoint always carries its manifest.
  """
  step_dir = Path(step_dir)
  files = {}
  for f in sorted(step_dir.rglob("*")):
    rel = f.relative_to(step_dir).as_posix()
    if f.is_file() and rel not in (MANIFEST, *_REWRITTEN_AT_COMMIT) and not f.name.startswith(
        f".{MANIFEST}"):
      files[rel] = {"size": f.stat().st_size, "sha256": _sha256(f)}
  text = json.dumps({"format": 1, "step": int(step), "files": files}, indent=1, sort_keys=True)
  tmp = step_dir / f".{MANIFEST}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, step_dir / MANIFEST)
  return step_dir / MANIFEST


def verify_manifest(step_dir: str | os.PathLike) -> str | None:
  """``None`` when every file of ``step_dir``'s manifest is there with its size and sha256;
  otherwise the first problem in words (``"no manifest"`` when there is none)."""
  step_dir = Path(step_dir)
  try:
    manifest = json.loads((step_dir / MANIFEST).read_text())
    files = manifest["files"]
  except FileNotFoundError:
    return "no manifest"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"unreadable manifest ({_reason(e)})"
  if not files:
    return "empty manifest"
  for rel, want in sorted(files.items()):
    f = step_dir / rel
    try:
      size = f.stat().st_size
    except FileNotFoundError:
      return f"missing file {rel}"
    except OSError as e:
      return f"unreadable file {rel} ({_reason(e)})"
    if size != want.get("size"):
      return f"{rel} has {size} bytes, expected {want.get('size')}"
    try:
      digest = _sha256(f)
    except OSError as e:
      return f"unreadable file {rel} ({_reason(e)})"
    if digest != want.get("sha256"):
      return f"checksum mismatch in {rel}"
  try:
    json.loads((step_dir / "_CHECKPOINT_METADATA").read_text())
  except FileNotFoundError:
    pass
  except (OSError, ValueError) as e:
    return f"unreadable _CHECKPOINT_METADATA ({_reason(e)})"
  return None


class Checkpointer:
  """Saves and restores ``(state, data position, meta)`` every ``every`` steps, keeping ``keep``.

  Every checkpoint carries a manifest (size and sha256 of each file, written before Orbax's
  atomic rename). :meth:`latest_intact_step` checks the newest checkpoints against their
  manifests and moves a damaged or partial one aside (into ``directory/damaged/``) with a
  :class:`CheckpointWarning`, so a resume continues from the newest intact step. A failed write
  raises :class:`CheckpointError` (one line naming the path) instead of hanging.

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
    self._async = bool(async_save)
    self._saving: int | None = None
    self._failure: CheckpointError | None = None
    self._reported = False
    self._closed = False
    if self.directory.exists() and not self.directory.is_dir():
      raise CheckpointError(f"cannot use {self.directory} as a checkpoint directory: it is a "
                            "file")
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every,
        max_to_keep=keep,
        # Always Orbax's async checkpointer (the manifest hook needs it); ``async_save=False``
        # waits after each save. Directories are created in the caller's thread: created in
        # the background, a failed mkdir leaves Orbax's writer threads waiting for a signal
        # that never comes, and the process never exits.
        enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(create_directories_asynchronously=False,
                                       post_finalization_callback=self._seal),
        cleanup_tmp_directories=True,
        create=True,
    )
    self._last_saved: int | None = None
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options,
                                            item_names=("state", "data", "meta"))
    except OSError as e:
      raise CheckpointError(f"cannot use {self.directory} as a checkpoint directory: "
                            f"{_reason(e)}") from e

  # -- failures ------------------------------------------------------------------------------
  def _fail(self, what: str, e: BaseException) -> CheckpointError:
    err = CheckpointError(f"checkpoint {what} failed in {self.directory}: {_reason(e)}")
    err.__cause__ = e
    if self._failure is None:
      self._failure = err
    return err

  def _raise(self, err: CheckpointError):
    self._reported = True
    raise err

  def _seal(self) -> None:
    """Orbax's post-finalization hook: the manifest goes into the finished temporary folder,
    which Orbax then renames into place (so the rename publishes both at once)."""
    step = self._saving
    if step is None or jax.process_index() != 0:
      return
    tmps = sorted(self.directory.glob(f"{step}.orbax-checkpoint-tmp*"))
    target = tmps[-1] if tmps else self.directory / str(step)
    if target.is_dir():
      write_manifest(target, step)

  # -- queries -------------------------------------------------------------------------------
  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or ``None`` (not verified: see
    :meth:`latest_intact_step`)."""
    return self._manager.latest_step()

  @property
  def last_saved(self) -> int | None:
    """The step of the newest checkpoint written or being written by this object, else the
    newest one on disk."""
    return self._last_saved if self._last_saved is not None else self.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of all complete checkpoints kept."""
    return list(self._manager.all_steps())

  def verify(self, step: int) -> str | None:
    """``None`` when checkpoint ``step`` matches its manifest, else the problem in words."""
    return verify_manifest(self.directory / str(int(step)))

  def _move_aside(self, step: int, why: str) -> Path:
    dest_dir = self.directory / DAMAGED
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{int(step)}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.replace(self.directory / str(int(step)), dest)
    warnings.warn(f"checkpoint step {step} in {self.directory} is damaged ({why}); moved it "
                  f"to {dest}", CheckpointWarning, stacklevel=3)
    return dest

  def latest_intact_step(self) -> int | None:
    """The newest checkpoint that matches its manifest; newer damaged or partial ones are
    moved aside (with a :class:`CheckpointWarning`). A checkpoint without manifest (written by
    an older version) counts only when no verified one exists.

    Raises:
      CheckpointError: checkpoints exist but none is intact (all were moved aside).
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      return None
    problems, unverified = [], []
    main = jax.process_index() == 0
    for step in steps:
      why = self.verify(step)
      if why is None:
        for s in unverified:  # newer than a verified step: it would be saved again
          if main:
            self._move_aside(s, "no manifest")
        if main and (problems or unverified):
          self._manager.reload()
        return step
      if why == "no manifest":
        unverified.append(step)
        continue
      problems.append(f"step {step}: {why}")
      if main:
        self._move_aside(step, why)
    if main and problems:
      self._manager.reload()
    if unverified:
      warnings.warn(f"checkpoint step {unverified[0]} in {self.directory} has no manifest "
                    "(written by an older version): restoring it unverified",
                    CheckpointWarning, stacklevel=2)
      return unverified[0]
    raise CheckpointError(f"no intact checkpoint left in {self.directory} ("
                          f"{'; '.join(problems)}); the damaged ones are in "
                          f"{self.directory / DAMAGED}")

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

    Raises:
      CheckpointError: this write, or the previous background one, failed.
    """
    if self._failure is not None:
      self._raise(self._failure)
    if not force and not self.should_save(step):
      return False
    if int(step) == self._last_saved or int(step) in self._manager.all_steps():
      return False  # already saved (or being saved): Orbax refuses a step twice
    self._last_saved = int(step)
    meta = _jsonable({**dict(meta or {}), "step": int(step)})
    data = _jsonable({"state": data_state})
    try:
      self._manager.wait_until_finished()  # the previous save's errors belong to it
    except Exception as e:  # noqa: BLE001 - any failure of a write is reported the same way
      self._raise(self._fail("write", e))
    self._saving = int(step)
    try:
      started = bool(self._manager.save(
          int(step),
          args=ocp.args.Composite(
              state=ocp.args.StandardSave(_keys_to_data(state)),
              data=ocp.args.JsonSave(data),
              meta=ocp.args.JsonSave(meta),
          ),
          force=True))  # the interval is decided above (Orbax would also save the first step)
      if not self._async:
        self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      self._raise(self._fail("write", e))
    return started

  def read_meta(self, step: int | None = None) -> dict:
    """The meta dict of checkpoint ``step`` (the latest by default), without its arrays: check
    a checkpoint's configuration before restoring it."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"Checkpointer.read_meta: no checkpoint in {self.directory}")
    try:
      restored = self._manager.restore(int(step),
                                       args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"reading checkpoint step {step} failed in {self.directory}: "
                            f"{_reason(e)}") from e
    return dict(restored["meta"] or {})

  def restore(self, target, *, step: int | None = None) -> tuple[Any, Any, dict]:
    """Restores ``(state, data_state, meta)`` from ``step`` (the newest intact by default).

    Args:
      target: the abstract state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings), e.g.
        from ``nnx.state(nnx.eval_shape(make_model_and_optimizer))`` and
        :func:`bottleneck_jax.train.sharding.abstract_state`; concrete arrays work too.
      step: which checkpoint; :meth:`latest_intact_step` when ``None``.

    Returns:
      The restored state (same structure as ``target``), the data state saved with it, and the
      meta dict.

    Raises:
      FileNotFoundError: when there is no checkpoint.
      CheckpointError: the checkpoint cannot be read (or none is intact).
    """
    step = self.latest_intact_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"Checkpointer.restore: no checkpoint in {self.directory}")
    abstract = jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct) or _is_key(x) else
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), target)
    try:
      restored = self._manager.restore(
          int(step),
          args=ocp.args.Composite(
              state=ocp.args.StandardRestore(_abstract_keys_to_data(abstract)),
              data=ocp.args.JsonRestore(),
              meta=ocp.args.JsonRestore(),
          ))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"restoring checkpoint step {step} failed in {self.directory}: "
                            f"{_reason(e)}") from e
    state = _data_to_keys(restored["state"], abstract)
    data = restored["data"] or {}
    return state, data.get("state"), dict(restored["meta"] or {})

  # -- lifecycle -----------------------------------------------------------------------------
  def wait_until_finished(self) -> None:
    """Blocks until every asynchronous save is on disk.

    Raises:
      CheckpointError: a background write failed.
    """
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      self._raise(self._fail("write", e))

  def close(self) -> None:
    """Waits for pending saves and releases the manager.

    Raises:
      CheckpointError: a background write failed and was not reported yet.
    """
    if self._closed:
      return
    self._closed = True
    err = None
    for call in (self._manager.wait_until_finished, self._manager.close):
      try:
        call()
      except Exception as e:  # noqa: BLE001
        err = err or self._fail("write", e)
    if err is not None and not self._reported:
      self._raise(self._failure or err)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False


__all__ = ["CheckpointError", "CheckpointWarning", "Checkpointer", "code_version",
           "describe_code", "same_code", "verify_manifest", "write_manifest"]
