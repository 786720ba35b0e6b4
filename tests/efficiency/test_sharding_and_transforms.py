"""Sharding and transformation coverage for every differentiable op of the efficiency family.

DESIGN.md: every public op works under ``jit``, ``vmap`` and ``grad`` and on 8 CPU devices under
an Explicit and an Auto ``("data", "fsdp")`` mesh, with batch-sharded inputs, giving the
unsharded result and keeping the batch sharding. The per-module test files cover parts of this
(``linear_cross_entropy`` xla/pallas mean loss, ``lexical_max_pool`` xla/pallas scalar loss and
``rms_norm`` xla/pallas on a mesh; a few value-only ``vmap`` checks); this file covers the rest
with one table of cases:

* ``test_mesh``: the value and the gradient of ``sum(sin(out))`` (one ``jit``) on batch-sharded
  inputs under both meshes against the unsharded run of the ``"reference"`` implementation (or,
  for ops without implementations, of the same op without a mesh); outputs and input gradients
  that carry the batch keep the batch sharding;
* ``test_vmap``: the same value and gradient under ``jit(vmap(.))`` over an extra leading axis
  against a Python loop of unbatched calls of the ``"reference"`` implementation;
* WTA-CRS sampled weight gradients on a mesh, equal to the unsharded draw for the same key;
* the NNX modules (SpladeHead, FusedRMSNorm, nnx.LoRA, WTACRSLinear) forward (and parameter
  gradients) under ``nnx.jit`` on both meshes.

Every batch is 8 (one row, or one group of rows, per device).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from bottleneck_jax.efficiency import (
  SpladeHead,
  WTACRSLinear,
  flops_regularizer,
  lexical_max_pool,
  lexicon_bottleneck,
  lexlip_contrastive_loss,
  wta_crs_linear,
)
from bottleneck_jax.kernels import testing as KT
from bottleneck_jax.ops import (
  FusedRMSNorm,
  apply_rope,
  linear_cross_entropy,
  qk_rope,
  rms_norm,
  swiglu,
  swiglu_linear,
)

BATCH = P(("data", "fsdp"))
NB = 8                      # batch: one example per device
L, D, V, E = 6, 16, 37, 5   # V = 37 is not a multiple of any vocabulary block below
MESH_KINDS = ("explicit", "auto")


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


@functools.cache
def _mesh(kind):
  if kind == "explicit":
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"))  # the default axis type
    assert all(t == AxisType.Explicit for t in mesh.axis_types)
    return mesh
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)


# ------------------------------------------------------------------------------- the cases
#
# A case: make(seed) -> args (numpy); f(*args, impl) -> array or tuple of arrays; batched[i]
# says whether args[i] has the batch on axis 0 (sharded on the mesh, vmapped); argnums are the
# differentiable arguments; impls the implementations to run (None: the op has none).


def _rng(seed):
  return np.random.default_rng(seed)


def _f32(rng, *shape, scale=1.0):
  return (rng.standard_normal(shape) * scale).astype(np.float32)


def _mask(rng, b=NB, l=L):
  lengths = rng.integers(1, l + 1, size=b)
  lengths[0] = l
  return np.arange(l)[None, :] < lengths[:, None]


def _make_lce(seed):
  r = _rng(seed)
  labels = r.integers(0, V, size=(NB, 2)).astype(np.int32)
  labels[1, 0] = -100  # one ignored row
  return _f32(r, NB, 2, D), _f32(r, V, D, scale=0.4), labels, _f32(r, V, scale=0.5)


def _make_pool(seed):
  r = _rng(seed)
  return _f32(r, NB, L, D), _f32(r, V, D, scale=D ** -0.5), _f32(r, V, scale=0.5), _mask(r)


def _make_bottleneck(seed):
  r = _rng(seed)
  return (_f32(r, NB, L, D), _f32(r, V, D, scale=D ** -0.5), _f32(r, V, scale=0.5), _mask(r),
          _f32(r, V, E))


def _make_reps(seed):
  r = _rng(seed)
  return np.abs(_f32(r, NB, V)), np.abs(_f32(r, NB, V))


def _make_rms(seed):
  r = _rng(seed)
  return _f32(r, NB, 3, D), (1.0 + _f32(r, D, scale=0.3))


def _make_swiglu(seed):
  r = _rng(seed)
  return _f32(r, NB, 3, 10), _f32(r, NB, 3, 10)


def _make_swiglu_linear(seed):
  r = _rng(seed)
  return _f32(r, NB, 3, 4), _f32(r, 4, 6), _f32(r, 4, 6)


def _make_rope(seed):
  r = _rng(seed)
  return _f32(r, NB, 5, 2, 8), r.integers(0, 50, size=(NB, 5)).astype(np.int32)


def _make_qk_rope(seed):
  r = _rng(seed)
  return _f32(r, NB, 5, 2, 8), _f32(r, NB, 5, 1, 8), r.integers(0, 50, size=(NB, 5)).astype(
      np.int32)


def _make_wta(seed):
  r = _rng(seed)
  return _f32(r, NB, 4, 4), _f32(r, 4, 3), _f32(r, 3), np.zeros((NB, 4), np.float32)


def _case(*, make, batched, argnums, impls, f):
  return {"make": make, "batched": batched, "argnums": argnums, "impls": impls, "f": f}


CASES = {
    "linear_cross_entropy": _case(
        make=_make_lce, batched=(True, False, True, False), argnums=(0, 1, 3),
        impls=("reference", "xla", "pallas"),
        f=lambda x, w, y, b, impl: linear_cross_entropy(
            x, w, y, bias=b, reduction="none", implementation=impl, block_size=16)),
    "lexical_max_pool": _case(
        make=_make_pool, batched=(True, False, False, True), argnums=(0, 1, 2),
        impls=("reference", "xla", "pallas"),
        f=lambda h, w, b, m, impl: lexical_max_pool(h, w, b, mask=m, implementation=impl,
                                                    block_size=16)),
    "lexicon_bottleneck": _case(
        make=_make_bottleneck, batched=(True, False, False, True, False), argnums=(0, 1, 2, 4),
        impls=("pallas",),  # the pooling's implementations are covered by lexical_max_pool
        f=lambda h, w, b, m, e, impl: lexicon_bottleneck(
            h, w, b, mask=m, word_emb=e, implementation=impl, block_size=16)),
    "lexlip_contrastive_loss": _case(
        make=_make_reps, batched=(True, True), argnums=(0, 1), impls=(None,),
        f=lambda t, i, impl: lexlip_contrastive_loss(t, i, temperature=0.1, flops_weight=0.5).loss),
    "flops_regularizer": _case(
        make=_make_reps, batched=(True, True), argnums=(0,), impls=(None,),
        f=lambda t, i, impl: flops_regularizer(t - i)),
    "rms_norm": _case(
        make=_make_rms, batched=(True, False), argnums=(0, 1),
        impls=("reference", "xla", "pallas"),
        f=lambda x, w, impl: rms_norm(x, w, epsilon=1e-5, implementation=impl)),
    "swiglu": _case(
        make=_make_swiglu, batched=(True, True), argnums=(0, 1), impls=("reference", "xla"),
        f=lambda a, u, impl: swiglu(a, u, implementation=impl)),
    "swiglu_linear": _case(
        make=_make_swiglu_linear, batched=(True, False, False), argnums=(0, 1, 2),
        impls=("reference", "xla"),
        f=lambda x, wg, wu, impl: swiglu_linear(x, wg, wu, implementation=impl)),
    "apply_rope": _case(
        make=_make_rope, batched=(True, True), argnums=(0,), impls=("reference", "xla"),
        f=lambda x, p, impl: apply_rope(x, p, theta=100.0, implementation=impl)),
    "qk_rope": _case(
        make=_make_qk_rope, batched=(True, True, True), argnums=(0, 1),
        impls=("reference", "xla"),
        f=lambda q, k, p, impl: qk_rope(q, k, p, theta=100.0, convention="interleaved",
                                        implementation=impl)),
    # The exact estimator; the probe's gradient is the row norms of the output gradient.
    "wta_crs_linear": _case(
        make=_make_wta, batched=(True, False, False, True), argnums=(0, 1, 2, 3), impls=(None,),
        f=lambda x, w, b, probe, impl: wta_crs_linear(x, w, b, key=jax.random.key(0),
                                                      probe=probe, estimator="exact")),
}

PARAMS = [pytest.param(name, impl, id=f"{name}-{impl}" if impl else name)
          for name, case in CASES.items() for impl in case["impls"]]


@functools.cache
def _jitted(name, impl, vmapped=False):
  """``jit(args -> (out, grads of sum(sin(out)) w.r.t. argnums))``, optionally ``vmap``-ped.

  One compiled function per (case, implementation, vmapped), shared by the tests of the module
  (the unsharded reference runs compile once for both meshes and the vmap loop).
  """
  case = CASES[name]
  argnums = case["argnums"]

  def value_and_grads(*args):
    def f(*diff):
      full = list(args)
      for i, v in zip(argnums, diff):
        full[i] = v
      return case["f"](*full, impl=impl)

    out, vjp = jax.vjp(f, *(args[i] for i in argnums))
    return out, vjp(jax.tree.map(jnp.cos, out))  # d/d(out) sum(sin(out)) = cos(out)

  if vmapped:
    value_and_grads = jax.vmap(value_and_grads,
                               in_axes=tuple(0 if b else None for b in case["batched"]))
  return jax.jit(value_and_grads)


def _assert_batch_sharded(a, mesh, what):
  want = NamedSharding(mesh, BATCH)
  assert a.sharding.is_equivalent_to(want, a.ndim), f"{what}: {a.sharding} is not {want}"


@pytest.mark.parametrize("kind", MESH_KINDS)
@pytest.mark.parametrize("name, impl", PARAMS)
def test_mesh(name, impl, kind):
  case = CASES[name]
  args = case["make"](0)
  # The independent reference: the "reference" implementation (or the op) without a mesh.
  want, want_g = _jitted(name, None if impl is None else "reference")(*args)
  mesh = _mesh(kind)
  with jax.set_mesh(mesh):
    sharded = [jax.device_put(a, BATCH if b else P()) for a, b in zip(args, case["batched"])]
    got, got_g = _jitted(name, impl)(*sharded)
  what = f"{name}/{impl}/{kind}"
  KT.assert_trees_close(got, want, rtol=2e-5, atol=2e-5, what=f"{what} value")
  KT.assert_trees_close(got_g, want_g, rtol=1e-4, atol=1e-5, what=f"{what} grad")
  for i, o in enumerate(jax.tree.leaves(got)):
    if o.ndim and o.shape[0] == NB:
      _assert_batch_sharded(o, mesh, f"{what} output {i}")
  for i, g in zip(case["argnums"], got_g):
    if case["batched"][i]:
      _assert_batch_sharded(g, mesh, f"{what} d(arg {i})")


@pytest.mark.parametrize("name, impl", PARAMS)
def test_vmap(name, impl):
  """``vmap`` over an extra leading axis of the batched arguments == a loop of single calls of
  the ``"reference"`` implementation (or of the op)."""
  case = CASES[name]
  a0, a1 = case["make"](0), case["make"](1)
  stacked = [np.stack([x0, x1]) if b else x0 for x0, x1, b in zip(a0, a1, case["batched"])]
  got = _jitted(name, impl, vmapped=True)(*stacked)
  ref = _jitted(name, None if impl is None else "reference")
  loop = [ref(*[s[j] if b else s for s, b in zip(stacked, case["batched"])]) for j in range(2)]
  want = jax.tree.map(lambda *xs: np.stack(xs), *loop)
  KT.assert_trees_close(got, want, rtol=1e-4, atol=1e-5, what=f"{name}/{impl} vmap")


# --------------------------------------------------------------------------- WTA-CRS sampled


@functools.cache
def _wta_grads():
  def grads(x, w, b, probe, key):
    return jax.grad(lambda x, w, b, probe: jnp.sum(jnp.sin(wta_crs_linear(
        x, w, b, key=key, probe=probe, ratio=0.3, minimal_k=4))), (0, 1, 2, 3))(x, w, b, probe)
  return jax.jit(jax.vmap(grads, in_axes=(None,) * 4 + (0,)))


@pytest.mark.parametrize("kind", MESH_KINDS)
def test_wta_crs_sampled_rows_on_mesh(kind):
  """Sampled ``dw`` on a mesh is the unsharded draw for the same key (so it inherits the
  unbiasedness tested in test_wta_crs.py); ``dx``, ``db`` and ``dprobe`` stay exact."""
  x, w, b, probe = _make_wta(3)
  keys = jax.random.split(jax.random.key(7), 4)
  exact = jax.grad(lambda x, w, b: jnp.sum(jnp.sin(x @ w + b)), (0, 1, 2))(x, w, b)
  norms = np.linalg.norm(np.cos(np.asarray(x, np.float64) @ w + b), axis=-1)
  want = _wta_grads()(x, w, b, probe, keys)
  mesh = _mesh(kind)
  with jax.set_mesh(mesh):
    got = _wta_grads()(jax.device_put(x, BATCH), w, b, jax.device_put(probe, BATCH), keys)
  KT.assert_trees_close(got, want, rtol=1e-5, atol=1e-5, what=kind)
  dx, dw, db, dp = (np.asarray(g) for g in got)
  assert dw.shape == (4, 4, 3) and np.all(np.isfinite(dw))
  assert not np.allclose(dw[0], exact[1], rtol=1e-3)   # k = 9 of 32 rows: a real estimate
  assert not np.allclose(dw[0], dw[1])                  # different keys, different draws
  for j in range(4):
    np.testing.assert_allclose(dx[j], exact[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db[j], exact[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dp[j], norms, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- NNX modules


def _lora():
  m = nnx.LoRA(D, 2, 4, base_module=nnx.Linear(D, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
  m.lora_b[...] = jnp.asarray(_f32(_rng(6), 2, 4))  # B = 0 at init: make the adapter count
  return m


MODULES = {  # name: (build, per-example input shape, takes a mask)
    "SpladeHead": (lambda: SpladeHead(D, V, rngs=nnx.Rngs(0)), (L, D), True),
    "FusedRMSNorm-pallas": (lambda: FusedRMSNorm(D, implementation="pallas"), (3, D), False),
    "nnx.LoRA": (_lora, (3, D), False),
    "WTACRSLinear": (lambda: WTACRSLinear(D, 4, minimal_k=4, rngs=nnx.Rngs(0)), (4, D), False),
}


@pytest.mark.parametrize("kind", MESH_KINDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_module_on_mesh(name, kind):
  """Forward and parameter gradients under ``nnx.jit`` on batch-sharded inputs."""
  build, shape, masked = MODULES[name]
  r = _rng(5)
  x, mask = _f32(r, NB, *shape), _mask(r)
  key = jax.random.key(1)

  def loss(m, x, mask):
    if isinstance(m, WTACRSLinear):
      y = m(x, rngs=key)
    else:
      y = m(x, mask) if masked else m(x)
    return jnp.sum(jnp.sin(y)), y

  step = nnx.jit(nnx.value_and_grad(loss, has_aux=True))
  (_, want), want_g = step(build(), x, mask)
  mesh = _mesh(kind)
  with jax.set_mesh(mesh):
    (_, got), got_g = step(build(), jax.device_put(x, BATCH), jax.device_put(mask, BATCH))
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)
  _assert_batch_sharded(got, mesh, name)
  KT.assert_trees_close(nnx.to_pure_dict(got_g), nnx.to_pure_dict(want_g), rtol=1e-4,
                        atol=1e-5, what=name)


def test_pallas_kernels_not_validated_on_tpu_step_aside(monkeypatch):
  """On TPU (simulated) the Pallas rms_norm / lexical_max_pool kernels raise
  NotImplementedError, so the default order ("pallas", "xla") falls back to XLA."""
  import importlib

  from bottleneck_jax import kernels
  from bottleneck_jax.kernels import dispatch
  fused_mod = importlib.import_module("bottleneck_jax.ops._rms_norm.pallas")
  for mod, name in ((dispatch, "backend"), (kernels, "backend"), (fused_mod, "backend")):
    monkeypatch.setattr(mod, name, lambda: "tpu")
  monkeypatch.setattr(fused_mod, "pallas_interpret", lambda *a: False)
  monkeypatch.setattr(kernels, "pallas_interpret", lambda *a: False)
  x = jnp.asarray(_f32(_rng(0), 8, 128))
  w = jnp.ones((128,), jnp.float32)
  with pytest.raises(NotImplementedError, match="not on TPU"):
    rms_norm(x, w, implementation="pallas")
  np.testing.assert_allclose(np.asarray(rms_norm(x, w)),
                             np.asarray(rms_norm(x, w, implementation="reference")), rtol=1e-5)
  h = jnp.asarray(_f32(_rng(1), 2, 4, 16))
  wv = jnp.asarray(_f32(_rng(2), 32, 16))
  with pytest.raises(NotImplementedError, match="not on TPU"):
    lexical_max_pool(h, wv, implementation="pallas")
