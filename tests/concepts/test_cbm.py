"""The CBM base: losses, bottleneck modes, interventions, policies, curves and metrics, against
NumPy / scikit-learn and closed forms; the intervention curve of the test plan on G1-Koh data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.metrics import roc_auc_score

from bottleneck_jax import concepts as C
from bottleneck_jax.data import koh_concepts

R = np.random.default_rng(0)
LOGIT = jnp.asarray(R.standard_normal((6, 4)), jnp.float32)
CT = jnp.asarray(R.integers(0, 2, (6, 4)), jnp.int32)


def _np_sig(x):
  return 1 / (1 + np.exp(-x))


def test_bce_matches_numpy_with_pos_weight():
  w = jnp.array([1.0, 2.0, 0.5, 3.0])
  got = C.bce_with_logits(LOGIT, CT, pos_weight=w)
  l, t = np.asarray(LOGIT, np.float64), np.asarray(CT)
  ref = -(np.asarray(w) * t * np.log(_np_sig(l)) + (1 - t) * np.log(1 - _np_sig(l)))
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_bottleneck_modes_and_straight_through_gradient():
  out = C.bottleneck(LOGIT, mode="hard")
  np.testing.assert_array_equal(out.z, (np.asarray(LOGIT) >= 0).astype(np.float32))
  assert out.bits.shape == (6,) and float(out.bits[0]) == 4.0
  np.testing.assert_allclose(C.bottleneck(LOGIT).z, _np_sig(np.asarray(LOGIT)), rtol=1e-6)
  np.testing.assert_array_equal(C.bottleneck(LOGIT, mode="logit").z, LOGIT)
  g = jax.grad(lambda l: jnp.sum(C.bottleneck(l, mode="hard").z))(LOGIT)
  s = _np_sig(np.asarray(LOGIT))
  np.testing.assert_allclose(g, s * (1 - s), rtol=1e-5)  # the sigmoid's gradient


def test_cbm_loss_modes_match_numpy():
  y_logit = jnp.asarray(R.standard_normal((6, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 0, 1, 2])
  l, t = np.asarray(LOGIT, np.float64), np.asarray(CT)
  bce = -(t * np.log(_np_sig(l)) + (1 - t) * np.log(1 - _np_sig(l)))
  concept = bce.mean(0).sum()
  yl = np.asarray(y_logit, np.float64)
  ce = np.mean(np.log(np.exp(yl).sum(1)) - yl[np.arange(6), np.asarray(y)])
  j = C.cbm_loss(LOGIT, y_logit, CT, y, lam=0.5)
  np.testing.assert_allclose(j.loss, ce + 0.5 * concept, rtol=1e-5)
  n = C.cbm_loss(LOGIT, y_logit, CT, y, lam=0.5, normalize=True)
  np.testing.assert_allclose(n.loss, (ce + 0.5 * concept) / 3.0, rtol=1e-5)
  np.testing.assert_allclose(C.cbm_loss(LOGIT, y_logit, CT, y, mode="concept").loss, concept,
                             rtol=1e-5)
  np.testing.assert_allclose(C.cbm_loss(LOGIT, y_logit, CT, y, mode="task").loss, ce, rtol=1e-5)


def test_intervene_exact_cases_and_vmap():
  p = jax.nn.sigmoid(LOGIT)
  full, empty = jnp.ones((6, 4)), jnp.zeros((6, 4), bool)
  np.testing.assert_array_equal(C.intervene(p, CT, full), CT.astype(jnp.float32))
  np.testing.assert_array_equal(C.intervene(p, CT, empty), p)
  lo, hi = jnp.array([-2.0, -1, -3, -4]), jnp.array([2.0, 1, 3, 4])
  got = C.intervene(LOGIT, CT, full, lo=lo, hi=hi)
  np.testing.assert_array_equal(got, np.where(np.asarray(CT) == 1, hi, lo))
  mask = jnp.asarray(R.integers(0, 2, (6, 4)), jnp.int32)
  per_row = jax.vmap(lambda a, b, m: C.intervene(a, b, m, lo=lo, hi=hi))(LOGIT, CT, mask)
  np.testing.assert_allclose(per_row, C.intervene(LOGIT, CT, mask, lo=lo, hi=hi))
  jitted = jax.jit(lambda a: C.intervene(a, CT, mask))(p)
  np.testing.assert_allclose(jitted, np.where(np.asarray(mask) == 1, CT, p), rtol=1e-6)


def test_percentiles_match_numpy():
  x = jnp.asarray(R.standard_normal((200, 3)), jnp.float32)
  r = C.intervention_percentiles(x, q=(5.0, 95.0))
  np.testing.assert_allclose(r.lo, np.percentile(np.asarray(x), 5, axis=0), rtol=1e-5)
  np.testing.assert_allclose(r.hi, np.percentile(np.asarray(x), 95, axis=0), rtol=1e-5)


def test_group_masks_cover_whole_groups():
  groups = np.array([0, 0, 1, 2, 2, 2])
  m = np.asarray(C.random_group_mask(groups, n_concepts=6, batch=3000, n=2, key=jax.random.key(1)))
  assert m.shape == (3000, 6)
  assert np.all(m[:, 0] == m[:, 1]) and np.all(m[:, 3] == m[:, 4]) and np.all(m[:, 4] == m[:, 5])
  assert np.all(m[:, [0, 2, 3]].sum(1) == 2)
  # each group is picked with probability 2/3
  np.testing.assert_allclose(m[:, [0, 2, 3]].mean(0), 2 / 3, atol=0.03)
  p = jnp.array([[0.9, 0.8, 0.55, 0.1, 0.0, 0.4],   # group certainties .35, .05, .3333
                 [0.5, 0.5, 0.99, 0.9, 0.9, 0.9]])  # .0, .49, .4
  u = np.asarray(C.uncertainty_group_mask(p, groups, n=1))
  np.testing.assert_array_equal(u, [[0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
  u2 = np.asarray(C.uncertainty_group_mask(p, groups, n=2))
  np.testing.assert_array_equal(u2, [[0, 0, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1]])


def test_concept_accuracy_and_auc_match_references():
  prob = jnp.asarray(R.random((50, 4)), jnp.float32)
  ct = R.integers(0, 2, (50, 4))
  r = C.concept_accuracy(prob, jnp.asarray(ct))
  right = (np.asarray(prob) >= 0.5) == ct
  np.testing.assert_allclose(r.per_concept, right.mean(0))
  np.testing.assert_allclose(r.all_correct, right.all(1).mean())
  scores = np.round(R.random((3, 40)), 1).astype(np.float32)  # many ties
  labels = R.integers(0, 2, (3, 40))
  got = np.asarray(C.auc_roc(jnp.asarray(scores), jnp.asarray(labels)))
  ref = [roc_auc_score(labels[i], scores[i]) for i in range(3)]
  np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_segment_mean_and_soft_threshold():
  x = jnp.asarray(R.standard_normal((10, 3)), jnp.float32)
  ids = jnp.asarray([0, 1, 0, 1, 3, 3, 0, 1, 3, 0])
  got = C.segment_mean(x, ids, num_segments=4)
  for m in range(4):
    sel = np.asarray(ids) == m
    ref = np.asarray(x)[sel].mean(0) if sel.any() else np.zeros(3)
    np.testing.assert_allclose(got[m], ref, rtol=1e-5, atol=1e-6)
  w = jnp.array([-3.0, -0.5, 0.0, 0.7, 2.0])
  np.testing.assert_allclose(C.soft_threshold(w, threshold=1.0), [-2, 0, 0, 0, 1])


def test_model_intervention_equals_manual():
  m = C.ConceptBottleneckModel(5, 4, 3, head="mlp", rngs=nnx.Rngs(0))
  x = jnp.asarray(R.standard_normal((6, 5)), jnp.float32)
  mask = jnp.zeros((6, 4)).at[:, 1].set(1)
  out = m(x, CT, mask)
  z = C.intervene(jax.nn.sigmoid(m.concept_logits(x)), CT, mask)
  np.testing.assert_allclose(out.y_logit, m.head(z), rtol=1e-5)


def _fit_linear(x, target, *, kind, steps=400, lr=0.05):
  """Full-batch Adam: per-concept logistic regressions ("bce") or a softmax regression."""
  d, k = x.shape[1], (target.shape[1] if kind == "bce" else int(target.max()) + 1)
  params = {"w": jnp.zeros((d, k)), "b": jnp.zeros(k)}
  tx = optax.adam(lr)

  def loss(p):
    z = x @ p["w"] + p["b"]
    if kind == "bce":
      return jnp.sum(jnp.mean(C.bce_with_logits(z, target), 0))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, target))

  def step(carry, _):
    p, s = carry
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None

  with jax.numpy_dtype_promotion("standard"):  # optax's adam: float ** int32 step count
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def test_intervention_curve_on_koh_data():
  """Spec §1 test 2: random interventions raise an independent CBM to >= 0.97 with all 12
  concepts given; the curve does not fall; the sequential CBM ends lower."""
  tr, te = koh_concepts(4000, seed=0), koh_concepts(2000, seed=1)
  xtr, xte = jnp.asarray(tr.x), jnp.asarray(te.x)
  g = _fit_linear(xtr, jnp.asarray(tr.c, jnp.float32), kind="bce")
  p_tr = jax.nn.sigmoid(xtr @ g["w"] + g["b"])
  p_te = jax.nn.sigmoid(xte @ g["w"] + g["b"])
  acc = C.concept_accuracy(p_te, jnp.asarray(te.c))
  assert float(acc.mean) > 0.8
  f_ind = _fit_linear(jnp.asarray(tr.c, jnp.float32), jnp.asarray(tr.y), kind="ce")
  f_seq = _fit_linear(p_tr, jnp.asarray(tr.y), kind="ce")
  ns = (0, 3, 6, 9, 12)
  curves = {}
  for name, f in (("ind", f_ind), ("seq", f_seq)):
    curves[name] = C.intervention_curve(lambda z, f=f: z @ f["w"] + f["b"], p_te,
                                        jnp.asarray(te.c), jnp.asarray(te.y), ns=ns,
                                        key=jax.random.key(0), n_draws=5)
  ind, seq = np.asarray(curves["ind"].accuracy), np.asarray(curves["seq"].accuracy)
  assert ind[-1] >= 0.97, ind
  assert np.all(np.diff(ind) >= -0.01) and np.all(np.diff(seq) >= -0.01), (ind, seq)
  assert seq[-1] < ind[-1], (seq, ind)
  # the uncertainty policy helps at least as much as random at 3 concepts
  unc = C.intervention_curve(lambda z: z @ f_ind["w"] + f_ind["b"], p_te, jnp.asarray(te.c),
                             jnp.asarray(te.y), ns=(3,), policy="uncertainty")
  assert float(unc.accuracy[0]) >= ind[1] - 0.01


@pytest.mark.parametrize("call, msg", [
    (lambda: C.intervene(LOGIT, CT, jnp.ones((6, 3))), "intervene: mask must have the shape"),
    (lambda: C.intervene(LOGIT, CT[:, :3], jnp.ones((6, 4))), "intervene: c_hat and c_true"),
    (lambda: C.intervene(LOGIT, CT, jnp.ones((6, 4)), lo=jnp.zeros(4)), "intervene: lo and hi"),
    (lambda: C.intervene(LOGIT, CT, jnp.ones((6, 4)), lo=jnp.zeros(3), hi=jnp.ones(3)),
     "intervene: lo must have size 4"),
    (lambda: C.cbm_loss(LOGIT, jnp.zeros((6, 2)), CT[:, :2], jnp.zeros(6, jnp.int32)),
     "cbm_loss: c_logit and c_true"),
    (lambda: C.random_group_mask((0, 2), n_concepts=2, batch=1, n=1, key=0),
     "random_group_mask: groups must be ids"),
    (lambda: C.random_group_mask(None, n_concepts=2, batch=1, n=3, key=0),
     "random_group_mask: n must be <= 2"),
    (lambda: C.uncertainty_group_mask(jnp.zeros((2, 0)), n=0), "uncertainty_group_mask: c_prob"),
    (lambda: C.intervention_curve(lambda z: z, LOGIT, CT, jnp.zeros(6, jnp.int32), ns=(5,),
                                  key=0), "intervention_curve: ns"),
    (lambda: C.bottleneck(LOGIT, mode="soft"), "bottleneck: mode"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
