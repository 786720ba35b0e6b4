"""Parity with vector-quantize-pytorch 1.32 on golden outputs written by
``scripts/make_quantize_fixtures.py`` (no torch needed here): FSQ codes, indices, implicit
codebook and gradient; LFQ codes, indices and aux loss; VectorQuantize eval (L2, cosine) and one
EMA step; the rotation trick's forward and VJP; ResidualVQ eval and one EMA step."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import quantize as Q

FX = np.load(pathlib.Path(__file__).parent / "fixtures" / "vqpytorch.npz")


@pytest.mark.parametrize("levels", [[8, 6, 5], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 8, 8, 5, 5, 5]])
def test_fsq(levels):
  n = "x".join(map(str, levels))
  x = jnp.asarray(FX[f"fsq_{n}_x"])
  out, vjp = jax.vjp(lambda a: Q.fsq(a, levels=levels).z, x)
  idx = Q.fsq(x, levels=levels).aux["indices"]
  np.testing.assert_allclose(np.asarray(out), FX[f"fsq_{n}_codes"], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(idx), FX[f"fsq_{n}_indices"])
  np.testing.assert_allclose(np.asarray(vjp(jnp.ones_like(x))[0]), FX[f"fsq_{n}_grad"], atol=1e-5)
  size = int(np.prod(levels))
  np.testing.assert_array_equal(
      np.asarray(Q.fsq_indices_to_codes(jnp.arange(size), levels=levels)),
      FX[f"fsq_{n}_codebook"])


@pytest.mark.parametrize("d", [4, 10])
def test_lfq(d):
  x = jnp.asarray(FX[f"lfq{d}_x"])
  out = Q.lfq(x, entropy_weight=0.1, commitment_weight=0.25, temperature=0.01)
  np.testing.assert_array_equal(np.asarray(out.z), FX[f"lfq{d}_codes"])
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), FX[f"lfq{d}_indices"])
  # the peer clamps log(p) at 1e-5, we do not: 1e-5 relative (1e-7 at d = 4)
  np.testing.assert_allclose(float(out.loss), float(FX[f"lfq{d}_loss"]), rtol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_vector_quantize_eval(metric):
  cb, x = FX["vq_codebook"], jnp.asarray(FX["vq_x"])
  if metric == "cosine":
    cb = cb / np.linalg.norm(cb, axis=-1, keepdims=True)
  out = Q.vector_quantize(x, jnp.asarray(cb), metric=metric)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), FX[f"vq_{metric}_indices"])
  np.testing.assert_allclose(np.asarray(out.z), FX[f"vq_{metric}_quantized"], atol=1e-6)


def test_one_ema_step_and_commitment_loss():
  cb, x = jnp.asarray(FX["vq_codebook"]), jnp.asarray(FX["vq_x"])
  out = Q.vector_quantize(x, cb)
  state = Q.vq_ema_update(Q.vq_ema_init(cb), x, out.aux["indices"], decay=0.8)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), FX["vq_ema_indices"])
  np.testing.assert_allclose(float(out.aux["commitment_loss"]), float(FX["vq_ema_loss"]),
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(state.codebook), FX["vq_ema_codebook"], atol=1e-6)
  np.testing.assert_allclose(np.asarray(state.cluster_size), FX["vq_ema_cluster_size"],
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(state.embed_avg), FX["vq_ema_embed_avg"], atol=1e-6)


def test_rotation_trick_forward_and_vjp():
  src, tgt, g = (jnp.asarray(FX[k]) for k in ("rot_src", "rot_tgt", "rot_g"))
  out, vjp = jax.vjp(lambda a: Q.rotation_trick(a, tgt), src)
  np.testing.assert_allclose(np.asarray(out), FX["rot_out"], atol=1e-6)
  np.testing.assert_allclose(np.asarray(vjp(g)[0]), FX["rot_grad"], rtol=1e-5, atol=5e-6)


def test_residual_vq_eval_and_one_ema_step():
  cbs, x = jnp.asarray(FX["rvq_codebooks"]), jnp.asarray(FX["vq_x"])
  out = Q.residual_vq(x, cbs)
  for mode in ("eval", "train"):
    np.testing.assert_array_equal(np.asarray(out.aux["indices"]), FX[f"rvq_{mode}_indices"])
    np.testing.assert_allclose(np.asarray(out.z), FX[f"rvq_{mode}_quantized"], atol=1e-6)
  np.testing.assert_allclose(np.asarray(out.aux["commitment_loss"]), FX["rvq_train_losses"],
                             rtol=1e-6)
  state = Q.residual_vq_ema_update(jax.vmap(Q.vq_ema_init)(cbs), x, out.aux["indices"],
                                   decay=0.8)
  np.testing.assert_allclose(np.asarray(state.codebook), FX["rvq_train_codebooks"], atol=1e-6)
