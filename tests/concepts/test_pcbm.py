"""PCBM: margins vs NumPy, CAV recovery, accuracy parity with a linear probe, sparsity picks the
signature concepts, edits (the project's test plan, on G1 data)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import concepts as C
from bottleneck_jax.data import concept_embeddings

TR = concept_embeddings(4000, seed=0)
TE = concept_embeddings(1000, seed=1)


@pytest.fixture(scope="module")
def cav_bank():
  return C.learn_cavs(jnp.asarray(TR.x), jnp.asarray(TR.c), C=1.0, steps=300)


def test_margins_match_numpy_and_vmap():
  r = np.random.default_rng(0)
  v, b, e = r.standard_normal((5, 8)), r.standard_normal(5), r.standard_normal((3, 8))
  bank = C.ConceptBank(jnp.asarray(v, jnp.float32), jnp.asarray(b, jnp.float32), tuple("abcde"))
  ref = (e @ v.T + b) / np.linalg.norm(v, axis=1)
  got = C.concept_margins(bank, jnp.asarray(e, jnp.float32))
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  per = jax.vmap(lambda x: C.concept_margins(bank, x))(jnp.asarray(e, jnp.float32))
  np.testing.assert_allclose(per, ref, rtol=1e-5)
  tb = C.text_concept_bank(jnp.asarray(v, jnp.float32))
  np.testing.assert_allclose(C.concept_margins(tb, jnp.asarray(e, jnp.float32)),
                             e @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T, rtol=1e-5)


def test_cavs_recover_the_concept_directions(cav_bank):
  """Spec §2 test 2 (measured 0.941 concept accuracy, 0.948 mean |cos|)."""
  m = np.asarray(C.concept_margins(cav_bank, jnp.asarray(TE.x)))
  assert np.mean((m > 0) == (TE.c == 1)) >= 0.9
  v = np.asarray(cav_bank.vectors)
  cos = np.abs(np.sum(v * TR.concept_dirs, 1)) / np.linalg.norm(v, axis=1)
  assert cos.mean() >= 0.9, cos


def test_pcbm_matches_a_linear_probe(cav_bank):
  """Spec §2 test 3: |PCBM - probe| <= 0.03 (measured 0.867 vs 0.860)."""
  y, yt = jnp.asarray(TR.y), TE.y
  probe = C.fit_elastic_net_head(jnp.asarray(TR.x), y, n_classes=4, lam=1e-5, steps=1000)
  acc_probe = np.mean(np.argmax(TE.x @ np.asarray(probe.weight).T + np.asarray(probe.bias), 1)
                      == yt)
  m_tr = C.concept_margins(cav_bank, jnp.asarray(TR.x))
  head = C.fit_elastic_net_head(m_tr, y, n_classes=4, lam=1e-5, steps=1000)
  acc_pcbm = np.mean(np.argmax(C.pcbm_logits(head, cav_bank, jnp.asarray(TE.x)), 1) == yt)
  assert abs(acc_pcbm - acc_probe) <= 0.03, (acc_pcbm, acc_probe)
  assert acc_probe > 0.8


def test_sparse_head_reads_the_signature_concepts():
  """Spec §2 test 4: at an L1 strength with <= 4 non-zeros per class row, the top-3 positive
  weights of each class hit >= 2 of its 3 signature concepts (text-vector bank)."""
  bank = C.text_concept_bank(jnp.asarray(TR.concept_text))
  m = C.concept_margins(bank, jnp.asarray(TR.x))
  lams = jnp.asarray([1e-2, 1.5e-2, 2e-2, 3e-2])
  heads = jax.vmap(lambda lam: C.fit_elastic_net_head(m, jnp.asarray(TR.y), n_classes=4,
                                                      lam=lam, steps=800))(lams)
  nnz = (np.asarray(heads.weight) != 0).sum(2).mean(1)  # NEC: non-zeros per class row
  assert np.all(np.diff(nnz) <= 0), nnz  # more L1, fewer concepts
  i = int(np.flatnonzero(nnz <= 4)[0])
  w = np.asarray(heads.weight[i])
  for cls in range(4):
    top = [int(j) for j in np.argsort(-w[cls])[:3] if w[cls, j] > 0]
    assert len(set(top) & set(TR.signature[cls].tolist())) >= 2, (cls, top, TR.signature[cls])


def test_edits_and_top_concepts():
  w = jnp.asarray([[1.0, -2.0, 3.0], [0.0, 0.5, 0.0]])
  np.testing.assert_array_equal(C.prune_concepts(w, jnp.asarray([0, 0, 1])),
                                [[1, -2, 0], [0, 0.5, 0]])
  r = C.prune_concepts(w, jnp.asarray([0, 1, 0]), renormalize=True)
  np.testing.assert_allclose(np.abs(np.asarray(r)).sum(1), [6.0, 0.0])  # row 2 has nothing left
  np.testing.assert_allclose(r[0], [1.5, 0, 4.5])
  assert C.top_concepts(w, ["a", "b", "c"], k=2) == ((("c", 3.0), ("a", 1.0)), (("b", 0.5),))


def test_modules_train_only_what_they_should():
  bank = C.text_concept_bank(jnp.asarray(TR.concept_text[:4]))
  p = C.PosthocCBM(bank, 4, rngs=nnx.Rngs(0))
  h = C.PosthocHybridCBM(p, 64, rngs=nnx.Rngs(0))
  x, y = jnp.asarray(TR.x[:16]), jnp.asarray(TR.y[:16])

  def loss(model):
    return -jnp.mean(jax.nn.log_softmax(model(x))[jnp.arange(16), y])

  g = nnx.grad(loss)(h)
  assert float(jnp.abs(g.pcbm.weight[...]).sum()) == 0.0
  assert float(jnp.abs(g.residual.kernel[...]).sum()) > 0.0
  assert not any(isinstance(v, nnx.Param) for v in (p.vectors, p.intercepts))


@pytest.mark.parametrize("call, msg", [
    (lambda: C.text_concept_bank(jnp.zeros((0, 4))), "text_concept_bank: text_emb"),
    (lambda: C.concept_margins(C.ConceptBank(jnp.zeros((0, 4)), jnp.zeros(0), ()),
                               jnp.ones((2, 4))), "concept_margins: bank must hold"),
    (lambda: C.concept_margins(C.text_concept_bank(jnp.ones((2, 4))), jnp.ones((2, 5))),
     "concept_margins: e must have size 4"),
    (lambda: C.pcbm_logits(C.LinearHead(jnp.ones((3, 5)), jnp.ones(3)),
                           C.text_concept_bank(jnp.ones((2, 4))), jnp.ones(4)),
     "pcbm_logits: head.weight must have size 2"),
    (lambda: C.prune_concepts(jnp.ones((2, 3)), jnp.ones(4)), "prune_concepts: concept_mask"),
    (lambda: C.text_concept_bank(jnp.ones((2, 4)), ["a"]), "text_concept_bank: names"),
    (lambda: C.learn_cavs(jnp.ones((3, 4)), jnp.ones((2, 1))), "learn_cavs: c_lab"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
