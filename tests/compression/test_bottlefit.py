"""Tests for bottleneck_jax/compression/_bottlefit.py: the losses against NumPy formulas
(torchdistill's sum-MSE and KDLoss), the 8-bit code against torchdistill's quantize_tensor
arithmetic, byte counts computed by hand (the paper's ResNet-152 code), the split computation,
and which parameters each training stage moves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.compression import (
  BottleneckHead,
  SplitModel,
  bottlefit_param_labels,
  bottlefit_transform,
  code_bits,
  data_reduction,
  dequantize_code,
  head_distillation_loss,
  kd_loss,
  quantize_code,
)

_R = np.random.default_rng(0)


def _f32(a):
  return jnp.asarray(a, jnp.float32)


def _split_model(seed=0):
  rngs = nnx.Rngs(seed)
  tail = nnx.Sequential(lambda h: h.mean(axis=(1, 2)), nnx.Linear(8, 10, rngs=rngs))
  return SplitModel(BottleneckHead(1, 2, 8, hidden=4, rngs=rngs), tail)


_X = _f32(_R.uniform(0, 1, (3, 8, 8, 1)))
_Y = jnp.asarray([1, 5, 7], jnp.int32)


def test_head_distillation_loss_is_the_weighted_sum_of_squared_errors():
  s = [_R.normal(size=(2, 4, 4, 3)), _R.normal(size=(2, 5))]
  t = [_R.normal(size=(2, 4, 4, 3)), _R.normal(size=(2, 5))]
  w = [1.0, 0.25]
  ref_sum = sum(wi * ((a - b) ** 2).sum() for wi, a, b in zip(w, s, t))
  ref_mean = sum(wi * ((a - b) ** 2).mean() for wi, a, b in zip(w, s, t))
  sj, tj = [_f32(a) for a in s], [_f32(a) for a in t]

  @jax.jit
  def f(a, b):
    grads = jax.grad(lambda a, b: head_distillation_loss(a, b, weights=w), argnums=(0, 1))(a, b)
    return (head_distillation_loss(a, b, weights=w),
            head_distillation_loss(a, b, weights=w, reduction="mean"), grads)

  total, mean, (gs, gt) = f(sj, tj)
  np.testing.assert_allclose(float(total), ref_sum, rtol=1e-5)
  np.testing.assert_allclose(float(mean), ref_mean, rtol=1e-5)
  # d/ds = 2 w (s - t); the teacher's features get no gradient
  for wi, g, a, b in zip(w, gs, s, t):
    np.testing.assert_allclose(np.asarray(g), 2 * wi * (a - b), rtol=1e-4, atol=1e-5)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in gt)


def test_kd_loss_matches_torchdistill_kdloss_formula():
  s, t = _R.normal(size=(5, 4)) * 2, _R.normal(size=(5, 4)) * 2
  y = np.array([0, 3, 1, 1, 2])
  temp, alpha = 2.0, 0.3

  def log_softmax(a):
    a = a - a.max(-1, keepdims=True)
    return a - np.log(np.exp(a).sum(-1, keepdims=True))

  ce = -log_softmax(s)[np.arange(5), y].mean()
  lpt, lps = log_softmax(t / temp), log_softmax(s / temp)
  kl = (np.exp(lpt) * (lpt - lps)).sum(-1).mean()  # KLDivLoss(reduction="batchmean")
  ref = alpha * ce + (1 - alpha) * temp**2 * kl
  @jax.jit
  def f(a, b, c):
    return (kd_loss(a, b, c, temperature=temp, alpha=alpha), kd_loss(a, b, c, alpha=1.0),
            jax.grad(kd_loss, argnums=1)(a, b, c))

  got, hard, g = f(_f32(s), _f32(t), jnp.asarray(y, jnp.int32))
  np.testing.assert_allclose(float(got), ref, rtol=1e-5)
  # alpha = 1: plain cross-entropy; the teacher's logits get no gradient
  np.testing.assert_allclose(float(hard), ce, rtol=1e-5)
  assert float(jnp.max(jnp.abs(g))) == 0.0


def test_quantize_code_follows_torchdistill_min_max_quantization():
  z = _R.normal(size=(2, 4, 4, 3)).astype(np.float32)
  z[1] = np.abs(z[1]) + 0.5  # all positive: the range is extended down to 0
  @jax.jit
  def roundtrip(a):
    qc = quantize_code(a)
    return qc, dequantize_code(qc.q, qc.scale, qc.zero_point)

  qc, deq = roundtrip(_f32(z))
  assert qc.q.dtype == jnp.uint8 and qc.q.shape == z.shape and qc.scale.shape == (2,)
  for b in range(2):  # torchdistill quantize_tensor, one example, range extended to hold 0
    lo, hi = min(z[b].min(), 0.0), max(z[b].max(), 0.0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(0.0 - lo / scale, 0, 255))
    q = np.round(np.clip(zp + z[b] / scale, 0, 255)).astype(np.uint8)
    np.testing.assert_allclose(float(qc.scale[b]), scale, rtol=1e-6)
    assert int(qc.zero_point[b]) == zp
    diff = np.abs(np.asarray(qc.q[b]).astype(int) - q.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05  # float32 vs float64 ties only
  assert int(qc.zero_point[1]) == 0
  err = np.abs(np.asarray(deq) - z).reshape(2, -1).max(1)
  # signed: <= scale (the truncated zero point shifts the bottom end); all positive: scale / 2
  assert err[0] <= float(qc.scale[0]) * (1 + 1e-4)
  assert err[1] <= float(qc.scale[1]) * (0.5 + 1e-4)
  # an all-zero code: scale 1, exact; a constant negative code: within one step (-lo / scale
  # = 255 up to float32 rounding, truncated)
  c, d = roundtrip(jnp.asarray([[0.0] * 3, [-2.0] * 3], jnp.float32))
  assert float(c.scale[0]) == 1.0 and c.q[0].tolist() == [0, 0, 0] and d[0].tolist() == [0.0] * 3
  np.testing.assert_allclose(np.asarray(d[1]), -2.0, atol=2.0 / 255 * 1.0001)


def test_code_bits_and_data_reduction_by_hand():
  # ResNet-152 "ver2", C = 3 channels at 29x29, 8 bits: 3 * 841 = 2523 bytes of a 224x224x3 input
  assert code_bits((3, 29, 29)) == 3 * 841 * 8
  assert code_bits((3, 29, 29)) // 8 == 2523
  np.testing.assert_allclose(data_reduction(2523, 224 * 224 * 3), 1 - 2523 / 150528)
  # digits: one channel at 4x4 against 64 pixels: 75 %; side information: scale + zero point
  assert code_bits((4, 4, 1)) == 128
  assert code_bits((4, 4, 1), num_bits=8, side_bits=40) == 168
  assert data_reduction(16, 64) == 0.75
  assert code_bits((2, 5), num_bits=4) == 40


@nnx.jit
def _split_outputs(m, x):
  out = m(x)
  code = m.encode(x)
  qc = quantize_code(code)
  sent = dequantize_code(qc.q, qc.scale, qc.zero_point)
  return out, code, m.decode_and_classify(code), m(x, quantize=True), m.decode_and_classify(sent), sent


def test_split_model_shapes_and_split_equals_full_forward():
  out, code, split_logits, outq, sent_logits, sent = _split_outputs(_split_model(), _X)
  assert code.shape == (3, 4, 4, 2)
  assert out.bottleneck.z.shape == (3, 4, 4, 8) and out.logits.shape == (3, 10)
  # device part + server part == the full forward pass
  np.testing.assert_allclose(np.asarray(split_logits), np.asarray(out.logits), atol=1e-6)
  # bits: the 8-bit code plus the float32 scale and the 8-bit zero point, per example
  assert out.bottleneck.bits.tolist() == [4 * 4 * 2 * 8 + 40.0] * 3
  assert float(out.bottleneck.loss) == 0.0
  # the quantised path decodes exactly what the channel delivers
  np.testing.assert_allclose(np.asarray(outq.logits), np.asarray(sent_logits), atol=1e-5)
  np.testing.assert_allclose(np.asarray(outq.bottleneck.aux["code"]), np.asarray(sent),
                             atol=1e-6)
  assert 0 < float(jnp.max(jnp.abs(sent - code))) <= 2 * float(jnp.max(jnp.abs(code))) / 255


def test_each_stage_moves_only_its_trainable_parameters():
  # a SplitModel's parameter tree, gradients all non-zero
  params = nnx.to_pure_dict(nnx.state(_split_model(), nnx.Param))
  grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
  # weight decay and momentum in the optimizer must not move frozen parameters either
  tx = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.1, momentum=0.9))
  stages = {"1": bottlefit_transform(tx, stage=1),
            "2fe": bottlefit_transform(tx, stage=2, freeze_encoder=True),
            "2": bottlefit_transform(tx, stage=2)}

  @jax.jit
  def new_params(g, p):
    return {k: optax.apply_updates(p, t.update(g, t.init(p), p)[0]) for k, t in stages.items()}

  out = new_params(grads, params)
  ch = {k: jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), np.asarray(b)),
                        params, v) for k, v in out.items()}
  assert not any(jax.tree.leaves(ch["1"]["tail"])) and all(jax.tree.leaves(ch["1"]["head"]))
  assert not any(jax.tree.leaves(ch["2fe"]["head"]["encoder"]))
  assert all(jax.tree.leaves(ch["2fe"]["head"]["decoder"]))
  assert all(jax.tree.leaves(ch["2fe"]["tail"]))
  assert all(jax.tree.leaves(ch["2"]))
  labels = bottlefit_param_labels(params, stage=2, freeze_encoder=True)
  assert set(jax.tree.leaves(labels["head"]["encoder"])) == {"freeze"}
  assert set(jax.tree.leaves(labels["tail"])) == {"train"}


def test_stage_transform_builds_an_abstract_nnx_optimizer_under_a_mesh():
  # what train() does before restoring a checkpoint (optax.multi_transform's masked state fails)
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  with jax.set_mesh(mesh):
    m, opt = nnx.eval_shape(lambda: (lambda mm: (mm, nnx.Optimizer(
        mm, bottlefit_transform(optax.adam(0.1), stage=1), wrt=nnx.Param)))(_split_model()))
  assert isinstance(opt, nnx.Optimizer)


def test_bad_input_errors():
  a = jnp.zeros((2, 3), jnp.float32)
  with pytest.raises(TypeError, match="head_distillation_loss: student_feats must be a list"):
    head_distillation_loss(a, [a])
  with pytest.raises(ValueError, match="the same length"):
    head_distillation_loss([a], [a, a])
  with pytest.raises(ValueError, match="must have the same shape"):
    head_distillation_loss([a], [jnp.zeros((3, 2), jnp.float32)])
  with pytest.raises(ValueError, match="one weight per pair"):
    head_distillation_loss([a], [a], weights=[1.0, 2.0])
  with pytest.raises(ValueError, match="reduction must be one of"):
    head_distillation_loss([a], [a], reduction="max")
  with pytest.raises(ValueError, match="at least one array"):
    head_distillation_loss([], [])
  with pytest.raises(TypeError, match="kd_loss: labels must have an integer dtype"):
    kd_loss(a, a, jnp.zeros(2, jnp.float32))
  with pytest.raises(ValueError, match="kd_loss: labels must have shape"):
    kd_loss(a, a, jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="kd_loss: temperature must be > 0"):
    kd_loss(a, a, jnp.zeros(2, jnp.int32), temperature=0.0)
  with pytest.raises(ValueError, match="kd_loss: alpha must be <= 1"):
    kd_loss(a, a, jnp.zeros(2, jnp.int32), alpha=1.5)
  with pytest.raises(ValueError, match="quantize_code: num_bits must be <= 8"):
    quantize_code(a, num_bits=9)
  with pytest.raises(ValueError, match="quantize_code: z must have rank >= 2"):
    quantize_code(jnp.zeros(3, jnp.float32))
  with pytest.raises(TypeError, match="dequantize_code: q must have an integer dtype"):
    dequantize_code(a, jnp.ones(2, jnp.float32), jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="dequantize_code: scale must have shape"):
    dequantize_code(jnp.zeros((2, 3), jnp.uint8), jnp.ones(3, jnp.float32),
                    jnp.zeros(2, jnp.int32))
  with pytest.raises(TypeError, match="code_bits: code_shape must be a tuple of ints"):
    code_bits((4.0, 4))
  with pytest.raises(ValueError, match="code_bits: code_shape must be a non-empty"):
    code_bits((4, 0))
  with pytest.raises(ValueError, match="data_reduction: input_bytes must be > 0"):
    data_reduction(16, 0)
  p = {"head": {"encoder": a}, "tail": a}
  with pytest.raises(ValueError, match="stage must be 1 or 2"):
    bottlefit_param_labels(p, stage=3)
  with pytest.raises(ValueError, match="freeze_encoder applies to stage 2 only"):
    bottlefit_transform(optax.sgd(0.1), stage=1, freeze_encoder=True)
  with pytest.raises(ValueError, match="top-level 'head' entry"):
    bottlefit_param_labels({"tail": a}, stage=1)
  with pytest.raises(TypeError, match="tx must be an optax GradientTransformation"):
    bottlefit_transform("adam", stage=1)
  with pytest.raises(ValueError, match="BottleneckHead: code_channels must be >= 1"):
    BottleneckHead(1, 0, 8, rngs=nnx.Rngs(0))
  m = _split_model()
  with pytest.raises(ValueError, match="code must have size 2 on axis -1"):
    m.decode_and_classify(jnp.zeros((1, 4, 4, 3), jnp.float32))
  with pytest.raises(ValueError, match="BottleneckHead.encode: x must have rank 4"):
    m.encode(jnp.zeros((3, 64), jnp.float32))
  with pytest.raises(TypeError, match="SplitModel: head must be a BottleneckHead"):
    SplitModel(m.tail, m.tail)
