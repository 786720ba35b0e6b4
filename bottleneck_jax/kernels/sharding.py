"""Running kernels on sharded inputs.

``pallas_call`` refuses Explicit mesh axes ("requires all mesh axes to be Manual") and, under an
Auto mesh, silently replicates its output. :func:`batch_shard_map` wraps a per-row kernel in
``jax.shard_map`` over the leading (batch) axis of selected arguments, so that each device runs
the kernel on its own rows and the output keeps the batch sharding. Outside a mesh it simply
calls the function.

Under an Explicit mesh (what ``train()`` runs on: the batch sharded over ``("data", "fsdp")``)
JAX cannot infer the output sharding of an integer gather or scatter-add whose indices are
sharded (batch-sharded token ids into a replicated table, say), nor trace ``jnp.searchsorted``
on sharded queries. :func:`take`, :func:`segment_sum` and :func:`searchsorted` name the output
sharding there, :func:`replicate` gathers an array to every device; outside an Explicit mesh
they are the plain ``jnp`` / ``jax.ops`` calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
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


def _mesh_axes(entry) -> tuple[str, ...]:
  """The mesh axes one PartitionSpec entry names (``None``, a name or a tuple of names)."""
  if entry is None:
    return ()
  return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _padded(spec, ndim: int) -> tuple:
  """``spec``'s entries padded with ``None`` to ``ndim`` entries (``None`` spec: all ``None``)."""
  spec = () if spec is None else tuple(spec)
  return spec + (None,) * (ndim - len(spec))


def take(table, idx):
  """``table[idx]`` along axis 0 (``jnp.take(table, idx, axis=0)``), also on an Explicit mesh.

  Under an Explicit mesh the output's leading ``idx.ndim`` axes are sharded like ``idx`` (batch-
  sharded indices give batch-sharded rows) and its other axes like ``table``'s axes ``1:``
  (a row-sharded table gathered with replicated indices gives rows replicated over the gathered
  axis); a mesh axis that ``idx`` already uses is dropped from the table's part. Outside such a
  mesh this is ``jnp.take(table, idx, axis=0)``.

  Args:
    table: the array to gather rows from, ``[K, *rest]``.
    idx: integer indices into axis 0 of ``table``, any shape ``[*batch]``, in ``[0, K)`` (what
      happens out of range differs between the two paths: ``jnp.take`` fills, a gather clamps).

  Returns:
    ``[*batch, *rest]``.
  """
  idx_spec, table_spec = explicit_spec(idx), explicit_spec(table)
  if idx_spec is None and table_spec is None:
    return jnp.take(table, idx, axis=0)
  lead = _padded(idx_spec, idx.ndim)
  used = {a for entry in lead for a in _mesh_axes(entry)}
  rest = tuple(None if used.intersection(_mesh_axes(entry)) else entry
               for entry in _padded(table_spec, table.ndim)[1:])
  return table.at[idx].get(out_sharding=P(*lead, *rest))


def segment_sum(data, segment_ids, num_segments: int):
  """``jax.ops.segment_sum`` over the rows of ``data``, also with sharded ids on an Explicit mesh.

  Ids outside ``[0, num_segments)`` (negative ones included) are dropped, on both paths. Under an
  Explicit mesh (per-row ids sharded like a batch, say) the ``[num_segments, ...]`` sums come out
  replicated.

  Args:
    data: ``[N, *rest]`` values.
    segment_ids: ``[N]`` integer segment of each row.
    num_segments: number of segments ``S`` (static).

  Returns:
    ``[S, *rest]`` per-segment sums.
  """
  if explicit_spec(segment_ids) is None:
    return jax.ops.segment_sum(data, segment_ids, num_segments=num_segments)
  out = jnp.zeros((num_segments, *data.shape[1:]), data.dtype)
  # A scatter wraps negative indices around; segment_sum drops them.
  segment_ids = jnp.where(segment_ids < 0, num_segments, segment_ids)
  return out.at[segment_ids].add(data, mode="drop", out_sharding=P())


def replicate(a):
  """``a`` resharded to be fully replicated when it is sharded on an Explicit mesh, else ``a``.

  For global work over a sharded axis that has no sharded formulation, e.g. pairwise ``N x N``
  comparisons of batch rows (a sharded ``a[:, None] - a[None]`` is illegal) or sampling from a
  distribution over all rows.
  """
  spec = explicit_spec(a)
  if spec is None or all(entry is None for entry in spec):
    return a
  return jax.sharding.reshard(a, P())


def searchsorted(a, v, *, side: str = "left"):
  """``jnp.searchsorted(a, v, side=side)``, also with queries ``v`` sharded on an Explicit mesh.

  JAX's searchsorted cannot trace sharded queries there: they are gathered to every device
  (:func:`replicate`) and the positions resharded like ``v``.
  """
  spec = explicit_spec(v)
  if spec is None:
    return jnp.searchsorted(a, v, side=side)
  return jax.sharding.reshard(jnp.searchsorted(a, replicate(v), side=side), spec)


__all__ = ["batch_axes", "batch_shard_map", "current_mesh", "explicit_spec", "is_explicit",
           "replicate", "searchsorted", "segment_sum", "take"]
