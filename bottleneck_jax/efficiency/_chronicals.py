"""Chronicals: A High-Performance Framework for LLM Fine-Tuning (2026), catalogue id ``chronicals``.

Chronicals speeds fine-tuning up by removing the memory bottlenecks of a training step. Its parts
and where they live in this library:

* the loss head — a Cut-Cross-Entropy-style fused cross-entropy that never materialises the
  ``[N, V]`` logits ("CCE logits 5 GB -> 135 MB"): :func:`bottleneck_jax.ops.linear_cross_entropy`;
* fused RMSNorm, SwiGLU and QK-RoPE with hand-written backward passes:
  :func:`bottleneck_jax.ops.rms_norm`, :func:`~bottleneck_jax.ops.swiglu`,
  :func:`~bottleneck_jax.ops.swiglu_linear`, :func:`~bottleneck_jax.ops.qk_rope`;
* sequence packing (best-fit decreasing, segment ids and positions for attention masks):
  :func:`bottleneck_jax.data.pack_sequences`;
* LoRA+ — defined here: a LoRA adapter whose ``B`` factor learns ``ratio`` times faster than
  ``A`` (ratio 16 in Chronicals), as an Optax transformation.

How they compose in one step: pack the sequences (no compute on padding), run the decoder with
the fused norms/activations/rotary embeddings (less saved for the backward pass), take the loss
with the fused linear cross-entropy (no logits in memory), and update only the adapters with
:func:`lora_plus` (``nnx.Optimizer(model, lora_plus(lr), wrt=nnx.LoRAParam)``).

LoRA+ (Hayou, Ghosh & Yu, *LoRA+: Efficient Low Rank Adaptation of Large Models*, 2024,
https://arxiv.org/abs/2402.12354). A LoRA adapter adds ``x @ A @ B`` (``A [in, r]`` random,
``B [r, out]`` zero at init) to a frozen linear layer. With one learning rate for both, feature
learning is inefficient at large width; LoRA+ sets ``lr_B = ratio * lr_A`` (ratio ~ 16). Here that
is ``optax.multi_transform({"A": opt(lr), "B": opt(ratio * lr), "frozen": set_to_zero()}, labels)``
with labels taken from parameter paths: a path component named ``lora_a``/``lora_A`` gives
``"A"``, ``lora_b``/``lora_B`` gives ``"B"`` (the names of ``flax.nnx.LoRA`` and of HF PEFT),
everything else ``"frozen"`` (or ``"other"``, trained at ``lr``, when ``frozen=False``).

The labels work on plain pytrees, on ``nnx.State`` holding ``nnx.Variable`` leaves (what
``nnx.Optimizer`` passes to ``tx.init``) and on the pure ``nnx.State`` it passes to
``tx.update``. The adapter layer is flax's own: ``nnx.LoRA(in, rank, out, base_module=linear,
rngs=...)`` (or ``nnx.LoRALinear``) stores ``lora_a``/``lora_b`` as ``nnx.LoRAParam``, so
``nnx.Optimizer(model, lora_plus(lr), wrt=nnx.LoRAParam)`` holds state for, and updates, the
adapters only; the base weights are never seen by the optimizer. :func:`lora_linear` is the
same computation as a pure function with an ``alpha / rank`` scale (``nnx.LoRA`` has none).

Departures from the paper: Chronicals' speed-ups are measured against PyTorch eager; under XLA
the elementwise chains already fuse, so the lever here is what is saved for the backward pass
(measured numbers in ``BENCHMARKS.md``); no Triton kernels (XLA and Pallas instead). For LoRA+,
the A/B orientation follows ``nnx.LoRA`` (``y = x W + s x A B``); ``B`` is the zero-initialised
output-side factor, which is the one LoRA+ speeds up. The adapter scale is ``s = alpha / rank``
(``alpha=None`` means ``s = 1``).

References:
  Chronicals: A High-Performance Framework for LLM Fine-Tuning with 3.51x Speedup over Unsloth
  (2026). Wijmans et al., Cut Your Losses in Large-Vocabulary Language Models (2024),
  https://arxiv.org/abs/2411.09009. Hayou et al., LoRA+ (2024), https://arxiv.org/abs/2402.12354.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, PyTree

from bottleneck_jax.core import validation as V

_A_NAMES = ("lora_a", "lora_A")
_B_NAMES = ("lora_b", "lora_B")


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _path_names(path) -> tuple[str, ...]:
  names: list[str] = []
  for k in path:
    for part in _key_name(k).replace("/", ".").split("."):
      if part:
        names.append(part)
  return tuple(names)


def default_lora_label(path_names: tuple[str, ...]) -> str | None:
  """``"A"``/``"B"`` when a path component is ``lora_a``/``lora_A``/``lora_b``/``lora_B``.

  The last LoRA component of the path decides; ``None`` when there is none.
  """
  for name in reversed(path_names):
    if name in _A_NAMES:
      return "A"
    if name in _B_NAMES:
      return "B"
  return None


def lora_plus_labels(params: PyTree, *,
                     label_fn: Callable[[tuple[str, ...]], str | None] | None = None,
                     frozen: bool = True) -> PyTree:
  """Labels ``"A"``, ``"B"`` and ``"frozen"`` (or ``"other"``) for every parameter leaf.

  Args:
    params: a pytree of arrays, or an ``nnx.State`` of arrays or of ``nnx.Variable`` objects.
    label_fn: maps a path (a tuple of str components, e.g. ``("layer", "lora", "lora_a")``)
      to ``"A"``, ``"B"`` or ``None``; default :func:`default_lora_label`.
    frozen: label non-LoRA leaves ``"frozen"`` (True) or ``"other"`` (False).

  Returns:
    A pytree with the structure of ``params`` (``nnx.Variable`` objects count as leaves) holding the
    labels.

  Example:
    >>> import jax.numpy as jnp
    >>> lora_plus_labels({"w": jnp.ones(2), "lora_a": jnp.ones(2), "lora_b": jnp.ones(2)})
    {'lora_a': 'A', 'lora_b': 'B', 'w': 'frozen'}
  """
  label_fn = default_lora_label if label_fn is None else label_fn
  if not callable(label_fn):
    raise TypeError(f"lora_plus_labels: label_fn must be callable or None, got "
                    f"{type(label_fn).__name__}")
  rest = "frozen" if frozen else "other"

  def one(path, _):
    label = label_fn(_path_names(path))
    if label not in ("A", "B", None, "frozen", "other"):
      raise ValueError(f"lora_plus_labels: label_fn must return 'A', 'B', 'frozen', 'other' or "
                       f"None, got {label!r} for path {_path_names(path)}")
    return rest if label is None else label

  return jax.tree_util.tree_map_with_path(one, params,
                                          is_leaf=lambda x: isinstance(x, nnx.Variable))


def _scaled(learning_rate, ratio):
  if callable(learning_rate):
    return lambda count: ratio * learning_rate(count)
  return ratio * learning_rate


def lora_plus(learning_rate: optax.ScalarOrSchedule, *, ratio: float = 16.0,
              optimizer: Callable[..., optax.GradientTransformation] = optax.adamw,
              label_fn: Callable[[tuple[str, ...]], str | None] | None = None,
              frozen: bool = True, **opt_kwargs) -> optax.GradientTransformation:
  """LoRA+: ``optimizer(lr)`` on the A factors, ``optimizer(ratio * lr)`` on the B factors.

  .. math::
    \\eta_A = \\eta, \\qquad \\eta_B = \\lambda\\,\\eta \\quad (\\lambda = 16 \\text{ by default})

  Non-LoRA parameters get zero updates (``optax.set_to_zero``) when ``frozen=True`` and
  ``optimizer(lr)`` otherwise. Labels come from parameter paths (see :func:`lora_plus_labels`);
  ``init`` raises if no parameter is labelled A or B, so a naming mismatch cannot silently
  freeze the whole model.

  Args:
    learning_rate: the A learning rate (a float or an optax schedule).
    ratio: ``lr_B / lr_A`` (> 0).
    optimizer: an optax alias taking the learning rate first (``optax.adamw``, ``optax.sgd``…).
    label_fn: optional path -> ``"A"``/``"B"``/``None`` function.
    frozen: whether non-LoRA parameters are frozen.
    **opt_kwargs: extra keyword arguments for ``optimizer`` (e.g. ``weight_decay``).

  Returns:
    An ``optax.GradientTransformation`` (from ``optax.multi_transform``).

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> params = {"w": jnp.ones(2), "lora_a": jnp.ones(2), "lora_b": jnp.ones(2)}
    >>> tx = lora_plus(0.1, ratio=16.0, optimizer=optax.sgd)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> updates["lora_b"] / updates["lora_a"]
    Array([16., 16.], dtype=float32)

  References:
    Hayou, Ghosh & Yu, *LoRA+: Efficient Low Rank Adaptation of Large Models*, 2024,
    https://arxiv.org/abs/2402.12354; Chronicals (2026).
  """
  if not callable(learning_rate):
    V.check_scalar("lora_plus", "learning_rate", learning_rate, low=0.0)
  V.check_scalar("lora_plus", "ratio", ratio, low=0.0, low_inclusive=False)
  if not callable(optimizer):
    raise TypeError(f"lora_plus: optimizer must be an optax alias (callable), got "
                    f"{type(optimizer).__name__}")
  if label_fn is not None and not callable(label_fn):
    raise TypeError(f"lora_plus: label_fn must be callable or None, got "
                    f"{type(label_fn).__name__}")

  transforms = {
      "A": optimizer(learning_rate, **opt_kwargs),
      "B": optimizer(_scaled(learning_rate, ratio), **opt_kwargs),
      "frozen": optax.set_to_zero(),
      "other": optimizer(learning_rate, **opt_kwargs),
  }

  def labels(params):
    tree = lora_plus_labels(params, label_fn=label_fn, frozen=frozen)
    found = set(jax.tree.leaves(tree))
    if not found & {"A", "B"}:
      raise ValueError("lora_plus: no parameter path has a component named lora_a/lora_A or "
                       "lora_b/lora_B; rename the adapters or pass label_fn=")
    return tree

  return optax.multi_transform(transforms, labels)


# --------------------------------------------------------------------------------------------
# Pure LoRA linear (the layer is flax's nnx.LoRA / nnx.LoRALinear)
# --------------------------------------------------------------------------------------------


def lora_linear(x: Float[Array, "*batch d_in"], kernel: Float[Array, "d_in d_out"],
                lora_a: Float[Array, "d_in r"], lora_b: Float[Array, "r d_out"], *,
                scale: float | Float[Array, ""] = 1.0,
                bias: Float[Array, "d_out"] | None = None) -> Float[Array, "*batch d_out"]:
  """``x @ kernel + scale * (x @ lora_a) @ lora_b (+ bias)``, never forming ``A @ B``.

  Args:
    x: ``[*batch, in]``.
    kernel: ``[in, out]`` base weight.
    lora_a: ``[in, r]``.
    lora_b: ``[r, out]``.
    scale: adapter scale (``alpha / r``).
    bias: optional ``[out]``.

  Returns:
    ``[*batch, out]``.

  Example:
    >>> import jax.numpy as jnp
    >>> lora_linear(jnp.ones((1, 2)), jnp.eye(2), jnp.ones((2, 1)), jnp.ones((1, 2)), scale=0.5)
    Array([[2., 2.]], dtype=float32)
  """
  fn = "lora_linear"
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "kernel", kernel, 2)
  V.check_rank(fn, "lora_a", lora_a, 2)
  V.check_rank(fn, "lora_b", lora_b, 2)
  d_in, d_out = kernel.shape
  V.check_axis_size(fn, "x", x, -1, d_in, "kernel.shape[0]")
  V.check_shape(fn, "lora_a", lora_a, (d_in, None))
  V.check_shape(fn, "lora_b", lora_b, (lora_a.shape[1], d_out))
  if bias is not None:
    V.check_rank(fn, "bias", bias, 1)
    V.check_shape(fn, "bias", bias, (d_out,))
  named = {"kernel": kernel, "lora_a": lora_a, "lora_b": lora_b}
  if bias is not None:
    named["bias"] = bias
  for arg, v in named.items():
    if jnp.dtype(v.dtype) != jnp.dtype(x.dtype):
      raise TypeError(f"{fn}: {arg} must have the dtype of x ({jnp.dtype(x.dtype).name}), got "
                      f"{V.describe(v)}")
  V.check_scalar(fn, "scale", scale)
  if isinstance(scale, int):
    scale = float(scale)  # an int beyond int32 would overflow as a weakly typed jnp scalar
  y = x @ kernel + scale * ((x @ lora_a) @ lora_b)
  return y if bias is None else y + bias


__all__ = [
    "default_lora_label",
    "lora_linear",
    "lora_plus",
    "lora_plus_labels",
]
