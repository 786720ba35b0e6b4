"""GPICL: task generator invariants against NumPy, the sequence format, the state-size metric,
the loss against a NumPy cross-entropy and the meta-learner's causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.architecture import (
    GPICLTransformer,
    TaskParams,
    gpicl_loss,
    make_sequence,
    per_position_accuracy,
    sample_batch,
    state_size,
    task_params,
)

NX, NY, T = 6, 5, 8


def test_tasks_are_deterministic_bijective_and_scaled():
  a = task_params(jax.random.key(0), 3, n_x=64, n_y=NY)
  b = task_params(jax.random.key(0), 3, n_x=64, n_y=NY)
  c = task_params(jax.random.key(0), 4, n_x=64, n_y=NY)
  assert jnp.array_equal(a.projection, b.projection) and jnp.array_equal(a.perm, b.perm)
  assert not jnp.array_equal(a.projection, c.projection)
  assert sorted(np.asarray(a.perm).tolist()) == list(range(NY))
  std = float(np.asarray(a.projection).std())
  assert abs(std - 1 / 8) < 0.1 / 8  # N(0, 1/n_x): 4096 draws


def test_sequence_format():
  r = np.random.default_rng(0)
  x = r.standard_normal((T, NX)).astype(np.float32)
  y = r.integers(0, NY, T).astype(np.int32)
  task = task_params(1, 0, n_x=NX, n_y=NY)
  s = make_sequence(jnp.asarray(x), jnp.asarray(y), task, n_y=NY)
  perm = np.asarray(task.perm)
  np.testing.assert_array_equal(np.asarray(s.targets), perm[y])
  inp = np.asarray(s.inputs)
  np.testing.assert_allclose(inp[:, :NX], x @ np.asarray(task.projection).T, atol=1e-5)
  np.testing.assert_array_equal(inp[0, NX:], np.r_[np.zeros(NY), 1.0])   # the null token
  for t in range(1, T):
    np.testing.assert_array_equal(inp[t, NX:NX + NY], np.eye(NY)[perm[y[t - 1]]])
    assert inp[t, -1] == 0


def test_sample_batch_tasks_and_fixed_permutation():
  # inputs that reveal their own index: x = one-hot(index) so the projection can be inverted
  n = 12
  x = jnp.eye(n, dtype=jnp.float32)
  y = jnp.asarray(np.arange(n) % NY, jnp.int32)
  b = sample_batch(0, x, y, task_key=5, n_tasks=1, task_offset=7, batch_size=6, seq_len=T,
                   n_y=NY, fixed_perm_frac=0.5)
  assert b.inputs.shape == (6, T, n + NY + 1) and b.targets.shape == (6, T)
  task = task_params(5, 7, n_x=n, n_y=NY)  # n_tasks = 1 from offset 7: always task 7
  a_inv = np.linalg.inv(np.asarray(task.projection, np.float64))
  for row in range(6):
    idx = np.argmax(np.asarray(b.inputs[row, :, :n], np.float64) @ a_inv.T, axis=-1)
    assert len(set(idx.tolist())) == T  # drawn without replacement
    labels = np.asarray(y)[idx]
    want = labels if row < 3 else np.asarray(task.perm)[labels]  # first half: identity
    np.testing.assert_array_equal(np.asarray(b.targets[row]), want)


def test_state_size_and_loss_against_numpy():
  assert state_size("transformer", d_model=64, n_layers=2, seq_len=32) == 8192
  assert state_size("lstm", hidden=100) == 200
  r = np.random.default_rng(1)
  logits = r.standard_normal((3, T, NY)).astype(np.float32)
  tg = r.integers(0, NY, (3, T)).astype(np.int32)
  lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
  ce = lse - np.take_along_axis(logits, tg[..., None], -1)[..., 0]
  assert abs(float(gpicl_loss(jnp.asarray(logits), jnp.asarray(tg))) - ce.mean()) < 1e-5
  np.testing.assert_allclose(np.asarray(per_position_accuracy(jnp.asarray(logits),
                                                              jnp.asarray(tg))),
                             (logits.argmax(-1) == tg).mean(0), atol=1e-7)


def test_transformer_is_causal_and_trainable():
  m = GPICLTransformer(NX, NY, d_model=16, n_layers=1, n_heads=2, rngs=nnx.Rngs(0))
  r = np.random.default_rng(2)
  inp = jnp.asarray(r.standard_normal((2, T, NX + NY + 1)), jnp.float32)
  changed = inp.at[:, 5].add(1.0)
  fwd = nnx.jit(lambda m, a: m(a))
  out, out2 = fwd(m, inp), fwd(m, changed)
  np.testing.assert_array_equal(np.asarray(out[:, :5]), np.asarray(out2[:, :5]))
  assert float(jnp.max(jnp.abs(out[:, 5:] - out2[:, 5:]))) > 1e-4
  tg = jnp.asarray(r.integers(0, NY, (2, T)), jnp.int32)
  grads = nnx.jit(nnx.grad(lambda m: gpicl_loss(m(inp), tg)))(m)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and sum(norms) > 0


def test_errors():
  with pytest.raises(ValueError, match="task_params: n_y must be >= 1"):
    task_params(0, 0, n_x=3, n_y=0)
  with pytest.raises(TypeError, match="make_sequence: task must be a TaskParams"):
    make_sequence(jnp.ones((3, 2)), jnp.zeros(3, jnp.int32), (jnp.eye(2), jnp.arange(3)), n_y=3)
  with pytest.raises(ValueError, match=r"make_sequence: task.projection must have shape \[3, 3\]"):
    make_sequence(jnp.ones((3, 3)), jnp.zeros(3, jnp.int32),
                  TaskParams(jnp.eye(2), jnp.arange(3)), n_y=3)
  with pytest.raises(ValueError, match="sample_batch: x must hold at least seq_len"):
    sample_batch(0, jnp.ones((4, 2)), jnp.zeros(4, jnp.int32), task_key=0, n_tasks=2,
                 batch_size=2, seq_len=5, n_y=3)
  with pytest.raises(ValueError, match="sample_batch: fixed_perm_frac must be <= 1.0"):
    sample_batch(0, jnp.ones((8, 2)), jnp.zeros(8, jnp.int32), task_key=0, n_tasks=2,
                 batch_size=2, seq_len=5, n_y=3, fixed_perm_frac=1.5)
  with pytest.raises(ValueError, match="state_size: seq_len must be given"):
    state_size("transformer", d_model=4, n_layers=1)
  with pytest.raises(ValueError, match="GPICLTransformer: n_heads must divide d_model"):
    GPICLTransformer(2, 3, d_model=12, n_heads=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="gpicl_loss: targets must have shape"):
    gpicl_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32))
