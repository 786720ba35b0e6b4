"""Tests for the fused linear cross-entropy (Cut Cross-Entropy, Chronicals).

Independent references: optax's ``softmax_cross_entropy_with_integer_labels`` /
``softmax_cross_entropy`` + ``smooth_labels`` on explicitly materialised logits, hand formulas
for z-loss and soft-capping, and the ``"reference"`` implementation (itself checked against
optax) for the fused implementations' values and VJPs.
"""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import optax
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from bottleneck_jax import kernels
from bottleneck_jax.kernels import testing
from bottleneck_jax.ops import (
  CrossEntropyOutput,
  linear_cross_entropy,
  linear_cross_entropy_with_aux,
  linear_logit_stats,
)

IGN = -100
N, D, V = 37, 32, 300   # N and V are not multiples of any block used below
BLOCK = 64              # xla: 4 full vocabulary blocks + a tail of 44


def _data(n=N, d=D, v=V, dtype=jnp.float32, seed=0, n_ignored=4):
  k = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.normal(k[0], (n, d), jnp.float32).astype(dtype)
  w = (jax.random.normal(k[1], (v, d), jnp.float32) * 0.4).astype(dtype)
  b = jax.random.normal(k[2], (v,), jnp.float32) * 0.5
  y = np.array(jax.random.randint(k[3], (n,), 0, v))
  if n_ignored:
    y[0] = y[n - 1] = IGN                    # ignore_index at the first and last positions
    y[np.arange(2, 2 + n_ignored - 2)] = IGN
  return x, w, b, jnp.asarray(y)


X, W, B, Y = _data()
VALID = Y != IGN
SAFE = jnp.where(VALID, Y, 0)


def _logits(x, w, b=None, softcap=None):
  z = jnp.asarray(x, jnp.float32) @ jnp.asarray(w, jnp.float32).T
  if b is not None:
    z = z + b
  if softcap is not None:
    z = softcap * jnp.tanh(z / softcap)
  return z


def _optax_mean(z, y=Y):
  valid = y != IGN
  per = optax.softmax_cross_entropy_with_integer_labels(z, jnp.where(valid, y, 0), where=valid)
  return jnp.sum(per) / jnp.sum(valid.astype(jnp.float32)), per


# ------------------------------------------------------------------ reference vs independent peers


def test_reference_matches_optax_with_ignore_index_and_reductions():
  z = _logits(X, W)
  want_mean, want_per = _optax_mean(z)
  got_mean = linear_cross_entropy(X, W, Y, implementation="reference")
  got_sum = linear_cross_entropy(X, W, Y, reduction="sum", implementation="reference")
  got_none, lse, nll, valid = linear_cross_entropy_with_aux(X, W, Y, reduction="none",
                                                          implementation="reference")
  np.testing.assert_allclose(got_mean, want_mean, rtol=1e-5)
  np.testing.assert_allclose(got_sum, jnp.sum(want_per), rtol=1e-5)
  np.testing.assert_allclose(got_none, jnp.where(VALID, want_per, 0.0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(lse, jnp.where(VALID, jax.nn.logsumexp(z, axis=-1), 0.0), rtol=1e-5)
  np.testing.assert_allclose(nll, jnp.where(VALID, want_per, 0.0), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(valid, VALID)
  assert got_mean.dtype == jnp.float32 and got_none.shape == (N,)


def test_default_implementation_matches_optax_value_and_grad():
  """The default (xla on CPU) path, value and gradients, against optax autodiff."""
  want, want_g = jax.value_and_grad(lambda x, w: _optax_mean(_logits(x, w))[0],
                                    argnums=(0, 1))(X, W)
  got, got_g = jax.jit(jax.value_and_grad(
      lambda x, w: linear_cross_entropy(x, w, Y, block_size=BLOCK), argnums=(0, 1)))(X, W)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  testing.assert_trees_close(got_g, want_g, rtol=1e-4, atol=1e-6, what="grad")


def test_label_smoothing_matches_optax():
  alpha = 0.1
  z = _logits(X, W)
  targets = optax.smooth_labels(jax.nn.one_hot(SAFE, V), alpha)
  per = optax.softmax_cross_entropy(z, targets)
  want = jnp.sum(jnp.where(VALID, per, 0.0)) / jnp.sum(VALID.astype(jnp.float32))
  for impl in ("reference", "xla"):
    got = linear_cross_entropy(X, W, Y, label_smoothing=alpha, implementation=impl,
                               block_size=BLOCK)
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=impl)


def test_z_loss_matches_hand_formula():
  lam = 1e-2
  z = np.asarray(_logits(X, W, B), np.float64)
  lse = np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1)
  nll = lse - z[np.arange(N), np.asarray(SAFE)]
  per = np.where(np.asarray(VALID), nll + lam * lse ** 2, 0.0)
  got = linear_cross_entropy(X, W, Y, bias=B, z_loss=lam, reduction="none",
                             implementation="reference")
  np.testing.assert_allclose(got, per, rtol=1e-5, atol=1e-6)


def test_softcap_matches_explicit_tanh_logits():
  c = 2.0
  want, _ = _optax_mean(_logits(X, W, B, softcap=c))
  for impl in ("reference", "xla"):
    got = linear_cross_entropy(X, W, Y, bias=B, softcap=c, implementation=impl, block_size=BLOCK)
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=impl)


def test_logit_stats_closed_form_and_leading_batch_dims():
  """lse, target and row sum against numpy; [*batch, d] inputs equal the flattened call."""
  x3 = jnp.reshape(X[:36], (3, 12, D))
  y3 = jnp.reshape(SAFE[:36], (3, 12))
  lse, t, s = linear_logit_stats(x3, W, y3, bias=B, block_size=BLOCK)
  z = np.asarray(_logits(X[:36], W, B), np.float64)
  np.testing.assert_allclose(np.ravel(lse), np.log(np.exp(z).sum(1)), rtol=1e-5)
  np.testing.assert_allclose(np.ravel(t), z[np.arange(36), np.asarray(SAFE[:36])], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(np.ravel(s), z.sum(1), rtol=1e-4, atol=1e-4)
  assert lse.shape == t.shape == s.shape == (3, 12) and lse.dtype == jnp.float32


def test_all_rows_ignored_gives_zero_loss_and_zero_grad():
  y = jnp.full((N,), IGN)
  loss, g = jax.value_and_grad(
      lambda x, w: linear_cross_entropy(x, w, y, block_size=BLOCK), argnums=(0, 1))(X, W)
  assert float(loss) == 0.0
  for leaf in g:
    assert np.all(np.asarray(leaf) == 0.0)


# ------------------------------------------------------------------ implementations vs reference


def _stats_fn(bias_on, softcap):
  def f(x, w, b, *, implementation, labels=SAFE, block_size=BLOCK):
    return linear_logit_stats(x, w, labels, bias=b if bias_on else None, softcap=softcap,
                              implementation=implementation, block_size=block_size)
  return f


@pytest.mark.kernel
def test_xla_agrees_with_reference_f32():
  # (No-bias, no-softcap xla is checked against optax in the default-implementation test.)
  testing.assert_implementations_agree(_stats_fn(True, 3.0), (X, W, B),
                                       implementations=("xla",), rtol=2e-5, atol=2e-5)


@pytest.mark.kernel
def test_xla_loss_agrees_with_reference_smoothing_zloss_ignore():
  def f(x, w, b, *, implementation):
    return linear_cross_entropy(x, w, Y, bias=b, label_smoothing=0.1, z_loss=1e-3,
                                softcap=5.0, reduction="none", implementation=implementation,
                                block_size=BLOCK)
  testing.assert_implementations_agree(f, (X, W, B), implementations=("xla",),
                                       rtol=2e-5, atol=2e-5)


@pytest.mark.kernel
def test_pallas_agrees_with_reference_f32_interpret():
  # Tiny shapes: interpret mode runs the grid sequentially. V=300 with a 64-column block
  # exercises the clamped, masked last block and a split past the end of V.
  x, w, b, y = _data(n=19, d=16, v=300, seed=3, n_ignored=0)
  f = _stats_fn(True, 3.0)
  testing.assert_implementations_agree(
      lambda x, w, b, *, implementation: f(x, w, b, implementation=implementation, labels=y,
                                           block_size=64),
      (x, w, b), implementations=("pallas",), rtol=2e-5, atol=2e-5)


@pytest.mark.kernel
def test_pallas_and_xla_agree_with_reference_bf16():
  x, w, b, y = _data(n=24, d=32, v=200, dtype=jnp.bfloat16, seed=4)

  def f(x, w, b, *, implementation):
    return linear_cross_entropy(x, w, y, bias=b, z_loss=1e-3, reduction="none",
                                implementation=implementation, block_size=64)
  # Reference on the same bf16 inputs with f32 statistics; the fused backward casts the
  # gradient tile to bf16 before its GEMMs, hence the looser gradient tolerance.
  testing.assert_implementations_agree(f, (x, w, b), implementations=("xla", "pallas"),
                                       rtol=1e-3, atol=1e-3, grad_rtol=3e-2, grad_atol=3e-2)


@pytest.mark.kernel
def test_pallas_returns_f32_statistics_for_bf16_without_rounding_logits():
  """The lse of bf16 inputs equals the f64 lse of the same (bf16-rounded) numbers."""
  x, w, _, y = _data(n=16, d=32, v=128, dtype=jnp.bfloat16, seed=5, n_ignored=0)
  z = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
  want = np.log(np.exp(z).sum(1))
  for impl in ("xla", "pallas"):
    lse, _, _ = jax.jit(lambda x, w, impl=impl: linear_logit_stats(
        x, w, y, implementation=impl))(x, w)
    assert lse.dtype == jnp.float32
    np.testing.assert_allclose(lse, want, rtol=1e-5, err_msg=impl)


def test_check_grads_xla_custom_vjp():
  x, w, b, y = _data(n=5, d=4, v=11, seed=6, n_ignored=0)
  with jax.enable_x64(True):
    x, w, b = (jnp.asarray(a, jnp.float64) for a in (x, w, b))

    def f(x, w, b):
      return linear_logit_stats(x, w, y, bias=b, softcap=2.0, implementation="xla",
                                block_size=4)
    jax.test_util.check_grads(jax.jit(f), (x, w, b), order=1, modes=["rev"])


# ------------------------------------------------------------------ transformations


def test_jit_and_vmap_over_leading_axis():
  xs = jnp.stack([X, X[::-1] * 0.5])
  ys = jnp.stack([Y, Y[::-1]])
  got = jax.jit(jax.vmap(lambda x, y: linear_cross_entropy(x, W, y, block_size=BLOCK)))(xs, ys)
  want = jnp.stack([_optax_mean(_logits(x, W), y)[0] for x, y in zip(xs, ys)])
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_dispatch_falls_back_and_explicit_pallas_raises():
  # block_size=48 is not a power of two: the Pallas kernel declines, xla runs instead.
  want = linear_cross_entropy(X, W, Y, implementation="xla", block_size=48)
  with kernels.force(("pallas", "xla")):
    got = linear_cross_entropy(X, W, Y, block_size=48)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(NotImplementedError, match="power-of-two"):
    linear_cross_entropy(X, W, Y, implementation="pallas", block_size=48)


@pytest.mark.parametrize("axis_types", [None, (AxisType.Auto,) * 2], ids=["explicit", "auto"])
def test_sharded_rows_match_unsharded(axis_types):
  x, w, b, y = _data(n=64, d=16, v=130, seed=7)
  want, want_g = jax.value_and_grad(
      lambda x, w: linear_cross_entropy(x, w, y, bias=b, implementation="reference"),
      argnums=(0, 1))(x, w)
  kw = {} if axis_types is None else {"axis_types": axis_types}
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), **kw)
  with jax.set_mesh(mesh):
    xs = jax.device_put(x, P(("data", "fsdp")))
    ys = jax.device_put(y, P(("data", "fsdp")))
    for impl in ("xla", "pallas"):
      got, got_g = jax.jit(jax.value_and_grad(
          lambda x, w, impl=impl: linear_cross_entropy(x, w, ys, bias=b, implementation=impl,
                                            block_size=64), argnums=(0, 1)))(xs, w)
      np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=impl)
      testing.assert_trees_close(got_g, want_g, rtol=1e-4, atol=1e-6, what=impl)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("kwargs, args, err, match", [
    ({}, (X[0, 0], W, Y[0]), ValueError, "x must have rank >= 1"),
    ({}, (X, W[0], Y), ValueError, "w must have rank 2"),
    ({}, (X, W[:, :5], Y), ValueError, r"w must have shape \[V, 32\]"),
    ({}, (X.astype(jnp.int32), W, Y), TypeError, "x must have a floating dtype"),
    ({}, (X, W.astype(jnp.bfloat16), Y), TypeError, "w must have the same dtype as x"),
    ({}, (X, W, Y.astype(jnp.float32)), TypeError, "labels must have an integer dtype"),
    ({}, (X, W, Y[:5]), ValueError, "labels must have shape"),
    ({}, (X, W, Y.at[3].set(V)), ValueError, r"labels must be in \[0, 300\)"),
    ({}, (X, W, Y.at[3].set(-1)), ValueError, r"labels must be in \[0, 300\)"),
    ({"bias": B[:10]}, (X, W, Y), ValueError, "bias must have shape"),
    ({"bias": B.astype(jnp.int32)}, (X, W, Y), TypeError, "bias must have a floating dtype"),
    ({"implementation": "cuda"}, (X, W, Y), ValueError, "unknown implementation"),
    ({"reduction": "max"}, (X, W, Y), ValueError, "reduction must be one of"),
    ({"label_smoothing": 1.0}, (X, W, Y), ValueError, "label_smoothing must be < 1"),
    ({"label_smoothing": -0.1}, (X, W, Y), ValueError, "label_smoothing must be >= 0"),
    ({"softcap": 0.0}, (X, W, Y), ValueError, "softcap must be > 0"),
    ({"z_loss": -1.0}, (X, W, Y), ValueError, "z_loss must be >= 0"),
    ({"block_size": 0}, (X, W, Y), ValueError, "block_size must be >= 1"),
    ({"block_size": 2.5}, (X, W, Y), TypeError, "block_size must be an int"),
    ({"ignore_index": 1.5}, (X, W, Y), TypeError, "ignore_index must be an int"),
    ({}, (X, W[:0], Y), ValueError, r"w must have at least one row"),
])
def test_validation_errors(kwargs, args, err, match):
  with pytest.raises(err, match=match):
    linear_cross_entropy(*args, **kwargs)


def test_validation_logit_stats_labels_range_and_traced_labels_skip_check():
  with pytest.raises(ValueError, match=r"linear_logit_stats: labels must be in \[0, 300\), got"):
    linear_logit_stats(X, W, Y)    # ignore_index is not special for the primitive
  # Under jit labels are tracers: no concrete range check, and valid labels work.
  out = jax.jit(lambda y: linear_cross_entropy(X, W, y, block_size=BLOCK))(Y)
  assert np.isfinite(float(out))


def test_softcap_must_be_static_and_lists_are_refused():
  x = jnp.ones((4, 8), jnp.float32)
  w = jnp.ones((16, 8), jnp.float32)
  labels = jnp.zeros(4, jnp.int32)
  with pytest.raises(TypeError, match="softcap must be a static Python number"):
    jax.jit(lambda c: linear_cross_entropy(x, w, labels, softcap=c))(30.0)
  with pytest.raises(TypeError, match="labels must be an array, got list"):
    linear_cross_entropy(x, w, [0, 1, 2, 3])


# ------------------------------------------------------------------ reliability (regressions)

IMPLS = ("reference", "xla", "pallas")


def _np_stats(x, w, b, y):
  """float64 lse, target logit and per-row nll of the materialised logits (-inf aware)."""
  z = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + np.asarray(b, np.float64)
  m = z.max(1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    lse = np.log(np.exp(z - np.where(np.isfinite(m), m, 0)).sum(1)) + np.where(
        np.isfinite(m[:, 0]), m[:, 0], 0)
  t = z[np.arange(len(y)), np.asarray(y)]
  return lse, t, z


@pytest.mark.parametrize("masked", ["leading", "middle", "last"])
def test_minus_inf_vocabulary_blocks_are_exact_in_every_implementation(masked):
  """A -inf bias over whole vocabulary blocks (restricting outputs to label words) gave NaN in
  the xla online log-sum-exp (0 * exp(-inf - -inf)) when the leading block was all -inf."""
  x, w, _, _ = _data(n=9, d=16, v=300, seed=11, n_ignored=0)
  sl = {"leading": slice(0, 128), "middle": slice(64, 192), "last": slice(256, 300)}[masked]
  b = jnp.zeros((300,), jnp.float32).at[sl].set(-jnp.inf)
  allowed = np.setdiff1d(np.arange(300), np.arange(300)[sl])
  y = jnp.asarray(allowed[np.arange(9) * 7 % len(allowed)])
  lse_np, t_np, _ = _np_stats(x, w, b, y)
  want = np.mean(lse_np - t_np)
  ref_g = jax.grad(lambda x, w: linear_cross_entropy(x, w, y, bias=b, implementation="reference"),
                   argnums=(0, 1))(x, w)
  for impl in IMPLS:
    f = lambda x, w, impl=impl: linear_cross_entropy(x, w, y, bias=b, implementation=impl,
                                                     block_size=64)
    np.testing.assert_allclose(jax.jit(f)(x, w), want, rtol=1e-5, err_msg=impl)
    lse, t, _ = jax.jit(lambda x, w, impl=impl: linear_logit_stats(
        x, w, y, bias=b, implementation=impl, block_size=64))(x, w)
    np.testing.assert_allclose(lse, lse_np, rtol=1e-5, err_msg=impl)
    loss, g = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(x, w)
    np.testing.assert_allclose(loss, want, rtol=1e-5, err_msg=impl)
    testing.assert_trees_close(g, ref_g, rtol=1e-4, atol=1e-6, what=impl)
  # The default block (2048 words) with the first 2048 words masked: the reported case.
  x, w, _, _ = _data(n=4, d=8, v=2100, seed=12, n_ignored=0)
  b = jnp.zeros((2100,), jnp.float32).at[:2048].set(-jnp.inf)
  y = jnp.array([2048, 2060, 2099, 2070])
  lse_np, t_np, _ = _np_stats(x, w, b, y)
  for impl in ("xla", "reference"):
    got = jax.jit(lambda x, impl=impl: linear_cross_entropy(x, w, y, bias=b,
                                                            implementation=impl))(x)
    np.testing.assert_allclose(got, np.mean(lse_np - t_np), rtol=1e-5, err_msg=impl)


def test_all_masked_rows_nan_if_valid_and_zero_if_ignored():
  """A row whose every logit is -inf: lse = -inf; loss NaN when the row counts (undefined
  distribution, not silent), 0 with zero gradient when it is ignored."""
  x, w, _, _ = _data(n=6, d=8, v=40, seed=13, n_ignored=0)
  # Every word masked by the bias: every row is all -inf.
  b = jnp.full((40,), -jnp.inf, jnp.float32)
  y = jnp.array([1, IGN, 3, IGN, 5, 6])
  for impl in IMPLS:
    out = jax.jit(lambda x, impl=impl: linear_cross_entropy_with_aux(
        x, w, y, bias=b, reduction="none", implementation=impl, block_size=8))(x)
    valid = np.asarray(y) != IGN
    assert np.all(np.isnan(np.asarray(out.loss)[valid])), impl
    assert np.all(np.asarray(out.loss)[~valid] == 0.0), impl
    assert np.all(np.asarray(out.lse)[valid] == -np.inf), impl
  # Ignored rows holding +-inf features (their logits are +-inf / NaN) change nothing.
  x2 = x.at[1].set(jnp.inf).at[3].set(-jnp.inf)
  y2 = jnp.array([1, IGN, 3, IGN, 5, 6])
  keep = np.array([0, 2, 4, 5])
  want, want_g = jax.value_and_grad(lambda x, w: _optax_mean(_logits(x, w), y2[keep])[0],
                                    argnums=(0, 1))(x[keep], w)
  for impl in IMPLS:
    loss, (gx, gw) = jax.jit(jax.value_and_grad(
        lambda x, w, impl=impl: linear_cross_entropy(x, w, y2, implementation=impl, block_size=8),
        argnums=(0, 1)))(x2, w)
    np.testing.assert_allclose(loss, want, rtol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gw, want_g[1], rtol=1e-4, atol=1e-6, err_msg=impl)
    np.testing.assert_allclose(gx[keep], want_g[0], rtol=1e-4, atol=1e-6, err_msg=impl)
    assert np.all(np.asarray(gx)[[1, 3]] == 0.0), impl


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nan_in_ignored_rows_never_reaches_gradients(reduction):
  """Ignored means ignored: the rows are selected out, not multiplied by a zero weight."""
  keep = np.flatnonzero(np.asarray(VALID))
  xn = X.at[0].set(jnp.nan).at[2].set(jnp.inf)          # rows 0 and 2 are ignored
  assert not bool(VALID[0]) and not bool(VALID[2])
  # Oracle: the reference on the valid rows only (the same mean denominator).
  want_g = jax.grad(lambda x, w: jnp.sum(linear_cross_entropy(
      x, w, Y[keep], bias=B, reduction=reduction, implementation="reference")),
      argnums=(0, 1))(X[keep], W)
  for impl in IMPLS:
    gx, gw = jax.jit(jax.grad(lambda x, w, impl=impl: jnp.sum(linear_cross_entropy(
        x, w, Y, bias=B, reduction=reduction, implementation=impl, block_size=BLOCK)),
        argnums=(0, 1)))(xn, W)
    assert np.all(np.isfinite(np.asarray(gw))), impl
    np.testing.assert_allclose(gw, want_g[1], rtol=1e-4, atol=1e-6, err_msg=impl)
    np.testing.assert_allclose(np.asarray(gx)[keep], want_g[0], rtol=1e-4, atol=1e-6,
                               err_msg=impl)
    assert np.all(np.asarray(gx)[~np.asarray(VALID)] == 0.0), impl


def test_out_of_range_labels_under_jit_give_nan_in_every_implementation():
  """Traced labels outside [0, V) (not ignore_index) give a NaN loss for their row and NaN
  gradients, the same in every implementation (xla used to read target 0, reference wrapped
  -1 to V-1)."""
  bad = SAFE.at[5].set(V).at[7].set(-1)
  want = linear_cross_entropy(X, W, SAFE, reduction="none", implementation="reference")
  for impl in IMPLS:
    per = jax.jit(lambda y, impl=impl: linear_cross_entropy(
        X, W, y, reduction="none", implementation=impl, block_size=BLOCK))(bad)
    assert np.isnan(per[5]) and np.isnan(per[7]), impl
    ok = np.setdiff1d(np.arange(N), [5, 7])
    np.testing.assert_allclose(np.asarray(per)[ok], np.asarray(want)[ok], rtol=1e-5, err_msg=impl)
    loss, gw = jax.jit(jax.value_and_grad(lambda w, y, impl=impl: linear_cross_entropy(
        X, w, y, implementation=impl, block_size=BLOCK)))(W, bad)
    assert np.isnan(loss) and np.isnan(np.asarray(gw)).any(), impl


def test_labels_wider_than_int32_are_never_wrapped():
  x, w, _, _ = _data(n=4, d=8, v=50, seed=14, n_ignored=0)
  with jax.enable_x64(True):
    y64 = jnp.array([1, 2, 2 ** 32 + 3, 4], jnp.int64)    # would wrap to 3 in int32
    with pytest.raises(ValueError, match=r"labels must be in \[0, 50\)"):
      linear_cross_entropy(x, w, y64)
    per = jax.jit(lambda y: linear_cross_entropy(x, w, y, reduction="none",
                                                 implementation="xla"))(y64)
    assert np.isnan(per[2]) and np.all(np.isfinite(np.asarray(per)[[0, 1, 3]]))
  yu = jnp.array([1, 2, 2 ** 31 + 3, 4], jnp.uint32)
  per = jax.jit(lambda y: linear_cross_entropy(x, w, y, reduction="none"))(yu)
  assert np.isnan(per[2])
  ok = jnp.array([1, 2, 3, 4], jnp.uint32)                 # unsigned labels, ignore_index=-100
  np.testing.assert_allclose(linear_cross_entropy(x, w, ok),
                             linear_cross_entropy(x, w, ok.astype(jnp.int32)), rtol=1e-6)


def test_traced_ignore_index_and_empty_feature_axis_are_clear_errors():
  with pytest.raises(TypeError, match="ignore_index must be a static Python number"):
    jax.jit(lambda i: linear_cross_entropy(X, W, Y, ignore_index=i))(IGN)
  with pytest.raises(ValueError, match="x must have a non-empty feature"):
    linear_cross_entropy(jnp.zeros((4, 0)), jnp.zeros((10, 0)), jnp.zeros((4,), jnp.int32))
  # No rows at all: a zero loss (mean over no valid rows) in every implementation.
  for impl in IMPLS:
    assert float(linear_cross_entropy(X[:0], W, Y[:0], implementation=impl)) == 0.0


def test_with_aux_is_a_named_tuple_and_every_field_differentiates():
  def f(x, w, b, *, implementation):
    return linear_cross_entropy_with_aux(x, w, Y, bias=b, label_smoothing=0.1, z_loss=1e-3,
                                         implementation=implementation, block_size=BLOCK)
  out = f(X, W, B, implementation="xla")
  assert isinstance(out, CrossEntropyOutput) and out.loss.shape == () and out.lse.shape == (N,)
  np.testing.assert_array_equal(out.valid, VALID)
  assert np.all(np.asarray(out.lse)[~np.asarray(VALID)] == 0.0)
  testing.assert_implementations_agree(f, (X, W, B), implementations=("xla", "pallas"),
                                       rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-5)


@pytest.mark.kernel
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_gradient_sweep_agrees_with_reference_every_option(reduction):
  """The three-matmul loss+gradient sweep (mean/sum) with bias, softcap, smoothing, z-loss and
  ignored rows, against autodiff of the materialised logits."""
  def f(x, w, b, *, implementation):
    return linear_cross_entropy(x, w, Y, bias=b, label_smoothing=0.1, z_loss=1e-3,
                                softcap=5.0, reduction=reduction, implementation=implementation,
                                block_size=BLOCK)
  testing.assert_implementations_agree(f, (X, W, B), implementations=("xla", "pallas"),
                                       rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-6)


def _count_dots(jaxpr):
  n = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      n += 1
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      n += _count_dots(sub)
  return n


def test_gradient_is_three_matmul_passes_and_value_one():
  """Under differentiation the xla path runs 3 matmuls per logit (logits, dx, dW) like autodiff
  of materialised logits (the recomputing design ran 4); value-only runs 1."""
  x, w, _, y = _data(n=32, d=16, v=64, seed=15, n_ignored=2)
  f = lambda x, w: linear_cross_entropy(x, w, y, implementation="xla")
  assert _count_dots(jax.make_jaxpr(jax.value_and_grad(f, argnums=(0, 1)))(x, w).jaxpr) == 3
  assert _count_dots(jax.make_jaxpr(f)(x, w).jaxpr) == 1
  # A frozen head (gradient in x only, as in LoRA fine-tuning) skips the dW pass.
  gx = jax.jit(jax.grad(f))(x, w)
  assert _count_dots(jax.make_jaxpr(jax.grad(f))(x, w).jaxpr) == 2
  want = jax.grad(lambda x: linear_cross_entropy(x, w, y, implementation="reference"))(x)
  np.testing.assert_allclose(gx, want, rtol=1e-4, atol=1e-6)


def test_fused_gradient_temp_memory_far_below_materialised_logits():
  """Compile only: fwd+bwd temporaries of the xla path vs optax on materialised logits."""
  n, d, v = 2048, 64, 65536
  specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
           jax.ShapeDtypeStruct((n,), jnp.int32))

  def temp(loss):
    g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return g.lower(*specs).compile().memory_analysis().temp_size_in_bytes

  ours = temp(lambda x, w, y: linear_cross_entropy(x, w, y, implementation="xla"))
  plain = temp(lambda x, w, y: jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y)))
  assert plain >= 2 * n * v * 4 * 0.9          # optax keeps ~2 logit-sized buffers
  assert ours * 6 <= plain, (ours, plain)     # one 512 x V f32 logit block + chunks here


@pytest.mark.kernel
def test_fused_gradient_sweep_with_row_and_vocabulary_tails(monkeypatch):
  """Small row blocks and vocabulary chunks, neither dividing its axis (37 = 4 x 8 + 5 rows,
  300 = 4 x 64 + 44 words): every loop path of the sweep (full blocks in a fori_loop, static
  tails) against autodiff of the materialised logits, with every option on."""
  import bottleneck_jax.ops._linear_cross_entropy as lce_mod
  sizes = lce_mod._block_sizes
  monkeypatch.setattr(lce_mod, "_block_sizes",
                      lambda *a: sizes(*a)._replace(rows=8, dw_chunk=64))

  def f(x, w, b, *, implementation):
    return linear_cross_entropy(x, w, Y, bias=b, label_smoothing=0.1, z_loss=1e-3,
                                softcap=5.0, implementation=implementation)
  testing.assert_implementations_agree(f, (X, W, B), implementations=("xla",),
                                       rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-6)
  g = lambda x, w, *, implementation: linear_cross_entropy(x, w, Y,
                                                           implementation=implementation)
  testing.assert_implementations_agree(g, (X, W), implementations=("xla",),
                                       rtol=2e-5, atol=2e-5, grad_rtol=1e-4, grad_atol=1e-6)
