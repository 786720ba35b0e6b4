"""Running kernels on sharded inputs.

``pallas_call`` refuses Explicit mesh axes ("requires all mesh axes to be Manual") and, under an
Auto mesh, silently replicates its output. :func:`batch_shard_map` wraps a per-row kernel in
``jax.shard_map`` over the leading (batch) axis of selected arguments, so that each device runs
the kernel on its own rows and the output keeps the batch sharding. Outside a mesh it simply
calls the function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P


def current_mesh():
  """The abstract mesh set by ``jax.set_mesh`` (or ``None`` when there is none)."""
  mesh = jax.sharding.get_abstract_mesh()
  return None if mesh.empty else mesh


def is_explicit(mesh) -> bool:
  """Whether any axis of ``mesh`` has Explicit type (``jax.make_mesh``'s default)."""
  return mesh is not None and any(t == AxisType.Explicit for t in mesh.axis_types)


def explicit_spec(a):
  """``a``'s PartitionSpec when it lives on an Explicit mesh, else ``None``.

  Under Explicit axes a contraction over a sharded dimension (a weight gradient summing the
  batch-sharded rows, say) must name its output sharding (``out_sharding=``); outside such a
  mesh there is nothing to name.
  """
  try:
    sharding = jax.typeof(a).sharding
  except Exception:  # noqa: BLE001 - no sharding information
    return None
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or mesh.empty or not is_explicit(mesh):
    return None
  return sharding.spec


def batch_axes(mesh, batch_size: int) -> tuple[str, ...]:
  """Mesh axes (in order) to shard a batch of ``batch_size`` rows over.

  Takes the longest prefix of the mesh's axes whose product divides ``batch_size``.
  """
  axes: list[str] = []
  prod = 1
  for name, size in mesh.shape.items():
    if batch_size % (prod * size) == 0:
      axes.append(name)
      prod *= size
    else:
      break
  return tuple(axes)


def batch_shard_map(fn: Callable, args: Sequence, *, batched: Sequence[bool],
                    out_batched, batch_size: int):
  """Calls ``fn(*args)``, inside ``jax.shard_map`` over the batch axis when a mesh is active.

  Args:
    fn: the kernel call; its batched inputs and outputs have the batch on axis 0.
    args: positional arrays.
    batched: per argument, whether axis 0 is the batch (else it is replicated).
    out_batched: pytree of bools matching ``fn``'s output: whether axis 0 is the batch.
    batch_size: the size of the batch axis.
  """
  mesh = current_mesh()
  if mesh is None:
    return fn(*args)
  axes = batch_axes(mesh, batch_size)
  if not axes or math.prod(mesh.shape[a] for a in axes) == 1:
    # Cannot split this batch over the mesh: run replicated on gathered inputs.
    axes = ()
  spec_b = P(axes if axes else None)
  in_specs = tuple(spec_b if b else P() for b in batched)
  out_specs = jax.tree.map(lambda b: spec_b if b else P(), out_batched)
  if is_explicit(mesh):
    args = tuple(jax.sharding.reshard(a, s) for a, s in zip(args, in_specs))
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                       check_vma=False)(*args)


__all__ = ["batch_axes", "batch_shard_map", "current_mesh", "explicit_spec", "is_explicit"]
