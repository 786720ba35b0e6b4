"""GPICL: general-purpose in-context learning by meta-learning transformers.

Paper: Louis Kirsch, James Harrison, Jascha Sohl-Dickstein, Sjoerd van Steenkiste, "General-
Purpose In-Context Learning by Meta-Learning Transformers", 2022
(https://arxiv.org/abs/2212.04458). No official code; replications kir-gadjello/GPICL and
RobvanGastel/meta-in-context-learning.

Idea. A transformer is meta-trained on a practically unlimited family of supervised tasks,
generated from one base data set by a random linear projection of the inputs and a random
permutation of the labels. Each training sequence is one task: pairs ``(x_t, y_{t-1})`` arrive
one by one and the model predicts ``y_t``, so it can only succeed by *learning the task in
context* from the labelled examples it has seen. With few tasks the model memorises them; with
many (the paper: a transition around 2^13) it becomes a general-purpose learner that also
learns unseen tasks and data sets in context. The paper argues that what bottlenecks such a
learner is the size of the state it can access while predicting (for a transformer, its KV
cache), not its parameter count.

Implemented:

- tasks: ``A_ij ~ N(0, 1/N_x)`` and a uniform permutation ``rho`` of the ``N_y`` labels,
  deterministic in ``(key, task_id)`` (:func:`task_params`);
- sequences: token ``t`` is ``[A x_t, onehot(rho(y_{t-1})), null_t]`` where the last entry
  flags ``t = 0`` (no previous label); the target is ``rho(y_t)`` (:func:`make_sequence`);
- batches: task ids drawn uniformly from ``[offset, offset + n_tasks)``, examples drawn without
  replacement, an optional fraction of the batch with the identity permutation (the paper's
  biased distribution that shortens the loss plateau) (:func:`sample_batch`);
- the meta-learner :class:`GPICLTransformer`: a causal pre-norm transformer built from the
  shared ops (:func:`bottleneck_jax.ops.attention`, :func:`~bottleneck_jax.ops.qk_rope`,
  :func:`~bottleneck_jax.ops.rms_norm`, :func:`~bottleneck_jax.ops.swiglu_linear`);
- the loss ``mean_t CE(f(x_{<=t}, y_{<t}), y_t)`` (:func:`gpicl_loss`), per-position accuracy
  (:func:`per_position_accuracy`) and the state-size metric (:func:`state_size`).

Departures: RMSNorm, SwiGLU and RoPE on all head dimensions (the replication: LayerNorm, GeGLU,
RoPE on half the dimensions); the paper's sizes (context about 100, up to 2^25 tasks, MNIST /
FashionMNIST) are replaced by small ones in the experiments; the biased distribution uses the
identity permutation as its fixed permutation.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax import ops
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key


class TaskParams(NamedTuple):
  """One generated task.

  Attributes:
    projection: ``[n_x, n_x]`` the input projection ``A`` (inputs map to ``x @ A.T``).
    perm: ``[n_y]`` int32, the label permutation (label ``c`` becomes ``perm[c]``).
  """

  projection: Float[Array, "n_x n_x"]
  perm: Int[Array, "n_y"]


class GPICLBatch(NamedTuple):
  """Meta-training sequences.

  Attributes:
    inputs: ``[*batch, seq_len, n_x + n_y + 1]`` float32 tokens.
    targets: ``[*batch, seq_len]`` int32 permuted labels.
  """

  inputs: Float[Array, "*batch seq d"]
  targets: Int[Array, "*batch seq"]


# ------------------------------------------------------------------------------ validation


def _check_data(fn: str, x, y) -> None:
  V.check_rank(fn, "x", x, 2)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "y", y, 1)
  V.check_integer(fn, "y", y)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"{fn}: x and y must have the same number of examples, got "
                     f"{x.shape[0]} and {y.shape[0]}")
  if x.shape[1] < 1:
    raise ValueError(f"{fn}: x must have at least one feature, got {V.describe(x)}")


# ------------------------------------------------------------------------------ tasks


def task_params(key, task_id: int | Int[Array, ""], *, n_x: int, n_y: int) -> TaskParams:
  """The task ``task_id``: a projection ``A_ij ~ N(0, 1/n_x)`` and a label permutation.

  Deterministic in ``(key, task_id)`` (``jax.random.fold_in``): the same id always gives the
  same task, so the number of distinct tasks is controlled by the range of ids.

  Args:
    key: the task family's ``jax.random.key`` (or an int seed).
    task_id: a non-negative int (may be traced).
    n_x: input size.
    n_y: number of classes.

  Returns:
    :class:`TaskParams`.

  Example:
    >>> from bottleneck_jax.architecture import task_params
    >>> t = task_params(0, 7, n_x=4, n_y=3)
    >>> t.projection.shape, sorted(t.perm.tolist())
    ((4, 4), [0, 1, 2])

  References:
    Kirsch et al., "General-Purpose In-Context Learning by Meta-Learning Transformers", 2022,
    https://arxiv.org/abs/2212.04458.
  """
  fn = "task_params"
  key = as_key(key, fn=fn)
  V.check_scalar(fn, "n_x", n_x, low=1, integer=True)
  V.check_scalar(fn, "n_y", n_y, low=1, integer=True)
  if hasattr(task_id, "dtype"):
    V.check_rank(fn, "task_id", task_id, 0)
    V.check_integer(fn, "task_id", task_id)
  else:
    V.check_scalar(fn, "task_id", task_id, low=0, high=2**31 - 1, integer=True)
  k = jax.random.fold_in(key, jnp.asarray(task_id, jnp.uint32))
  ka, kp = jax.random.split(k)
  a = jax.random.normal(ka, (int(n_x), int(n_x)), jnp.float32) / np.sqrt(n_x)
  return TaskParams(projection=a, perm=jax.random.permutation(kp, int(n_y)).astype(jnp.int32))


def make_sequence(x: Float[Array, "seq n_x"], y: Int[Array, "seq"], task: TaskParams, *,
                  n_y: int) -> GPICLBatch:
  """One task's sequence: token ``t = [A x_t, onehot(perm[y_{t-1}]), [t == 0]]``, target
  ``perm[y_t]``.

  Args:
    x: ``[seq, n_x]`` the examples, in order.
    y: ``[seq]`` their labels in ``[0, n_y)``.
    task: the task (:func:`task_params`).
    n_y: number of classes.

  Returns:
    :class:`GPICLBatch` with ``inputs [seq, n_x + n_y + 1]`` and ``targets [seq]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import make_sequence, task_params
    >>> s = make_sequence(jnp.ones((3, 2)), jnp.array([0, 1, 2]), task_params(0, 0, n_x=2, n_y=3),
    ...                   n_y=3)
    >>> s.inputs.shape, s.inputs[0, -1].item()
    ((3, 6), 1.0)
  """
  fn = "make_sequence"
  _check_data(fn, x, y)
  V.check_scalar(fn, "n_y", n_y, low=1, integer=True)
  if not isinstance(task, TaskParams):
    raise TypeError(f"{fn}: task must be a TaskParams (from task_params), got "
                    f"{type(task).__name__}")
  V.check_shape(fn, "task.projection", task.projection, (x.shape[1], x.shape[1]))
  V.check_shape(fn, "task.perm", task.perm, (int(n_y),))
  if x.shape[0] < 1:
    raise ValueError(f"{fn}: x must hold at least one example, got {V.describe(x)}")
  n_y = int(n_y)
  xs = jnp.asarray(x, jnp.float32) @ task.projection.T.astype(jnp.float32)
  labels = task.perm[jnp.clip(y, 0, n_y - 1)]
  prev = jax.nn.one_hot(labels[:-1], n_y, dtype=jnp.float32)
  prev = jnp.concatenate([jnp.zeros((1, n_y), jnp.float32), prev], axis=0)
  null = jnp.zeros((x.shape[0], 1), jnp.float32).at[0, 0].set(1.0)
  return GPICLBatch(inputs=jnp.concatenate([xs, prev, null], axis=-1),
                    targets=labels.astype(jnp.int32))


def sample_batch(key, x: Float[Array, "n n_x"], y: Int[Array, "n"], *, task_key,
                 n_tasks: int, batch_size: int, seq_len: int, n_y: int, task_offset: int = 0,
                 fixed_perm_frac: float = 0.0) -> GPICLBatch:
  """A batch of meta-training (or meta-test) sequences from a base data set.

  Each row: a task id uniform in ``[task_offset, task_offset + n_tasks)``, ``seq_len`` examples
  drawn without replacement, :func:`make_sequence`. The first
  ``round(fixed_perm_frac * batch_size)`` rows use the identity permutation (the paper's biased
  task distribution).

  Args:
    key: randomness of this batch.
    x: ``[n, n_x]`` base inputs (z-normalised); ``n >= seq_len``.
    y: ``[n]`` labels in ``[0, n_y)``.
    task_key: the key of the task family (:func:`task_params`).
    n_tasks: number of distinct tasks (``>= 1``).
    batch_size: rows.
    seq_len: sequence length.
    n_y: number of classes.
    task_offset: first task id (held-out tasks: an offset past the training ids).
    fixed_perm_frac: in ``[0, 1]``.

  Returns:
    :class:`GPICLBatch` ``(inputs [batch, seq, n_x + n_y + 1], targets [batch, seq])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import sample_batch
    >>> b = sample_batch(0, jnp.ones((10, 4)), jnp.arange(10) % 3, task_key=1, n_tasks=8,
    ...                  batch_size=2, seq_len=5, n_y=3)
    >>> b.inputs.shape, b.targets.shape
    ((2, 5, 8), (2, 5))
  """
  fn = "sample_batch"
  key = as_key(key, fn=fn)
  task_key = as_key(task_key, fn=fn, arg="task_key")
  _check_data(fn, x, y)
  V.check_scalar(fn, "n_tasks", n_tasks, low=1, high=2**31 - 1, integer=True)
  V.check_scalar(fn, "batch_size", batch_size, low=1, integer=True)
  V.check_scalar(fn, "seq_len", seq_len, low=1, integer=True)
  V.check_scalar(fn, "n_y", n_y, low=1, integer=True)
  V.check_scalar(fn, "task_offset", task_offset, low=0, integer=True)
  V.check_scalar(fn, "fixed_perm_frac", fixed_perm_frac, low=0.0, high=1.0, static=True)
  if int(task_offset) + int(n_tasks) > 2**31 - 1:
    raise ValueError(f"{fn}: task_offset + n_tasks must be < 2**31, got "
                     f"{task_offset} + {n_tasks}")
  if x.shape[0] < seq_len:
    raise ValueError(f"{fn}: x must hold at least seq_len ({seq_len}) examples, got "
                     f"{x.shape[0]}")
  n_fixed = int(round(float(fixed_perm_frac) * int(batch_size)))
  return _sample_batch(key, x, y, task_key, int(n_tasks), int(batch_size), int(seq_len),
                       int(n_y), int(task_offset), n_fixed)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 9))
def _sample_batch(key, x, y, task_key, n_tasks, batch_size, seq_len, n_y, task_offset, n_fixed):
  n_x = x.shape[1]
  k_ids, k_ex = jax.random.split(key)
  ids = jax.random.randint(k_ids, (batch_size,), 0, n_tasks) + task_offset
  ex_keys = jax.random.split(k_ex, batch_size)
  fixed = jnp.arange(batch_size) < n_fixed

  def row(task_id, k, is_fixed):
    task = task_params(task_key, task_id, n_x=n_x, n_y=n_y)
    perm = jnp.where(is_fixed, jnp.arange(n_y, dtype=jnp.int32), task.perm)
    idx = jax.random.choice(k, x.shape[0], (seq_len,), replace=False)
    return make_sequence(x[idx], y[idx], TaskParams(task.projection, perm), n_y=n_y)

  return jax.vmap(row)(ids, ex_keys, fixed)


# ------------------------------------------------------------------------------ objective


def _check_logits(fn: str, logits, targets) -> None:
  V.check_rank(fn, "logits", logits, min_rank=2)
  V.check_floating(fn, "logits", logits)
  V.check_integer(fn, "targets", targets)
  V.check_shape(fn, "targets", targets, logits.shape[:-1])
  if min(logits.shape) < 1:
    raise ValueError(f"{fn}: logits must have non-empty axes, got {V.describe(logits)}")


def gpicl_loss(logits: Float[Array, "*batch seq n_y"], targets: Int[Array, "*batch seq"]
               ) -> Float[Array, ""]:
  """The meta-training loss: cross-entropy averaged over every position of every sequence.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import gpicl_loss
    >>> round(float(gpicl_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32))), 4)
    1.3863
  """
  fn = "gpicl_loss"
  _check_logits(fn, logits, targets)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets))


def per_position_accuracy(logits: Float[Array, "*batch seq n_y"],
                          targets: Int[Array, "*batch seq"]) -> Float[Array, "seq"]:
  """Accuracy at each position of the sequence, averaged over the leading axes: an in-context
  learner's accuracy rises with the number of labelled examples it has seen.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import per_position_accuracy
    >>> logits = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> per_position_accuracy(logits, jnp.array([[0, 0]])).tolist()
    [1.0, 0.0]
  """
  fn = "per_position_accuracy"
  _check_logits(fn, logits, targets)
  hit = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return jnp.mean(hit.reshape(-1, hit.shape[-1]), axis=0)


def state_size(kind: Literal["transformer", "lstm"], *, d_model: int | None = None,
               n_layers: int | None = None, seq_len: int | None = None,
               hidden: int | None = None) -> int:
  """The accessible state of a sequence model when it predicts the last token (floats):
  a transformer's KV cache ``2 n_layers seq_len d_model``, an LSTM's ``2 hidden`` (hidden and
  cell state).

  Example:
    >>> from bottleneck_jax.architecture import state_size
    >>> state_size("transformer", d_model=64, n_layers=2, seq_len=32)
    8192
  """
  fn = "state_size"
  V.check_choice(fn, "kind", kind, ("transformer", "lstm"))
  if kind == "transformer":
    for name, v in (("d_model", d_model), ("n_layers", n_layers), ("seq_len", seq_len)):
      if v is None:
        raise ValueError(f"{fn}: {name} must be given for kind='transformer', got None")
      V.check_scalar(fn, name, v, low=1, integer=True)
    return 2 * int(n_layers) * int(seq_len) * int(d_model)
  if hidden is None:
    raise ValueError(f"{fn}: hidden must be given for kind='lstm', got None")
  V.check_scalar(fn, "hidden", hidden, low=1, integer=True)
  return 2 * int(hidden)


# ------------------------------------------------------------------------------ the meta-learner


class _Block(nnx.Module):
  def __init__(self, d_model: int, n_heads: int, d_ff: int, *, rngs: nnx.Rngs):
    self.n_heads = n_heads
    self.attn_norm = ops.FusedRMSNorm(d_model, rngs=rngs)
    self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
    self.proj = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)
    self.mlp_norm = ops.FusedRMSNorm(d_model, rngs=rngs)
    init = nnx.initializers.lecun_normal()
    self.w_gate = nnx.Param(init(rngs.params(), (d_model, d_ff)))
    self.w_up = nnx.Param(init(rngs.params(), (d_model, d_ff)))
    self.down = nnx.Linear(d_ff, d_model, use_bias=False, rngs=rngs)

  def __call__(self, h, positions):
    b, t, d = h.shape
    hd = d // self.n_heads
    q, k, v = jnp.split(self.qkv(self.attn_norm(h)), 3, axis=-1)
    q, k, v = (a.reshape(b, t, self.n_heads, hd) for a in (q, k, v))
    q, k = ops.qk_rope(q, k, positions)
    h = h + self.proj(ops.attention(q, k, v, causal=True).out.reshape(b, t, d))
    return h + self.down(ops.swiglu_linear(self.mlp_norm(h), self.w_gate[...], self.w_up[...]))


class GPICLTransformer(nnx.Module):
  """The GPICL meta-learner: a causal pre-norm transformer over the task tokens.

  ``inputs [*batch, seq, n_x + n_y + 1] -> logits [*batch, seq, n_y]``; the logits at ``t``
  predict ``rho(y_t)`` from ``x_{<=t}`` and ``y_{<t}``.

  Args:
    n_x: input size.
    n_y: number of classes.
    d_model: width.
    n_layers: number of blocks.
    n_heads: attention heads (divides ``d_model``; head size even for RoPE).
    d_ff: SwiGLU hidden size (default ``4 d_model``).
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.architecture import GPICLTransformer
    >>> m = GPICLTransformer(4, 3, d_model=16, n_layers=1, n_heads=2, rngs=nnx.Rngs(0))
    >>> m(jnp.zeros((2, 5, 8))).shape
    (2, 5, 3)
  """

  def __init__(self, n_x: int, n_y: int, *, d_model: int = 64, n_layers: int = 2,
               n_heads: int = 4, d_ff: int | None = None, rngs: nnx.Rngs):
    fn = "GPICLTransformer"
    for name, v in (("n_x", n_x), ("n_y", n_y), ("d_model", d_model), ("n_layers", n_layers),
                    ("n_heads", n_heads)):
      V.check_scalar(fn, name, v, low=1, integer=True)
    if d_model % n_heads or (d_model // n_heads) % 2:
      raise ValueError(f"{fn}: n_heads must divide d_model into even head sizes (RoPE), got "
                       f"d_model={d_model}, n_heads={n_heads}")
    d_ff = 4 * d_model if d_ff is None else d_ff
    V.check_scalar(fn, "d_ff", d_ff, low=1, integer=True)
    self.n_x, self.n_y = int(n_x), int(n_y)
    self.embed = nnx.Linear(n_x + n_y + 1, d_model, rngs=rngs)
    self.blocks = nnx.List([_Block(d_model, n_heads, d_ff, rngs=rngs) for _ in range(n_layers)])
    self.norm = ops.FusedRMSNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, n_y, rngs=rngs)

  def __call__(self, inputs: Float[Array, "*batch seq d_in"]) -> Float[Array, "*batch seq n_y"]:
    fn = "GPICLTransformer"
    V.check_rank(fn, "inputs", inputs, min_rank=2)
    V.check_floating(fn, "inputs", inputs)
    V.check_axis_size(fn, "inputs", inputs, -1, self.n_x + self.n_y + 1, "n_x + n_y + 1")
    lead = inputs.shape[:-2]
    h = self.embed(inputs.reshape(-1, *inputs.shape[-2:]))
    positions = jnp.broadcast_to(jnp.arange(h.shape[1]), h.shape[:2])
    for block in self.blocks:
      h = block(h, positions)
    return self.head(self.norm(h)).reshape(*lead, inputs.shape[-2], self.n_y)
