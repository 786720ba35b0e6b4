"""Reasoning as compression: the conditional-information-bottleneck reward (CIB).

Paper: Fabio Valerio Massoli, Andrey Kuzmin, Arash Behboodi, "Reasoning as Compression:
Unifying Budget Forcing via the Conditional Information Bottleneck", 2026 (arXiv 2603.08462).

Idea. In a transformer the answer ``Y`` attends to both the prompt ``X`` and the chain of
thought ``Z``, so the classical IB chain ``Y - X - Z`` does not hold. The conditional IB keeps
``I(Z;Y|X)`` and compresses ``Z``; for any prior ``Q`` over traces the rate is bounded by
``I(X;Z) <= E_x KL(pi(z|x) || Q(z))``. A policy is trained with a sequence-level reward

  r = R(x, y) - beta * C(z)

with the code length of the reasoning tokens (only ``mask = 1`` positions count) under a prior:

  C_surprisal(z) = sum_t -log Q(z_t | z_<t [, x])       (a frozen LM as the "semantic prior")
  C_uniform(z)   = |z| log V                            (the length penalty: a uniform prior)
  C_kl(z)        = sum_t [log pi(z_t | .) - log Q(z_t | .)]   (the full KL variant)

For a finite set of traces, maximising ``E_pi[R] - beta KL(pi || Q)`` gives
``pi*(z) ∝ Q(z) exp(R(z) / beta)`` (:func:`cib_optimal_policy`).

Implemented here (nats): :func:`token_surprisal`, :func:`cib_cost`, :func:`cib_reward`,
:func:`cib_optimal_policy`. The policy-gradient machinery (group-relative advantages) belongs to
the objectives family; these functions produce the rewards it consumes.

Departures: no public code exists; the equations follow the abstract and Fig. 1 and are our
reconstruction (the prior's conditioning on the prompt and the exact cost used in the paper's
runs are not known). The prior's log-probabilities are passed through ``stop_gradient``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V

KINDS = ("surprisal", "uniform", "kl")


def _same_dtype(fn: str, name_a: str, a, name_b: str, b) -> None:
  if jnp.dtype(a.dtype) != jnp.dtype(b.dtype):
    raise TypeError(f"{fn}: {name_a} and {name_b} must have the same dtype, got "
                    f"{V.describe(a)} and {V.describe(b)}")


def _check_mask(fn: str, mask) -> None:
  V.check_floating(fn, "mask", mask)
  V.check_rank(fn, "mask", mask, 2)


def token_surprisal(prior_logits: Float[Array, "b t v"], tokens: Int[Array, "b t"],
                    mask: Float[Array, "b t"]) -> Float[Array, "b t"]:
  """Per-token code length ``-log Q(z_t | .)`` under a frozen prior, zero where ``mask = 0``.

  Args:
    prior_logits: the prior's logits for each position, ``[B, T, V]`` (gradient stopped).
    tokens: the sampled tokens ``[B, T]``, integers in ``[0, V)``.
    mask: ``[B, T]``, 1 on reasoning tokens, 0 on prompt, answer and padding.

  Returns:
    ``[B, T]`` surprisal in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import token_surprisal
    >>> s = token_surprisal(jnp.zeros((1, 2, 4)), jnp.array([[1, 3]]), jnp.array([[1.0, 0.0]]))
    >>> [round(float(v), 4) for v in s[0]]   # uniform prior over 4 tokens: log 4, then masked
    [1.3863, 0.0]
  """
  fn = "token_surprisal"
  V.check_floating(fn, "prior_logits", prior_logits)
  V.check_rank(fn, "prior_logits", prior_logits, 3)
  V.check_integer(fn, "tokens", tokens)
  V.check_shape(fn, "tokens", tokens, prior_logits.shape[:2])
  _check_mask(fn, mask)
  V.check_same_shape(fn, "tokens", tokens, "mask", mask)
  if prior_logits.shape[-1] < 1:
    raise ValueError(f"{fn}: prior_logits must have a vocabulary axis of size >= 1, got "
                     f"{V.describe(prior_logits)}")
  logp = jax.nn.log_softmax(jax.lax.stop_gradient(prior_logits).astype(jnp.float32), axis=-1)
  tok = jnp.clip(tokens, 0, prior_logits.shape[-1] - 1)
  picked = jnp.take_along_axis(logp, tok[..., None], axis=-1)[..., 0]
  return jnp.where(mask > 0, -picked, 0.0).astype(mask.dtype)


def cib_cost(mask: Float[Array, "b t"], *, kind: str = "surprisal",
             prior_logp_tok: Float[Array, "b t"] | None = None,
             policy_logp_tok: Float[Array, "b t"] | None = None,
             vocab_size: int | None = None) -> Float[Array, "b"]:
  """The code length ``C(z)`` of each reasoning trace, in nats.

  .. math::
    C_{surprisal} = -\\sum_t m_t \\log Q_t,\\quad C_{uniform} = \\log V \\sum_t m_t,\\quad
    C_{kl} = \\sum_t m_t (\\log\\pi_t - \\log Q_t)

  Args:
    mask: ``[B, T]`` reasoning-token mask (1 = costed).
    kind: ``"surprisal"``, ``"uniform"`` or ``"kl"``.
    prior_logp_tok: ``[B, T]`` prior log-probabilities of the sampled tokens (surprisal, kl);
      gradient stopped.
    policy_logp_tok: ``[B, T]`` policy log-probabilities of the sampled tokens (kl).
    vocab_size: ``V >= 1`` (uniform).

  Returns:
    ``[B]`` costs in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cib_cost
    >>> m = jnp.array([[1.0, 1.0, 0.0]])
    >>> round(float(cib_cost(m, kind="uniform", vocab_size=3)[0]), 4)   # 2 log 3
    2.1972
  """
  fn = "cib_cost"
  _check_mask(fn, mask)
  V.check_choice(fn, "kind", kind, KINDS)
  if kind == "uniform":
    if vocab_size is None:
      raise ValueError(f"{fn}: vocab_size is required for kind='uniform'")
    V.check_scalar(fn, "vocab_size", vocab_size, low=1, integer=True, static=True)
    return jnp.sum(mask, axis=-1) * jnp.asarray(math.log(int(vocab_size)), mask.dtype)
  if prior_logp_tok is None:
    raise ValueError(f"{fn}: prior_logp_tok is required for kind={kind!r}")
  V.check_floating(fn, "prior_logp_tok", prior_logp_tok)
  V.check_same_shape(fn, "mask", mask, "prior_logp_tok", prior_logp_tok)
  _same_dtype(fn, "mask", mask, "prior_logp_tok", prior_logp_tok)
  prior = jax.lax.stop_gradient(prior_logp_tok)
  if kind == "surprisal":
    return -jnp.sum(jnp.where(mask > 0, prior * mask, 0.0), axis=-1)
  if policy_logp_tok is None:
    raise ValueError(f"{fn}: policy_logp_tok is required for kind='kl'")
  V.check_floating(fn, "policy_logp_tok", policy_logp_tok)
  V.check_same_shape(fn, "mask", mask, "policy_logp_tok", policy_logp_tok)
  _same_dtype(fn, "mask", mask, "policy_logp_tok", policy_logp_tok)
  return jnp.sum(jnp.where(mask > 0, (policy_logp_tok - prior) * mask, 0.0), axis=-1)


def cib_reward(task_reward: Float[Array, "b"], cost: Float[Array, "b"], *,
               beta: float) -> Float[Array, "b"]:
  """The CIB reward ``r = R - beta * C`` per sequence.

  Args:
    task_reward: ``[B]`` task rewards (e.g. answer correctness).
    cost: ``[B]`` code lengths from :func:`cib_cost` (nats).
    beta: the compression weight, ``>= 0``.

  Returns:
    ``[B]`` rewards.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cib_reward
    >>> cib_reward(jnp.array([1.0, 0.0]), jnp.array([2.0, 1.0]), beta=0.5).tolist()
    [0.0, -0.5]
  """
  fn = "cib_reward"
  V.check_floating(fn, "task_reward", task_reward)
  V.check_floating(fn, "cost", cost)
  V.check_same_shape(fn, "task_reward", task_reward, "cost", cost)
  _same_dtype(fn, "task_reward", task_reward, "cost", cost)
  V.check_scalar(fn, "beta", beta, low=0.0)
  return task_reward - jnp.asarray(beta, cost.dtype) * cost


def cib_optimal_policy(log_q: Float[Array, "m"], rewards: Float[Array, "m"], *,
                       beta: float) -> Float[Array, "m"]:
  """The maximiser of ``E_pi[R] - beta KL(pi || Q)`` over a finite set of traces.

  .. math::
    \\pi^*(z) = \\operatorname{softmax}_z\\big(\\log Q(z) + R(z)/\\beta\\big)

  Args:
    log_q: ``[M]`` log prior probabilities of the traces (need not be normalised).
    rewards: ``[M]`` task rewards.
    beta: ``> 0``.

  Returns:
    ``[M]`` probabilities.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cib_optimal_policy
    >>> p = cib_optimal_policy(jnp.log(jnp.array([0.5, 0.5])), jnp.array([0.0, 1.0]), beta=1.0)
    >>> round(float(p[1]), 4)   # e / (1 + e)
    0.7311
  """
  fn = "cib_optimal_policy"
  V.check_floating(fn, "log_q", log_q)
  V.check_rank(fn, "log_q", log_q, 1)
  V.check_floating(fn, "rewards", rewards)
  V.check_same_shape(fn, "log_q", log_q, "rewards", rewards)
  _same_dtype(fn, "log_q", log_q, "rewards", rewards)
  if log_q.shape[0] < 1:
    raise ValueError(f"{fn}: log_q must hold at least one trace, got {V.describe(log_q)}")
  V.check_scalar(fn, "beta", beta, low=0.0, low_inclusive=False)
  return jax.nn.softmax(log_q + rewards / jnp.asarray(beta, rewards.dtype))


__all__ = ["cib_cost", "cib_optimal_policy", "cib_reward", "token_surprisal"]
