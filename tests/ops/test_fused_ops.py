"""Tests for the Chronicals fused ops: RMSNorm, SwiGLU(+linear), RoPE / QK-RoPE."""
# ruff: noqa: B023  (lambdas that close over a loop variable are called in the same iteration)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from bottleneck_jax import ops as F
from bottleneck_jax.kernels import testing as KT

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 6, 16)).astype(np.float32)  # 24 rows: not a multiple of the row block
W = (1.0 + 0.3 * RNG.standard_normal(16)).astype(np.float32)
A = RNG.standard_normal((3, 10)).astype(np.float32)
U = RNG.standard_normal((3, 10)).astype(np.float32)
Q = RNG.standard_normal((2, 5, 3, 8)).astype(np.float32)  # [batch, seq, heads, head_dim]
K = RNG.standard_normal((2, 5, 1, 8)).astype(np.float32)
POS = np.array([[0, 1, 2, 3, 4], [7, 3, 0, 12, 100]], np.int32)
IMPLS_RMS = ("reference", "xla", "pallas")


def np_rms_norm(x, w, eps):
  x = np.asarray(x, np.float64)
  return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * np.asarray(w, np.float64)


def np_rope(x, pos, theta, convention, sign=1.0):
  """Rotation through complex multiplication (independent of the pair-wise formula)."""
  x = np.asarray(x, np.float64)
  d = x.shape[-1]
  h = d // 2
  inv = theta ** (-np.arange(h) * 2.0 / d)
  ang = sign * np.asarray(pos, np.float64)[..., None, None] * inv  # [*b, s, 1, h]
  rot = np.exp(1j * ang)
  if convention == "half":
    z = (x[..., :h] + 1j * x[..., h:]) * rot
    return np.concatenate([z.real, z.imag], -1)
  z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot
  out = np.empty_like(x)
  out[..., 0::2], out[..., 1::2] = z.real, z.imag
  return out


# ------------------------------------------------------------------------------ RMSNorm


@pytest.mark.parametrize("impl", IMPLS_RMS)
def test_rms_norm_matches_numpy(impl):
  y = jax.jit(lambda x, w: F.rms_norm(x, w, epsilon=1e-5, implementation=impl))(X, W)
  np.testing.assert_allclose(y, np_rms_norm(X, W, 1e-5), rtol=1e-5, atol=1e-5)
  # 1-D input (a single row).
  y1 = F.rms_norm(X[0, 0], W, epsilon=1e-5, implementation=impl)
  np.testing.assert_allclose(y1, np_rms_norm(X[0, 0], W, 1e-5), rtol=1e-5, atol=1e-5)


def test_rms_norm_matches_flax_and_module():
  peer = nnx.RMSNorm(16, epsilon=1e-6, rngs=nnx.Rngs(0))
  peer.scale[...] = jnp.asarray(W)
  ours = F.FusedRMSNorm(16, epsilon=1e-6, rngs=nnx.Rngs(0))
  ours.scale[...] = jnp.asarray(W)
  np.testing.assert_allclose(ours(jnp.asarray(X)), peer(jnp.asarray(X)), rtol=1e-5, atol=1e-6)


def test_rms_norm_grad_matches_numpy_closed_form():
  """dx, dw of sum(c * y) against the test plan's formula evaluated in float64 numpy."""
  c = RNG.standard_normal(X.shape).astype(np.float32)
  eps = 1e-6
  x = X.astype(np.float64)
  r = 1 / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)
  g = c * W
  dx = r * (g - x * r ** 2 * (g * x).mean(-1, keepdims=True))
  dw = (c * x * r).reshape(-1, 16).sum(0)
  for impl in IMPLS_RMS:
    gx, gw = jax.grad(lambda x, w: jnp.sum(c * F.rms_norm(x, w, epsilon=eps, implementation=impl)),
                      (0, 1))(X, W)
    np.testing.assert_allclose(gx, dx, rtol=1e-4, atol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gw, dw, rtol=1e-4, atol=1e-4, err_msg=impl)


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_rms_norm_implementations_agree(dtype):
  KT.assert_implementations_agree(
      lambda x, w, *, implementation: F.rms_norm(x, w, implementation=implementation),
      (jnp.asarray(X, dtype), jnp.asarray(W, dtype)), implementations=("xla", "pallas"),
      grad_rtol=5e-2 if dtype == jnp.bfloat16 else None)


def test_rms_norm_bf16_matches_float64_on_rounded_inputs():
  """bf16 in, bf16 out: within bf16 output rounding of the exact result on the same inputs."""
  x = jnp.asarray(RNG.standard_normal((3, 512)) * np.logspace(-2, 2, 512), jnp.bfloat16)
  w = jnp.asarray(RNG.uniform(0.5, 2.0, 512), jnp.bfloat16)
  expected = np_rms_norm(np.asarray(x, np.float32), np.asarray(w, np.float32), 1e-6)
  for impl in IMPLS_RMS:
    y = F.rms_norm(x, w, implementation=impl)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, rtol=8e-3, atol=1e-6)


def test_rms_norm_saves_only_x_and_r():
  from jax._src.ad_checkpoint import saved_residuals  # private, but the point of the op

  x, w = jnp.asarray(X, jnp.bfloat16), jnp.asarray(W, jnp.bfloat16)
  for impl in ("xla", "pallas"):
    res = saved_residuals(lambda x, w: F.rms_norm(x, w, implementation=impl), x, w)
    shapes = sorted((str(a.dtype), a.shape) for a, _ in res)
    assert shapes == sorted([("bfloat16", (16,)), ("bfloat16", (4, 6, 16)), ("float32", (4, 6))])
  ref = saved_residuals(lambda x, w: F.rms_norm(x, w, implementation="reference"), x, w)
  assert sum(a.size * a.dtype.itemsize for a, _ in ref) > 2 * x.size * 2


def test_rms_norm_custom_vjps_check_grads():
  x, w = jnp.asarray(X[:1, :3]), jnp.asarray(W)
  for impl in ("xla", "pallas"):
    check_grads(lambda x, w: F.rms_norm(x, w, implementation=impl), (x, w), order=1,
                modes=["rev"], atol=1e-2, rtol=1e-2)


def test_rms_norm_vmap_and_default():
  f = jax.vmap(lambda x: F.rms_norm(x, jnp.asarray(W), implementation="pallas"))
  np.testing.assert_allclose(f(X), np_rms_norm(X, W, 1e-6), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(F.rms_norm(X, W), np_rms_norm(X, W, 1e-6), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_rms_norm_on_mesh(axis_type):
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(axis_type,) * 2)
  x = np.concatenate([X, X], 0)[:8, :2]  # [8, 2, 16]
  expected = np_rms_norm(x, W, 1e-6)
  c = RNG.standard_normal(x.shape).astype(np.float32)
  with jax.set_mesh(mesh):
    xs = jax.device_put(x, P(("data", "fsdp")))
    w = jax.device_put(W, P())
    for impl in ("xla", "pallas"):
      y = jax.jit(lambda x, w: F.rms_norm(x, w, implementation=impl))(xs, w)
      np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5, err_msg=impl)
      gx, gw = jax.jit(jax.grad(lambda x, w: jnp.sum(c * F.rms_norm(x, w, implementation=impl)),
                                (0, 1)))(xs, w)
      rx, rw = jax.grad(lambda x, w: jnp.sum(c * F.rms_norm(x, w, implementation="reference")),
                        (0, 1))(x, W)
      np.testing.assert_allclose(gx, rx, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS_RMS)
def test_rms_norm_empty_batch_and_empty_feature_axis(impl):
  """N = 0 rows: an empty output and zero weight gradient (Pallas used to fail on a zero-size
  slice); d = 0 features: a clear error (the mean over no features is undefined)."""
  w = jnp.full((16,), 2.0, jnp.float32)
  for shape in [(0, 16), (2, 0, 16)]:
    x = jnp.zeros(shape, jnp.float32)
    y, (gx, gw) = jax.value_and_grad(
        lambda x, w: jnp.sum(F.rms_norm(x, w, implementation=impl)), argnums=(0, 1))(x, w)
    assert float(y) == 0.0 and gx.shape == shape
    np.testing.assert_array_equal(gw, np.zeros(16, np.float32))
    assert F.rms_norm(x, w, implementation=impl).shape == shape
  with pytest.raises(ValueError, match="rms_norm: x must have a non-empty feature"):
    F.rms_norm(jnp.zeros((3, 0), jnp.float32), jnp.zeros((0,), jnp.float32),
               implementation=impl)


def test_rms_norm_errors():
  w = jnp.ones(16)
  with pytest.raises(ValueError, match="rms_norm: weight must have shape"):
    F.rms_norm(X, jnp.ones(4))
  with pytest.raises(ValueError, match="rms_norm: weight must have rank 1"):
    F.rms_norm(X, jnp.ones((1, 16)))
  with pytest.raises(TypeError, match="rms_norm: x must have a floating dtype"):
    F.rms_norm(jnp.ones((2, 16), jnp.int32), w)
  with pytest.raises(TypeError, match="rms_norm: weight must have a floating dtype"):
    F.rms_norm(X, jnp.ones(16, jnp.int32))
  with pytest.raises(ValueError, match="rms_norm: x must have rank >= 1"):
    F.rms_norm(jnp.float32(1.0), jnp.ones(()))
  with pytest.raises(ValueError, match="rms_norm: epsilon must be >= 0"):
    F.rms_norm(X, w, epsilon=-1.0)
  with pytest.raises(ValueError, match="unknown implementation 'cuda'"):
    F.rms_norm(X, w, implementation="cuda")
  with pytest.raises(ValueError, match="'triton' is not available"):
    F.rms_norm(X, w, implementation="triton")
  with pytest.raises(ValueError, match="FusedRMSNorm: num_features must be >= 1"):
    F.FusedRMSNorm(0)


# ------------------------------------------------------------------------------ SwiGLU


@pytest.mark.parametrize("impl", ["reference", "xla"])
def test_swiglu_matches_jax_nn(impl):
  f = jax.jit(lambda a, u: F.swiglu(a, u, implementation=impl))
  np.testing.assert_allclose(f(A, U), jax.nn.silu(A) * U, rtol=1e-6, atol=1e-6)
  ga, gu = jax.grad(lambda a, u: jnp.sum(jnp.sin(F.swiglu(a, u, implementation=impl))),
                    (0, 1))(A, U)
  ra, ru = jax.grad(lambda a, u: jnp.sum(jnp.sin(jax.nn.silu(a) * u)), (0, 1))(A, U)
  np.testing.assert_allclose(ga, ra, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gu, ru, rtol=1e-5, atol=1e-6)


@pytest.mark.kernel
def test_swiglu_implementations_agree_bf16_and_vmap():
  KT.assert_implementations_agree(  # f32 agreement is covered by test_swiglu_matches_jax_nn
      lambda a, u, *, implementation: F.swiglu(a, u, implementation=implementation),
      (jnp.asarray(A, jnp.bfloat16), jnp.asarray(U, jnp.bfloat16)), implementations=("xla",))
  out = jax.vmap(lambda a, u: F.swiglu(a, u, implementation="xla"))(A, U)
  np.testing.assert_allclose(out, jax.nn.silu(A) * U, rtol=1e-6, atol=1e-6)


def test_swiglu_linear_matches_numpy_and_agrees():
  x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
  wg = RNG.standard_normal((4, 6)).astype(np.float32)
  wu = RNG.standard_normal((4, 6)).astype(np.float32)
  a, u = x.astype(np.float64) @ wg, x.astype(np.float64) @ wu
  expected = a / (1 + np.exp(-a)) * u
  for impl in ("reference", "xla"):
    np.testing.assert_allclose(F.swiglu_linear(x, wg, wu, implementation=impl), expected,
                               rtol=1e-5, atol=1e-5)
  KT.assert_implementations_agree(
      lambda x, wg, wu, *, implementation: F.swiglu_linear(x, wg, wu,
                                                           implementation=implementation),
      (jnp.asarray(x), jnp.asarray(wg), jnp.asarray(wu)), implementations=("xla",),
      rtol=1e-4, atol=1e-4)


def test_swiglu_custom_vjps_check_grads():
  check_grads(lambda a, u: F.swiglu(a, u, implementation="xla"), (A[:1], U[:1]), order=1,
              modes=["rev"])
  x = jnp.asarray(RNG.standard_normal((2, 3)), jnp.float32)
  wg = jnp.asarray(RNG.standard_normal((3, 4)), jnp.float32)
  wu = jnp.asarray(RNG.standard_normal((3, 4)), jnp.float32)
  check_grads(lambda x, wg, wu: F.swiglu_linear(x, wg, wu, implementation="xla"), (x, wg, wu),
              order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_swiglu_errors():
  with pytest.raises(ValueError, match="swiglu: a and u must have the same shape"):
    F.swiglu(A, U[:, :3])
  with pytest.raises(TypeError, match="swiglu: a and u must have the same dtype"):
    F.swiglu(A, jnp.asarray(U, jnp.bfloat16))
  with pytest.raises(TypeError, match="swiglu: a must have a floating dtype"):
    F.swiglu(jnp.ones(3, jnp.int32), jnp.ones(3, jnp.int32))
  with pytest.raises(ValueError, match="unknown implementation"):
    F.swiglu(A, U, implementation="nope")
  x, w = jnp.ones((2, 4)), jnp.ones((4, 6))
  with pytest.raises(ValueError, match="swiglu_linear: w_gate must have size 5 on axis 0"):
    F.swiglu_linear(jnp.ones((2, 5)), w, w)
  with pytest.raises(ValueError, match="swiglu_linear: w_gate and w_up must have the same"):
    F.swiglu_linear(x, w, jnp.ones((4, 5)))
  with pytest.raises(ValueError, match="swiglu_linear: w_gate must have rank 2"):
    F.swiglu_linear(x, jnp.ones(4), jnp.ones(4))
  with pytest.raises(TypeError, match="swiglu_linear: w_up must have the dtype of x"):
    F.swiglu_linear(x, w, w.astype(jnp.bfloat16))


# ------------------------------------------------------------------------------ RoPE


@pytest.mark.parametrize("convention", ["half", "interleaved"])
def test_rope_matches_numpy_rotation(convention):
  for impl in ("reference", "xla"):
    y = jax.jit(lambda x, p: F.apply_rope(x, p, theta=500.0, convention=convention,
                                          implementation=impl))(Q, POS)
    np.testing.assert_allclose(y, np_rope(Q, POS, 500.0, convention), rtol=1e-4, atol=1e-4)
    qr, kr = F.qk_rope(Q, K, POS, theta=500.0, convention=convention, implementation=impl)
    np.testing.assert_allclose(qr, np_rope(Q, POS, 500.0, convention), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kr, np_rope(K, POS, 500.0, convention), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("convention", ["half", "interleaved"])
def test_rope_backward_is_inverse_rotation(convention):
  dy = RNG.standard_normal(Q.shape).astype(np.float32)
  dk = RNG.standard_normal(K.shape).astype(np.float32)
  for impl in ("reference", "xla"):
    _, vjp = jax.vjp(lambda x: F.apply_rope(x, POS, convention=convention,
                                            implementation=impl), jnp.asarray(Q))
    np.testing.assert_allclose(vjp(jnp.asarray(dy))[0], np_rope(dy, POS, 1e4, convention, -1.0),
                               rtol=1e-4, atol=1e-4)
    _, vjp2 = jax.vjp(lambda q, k: F.qk_rope(q, k, POS, convention=convention,
                                             implementation=impl), jnp.asarray(Q), jnp.asarray(K))
    gq, gk = vjp2((jnp.asarray(dy), jnp.asarray(dk)))
    np.testing.assert_allclose(gq, np_rope(dy, POS, 1e4, convention, -1.0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gk, np_rope(dk, POS, 1e4, convention, -1.0), rtol=1e-4, atol=1e-4)


def test_rope_preserves_norms_and_relative_positions():
  q, k = Q[0, 0, 0], K[0, 0, 0]  # one head_dim vector each
  for conv in ("half", "interleaved"):
    # Same vector at 5 positions, heads of size 1.
    qs = jnp.broadcast_to(q, (5, 1, 8))
    ks = jnp.broadcast_to(k, (5, 1, 8))
    r1q, r1k = F.qk_rope(qs, ks, jnp.array([3, 1, 10, 0, 7]), convention=conv)
    r2q, r2k = F.qk_rope(qs, ks, jnp.array([9, 7, 16, 6, 13]), convention=conv)  # shift by 6
    np.testing.assert_allclose(jnp.linalg.norm(r1q, axis=-1), np.linalg.norm(q), rtol=1e-5)
    dots1 = np.einsum("ahd,bhd->ab", r1q, r1k)
    dots2 = np.einsum("ahd,bhd->ab", r2q, r2k)
    np.testing.assert_allclose(dots1, dots2, rtol=1e-4, atol=1e-4)
    # Position 0 is the identity.
    np.testing.assert_allclose(r1q[3], qs[3], rtol=1e-6)


@pytest.mark.kernel
def test_rope_implementations_agree_bf16():
  for conv in ("half", "interleaved"):  # f32 agreement is covered by the numpy tests
    KT.assert_implementations_agree(
        lambda q, k, *, implementation: F.qk_rope(q, k, POS, convention=conv,
                                                  implementation=implementation),
        (jnp.asarray(Q, jnp.bfloat16), jnp.asarray(K, jnp.bfloat16)), implementations=("xla",))


def test_rope_custom_vjps_check_grads_and_vmap():
  for conv in ("half", "interleaved"):
    check_grads(lambda x: F.apply_rope(x, POS, convention=conv, implementation="xla"),
                (jnp.asarray(Q),), order=1, modes=["rev"])
    check_grads(lambda q, k: F.qk_rope(q, k, POS, convention=conv, implementation="xla"),
                (jnp.asarray(Q), jnp.asarray(K)), order=1, modes=["rev"])
  # vmap over the batch: x [seq, heads, d] per example, positions [seq] per example.
  y = jax.vmap(lambda x, p: F.apply_rope(x, p, implementation="xla"))(Q, POS)
  np.testing.assert_allclose(y, np_rope(Q, POS, 1e4, "half"), rtol=1e-4, atol=1e-4)
  # Broadcast positions [seq] against a batch.
  y2 = F.apply_rope(Q, POS[0])
  np.testing.assert_allclose(y2, np_rope(Q, np.broadcast_to(POS[0], (2, 5)), 1e4, "half"),
                             rtol=1e-4, atol=1e-4)


def test_rope_errors():
  with pytest.raises(ValueError, match="apply_rope: x must have an even head_dim"):
    F.apply_rope(jnp.ones((2, 5, 3, 7)), POS)
  with pytest.raises(ValueError, match="apply_rope: x must have rank >= 3"):
    F.apply_rope(jnp.ones((5, 8)), POS[0])
  with pytest.raises(TypeError, match="apply_rope: x must have a floating dtype"):
    F.apply_rope(jnp.ones((2, 5, 3, 8), jnp.int32), POS)
  with pytest.raises(TypeError, match="apply_rope: positions must have an integer dtype"):
    F.apply_rope(Q, POS.astype(np.float32))
  with pytest.raises(ValueError, match=r"apply_rope: positions must broadcast to x.shape\[:-2\]"):
    F.apply_rope(Q, POS[:, :4])
  with pytest.raises(ValueError, match="apply_rope: convention must be one of"):
    F.apply_rope(Q, POS, convention="neox")
  with pytest.raises(TypeError, match="apply_rope: convention must be a str"):
    F.apply_rope(Q, POS, convention=1)
  with pytest.raises(ValueError, match="apply_rope: theta must be > 0"):
    F.apply_rope(Q, POS, theta=0.0)
  with pytest.raises(ValueError, match="qk_rope: q and k must share"):
    F.qk_rope(Q, K[:, :4], POS)
  with pytest.raises(ValueError, match="qk_rope: k must have an even head_dim"):
    F.qk_rope(Q, jnp.ones((2, 5, 1, 7)), POS)
  with pytest.raises(ValueError, match="unknown implementation"):
    F.qk_rope(Q, K, POS, implementation="bogus")
  with pytest.raises(ValueError, match="'pallas' is not available"):
    F.apply_rope(Q, POS, implementation="pallas")


def test_configuration_scalars_must_be_static():
  x = jnp.ones((4, 8), jnp.float32)
  with pytest.raises(TypeError, match="rms_norm: epsilon must be a static Python number"):
    jax.jit(lambda e: F.rms_norm(x, jnp.ones(8, jnp.float32), epsilon=e))(1e-6)
  q = jnp.ones((1, 4, 2, 8), jnp.float32)
  with pytest.raises(TypeError, match="theta must be a static Python number"):
    jax.jit(lambda t: F.apply_rope(q, jnp.arange(4), theta=t))(10000.0)
  with pytest.raises(TypeError, match=r"rms_norm: x must be an array, got list"):
    F.rms_norm([1.0, 2.0], jnp.ones(2, jnp.float32))
