"""Test utilities: check that every implementation of an op agrees with the reference.

Used by the test-suite and available to users who add their own implementation::

    from bottleneck_jax.kernels import testing
    testing.assert_implementations_agree(
        lambda x, w, *, implementation: my_op(x, w, implementation=implementation),
        (x, w), implementations=("xla", "pallas"), rtol=1e-5, atol=1e-5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _tols(dtype, rtol, atol):
  default = {jnp.dtype(jnp.bfloat16): 2e-2, jnp.dtype(jnp.float16): 5e-3}.get(
      jnp.dtype(dtype), 2e-5)
  return (default if rtol is None else rtol), (default if atol is None else atol)


def _float_leaves(tree):
  return [x for x in jax.tree.leaves(tree)
          if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]


def assert_trees_close(actual, expected, *, rtol: float, atol: float, what: str = "") -> None:
  """``np.testing.assert_allclose`` over two pytrees (compared in float64)."""
  la, lb = jax.tree.leaves(actual), jax.tree.leaves(expected)
  assert len(la) == len(lb), f"{what}: different number of leaves {len(la)} vs {len(lb)}"
  for i, (a, b) in enumerate(zip(la, lb)):
    a = np.asarray(a, dtype=np.float64) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) \
        else np.asarray(a)
    b = np.asarray(b, dtype=np.float64) if jnp.issubdtype(jnp.asarray(b).dtype, jnp.floating) \
        else np.asarray(b)
    assert a.shape == b.shape, f"{what} leaf {i}: shape {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what} leaf {i}")


def assert_implementations_agree(
    fn: Callable,
    args: Sequence,
    *,
    implementations: Sequence[str],
    reference: str = "reference",
    diff_argnums: Sequence[int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
    key: jax.Array | None = None,
    jit: bool = True,
) -> None:
  """Checks values and VJPs of ``fn(*args, implementation=impl)`` against the reference.

  Args:
    fn: callable taking ``*args`` and keyword ``implementation``.
    args: the inputs (arrays).
    implementations: the implementations to compare with ``reference``.
    reference: the oracle implementation's name.
    diff_argnums: arguments to differentiate (default: every floating argument).
    rtol, atol: value tolerances (defaults depend on the dtype of the first float argument).
    grad_rtol, grad_atol: VJP tolerances (default: the value tolerances).
    key: seeds the random output cotangents (drawn with numpy; default seed 0).
    jit: compile each implementation with ``jax.jit``.
  """
  args = tuple(args)
  if diff_argnums is None:
    diff_argnums = tuple(i for i, a in enumerate(args)
                         if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating))
  first_float = next((args[i] for i in diff_argnums), None)
  rtol, atol = _tols(first_float.dtype if first_float is not None else jnp.float32, rtol, atol)
  grad_rtol = grad_rtol if grad_rtol is not None else rtol
  grad_atol = grad_atol if grad_atol is not None else atol
  seed = 0 if key is None else int(np.asarray(jax.random.key_data(key)).ravel()[-1])

  def run(impl):
    def f(*diff):
      full = list(args)
      for i, d in zip(diff_argnums, diff):
        full[i] = d
      return fn(*full, implementation=impl)

    def value_and_vjp(diff, cts):
      out, vjp = jax.vjp(f, *diff)
      leaves, treedef = jax.tree.flatten(out)
      cts = [c.astype(l.dtype) if jnp.issubdtype(l.dtype, jnp.floating)
             else np.zeros(l.shape, jax.dtypes.float0) for c, l in zip(cts, leaves)]
      return out, vjp(jax.tree.unflatten(treedef, cts))

    diff = tuple(args[i] for i in diff_argnums)
    # Random output cotangents drawn on the host (numpy), the same for every implementation.
    out_shapes = jax.eval_shape(f, *diff)
    cts = [rng.standard_normal(l.shape).astype(np.float32)
           for l in jax.tree.leaves(out_shapes)]
    g = jax.jit(value_and_vjp) if jit else value_and_vjp
    return g(diff, cts)

  rng = np.random.default_rng(seed)
  ref_out, ref_grads = run(reference)
  for impl in implementations:
    rng = np.random.default_rng(seed)
    out, grads = run(impl)
    assert_trees_close(out, ref_out, rtol=rtol, atol=atol, what=f"{impl} value")
    assert_trees_close(grads, ref_grads, rtol=grad_rtol, atol=grad_atol, what=f"{impl} vjp")


def random_shapes(rng: np.random.Generator, n: int, *, low: int, high: int,
                  not_multiple_of: int | None = None) -> list[int]:
  """``n`` random sizes in ``[low, high]``; if asked, at least one not a multiple of a block."""
  sizes = [int(s) for s in rng.integers(low, high + 1, size=n)]
  if not_multiple_of and all(s % not_multiple_of == 0 for s in sizes):
    sizes[0] += 1
  return sizes


__all__ = ["assert_trees_close", "assert_implementations_agree", "random_shapes"]
