"""SL-CBM: NumPy transcriptions of the reference code's formulas, invariances, constructed
locality cases with known answers, jit / vmap / grad, and named errors (the project's test plan)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import concepts as C
from bottleneck_jax.data import concept_sprites

R = np.random.default_rng(0)
B, N, D1, K, M, D2 = 2, 4, 3, 3, 2, 5


def _params(seed=0):
  r = np.random.default_rng(seed)

  def f(*shape):
    return jnp.asarray(r.standard_normal(shape), jnp.float32)

  return C.SLCBMParams(f(D1, K), f(K), 1 + 0.1 * f(K), f(K), f(K, K), f(K, K), 1 + 0.1 * f(K),
                       f(K), f(M, K), f(M))


def _np(p):
  return [np.asarray(a, np.float64) for a in p]


def _ln(x, g, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def _softmax(x, axis=-1):
  x = x - x.max(axis, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis, keepdims=True)


def _reference_apply(p, z, e, v, nec=None):
  """A line-by-line NumPy transcription of ``spss_pcbm.forward`` with ``SimPool(gamma=None)``
  and ``NECLinear`` (weights stored [in, out] here, [out, in] in torch)."""
  w_tok, b_tok, g1, b1, wq, wk, g2, b2, wc, bc = _np(p)
  z, e, v = (np.asarray(a, np.float64) for a in (z, e, v))
  s = z @ w_tok + b_tok                                   # token_projection
  q = (e @ v.T)[:, None, :]                               # cav_query [B, 1, K]
  kn = _ln(s, g1, b1, 1e-6)                               # norm_patches
  attn = _softmax((q @ wq) @ (kn @ wk).transpose(0, 2, 1) * K ** -0.5)  # [B, 1, N]
  f = (attn @ kn)[:, 0]                                   # [B, K]
  w = wc
  if nec is not None:
    mask = np.zeros_like(wc)
    for c in range(wc.shape[0]):
      mask[c, np.argsort(-np.abs(wc[c]), kind="stable")[:nec]] = 1.0
    w = wc * mask
  logits = _ln(f, g2, b2, 1e-5) @ w.T + bc
  return logits, f, s, attn[:, 0]


Z = jnp.asarray(R.standard_normal((B, N, D1)), jnp.float32)
E = jnp.asarray(R.standard_normal((B, D2)), jnp.float32)
VV = jnp.asarray(R.standard_normal((K, D2)), jnp.float32)
P = _params()
# jitted once per configuration: one compile instead of one per eager op (test time)
_apply = jax.jit(C.slcbm_apply, static_argnames=("nec", "concept_softmax"))
_entropy = jax.jit(C.token_concept_entropy, static_argnames="already_prob")
_loss = jax.jit(C.slcbm_loss, static_argnames="lams")


@pytest.mark.parametrize("nec", [None, 2])
def test_apply_matches_numpy_transcription(nec):
  out = _apply(P, Z, E, VV, nec=nec)
  ref = _reference_apply(P, Z, E, VV, nec=nec)
  for got, want in zip(out, ref):
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)
  np.testing.assert_allclose(np.asarray(out.attn).sum(-1), 1.0, atol=1e-6)
  if nec is None:
    soft = C.slcbm_concept_maps(P, Z, concept_softmax=True)
    np.testing.assert_allclose(soft, _softmax(ref[2]), atol=1e-6)


def test_token_permutation_permutes_maps_and_keeps_activations():
  perm = np.array([2, 0, 3, 1])
  a = _apply(P, Z, E, VV)
  b = _apply(P, jnp.asarray(np.asarray(Z)[:, perm]), E, VV)
  np.testing.assert_allclose(b.s, np.asarray(a.s)[:, perm], atol=1e-6)
  np.testing.assert_allclose(b.attn, np.asarray(a.attn)[:, perm], atol=1e-6)
  np.testing.assert_allclose(b.f, a.f, atol=1e-5)
  np.testing.assert_allclose(b.logits, a.logits, atol=1e-5)


def test_jit_vmap_grad():
  y, c = jnp.array([0, 1]), jnp.array([[1, 0, 1], [0, 1, 0]])

  @jax.jit
  def run(p, z, e):
    # vmap over images of unbatched calls, and the gradient of the loss of the batched call
    one = jax.vmap(lambda zi, ei: C.slcbm_apply(p, zi, ei, VV, nec=2).logits)(z, e)

    def loss(q):
      o = C.slcbm_apply(q, z, e, VV)
      return C.slcbm_loss(o.logits, o.f, o.s, y, c).loss
    return one, jax.grad(loss)(p)

  one, g = run(P, Z, E)
  np.testing.assert_allclose(one, _reference_apply(P, Z, E, VV, nec=2)[0], rtol=2e-5, atol=2e-5)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  assert float(jnp.abs(g.w_tok).sum()) > 0 and float(jnp.abs(g.w_q).sum()) > 0


def test_nec_mask_keeps_the_largest_magnitudes():
  w = R.standard_normal((5, 7)).astype(np.float32)
  m = np.asarray(C.nec_mask(jnp.asarray(w), n=3))
  assert (m.sum(1) == 3).all()
  for c in range(5):
    assert set(np.flatnonzero(m[c])) == set(np.argsort(-np.abs(w[c]))[:3])
  with pytest.raises(ValueError, match="nec_mask: n must be"):
    C.nec_mask(jnp.asarray(w), n=8)


def test_token_concept_entropy_closed_forms_and_reference():
  assert float(_entropy(jnp.zeros((2, 5, 4)))) == pytest.approx(5 * np.log(4), rel=1e-6)
  onehot = np.eye(4, dtype=np.float32)[R.integers(0, 4, (2, 5))]
  assert float(_entropy(jnp.asarray(onehot), already_prob=True)) == pytest.approx(0, abs=1e-6)
  s = R.standard_normal((2, 5, 4))
  p = _softmax(s)
  want = np.mean(-np.sum(p * np.log(p + 1e-10), axis=(1, 2)))
  assert float(_entropy(jnp.asarray(s, jnp.float32))) == pytest.approx(want, rel=1e-5)


def test_loss_matches_spss_loss_transcription():
  o = _apply(P, Z, E, VV)
  y = np.array([1, 0])
  c = np.array([[1, 0, 1], [0, 0, 1]])
  got = _loss(o.logits, o.f, o.s, jnp.asarray(y), jnp.asarray(c), lams=(0.5, 2.0, 3.0))
  lg, f, s = (np.asarray(a, np.float64) for a in (o.logits, o.f, o.s))
  ce = np.mean(-np.log(_softmax(lg)[np.arange(2), y]))
  conc = 1e4 * np.mean(np.abs(1 / (1 + np.exp(-f)) - c))   # scale * L1Loss(sigmoid(f), c)
  p = _softmax(s)
  ent = np.mean(-np.sum(p * np.log(p + 1e-10), axis=(1, 2)))
  np.testing.assert_allclose([got.ce, got.concept, got.entropy], [ce, conc, ent], rtol=1e-5)
  assert float(got.loss) == pytest.approx(0.5 * ce + 2 * conc + 3 * ent, rel=1e-5)


def test_contrastive_matches_clip_loss_transcription():
  a, b = R.standard_normal((4, 3)), R.standard_normal((4, 3))
  an = a / np.linalg.norm(a, axis=1, keepdims=True)
  bn = b / np.linalg.norm(b, axis=1, keepdims=True)
  lg = an @ bn.T / 0.5
  want = np.mean(-np.log(_softmax(lg)[np.arange(4), np.arange(4)]))
  got = jax.jit(C.slcbm_contrastive, static_argnames="temperature")(
      jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), temperature=0.5)
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_class_saliency_and_upsampling():
  w = R.standard_normal((M, K))
  s = R.standard_normal((B, N, K))
  cls = np.array([1, 0])
  want = np.stack([s[i] @ w[cls[i]] for i in range(B)])
  got = C.class_saliency(jnp.asarray(w, jnp.float32), jnp.asarray(s, jnp.float32),
                         jnp.asarray(cls))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  up = C.upsample_token_map(jnp.asarray(s[..., 0], jnp.float32), grid=(2, 2), size=(6, 6),
                            method="nearest")
  np.testing.assert_allclose(up, np.kron(s[..., 0].reshape(B, 2, 2), np.ones((3, 3))),
                             atol=1e-6)
  const = C.upsample_token_map(jnp.full((4,), 2.5), grid=(2, 2), size=(5, 7))
  np.testing.assert_allclose(const, 2.5, atol=1e-5)


def test_oracle_concept_maps_localise_exactly_on_sprites():
  """One-hot concept tokens from G2's layout and an identity projection: every concept map is
  its cell mask, so pointing, relevance mass and soft IoU are 1 for present concepts; maps
  rolled by two cells score 0."""
  sp = concept_sprites(8, seed=3)
  cells = sp.masks.reshape(8, 6, 4, 6, 4, 6).max(axis=(3, 5))        # [n, K, 4, 4]
  tokens = jnp.asarray(cells.reshape(8, 6, 16).transpose(0, 2, 1))   # [n, 16, K]
  p = C.SLCBMParams(jnp.eye(6), *(jnp.zeros(sh) for sh in ((6,), (6,), (6,), (6, 6), (6, 6),
                                                           (6,), (6,), (4, 6), (4,))))
  s = jax.jit(C.slcbm_concept_maps)(p, tokens)
  maps = jnp.moveaxis(s, -1, 1).reshape(8, 6, 4, 4)
  present = sp.c == 1
  scores = jax.jit(C.region_metrics)
  r = scores(maps, jnp.asarray(cells))
  for v in r:
    np.testing.assert_allclose(np.asarray(v)[present], 1.0, atol=1e-6)
  rolled = scores(jnp.roll(maps, 2, axis=(2, 3)), jnp.asarray(cells))
  assert float(np.asarray(rolled.iou)[present].max()) == 0.0
  assert float(np.asarray(rolled.pointing_hit)[present].max()) == 0.0


def test_head_module_is_the_pure_function_and_bank_is_frozen():
  head = C.SLCBMHead(VV, D1, M, nec=2, rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, z, e: m(z, e))(head, Z, E)
  ref = _apply(head.params, Z, E, VV, nec=2)
  np.testing.assert_allclose(out.logits, ref.logits, atol=1e-6)
  trained = jax.tree.leaves(nnx.state(head, nnx.Param))
  assert len(trained) == 10
  assert not any(x.shape == VV.shape and np.allclose(x, VV) for x in trained)


def test_named_errors():
  with pytest.raises(ValueError, match="slcbm_apply: concept_vectors must have size 3 on axis 0"):
    C.slcbm_apply(P, Z, E, np.asarray(VV)[:2])
  with pytest.raises(ValueError, match="slcbm_apply: tokens must have size 3 on axis -1"):
    C.slcbm_apply(P, np.asarray(Z)[..., :2], E, VV)
  with pytest.raises(ValueError, match="slcbm_apply: e must have batch shape"):
    C.slcbm_apply(P, Z, np.asarray(E)[:1], VV)
  with pytest.raises(ValueError, match="slcbm_loss: f and c_true must have the same shape"):
    C.slcbm_loss(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 4, 3)),
                 np.array([0, 1]), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="simpool: q must have shape"):
    C.simpool(P, np.zeros((2, 4, 3)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="upsample_token_map: grid 3x3"):
    C.upsample_token_map(np.zeros((2, 4)), grid=(3, 3), size=(6, 6))
  with pytest.raises(ValueError, match="attribution_iou: mask must have the shape of attr"):
    C.attribution_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 3)))
  with pytest.raises(TypeError, match="slcbm_concept_maps: params must be an SLCBMParams"):
    C.slcbm_concept_maps(tuple(P), Z)


def test_class_saliency_under_an_explicit_mesh_with_batch_sharded_classes():
  """Batch-sharded maps and classes on train()'s Explicit mesh give the NumPy ``s @ w[cls]``."""
  from jax.sharding import AxisType
  from jax.sharding import PartitionSpec as P
  rng = np.random.default_rng(4)
  w = rng.standard_normal((3, 4)).astype(np.float32)
  s = rng.standard_normal((8, 5, 4)).astype(np.float32)
  cls = rng.integers(0, 3, 8).astype(np.int32)
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
  with jax.set_mesh(mesh):
    out = jax.jit(C.class_saliency)(jax.device_put(w, P()),
                                    jax.device_put(s, P(("data", "fsdp"))),
                                    jax.device_put(cls, P(("data", "fsdp"))))
  np.testing.assert_allclose(np.asarray(out), np.einsum("bnk,bk->bn", s, w[cls]), rtol=1e-5,
                             atol=1e-6)
