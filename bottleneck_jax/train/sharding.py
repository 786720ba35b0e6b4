"""One device mesh for training: axes ``('data', 'fsdp')``.

Layout (data parallelism + fully-sharded parameters, as in MaxText / flax's gemma example):

* the batch is sharded over both axes, ``P(('data', 'fsdp'))`` on its leading dimension;
* a large weight (at least ``min_size`` elements) is sharded over ``'fsdp'`` on its largest
  dimension that ``fsdp`` divides; everything else (biases, small matrices, scalars) is
  replicated;
* optimizer moments follow their parameters (optax creates them with ``zeros_like``).

Under an Auto mesh XLA's partitioner inserts the all-gathers of sharded weights. Under an
Explicit mesh (the default of ``jax.make_mesh``) shardings are part of the types, so the
training step gathers the parameters explicitly (:func:`gather_params`) before the forward pass;
the gradients flow back through ``jax.reshard`` and come out sharded like the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from bottleneck_jax.kernels import sharding as _kernel_sharding

AXES = ("data", "fsdp")
BATCH_SPEC = P(AXES)
DEFAULT_MIN_SIZE = 2**18  # 262144 elements = 1 MiB in float32


def make_mesh(data: int = -1, fsdp: int = 1, *, axis_types: str = "explicit",
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A ``('data', 'fsdp')`` mesh over ``devices`` (all devices by default).

  Args:
    data: size of the data-parallel axis; ``-1`` means "all remaining devices".
    fsdp: size of the parameter-sharding axis; ``-1`` means "all remaining devices" (at most one
      of the two may be ``-1``).
    axis_types: ``"explicit"`` (shardings in the types; the JAX default) or ``"auto"`` (XLA's
      partitioner decides).
    devices: the devices; ``jax.devices()`` when ``None``.

  Returns:
    A ``jax.sharding.Mesh`` with ``data * fsdp == len(devices)``.

  Example:
    >>> mesh = make_mesh(fsdp=1)
    >>> mesh.axis_names
    ('data', 'fsdp')
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if axis_types not in ("explicit", "auto"):
    raise ValueError(f"make_mesh: axis_types must be 'explicit' or 'auto', got {axis_types!r}")
  for arg, v in (("data", data), ("fsdp", fsdp)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or (v < 1 and v != -1):
      raise ValueError(f"make_mesh: {arg} must be a positive int or -1, got {v!r}")
  if data == -1 and fsdp == -1:
    raise ValueError("make_mesh: at most one of data and fsdp may be -1, got both")
  if data == -1:
    if n % fsdp:
      raise ValueError(f"make_mesh: fsdp={fsdp} must divide the number of devices {n}")
    data = n // fsdp
  elif fsdp == -1:
    if n % data:
      raise ValueError(f"make_mesh: data={data} must divide the number of devices {n}")
    fsdp = n // data
  if data * fsdp != n:
    raise ValueError(f"make_mesh: data * fsdp must equal the number of devices {n}, got "
                     f"data={data}, fsdp={fsdp}")
  kind = AxisType.Explicit if axis_types == "explicit" else AxisType.Auto
  return jax.make_mesh((int(data), int(fsdp)), AXES, axis_types=(kind, kind), devices=devices)


_DEFAULT_MESH: dict = {}


def set_default_mesh(data: int = -1, fsdp: int = 1, *, axis_types: str = "explicit") -> None:
  """Sets the mesh that :func:`default_mesh` (and so ``train(mesh=None)``) builds.

  ``scripts/train.py --mesh data=4,fsdp=2`` calls this, so every experiment runs on that mesh
  without knowing about it. The arguments are checked when the mesh is built.
  """
  _DEFAULT_MESH.clear()
  _DEFAULT_MESH.update(data=data, fsdp=fsdp, axis_types=axis_types)


def default_mesh() -> jax.sharding.Mesh:
  """The mesh set by :func:`set_default_mesh`, else data parallelism over all devices."""
  return make_mesh(**_DEFAULT_MESH)


def parse_mesh(text: str | None) -> dict[str, int]:
  """Parses ``"data=4,fsdp=2"`` into ``{"data": 4, "fsdp": 2}`` (empty text: ``{}``)."""
  out: dict[str, int] = {}
  if not text:
    return out
  for part in text.split(","):
    if "=" not in part:
      raise ValueError(f"parse_mesh: expected axis=size pairs such as data=4,fsdp=2, got {text!r}")
    k, v = (s.strip() for s in part.split("=", 1))
    if k not in AXES:
      raise ValueError(f"parse_mesh: axis must be one of {AXES}, got {k!r}")
    try:
      out[k] = int(v)
    except ValueError:
      raise ValueError(f"parse_mesh: size of {k} must be an int, got {v!r}") from None
  return out


def is_explicit(mesh) -> bool:
  """Whether any axis of ``mesh`` has Explicit type."""
  return _kernel_sharding.is_explicit(mesh)


def batch_sharding(mesh) -> NamedSharding:
  """Sharding of a batch: leading dimension over ``('data', 'fsdp')``, the rest replicated."""
  return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh) -> NamedSharding:
  """Fully replicated sharding on ``mesh``."""
  return NamedSharding(mesh, P())


def put_replicated(tree, mesh=None):
  """Places host arrays (the same on every process) fully replicated on ``mesh``.

  Works with several processes too (``jax.make_array_from_process_local_data`` with the global
  shape equal to the local one). ``mesh`` defaults to the one set by ``jax.set_mesh``.
  """
  if mesh is None:
    mesh = jax.sharding.get_mesh()
    if mesh.empty:
      raise ValueError("put_replicated: pass mesh= or call it under `with jax.set_mesh(mesh):`")
  sharding = replicated(mesh)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, x, x.shape)
  return jax.tree.map(one, tree)


def param_spec(shape: Sequence[int], mesh, *, min_size: int = DEFAULT_MIN_SIZE) -> P:
  """Partition spec of one parameter: its largest ``fsdp``-divisible dimension when large.

  Args:
    shape: the parameter's shape.
    mesh: the mesh (its ``fsdp`` axis size is used).
    min_size: parameters with fewer elements stay replicated.

  Returns:
    ``P()`` (replicated) or a spec with ``'fsdp'`` on one dimension.
  """
  fsdp = int(mesh.shape["fsdp"])
  shape = tuple(int(s) for s in shape)
  if fsdp == 1 or not shape or math.prod(shape) < min_size:
    return P()
  # Largest dimension first; ties go to the last (output) dimension.
  order = sorted(range(len(shape)), key=lambda i: (shape[i], i), reverse=True)
  for i in order:
    if shape[i] % fsdp == 0:
      spec = [None] * len(shape)
      spec[i] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(state, mesh, *, min_size: int = DEFAULT_MIN_SIZE):
  """A pytree of ``NamedSharding`` matching ``state`` (arrays or ``ShapeDtypeStruct`` leaves).

  Non-array leaves (PRNG key data included) are replicated.
  """
  def one(x):
    shape = getattr(x, "shape", ())
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
      return replicated(mesh)
    return NamedSharding(mesh, param_spec(shape, mesh, min_size=min_size))
  return jax.tree.map(one, state)


def shard_state(state, mesh, *, min_size: int = DEFAULT_MIN_SIZE):
  """Places every array of ``state`` on ``mesh`` following :func:`state_shardings`."""
  return jax.device_put(state, state_shardings(state, mesh, min_size=min_size))


def abstract_state(state, mesh, *, min_size: int = DEFAULT_MIN_SIZE):
  """``ShapeDtypeStruct`` leaves carrying the shardings of :func:`state_shardings`.

  This is the restore target for Orbax: each host then reads only its own shards.
  """
  shardings = state_shardings(state, mesh, min_size=min_size)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def gather_params(tree):
  """Inside a jitted step under an Explicit mesh: all-gathers every sharded array of ``tree``.

  A no-op for arrays that are already replicated, and outside an Explicit mesh.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not is_explicit(mesh):
    return tree

  def one(x):
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec = getattr(sharding, "spec", None)
    if spec is None or all(s is None for s in spec):
      return x
    return jax.reshard(x, P())
  return jax.tree.map(one, tree)


def has_sharded_leaf(tree) -> bool:
  """Whether any array in ``tree`` is sharded (not fully replicated)."""
  for x in jax.tree.leaves(tree):
    sharding = getattr(x, "sharding", None)
    if sharding is not None and not sharding.is_fully_replicated:
      return True
  return False


def check_batch_divisible(batch_size: int, mesh, *, fn: str = "train") -> None:
  """Raises a clear error when the global batch does not split evenly over the mesh."""
  n = int(mesh.size)
  if batch_size % n:
    raise ValueError(f"{fn}: batch_size must be a multiple of the number of devices in the mesh "
                     f"({n}: data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}), got "
                     f"{batch_size}")


__all__ = [
    "AXES",
    "BATCH_SPEC",
    "abstract_state",
    "batch_sharding",
    "check_batch_divisible",
    "default_mesh",
    "gather_params",
    "has_sharded_leaf",
    "is_explicit",
    "make_mesh",
    "param_spec",
    "parse_mesh",
    "put_replicated",
    "replicated",
    "set_default_mesh",
    "shard_state",
    "state_shardings",
]
