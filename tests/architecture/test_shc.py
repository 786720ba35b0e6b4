"""Hyper-connections (HC / mHC / sHC): against NumPy re-implementations, closed forms and the
spec's depth-product table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from bottleneck_jax.architecture import (
    HyperConnection,
    expand_streams,
    hc_coeffs,
    hc_depth,
    hc_init,
    hc_width,
    hyper_connection,
    product_norm,
    reduce_streams,
    sinkhorn,
    spectral_normalize,
)

N, C = 4, 8


def _np_sinkhorn(logits, iters):
  """Multiplicative Sinkhorn-Knopp in float64 (rows, then columns)."""
  p = np.exp(np.asarray(logits, np.float64))
  for _ in range(iters):
    p = p / p.sum(-1, keepdims=True)
    p = p / p.sum(-2, keepdims=True)
  return p


def _np_rms(x, w, eps=1e-6):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _random_params(kind, rng):
  p = {k: np.asarray(v) for k, v in hc_init(N, C, kind=kind, layer_index=5).items()}
  return {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()}


def _np_coeffs(p, x, kind):
  """The three parameterisations written out independently (float64)."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  x = np.asarray(x, np.float64)
  if kind == "hc":
    xbar = _np_rms(x, p["norm"])
    a = p["static_alpha"] + p["scale_alpha"] * np.tanh(xbar @ p["w_alpha"])
    b = p["static_beta"] + p["scale_beta"] * np.tanh(xbar @ p["w_beta"])
    return a[..., 0], b, np.swapaxes(a[..., 1:], -1, -2)
  flat = _np_rms(x.reshape(*x.shape[:-2], -1), p["norm"])
  sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
  pre = sig(p["alpha_pre"] * flat @ p["phi_pre"] + p["b_pre"])
  post = 2 * sig(p["alpha_post"] * flat @ p["phi_post"] + p["b_post"])
  res = p["alpha_res"] * (flat @ p["phi_res"]).reshape(*flat.shape[:-1], N, N) + p["b_res"]
  if kind == "mhc":
    res = np.stack([_np_sinkhorn(r, 20) for r in res.reshape(-1, N, N)]).reshape(res.shape)
  else:
    res = np.stack([r / np.linalg.norm(r, 2) for r in res.reshape(-1, N, N)]).reshape(res.shape)
  return pre, post, res


def test_sinkhorn_matches_numpy_and_is_doubly_stochastic():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((3, N, N)).astype(np.float32)
  h = np.asarray(sinkhorn(jnp.asarray(logits), iters=20))
  np.testing.assert_allclose(h, _np_sinkhorn(logits, 20), atol=1e-5)
  assert np.abs(h.sum(-1) - 1).max() < 1e-3 and np.abs(h.sum(-2) - 1).max() < 1e-5
  # the test plan: SK(exp I) for n = 4 has diagonal 0.475 and off-diagonal 0.175
  e = np.asarray(sinkhorn(jnp.eye(4)))
  assert abs(e[0, 0] - 0.475) < 1e-3 and abs(e[0, 1] - 0.175) < 1e-3


def test_spectral_normalize_sphere_ball_and_power():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((5, N, N)).astype(np.float32)
  h = np.asarray(spectral_normalize(jnp.asarray(w)))
  sv = np.linalg.norm(w.astype(np.float64), 2, axis=(-2, -1))
  np.testing.assert_allclose(h, w / sv[:, None, None], atol=1e-5)
  assert np.abs(np.linalg.norm(h.astype(np.float64), 2, axis=(-2, -1)) - 1).max() < 1e-5
  assert (h < 0).any() and (h > 0).any()  # subtractive mixing is allowed
  small = 0.1 * w / sv[:, None, None]
  np.testing.assert_allclose(np.asarray(spectral_normalize(jnp.asarray(small), mode="ball")),
                             small, atol=1e-7)
  hp = np.asarray(spectral_normalize(jnp.asarray(w), method="power", iters=200))
  np.testing.assert_allclose(hp, h, atol=1e-3)


def test_depth_products_match_the_spec_table():
  # the test plan: 64 matrices I + 0.3 N(0, 1), n = 4: HC explodes, sHC <= 1, mHC = 1
  rng = np.random.default_rng(0)
  m = jnp.asarray(np.eye(N) + 0.3 * rng.standard_normal((64, N, N)), jnp.float32)
  assert product_norm(m) > 10
  assert product_norm(spectral_normalize(m)) <= 1 + 1e-5
  assert abs(product_norm(sinkhorn(m, iters=20)) - 1) < 1e-5
  np.testing.assert_allclose(product_norm(m[:3]),
                             np.linalg.norm(np.asarray(m[2] @ m[1] @ m[0], np.float64), 2),
                             rtol=1e-5)


@pytest.mark.parametrize("kind", ["hc", "mhc", "shc"])
def test_coeffs_match_numpy(kind):
  rng = np.random.default_rng(2)
  p = _random_params(kind, rng)
  x = rng.standard_normal((2, 3, N, C)).astype(np.float32)
  co = jax.jit(lambda p, x: hc_coeffs(p, x, kind=kind))(
      {k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(x))
  for got, want in zip(co, _np_coeffs(p, x, kind)):
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4, rtol=2e-4)


def test_width_and_depth_match_numpy():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((3, N, C)).astype(np.float32)
  pre, post = rng.standard_normal((3, N)), rng.standard_normal((3, N))
  res, f = rng.standard_normal((3, N, N)), rng.standard_normal((3, C))
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  np.testing.assert_allclose(np.asarray(hc_width(f32(x), f32(pre))),
                             np.einsum("bn,bnc->bc", pre, x), atol=1e-5)
  want = np.einsum("bij,bjc->bic", res, x) + post[..., None] * f[:, None, :]
  np.testing.assert_allclose(np.asarray(hc_depth(f32(x), f32(f), f32(post), f32(res))), want,
                             atol=1e-5)


def _plain_residual(x, ws):
  for w in ws:
    x = x + jnp.tanh(x @ w)
  return x


@pytest.mark.parametrize("kind", ["hc", "shc"])
def test_identity_at_init_equals_the_plain_residual_network(kind):
  rng = np.random.default_rng(4)
  ws = [jnp.asarray(0.3 * rng.standard_normal((C, C)), jnp.float32) for _ in range(3)]
  x = jnp.asarray(rng.standard_normal((5, C)), jnp.float32)

  @jax.jit
  def net(x):
    s, res = expand_streams(x, N), []
    for i, w in enumerate(ws):
      s, co = hyper_connection(hc_init(N, C, kind=kind, layer_index=i), s,
                               lambda h, w=w: jnp.tanh(h @ w), kind=kind)
      res.append(co.h_res)
    return s, jnp.stack(res)

  s, res = net(x)
  assert jnp.array_equal(res, jnp.broadcast_to(jnp.eye(N), res.shape))
  want = _plain_residual(x, ws)
  np.testing.assert_allclose(np.asarray(reduce_streams(s, reduction="mean")), np.asarray(want),
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(reduce_streams(s)), N * np.asarray(want), atol=1e-4)


def test_mhc_does_not_start_at_the_identity():
  co = hc_coeffs(hc_init(N, C, kind="mhc"), jnp.ones((N, C)), kind="mhc")
  assert abs(float(co.h_res[0, 0]) - 0.475) < 1e-3


def test_module_vmap_and_grad():
  rng = np.random.default_rng(5)
  hc = HyperConnection(nnx.Linear(C, C, rngs=nnx.Rngs(0)), dim=C, kind="shc", rngs=nnx.Rngs(0))
  s = jnp.asarray(rng.standard_normal((3, N, C)), jnp.float32)
  per = nnx.jit(lambda m, s: nnx.vmap(lambda x: m(x), in_axes=0)(s))(hc, s)
  np.testing.assert_allclose(np.asarray(per), np.asarray(nnx.jit(lambda m, s: m(s))(hc, s)),
                             atol=1e-5)
  w = jnp.asarray(np.eye(N) + 0.3 * rng.standard_normal((N, N)), jnp.float32)
  check_grads(jax.jit(lambda a: spectral_normalize(a) + sinkhorn(a, iters=5)), (w,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
  grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(s) ** 2)))(hc)
  leaves = jax.tree.leaves(grads)
  assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


def test_errors():
  with pytest.raises(ValueError, match=r"sinkhorn: logits must have square non-empty"):
    sinkhorn(jnp.ones((3, 4)))
  with pytest.raises(ValueError, match="sinkhorn: iters must be >= 1"):
    sinkhorn(jnp.eye(3), iters=0)
  with pytest.raises(ValueError, match="spectral_normalize: mode must be one of"):
    spectral_normalize(jnp.eye(3), mode="cube")
  with pytest.raises(ValueError, match="hc_init: kind must be one of"):
    hc_init(4, 8, kind="dense")
  with pytest.raises(ValueError, match=r"hc_coeffs: params must be the dict of hc_init"):
    hc_coeffs(hc_init(4, 8, kind="hc"), jnp.ones((4, 8)), kind="shc")
  with pytest.raises(ValueError, match=r"hc_coeffs: params\['phi_pre'\] must have shape \[32, 2\]"):
    hc_coeffs(hc_init(4, 8), jnp.ones((1, 2, 16)), kind="shc")
  with pytest.raises(ValueError, match="hc_width: h_pre must have shape"):
    hc_width(jnp.ones((4, 8)), jnp.ones((3,)))
  with pytest.raises(ValueError, match="hyper_connection: branch_fn must return an array"):
    hyper_connection(hc_init(4, 8), jnp.ones((4, 8)), lambda h: h[:2])
  with pytest.raises(ValueError, match=r"product_norm: matrices must have shape"):
    product_norm(jnp.ones((2, 3, 4)))
