"""BottleFit on scikit-learn's digits: a 1-channel bottleneck keeps the teacher's accuracy.

Paper: Matsubara, Callegaro, Singh, Levorato & Restuccia, "BottleFit: Learning Compressed
Representations in Deep Neural Networks for Effective and Efficient Split Computing", WoWMoM
2022, https://arxiv.org/abs/2201.02693. The paper's claim: injecting a bottleneck into the head
of a pretrained network and training it in two stages (head distillation, then fine-tuning with
knowledge distillation) reaches 77.1 % data compression at most 0.6 % top-1 accuracy loss on
ImageNet.

Recipe (the project's test plan, a reconstructed design): the 8x8 digits (1347 train / 450
test). A teacher CNN, ``conv 3x3 (1 -> 16) . conv 3x3/2 (16 -> 32)`` = the split point "layer2"
(4x4x32), then ``conv 3x3 (32 -> 32)`` = "layer3", global average pooling and a linear
classifier, trained with cross-entropy (Adam 1e-3). The student replaces the teacher's head by a
:class:`~bottleneck_jax.compression.BottleneckHead` whose encoder sends ``C`` code channels at
4x4 (``C = 1``: 16 values against 64 pixels, 75 % data reduction at 8 bits: the paper's regime)
and whose decoder restores the 4x4x32 "layer2"; the tail (layer3, pooling, classifier) starts
from the teacher's. Stage 1 (head distillation): sum-of-squares loss on (decoder output, teacher
layer2) and (student layer3, teacher layer3), tail frozen by an Optax label map, Adam 1e-3 with
x0.1 at half time. Stage 2 (fine-tuning): KD loss (T = 1, alpha = 0.5), the whole student, SGD
1e-3 with momentum 0.9, weight decay 5e-4 and x0.1 at half time (the reference's optimiser).
Every model goes through :func:`bottleneck_jax.train.train` (checkpoints under
``checkpoints/{teacher, c<C>_stage1, c<C>_stage2, scratch}``).

Also measured and reported, never asserted: accuracy against transmitted bytes for
``C in {1, 2, 4}`` (plot ``accuracy_vs_bytes``), the 8-bit quantised code, naive alternatives at
the split point (the teacher's 4x4x32 "layer2" tensor sent at 8 bits: 512 bytes, eight times the
input; the input average-pooled to 4x4 and sent at 8 bits, the same 16 bytes as ``C = 1``,
classified by the teacher after nearest upsampling) and the same student trained from scratch
with cross-entropy for the same number of steps.

First full run (CPU, after the expectations were declared): teacher 0.940 (a miss of the test plan's
0.95 at 500 steps); C = 1 student 0.916 after stage 2 (0.884 after stage 1; within 3 points of
the teacher), 0.916 with the 8-bit code; stage-1 loss down 41.6x; tail bit-identical in stage 1;
C = 2: 0.936, C = 4: 0.940. Naive alternatives: the teacher's split tensor at 8 bits 0.944 for
512 bytes; the 4x4 pooled input 0.753 for 16 bytes. The same C = 1 student trained from scratch
with cross-entropy reached 0.942: on digits the two-stage recipe did not beat plain training of
the bottlenecked network.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit, replicated
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "bottlefit"
_INPUT_BYTES = 64  # an 8x8 image at 8 bits per pixel
_SPLIT_CHANNELS = 32


class DigitsHead(nnx.Module):
  """The teacher's head: ``conv 3x3 (1 -> 16) . ReLU . conv 3x3/2 (16 -> 32) . ReLU``."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(16, _SPLIT_CHANNELS, (3, 3), strides=(2, 2), rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))


class DigitsTail(nnx.Module):
  """The tail: ``conv 3x3 (32 -> 32) . ReLU`` ("layer3"), global average pooling, linear."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.layer3 = nnx.Conv(_SPLIT_CHANNELS, _SPLIT_CHANNELS, (3, 3), rngs=rngs)
    self.fc = nnx.Linear(_SPLIT_CHANNELS, 10, rngs=rngs)

  def features(self, h):
    return jax.nn.relu(self.layer3(h))

  def classify(self, f):
    return self.fc(jnp.mean(f, axis=(1, 2)))

  def __call__(self, h):
    return self.classify(self.features(h))


class DigitsTeacher(nnx.Module):
  """The teacher CNN: :class:`DigitsHead` then :class:`DigitsTail`."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.head = DigitsHead(rngs=rngs)
    self.tail = DigitsTail(rngs=rngs)

  def __call__(self, x):
    return self.tail(self.head(x))


def _images(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32).reshape(-1, 8, 8, 1)


def _accuracy(logits, y) -> float:
  return float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(y)))


def _host(tree):
  return jax.tree.map(lambda a: np.asarray(jax.device_get(a)), tree)


def _ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _step_schedule(lr: float, steps: int):
  """``lr``, times 0.1 from half time on (the reference: x0.1 at epoch 5 of 10)."""
  return optax.piecewise_constant_schedule(lr, {max(1, steps // 2): 0.1})


def run_bottlefit(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.compression import (
      BottleneckHead,
      SplitModel,
      bottlefit_transform,
      code_bits,
      data_reduction,
      dequantize_code,
      head_distillation_loss,
      kd_loss,
      quantize_code,
  )
  from bottleneck_jax.data import load_digits

  config = ctx.config
  seed = ctx.seed
  data = load_digits(seed=int(config["data_seed"]))
  x_tr, y_tr = _images(data.train["x"]), np.asarray(data.train["y"], np.int32)
  x_te, y_te = _images(data.test["x"]), np.asarray(data.test["y"], np.int32)
  batch_size = int(config["batch_size"])
  channels = [int(c) for c in config["code_channels"]]
  if not channels or channels[0] != 1 or len(set(channels)) != len(channels):
    raise ValueError(f"bottlefit-digits: code_channels must start with 1 (the headline) and "
                     f"hold distinct values, got {channels}")
  hidden = int(config["hidden"])
  s1_steps, s2_steps = int(config["stage1_steps"]), int(config["stage2_steps"])

  # ---- teacher ---------------------------------------------------------------------------
  def ce_loss(model, batch, key):
    logits = model(batch["x"])
    return _ce(logits, batch["y"]), {"accuracy": jnp.mean(
        (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32))}

  t_steps = int(config["teacher_steps"])
  teacher_res = fit(ctx, "teacher", lambda: DigitsTeacher(rngs=nnx.Rngs(seed)),
                    optax.adam(float(config["teacher_lr"])), ce_loss, {"x": x_tr, "y": y_tr},
                    steps=t_steps, batch_size=batch_size, tags={"model": "teacher"},
                    desc="bottlefit teacher")
  teacher = teacher_res.model

  @nnx.jit
  def teacher_outputs(model, x):
    h2 = model.head(x)
    h3 = model.tail.features(h2)
    return h2, h3, model.tail.classify(h3)

  @nnx.jit
  def teacher_split_quantised(model, x):  # the teacher's layer2 sent at 8 bits
    h2 = model.head(x)
    qc = quantize_code(h2, num_bits=8)
    return model.tail(dequantize_code(qc.q, qc.scale, qc.zero_point))

  @nnx.jit
  def teacher_on_pooled_input(model, x):  # 4x4 average-pooled input at 8 bits, upsampled
    pooled = x.reshape(-1, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    qc = quantize_code(pooled, num_bits=8)
    deq = dequantize_code(qc.q, qc.scale, qc.zero_point)
    return model(jnp.repeat(jnp.repeat(deq, 2, axis=1), 2, axis=2))

  with jax.set_mesh(teacher_res.mesh):
    tr = replicated({"x": x_tr}, teacher_res.mesh)
    te = replicated({"x": x_te}, teacher_res.mesh)
    t2, t3, t_logits = _host(teacher_outputs(teacher, tr["x"]))
    teacher_acc = _accuracy(teacher_outputs(teacher, te["x"])[2], y_te)
    split8_acc = _accuracy(teacher_split_quantised(teacher, te["x"]), y_te)
    pooled_acc = _accuracy(teacher_on_pooled_input(teacher, te["x"]), y_te)
  teacher_tail = _host(nnx.state(teacher.tail, nnx.Param))
  train_arrays = {"x": x_tr, "y": y_tr, "t2": t2, "t3": t3, "t_logits": t_logits}

  # ---- students ---------------------------------------------------------------------------
  def student(c: int, init_state=None):
    rngs = nnx.Rngs(seed + 1 + c)
    m = SplitModel(BottleneckHead(1, c, _SPLIT_CHANNELS, hidden=hidden, stride=2, rngs=rngs),
                   DigitsTail(rngs=rngs), rngs=rngs)
    if init_state is None:
      nnx.update(m.tail, jax.tree.map(jnp.asarray, teacher_tail))
    else:
      nnx.update(m, jax.tree.map(jnp.asarray, init_state))
    return m

  def stage1_loss(model, batch, key):
    dec = model.head(batch["x"]).z
    f3 = model.tail.features(dec)
    loss = head_distillation_loss([dec, f3], [batch["t2"], batch["t3"]], reduction="sum")
    return loss, {"layer2_sse": jnp.sum(jnp.square(dec - batch["t2"]))}

  def stage2_loss(model, batch, key):
    logits = model(batch["x"]).logits
    loss = kd_loss(logits, batch["t_logits"], batch["y"],
                   temperature=float(config["kd_temperature"]), alpha=float(config["kd_alpha"]))
    return loss, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(
        jnp.float32))}

  @nnx.jit
  def student_eval(model, x):
    return model(x).logits, model(x, quantize=True).logits

  @nnx.jit
  def stage1_objective(model, x, t2_, t3_):
    dec = model.head(x).z
    return head_distillation_loss([dec, model.tail.features(dec)], [t2_, t3_])

  def evaluate(res):
    with jax.set_mesh(res.mesh):
      te = replicated({"x": x_te}, res.mesh)
      f, q = student_eval(res.model, te["x"])
    return _accuracy(f, y_te), _accuracy(q, y_te)

  def stage1_value(model, mesh):
    with jax.set_mesh(mesh):
      arrs = replicated({"x": x_tr, "t2": t2, "t3": t3}, mesh)
      return float(stage1_objective(model, arrs["x"], arrs["t2"], arrs["t3"]))

  rows = []
  headline: dict[str, Any] = {}
  for c in channels:
    tx1 = bottlefit_transform(optax.adam(_step_schedule(float(config["stage1_lr"]), s1_steps)),
                              stage=1)
    r1 = fit(ctx, f"c{c}_stage1", lambda c=c: student(c), tx1, stage1_loss, train_arrays,
             steps=s1_steps, batch_size=batch_size, tags={"model": "student", "channels": c,
                                                          "stage": 1},
             desc=f"bottlefit C={c} stage 1")
    s1_state = _host(nnx.state(r1.model))
    acc1, acc1_q = evaluate(r1)
    tx2 = bottlefit_transform(optax.chain(
        optax.add_decayed_weights(float(config["stage2_weight_decay"])),
        optax.sgd(_step_schedule(float(config["stage2_lr"]), s2_steps),
                  momentum=float(config["stage2_momentum"]))), stage=2)
    r2 = fit(ctx, f"c{c}_stage2", lambda c=c, s=s1_state: student(c, s), tx2, stage2_loss,
             train_arrays, steps=s2_steps, batch_size=batch_size,
             tags={"model": "student", "channels": c, "stage": 2},
             desc=f"bottlefit C={c} stage 2")
    acc2, acc2_q = evaluate(r2)
    payload = code_bits((4, 4, c), num_bits=8) // 8
    with_side = code_bits((4, 4, c), num_bits=8, side_bits=40) / 8
    row = {"code_channels": c, "code_bytes": payload, "code_bytes_with_side_info": with_side,
           "data_reduction": data_reduction(payload, _INPUT_BYTES),
           "stage1_test_accuracy": acc1, "stage1_quantized_test_accuracy": acc1_q,
           "test_accuracy": acc2, "quantized_test_accuracy": acc2_q}
    rows.append(row)
    if c == 1:
      init_value = stage1_value(student(1), r1.mesh)
      final_value = stage1_value(r1.model, r1.mesh)
      tail_after = _host(nnx.state(r1.model.tail, nnx.Param))
      same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), teacher_tail, tail_after)
      headline = {
          "student_test_accuracy": acc2, "student_quantized_test_accuracy": acc2_q,
          "quantization_accuracy_change": abs(acc2_q - acc2),
          "stage1_test_accuracy": acc1,
          "stage1_loss_initial": init_value, "stage1_loss_final": final_value,
          "stage1_loss_ratio": init_value / max(final_value, 1e-30),
          "tail_unchanged_stage1": all(jax.tree.leaves(same)),
          "code_bytes": payload, "data_reduction": row["data_reduction"]}

  # ---- the same student from scratch, cross-entropy only, same number of steps --------------
  scratch_steps = s1_steps + s2_steps
  rs = fit(ctx, "scratch",
           lambda: SplitModel(BottleneckHead(1, 1, _SPLIT_CHANNELS, hidden=hidden, stride=2,
                                             rngs=nnx.Rngs(seed + 100)),
                              DigitsTail(rngs=nnx.Rngs(seed + 101))),
           optax.adam(_step_schedule(float(config["stage1_lr"]), scratch_steps)),
           lambda m, b, k: ce_loss(lambda x: m(x).logits, b, k), {"x": x_tr, "y": y_tr},
           steps=scratch_steps, batch_size=batch_size, tags={"model": "scratch"},
           desc="bottlefit C=1 from scratch")
  scratch_acc, _ = evaluate(rs)

  if ctx.is_main_process:
    from bottleneck_jax.train.plots import plot_curves
    xs = [r["code_bytes"] for r in rows]
    plot_curves(ctx.plot_path("accuracy_vs_bytes"),
                {"BottleFit (float code)": (xs, [r["test_accuracy"] for r in rows]),
                 "BottleFit (8-bit code)": (xs, [r["quantized_test_accuracy"] for r in rows]),
                 "stage 1 only": (xs, [r["stage1_test_accuracy"] for r in rows]),
                 "pooled input 4x4 (teacher)": ([16], [pooled_acc])},
                xlabel="transmitted bytes per image (input: 64)", ylabel="test accuracy",
                styles={k: {"marker": "o"} for k in ("BottleFit (float code)",
                                                     "BottleFit (8-bit code)", "stage 1 only",
                                                     "pooled input 4x4 (teacher)")},
                hline=teacher_acc, title="BottleFit on digits (dotted: teacher)")
  return {"teacher_test_accuracy": teacher_acc, **headline,
          "accuracy_drop": teacher_acc - headline["student_test_accuracy"],
          "teacher_split_8bit_test_accuracy": split8_acc,
          "teacher_split_bytes": _SPLIT_CHANNELS * 16,
          "pooled_input_test_accuracy": pooled_acc,
          "scratch_test_accuracy": scratch_acc,
          "table": rows}


BOTTLEFIT_DIGITS = register(Experiment(
    name="bottlefit-digits",
    paper_id=PAPER_ID,
    claim=("A bottleneck injected at the split point and trained in two stages (head "
           "distillation, then KD fine-tuning) keeps the teacher's accuracy while sending far "
           "less than the input: the paper reports 77.1 % data compression at <= 0.6 % top-1 "
           "loss on ImageNet (here: 75 % of an 8x8 digit, a C = 1 code at 4x4, 8 bits)."),
    setting="proxy",
    departures=(
        "scikit-learn digits (8x8) and a 3-conv teacher instead of ImageNet and "
        "ResNet-152 / DenseNet",
        "a conv encoder / decoder without BatchNorm; code at 4x4 with C in {1, 2, 4}",
        "training lengths in steps (1000 + 500 at batch 64) instead of 10 + 10 epochs",
        "no data augmentation (the reference: RandomResizedCrop and flips)",
        "data reduction against 8-bit raw pixels (64 bytes), not a JPEG file",
        "the accuracy threshold is the test plan's 3 points (the paper's 0.6 % is on ImageNet)",
    ),
    metric="student_test_accuracy",
    metrics={
        "teacher_test_accuracy": Metric("held-out accuracy of the teacher CNN", low=0, high=1),
        "student_test_accuracy": Metric("held-out accuracy of the C = 1 student after stage 2 "
                                        "(float code)", low=0, high=1),
        "student_quantized_test_accuracy": Metric("the same with the code sent at 8 bits",
                                                  low=0, high=1),
        "quantization_accuracy_change": Metric("|8-bit - float| held-out accuracy, C = 1",
                                               low=0, high=1),
        "stage1_loss_ratio": Metric("stage-1 head-distillation loss on the training set, "
                                    "at initialisation over after stage 1 (C = 1)", low=0),
        "tail_unchanged_stage1": "the tail's parameters after stage 1 equal the teacher's, "
                                 "bit for bit (C = 1)",
        "accuracy_drop": Metric("teacher - student held-out accuracy (C = 1)", low=-1, high=1),
    },
    expectations=(
        Expectation("teacher_test_accuracy", ">=", 0.95, reads=("teacher_steps",),
                    quick_value=0.9,
                    source="the project's test plan: the teacher CNN reaches >= 95 % test "
                           "accuracy"),
        Expectation("stage1_loss_ratio", ">=", 10.0, reads=("stage1_steps",),
                    source="the project's test plan: the stage-1 feature loss drops >= 10x"),
        Expectation("student_test_accuracy", ">=", Ref("teacher_test_accuracy", offset=-0.03),
                    reads=("code_channels", "stage1_steps", "stage2_steps"),
                    source="the project's test plan: after stage 2 (KD) the student is within "
                           "3 points of the teacher at 75 % data reduction"),
        Expectation("quantization_accuracy_change", "<=", 0.01, reads=("code_channels",),
                    source="the project's test plan: 8-bit code quantisation changes the "
                           "accuracy by <= 1 point"),
        Expectation("tail_unchanged_stage1", "==", True,
                    source="the project's test plan / the reference: the tail is frozen in "
                           "stage 1 (bit-identical)"),
    ),
    run=run_bottlefit,
    defaults={"data_seed": 0, "batch_size": 64, "hidden": 16, "code_channels": [1, 2, 4],
              "teacher_steps": 500, "teacher_lr": 1e-3,
              "stage1_steps": 1000, "stage1_lr": 1e-3,
              "stage2_steps": 500, "stage2_lr": 1e-3, "stage2_momentum": 0.9,
              "stage2_weight_decay": 5e-4, "kd_temperature": 1.0, "kd_alpha": 0.5,
              "checkpoint_every": 0, "keep": 1},
    quick={"teacher_steps": 300, "stage1_steps": 200, "stage2_steps": 100,
           "code_channels": [1]},
    paper_value="77.1 % data compression at <= 0.6 % top-1 accuracy loss (ImageNet, abstract)",
))

__all__ = ["BOTTLEFIT_DIGITS", "DigitsHead", "DigitsTail", "DigitsTeacher"]
