"""Codebook features against NumPy: top-k by the inner-product / cosine / L2 scores, mean or sum
of the codes, the custom VJP (straight-through input gradient, codebook gradient only on selected
codes, the aeloss and vqvae terms), interventions (disabled and forced codes), groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import CodebookLayer, codebook_snap, group_codebook_snap

RNG = np.random.default_rng(4)
X = RNG.normal(size=(6, 3)).astype(np.float32)
CB = RNG.normal(size=(9, 3)).astype(np.float32)
G = RNG.normal(size=(6, 3)).astype(np.float32)


def _np_ids(x, cb, k, metric):
  if metric == "l2":
    s = -((x[:, None] - cb[None]) ** 2).sum(-1)
  else:
    s = x @ cb.T / np.linalg.norm(cb, axis=-1)[None]
    if metric == "cosine":
      s = s / np.linalg.norm(x, axis=-1, keepdims=True)
  return np.argsort(-s, axis=-1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["inner", "cosine", "l2"])
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_forward_matches_numpy(metric, reduce):
  out = codebook_snap(jnp.asarray(X), jnp.asarray(CB), k=3, metric=metric, reduce=reduce)
  ids = _np_ids(X, CB, 3, metric)
  np.testing.assert_array_equal(np.asarray(out.aux["ids"]), ids)
  want = CB[ids].sum(1) / (3 if reduce == "mean" else 1)
  np.testing.assert_allclose(np.asarray(out.z), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out.aux["counts"]), np.bincount(ids.ravel(), minlength=9))


@pytest.mark.parametrize("mode", ["base", "aeloss", "vqvae"])
def test_custom_vjp_matches_the_reference_rule(mode):
  def f(x, cb):
    return codebook_snap(x, cb, k=2, grad_mode=mode, beta=0.25).z
  out, vjp = jax.vjp(f, jnp.asarray(X), jnp.asarray(CB))
  gx, gcb = vjp(jnp.asarray(G))
  ids = _np_ids(X, CB, 2, "inner")
  o = np.asarray(out)
  per = G + (2 * (o - X) / len(X) if mode == "aeloss" else 0)
  want_cb = np.zeros_like(CB)
  for n in range(len(X)):
    for j in ids[n]:
      want_cb[j] += per[n] / 2
  np.testing.assert_allclose(np.asarray(gcb), want_cb, rtol=1e-5, atol=1e-6)
  want_x = G + (2 * 0.25 * (X - o) if mode == "vqvae" else 0)
  np.testing.assert_allclose(np.asarray(gx), want_x, rtol=1e-5, atol=1e-6)
  unused = np.setdiff1d(np.arange(9), ids.ravel())
  assert not np.asarray(gcb)[unused].any()


def test_interventions_disable_and_force_codes():
  base = codebook_snap(jnp.asarray(X), jnp.asarray(CB), k=1)
  top = np.asarray(base.aux["ids"])[:, 0]
  disabled = jnp.zeros(9, bool).at[top[0]].set(True)
  out = codebook_snap(jnp.asarray(X), jnp.asarray(CB), k=1, disabled=disabled)
  assert top[0] not in np.asarray(out.aux["ids"])
  forced = jnp.full((6, 1), 4, jnp.int32)
  out = codebook_snap(jnp.asarray(X), jnp.asarray(CB), k=1, forced_ids=forced)
  np.testing.assert_array_equal(np.asarray(out.z), np.tile(CB[4], (6, 1)))


def test_groups_and_layer():
  x = RNG.normal(size=(4, 2, 3)).astype(np.float32)
  cbs = RNG.normal(size=(2, 5, 3)).astype(np.float32)
  out = group_codebook_snap(jnp.asarray(x), jnp.asarray(cbs), k=2)
  for g in range(2):
    ids = _np_ids(x[:, g], cbs[g], 2, "inner")
    np.testing.assert_array_equal(np.asarray(out.aux["ids"])[:, g], ids)
    np.testing.assert_allclose(np.asarray(out.z)[:, g], cbs[g][ids].mean(1), rtol=1e-5)
  layer = CodebookLayer(3, 9, k=2, rngs=nnx.Rngs(0))
  assert layer(jnp.asarray(X)).z.shape == (6, 3)


def test_validation():
  with pytest.raises(ValueError, match="codebook_snap: k must be <= K = 9"):
    codebook_snap(jnp.asarray(X), jnp.asarray(CB), k=10)
  with pytest.raises(ValueError, match="codebook_snap: codebook must have size 3 on axis -1"):
    codebook_snap(jnp.asarray(X), jnp.zeros((4, 2)))
  with pytest.raises(TypeError, match="codebook_snap: x must have a floating dtype"):
    codebook_snap(jnp.zeros((2, 3), jnp.int32), jnp.asarray(CB))
  with pytest.raises(TypeError, match="codebook_snap: disabled must be a bool array"):
    codebook_snap(jnp.asarray(X), jnp.asarray(CB), disabled=jnp.zeros(9))
  with pytest.raises(ValueError, match="codebook_snap: forced_ids must have shape"):
    codebook_snap(jnp.asarray(X), jnp.asarray(CB), forced_ids=jnp.zeros((6, 2), jnp.int32))
