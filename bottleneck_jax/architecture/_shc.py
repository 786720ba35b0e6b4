"""Hyper-connections: HC, mHC (Sinkhorn, Birkhoff polytope) and sHC (spectral sphere).

Paper: "Beyond the Birkhoff Polytope: Spectral-Sphere-Constrained Hyper-Connections" (sHC),
2026 (arXiv 2603.20896), building on Hyper-Connections (HC; Zhu et al., 2024,
https://arxiv.org/abs/2409.19606) and Manifold-Constrained Hyper-Connections (mHC; Xie et al.,
2025, https://arxiv.org/abs/2512.24880).

Idea. A hyper-connection replaces the single residual stream of a transformer by ``n`` streams
``X in R^{n x C}`` (the input repeated ``n`` times; the output the sum of the streams). Around a
branch ``F`` (attention, MLP) three small learned mixings read and write the streams:

  X' = H_res X + h_post (x) F(h_pre^T X),      h_pre, h_post in R^n,  H_res in R^{n x n}.

Plain HC leaves ``H_res`` unconstrained, so the product of ``H_res`` over depth can explode or
vanish. mHC projects ``H_res`` onto the doubly-stochastic matrices (the Birkhoff polytope) with
Sinkhorn-Knopp: products of doubly-stochastic matrices stay doubly stochastic (spectral norm
exactly 1), but the mixing is non-negative only and Sinkhorn of ``exp(I)`` is not the identity.
sHC instead normalises ``H_res`` onto the spectral-norm sphere ``{H : ||H||_2 = 1}``, which
contains the Birkhoff polytope, allows negative (subtractive) mixing and the identity.

Equations implemented (per token; ``vec X`` the flattened streams, ``RMSNorm`` from
:func:`bottleneck_jax.ops.rms_norm`, ``phi`` zero-initialised so every kind starts from its
static part):

- ``kind="hc"`` (HC, dynamic): ``Xbar = RMSNorm(X)`` per stream,
  ``[A_m | A_r] = [e_{k mod n} | I] + s_a tanh(Xbar W_a)``, ``B = 1 + s_b tanh(Xbar W_b)``;
  ``h_pre = A_m``, ``H_res = A_r^T``, ``h_post = B``;
- ``kind="mhc"``: ``x = RMSNorm(vec X)``, ``h_pre = sigmoid(a_pre x phi_pre + b_pre)``,
  ``h_post = 2 sigmoid(a_post x phi_post + b_post)``,
  ``H_res = SinkhornKnopp(exp(a_res mat(x phi_res) + B_res))``, ``B_res = I``;
- ``kind="shc"``: as mHC but ``H_res = W / sigma_max(W)``, ``W = B_res + a_res mat(x phi_res)``,
  ``B_res = I`` (so ``H_res = I`` at initialisation).

Functions: :func:`sinkhorn` (log-domain, f32), :func:`spectral_normalize` (``"sphere"`` or
``"ball"``, exact ``sigma_max`` by ``eigvalsh`` or power iteration), :func:`expand_streams`,
:func:`reduce_streams`, :func:`hc_init`, :func:`hc_coeffs`, :func:`hc_width`,
:func:`hc_depth`, :func:`hyper_connection` (one wrapped branch) and the module
:class:`HyperConnection`, a drop-in replacement of ``x + F(x)``.

Departures from the papers / reference code (lucidrains/hyper-connections):

- sHC's parameterisation is inferred from its abstract (no public code and the method section
  was not available): ``H_res = W / ||W||_2`` with ``W`` the static identity plus the dynamic
  term; ``h_pre``/``h_post`` are mHC's gates. ``projection="ball"`` (divide by
  ``max(1, sigma_max)``) is offered as a variant.
- mHC and sHC initialise ``b_pre = logit(1/n)`` and ``b_post = 0``, so that at initialisation
  the branch reads the mean of the streams and every stream receives ``F`` once (with sHC's
  ``H_res = I`` each stream then equals the plain residual stream); the mHC paper leaves these
  biases learned from its own initialisation.
- Sinkhorn runs in f32 in the log domain (alternating row/column ``logsumexp``
  normalisations, ending with the columns) for ``iters`` iterations: rows are doubly
  stochastic only to the iteration's precision, as in every finite Sinkhorn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax import ops
from bottleneck_jax.core import validation as V

Kind = Literal["hc", "mhc", "shc"]
KINDS: tuple[str, ...] = ("hc", "mhc", "shc")


class HCCoeffs(NamedTuple):
  """The per-token mixing coefficients of a hyper-connection.

  Attributes:
    h_pre: ``[*batch, n]`` weights of the streams in the branch input.
    h_post: ``[*batch, n]`` how much of the branch output each stream receives.
    h_res: ``[*batch, n, n]`` the stream-mixing matrix (``X' = h_res X + ...``).
  """

  h_pre: Float[Array, "*batch n"]
  h_post: Float[Array, "*batch n"]
  h_res: Float[Array, "*batch n n"]


# ------------------------------------------------------------------------------ validation


def _check_square(fn: str, arg: str, x) -> None:
  V.check_rank(fn, arg, x, min_rank=2)
  V.check_floating(fn, arg, x)
  if x.shape[-1] != x.shape[-2] or x.shape[-1] < 1:
    raise ValueError(f"{fn}: {arg} must have square non-empty trailing axes [..., n, n], got "
                     f"shape {list(x.shape)}")


def _check_kind(fn: str, kind) -> str:
  V.check_choice(fn, "kind", kind, KINDS)
  return kind


def _check_streams(fn: str, arg: str, x) -> None:
  V.check_rank(fn, arg, x, min_rank=2)
  V.check_floating(fn, arg, x)
  if x.shape[-1] < 1 or x.shape[-2] < 1:
    raise ValueError(f"{fn}: {arg} must have non-empty stream and feature axes [..., n, C], "
                     f"got shape {list(x.shape)}")


# ------------------------------------------------------------------------------ projections


def sinkhorn(logits: Float[Array, "*batch n n"], *, iters: int = 20
             ) -> Float[Array, "*batch n n"]:
  """Sinkhorn-Knopp projection of ``exp(logits)`` towards the doubly-stochastic matrices.

  In the log domain and in f32: ``iters`` times, ``L -= logsumexp(L, rows)`` then
  ``L -= logsumexp(L, columns)``; returns ``exp(L)``. Columns sum to 1 exactly (to rounding),
  rows to the precision reached after ``iters`` iterations.

  Args:
    logits: ``[*batch, n, n]`` floating logits.
    iters: number of row/column normalisation pairs (``>= 1``; mHC uses 20).

  Returns:
    ``[*batch, n, n]`` float32, non-negative.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import sinkhorn
    >>> h = sinkhorn(jnp.eye(4))
    >>> round(float(h[0, 0]), 3), round(float(h[0, 1]), 3)
    (0.475, 0.175)

  References:
    Sinkhorn & Knopp, 1967; Xie et al., "mHC: Manifold-Constrained Hyper-Connections", 2025,
    https://arxiv.org/abs/2512.24880.
  """
  fn = "sinkhorn"
  _check_square(fn, "logits", logits)
  V.check_scalar(fn, "iters", iters, low=1, integer=True)
  log_p = jnp.asarray(logits, jnp.float32)

  def body(_, lp):
    lp = lp - jax.nn.logsumexp(lp, axis=-1, keepdims=True)
    return lp - jax.nn.logsumexp(lp, axis=-2, keepdims=True)

  return jnp.exp(jax.lax.fori_loop(0, int(iters), body, log_p))


def _sigma_max(w, method: str, iters: int):
  if method == "eig":
    gram = jnp.swapaxes(w, -1, -2) @ w
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gram)[..., -1], 0.0))
  n = w.shape[-1]
  v = jnp.broadcast_to(jnp.full((n,), 1.0 / math.sqrt(n), w.dtype), w.shape[:-1])

  def body(_, v):
    u = jnp.einsum("...ij,...j->...i", w, v)
    v = jnp.einsum("...ij,...i->...j", w, u)
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-30)

  v = jax.lax.fori_loop(0, iters, body, v)
  return jnp.linalg.norm(jnp.einsum("...ij,...j->...i", w, v), axis=-1)


def spectral_normalize(w: Float[Array, "*batch n n"], *, mode: Literal["sphere", "ball"] = "sphere",
                       method: Literal["eig", "power"] = "eig", iters: int = 8,
                       epsilon: float = 1e-12) -> Float[Array, "*batch n n"]:
  """Projects a square matrix onto the spectral-norm sphere (or ball), in f32.

  .. math::
    \\text{sphere: } H = \\frac{W}{\\sigma_{\\max}(W)},\\qquad
    \\text{ball: } H = \\frac{W}{\\max(1, \\sigma_{\\max}(W))}

  ``sigma_max`` is exact (``sqrt`` of the top eigenvalue of ``W^T W``, ``method="eig"``) or
  estimated by ``iters`` steps of power iteration from the uniform vector
  (``method="power"``, a lower bound that converges to it).

  Args:
    w: ``[*batch, n, n]`` floating.
    mode: ``"sphere"`` (sHC) or ``"ball"``.
    method: ``"eig"`` or ``"power"``.
    iters: power-iteration steps (``method="power"``).
    epsilon: floor of ``sigma_max`` (a zero matrix stays zero).

  Returns:
    ``[*batch, n, n]`` float32.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import spectral_normalize
    >>> h = spectral_normalize(jnp.array([[3.0, 0.0], [0.0, -1.0]]))
    >>> h.tolist()
    [[1.0, 0.0], [0.0, -0.3333333432674408]]

  References:
    "Beyond the Birkhoff Polytope: Spectral-Sphere-Constrained Hyper-Connections", 2026,
    arXiv 2603.20896.
  """
  fn = "spectral_normalize"
  _check_square(fn, "w", w)
  V.check_choice(fn, "mode", mode, ("sphere", "ball"))
  V.check_choice(fn, "method", method, ("eig", "power"))
  V.check_scalar(fn, "iters", iters, low=1, integer=True)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)
  w = jnp.asarray(w, jnp.float32)
  sigma = _sigma_max(w, method, int(iters))
  denom = jnp.maximum(sigma, float(epsilon)) if mode == "sphere" else jnp.maximum(sigma, 1.0)
  return w / denom[..., None, None]


# ------------------------------------------------------------------------------ streams


def expand_streams(x: Float[Array, "*batch c"], n_streams: int) -> Float[Array, "*batch n c"]:
  """The ``n`` residual streams at the network's input: ``x`` repeated on a new axis ``-2``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import expand_streams
    >>> expand_streams(jnp.ones((2, 3)), 4).shape
    (2, 4, 3)
  """
  fn = "expand_streams"
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_scalar(fn, "n_streams", n_streams, low=1, integer=True)
  return jnp.broadcast_to(x[..., None, :], (*x.shape[:-1], int(n_streams), x.shape[-1]))


def reduce_streams(streams: Float[Array, "*batch n c"], *,
                   reduction: Literal["sum", "mean"] = "sum") -> Float[Array, "*batch c"]:
  """The network's output from its streams: their sum (HC's choice) or mean.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import reduce_streams
    >>> reduce_streams(jnp.ones((2, 4, 3))).tolist()[0]
    [4.0, 4.0, 4.0]
  """
  fn = "reduce_streams"
  _check_streams(fn, "streams", streams)
  V.check_choice(fn, "reduction", reduction, ("sum", "mean"))
  return jnp.sum(streams, axis=-2) if reduction == "sum" else jnp.mean(streams, axis=-2)


# ------------------------------------------------------------------------------ coefficients


def hc_init(n_streams: int, dim: int, *, kind: Kind = "shc", layer_index: int = 0,
            gate_scale: float = 1e-2) -> dict[str, Float[Array, "..."]]:
  """The parameters of one hyper-connection, at their initial values.

  Dynamic projections are zero, so every kind starts from its static part: HC from
  ``h_pre = e_{layer_index mod n}``, ``H_res = I``, ``h_post = 1``; mHC/sHC from
  ``b_pre = logit(1/n)``, ``b_post = 0``, ``B_res = I``.

  Args:
    n_streams: ``n >= 1``.
    dim: the stream width ``C >= 1``.
    kind: ``"hc"``, ``"mhc"`` or ``"shc"``.
    layer_index: the layer's index (HC's static ``h_pre`` reads stream ``k mod n``).
    gate_scale: initial value of the scales of the dynamic terms.

  Returns:
    A dict of float32 arrays (see the module docstring for the names).

  Example:
    >>> from bottleneck_jax.architecture import hc_init
    >>> sorted(hc_init(4, 8, kind="shc"))  # doctest: +NORMALIZE_WHITESPACE
    ['alpha_post', 'alpha_pre', 'alpha_res', 'b_post', 'b_pre', 'b_res', 'norm', 'phi_post',
     'phi_pre', 'phi_res']
  """
  fn = "hc_init"
  V.check_scalar(fn, "n_streams", n_streams, low=1, integer=True)
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  _check_kind(fn, kind)
  V.check_scalar(fn, "layer_index", layer_index, low=0, integer=True)
  V.check_scalar(fn, "gate_scale", gate_scale, static=True)
  n, c = int(n_streams), int(dim)
  f32 = jnp.float32
  g = jnp.asarray(float(gate_scale), f32)
  if kind == "hc":
    return {"norm": jnp.ones((c,), f32),
            "static_alpha": jnp.concatenate(
                [jax.nn.one_hot(layer_index % n, n, dtype=f32)[:, None], jnp.eye(n, dtype=f32)],
                axis=1),
            "static_beta": jnp.ones((n,), f32),
            "w_alpha": jnp.zeros((c, n + 1), f32), "w_beta": jnp.zeros((c,), f32),
            "scale_alpha": g, "scale_beta": g}
  pre_bias = -math.log(n - 1) if n > 1 else 30.0  # logit(1/n); sigmoid(30) = 1 to f32
  return {"norm": jnp.ones((n * c,), f32),
          "phi_pre": jnp.zeros((n * c, n), f32), "phi_post": jnp.zeros((n * c, n), f32),
          "phi_res": jnp.zeros((n * c, n * n), f32),
          "b_pre": jnp.full((n,), pre_bias, f32), "b_post": jnp.zeros((n,), f32),
          "b_res": jnp.eye(n, dtype=f32),
          "alpha_pre": g, "alpha_post": g, "alpha_res": g}


_HC_KEYS = {"norm", "static_alpha", "static_beta", "w_alpha", "w_beta", "scale_alpha",
            "scale_beta"}
_MHC_KEYS = {"norm", "phi_pre", "phi_post", "phi_res", "b_pre", "b_post", "b_res", "alpha_pre",
             "alpha_post", "alpha_res"}


def _check_params(fn: str, params, kind: str, n: int, c: int) -> None:
  keys = _HC_KEYS if kind == "hc" else _MHC_KEYS
  if not isinstance(params, dict) or set(params) != keys:
    got = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(f"{fn}: params must be the dict of hc_init(..., kind={kind!r}) with keys "
                     f"{sorted(keys)}, got {got}")
  nc = c if kind == "hc" else n * c
  expected = ({"norm": (nc,), "static_alpha": (n, n + 1), "static_beta": (n,),
               "w_alpha": (c, n + 1), "w_beta": (c,), "scale_alpha": (), "scale_beta": ()}
              if kind == "hc" else
              {"norm": (nc,), "phi_pre": (nc, n), "phi_post": (nc, n), "phi_res": (nc, n * n),
               "b_pre": (n,), "b_post": (n,), "b_res": (n, n), "alpha_pre": (),
               "alpha_post": (), "alpha_res": ()})
  for k, shape in expected.items():
    V.check_floating(fn, f"params[{k!r}]", params[k])
    V.check_shape(fn, f"params[{k!r}]", params[k], shape)


def hc_coeffs(params: dict[str, Array], streams: Float[Array, "*batch n c"], *,
              kind: Kind = "shc", sinkhorn_iters: int = 20,
              projection: Literal["sphere", "ball"] = "sphere", epsilon: float = 1e-6
              ) -> HCCoeffs:
  """The per-token mixing coefficients ``(h_pre, h_post, H_res)`` of one hyper-connection.

  See the module docstring for the three parameterisations. Computed in f32.

  Args:
    params: from :func:`hc_init` with the same ``kind``, ``n`` and ``C``.
    streams: ``[*batch, n, C]`` the residual streams.
    kind: ``"hc"``, ``"mhc"`` or ``"shc"``.
    sinkhorn_iters: Sinkhorn iterations (mHC).
    projection: ``"sphere"`` or ``"ball"`` (sHC).
    epsilon: the RMSNorm constant.

  Returns:
    :class:`HCCoeffs` ``(h_pre [*batch, n], h_post [*batch, n], h_res [*batch, n, n])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import hc_coeffs, hc_init
    >>> co = hc_coeffs(hc_init(4, 8, kind="shc"), jnp.ones((3, 4, 8)), kind="shc")
    >>> bool(jnp.allclose(co.h_res, jnp.eye(4))), co.h_pre.shape
    (True, (3, 4))
  """
  return _hc_coeffs("hc_coeffs", params, streams, kind, sinkhorn_iters, projection, epsilon)


def _hc_coeffs(fn, params, streams, kind, sinkhorn_iters, projection, epsilon) -> HCCoeffs:
  _check_kind(fn, kind)
  _check_streams(fn, "streams", streams)
  n, c = streams.shape[-2:]
  _check_params(fn, params, kind, n, c)
  V.check_scalar(fn, "sinkhorn_iters", sinkhorn_iters, low=1, integer=True)
  V.check_choice(fn, "projection", projection, ("sphere", "ball"))
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)
  x = jnp.asarray(streams, jnp.float32)
  p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  if kind == "hc":
    xbar = ops.rms_norm(x, p["norm"], epsilon=float(epsilon))                        # [*, n, C]
    alpha = p["static_alpha"] + p["scale_alpha"] * jnp.tanh(xbar @ p["w_alpha"])  # [*, n, n+1]
    beta = p["static_beta"] + p["scale_beta"] * jnp.tanh(xbar @ p["w_beta"])      # [*, n]
    return HCCoeffs(h_pre=alpha[..., 0], h_post=beta,
                    h_res=jnp.swapaxes(alpha[..., 1:], -1, -2))
  flat = ops.rms_norm(x.reshape(*x.shape[:-2], n * c), p["norm"], epsilon=float(epsilon))
  h_pre = jax.nn.sigmoid(p["alpha_pre"] * (flat @ p["phi_pre"]) + p["b_pre"])
  h_post = 2.0 * jax.nn.sigmoid(p["alpha_post"] * (flat @ p["phi_post"]) + p["b_post"])
  res = p["alpha_res"] * (flat @ p["phi_res"]).reshape(*flat.shape[:-1], n, n) + p["b_res"]
  if kind == "mhc":
    h_res = sinkhorn(res, iters=sinkhorn_iters)
  else:
    h_res = spectral_normalize(res, mode=projection)
  return HCCoeffs(h_pre=h_pre, h_post=h_post, h_res=h_res)


def hc_width(streams: Float[Array, "*batch n c"], h_pre: Float[Array, "*batch n"]
             ) -> Float[Array, "*batch c"]:
  """The branch input ``h_pre^T X`` (the width connection), in the streams' dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import hc_width
    >>> hc_width(jnp.ones((4, 2)), jnp.full((4,), 0.25)).tolist()
    [1.0, 1.0]
  """
  fn = "hc_width"
  _check_streams(fn, "streams", streams)
  V.check_floating(fn, "h_pre", h_pre)
  V.check_shape(fn, "h_pre", h_pre, streams.shape[:-1])
  return jnp.einsum("...n,...nc->...c", h_pre.astype(jnp.float32),
                    streams.astype(jnp.float32)).astype(streams.dtype)


def hc_depth(streams: Float[Array, "*batch n c"], branch_out: Float[Array, "*batch c"],
             h_post: Float[Array, "*batch n"], h_res: Float[Array, "*batch n n"]
             ) -> Float[Array, "*batch n c"]:
  """The stream update ``H_res X + h_post (x) F`` (the depth connection), in the streams' dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import hc_depth
    >>> x = jnp.zeros((2, 3)); f = jnp.ones((3,))
    >>> hc_depth(x, f, jnp.ones((2,)), jnp.eye(2)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
  """
  fn = "hc_depth"
  _check_streams(fn, "streams", streams)
  V.check_floating(fn, "branch_out", branch_out)
  V.check_shape(fn, "branch_out", branch_out, (*streams.shape[:-2], streams.shape[-1]))
  V.check_floating(fn, "h_post", h_post)
  V.check_shape(fn, "h_post", h_post, streams.shape[:-1])
  V.check_floating(fn, "h_res", h_res)
  V.check_shape(fn, "h_res", h_res, (*streams.shape[:-1], streams.shape[-2]))
  f32 = jnp.float32
  out = (jnp.einsum("...ij,...jc->...ic", h_res.astype(f32), streams.astype(f32))
         + h_post.astype(f32)[..., None] * branch_out.astype(f32)[..., None, :])
  return out.astype(streams.dtype)


def hyper_connection(params: dict[str, Array], streams: Float[Array, "*batch n c"],
                     branch_fn: Callable[[Array], Array], *, kind: Kind = "shc",
                     sinkhorn_iters: int = 20, projection: Literal["sphere", "ball"] = "sphere"
                     ) -> tuple[Float[Array, "*batch n c"], HCCoeffs]:
  """One branch wrapped by a hyper-connection: ``X' = H_res X + h_post (x) F(h_pre^T X)``.

  The drop-in replacement of the residual ``x + F(x)`` on ``n`` streams.

  Args:
    params: from :func:`hc_init`.
    streams: ``[*batch, n, C]``.
    branch_fn: ``F``, mapping ``[*batch, C]`` to ``[*batch, C]``.
    kind, sinkhorn_iters, projection: as for :func:`hc_coeffs`.

  Returns:
    ``(new_streams [*batch, n, C], coeffs)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import expand_streams, hc_init, hyper_connection
    >>> x = expand_streams(jnp.ones((5, 8)), 4)
    >>> y, _ = hyper_connection(hc_init(4, 8), x, lambda h: 2 * h)
    >>> bool(jnp.allclose(y, 3.0))  # identity at init: each stream is x + F(x)
    True
  """
  fn = "hyper_connection"
  if not callable(branch_fn):
    raise TypeError(f"{fn}: branch_fn must be callable, got {type(branch_fn).__name__}")
  co = _hc_coeffs(fn, params, streams, kind, sinkhorn_iters, projection, 1e-6)
  h = hc_width(streams, co.h_pre)
  f = branch_fn(h)
  if not hasattr(f, "shape") or tuple(f.shape) != tuple(h.shape):
    raise ValueError(f"{fn}: branch_fn must return an array of its input's shape "
                     f"{list(h.shape)}, got {V.describe(f)}")
  return hc_depth(streams, f, co.h_post, co.h_res), co


# ------------------------------------------------------------------------------ NNX module


class HyperConnection(nnx.Module):
  """A branch (attention, MLP …) wrapped by a hyper-connection, owning the mixing parameters.

  ``__call__(streams, *args, **kwargs)`` computes ``H_res X + h_post (x) branch(h_pre^T X,
  *args, **kwargs)``; use :func:`expand_streams` before the first layer and
  :func:`reduce_streams` after the last.

  Args:
    branch: the wrapped callable (an ``nnx.Module`` or a function ``[*, C] -> [*, C]``).
    dim: the stream width ``C``.
    n_streams: ``n`` (default 4).
    kind: ``"hc"``, ``"mhc"`` or ``"shc"``.
    layer_index: the layer's index (HC's static read-out stream).
    sinkhorn_iters, projection: as for :func:`hc_coeffs`.
    gate_scale: initial scale of the dynamic terms.
    rngs: ``nnx.Rngs`` (the initialisation is deterministic; kept for a uniform signature).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.architecture import HyperConnection, expand_streams
    >>> hc = HyperConnection(nnx.Linear(8, 8, rngs=nnx.Rngs(0)), dim=8, rngs=nnx.Rngs(0))
    >>> hc(expand_streams(jnp.ones((2, 8)), 4)).shape
    (2, 4, 8)
  """

  def __init__(self, branch: Callable[..., Array], *, dim: int, n_streams: int = 4,
               kind: Kind = "shc", layer_index: int = 0, sinkhorn_iters: int = 20,
               projection: Literal["sphere", "ball"] = "sphere", gate_scale: float = 1e-2,
               rngs: nnx.Rngs):
    fn = "HyperConnection"
    if not callable(branch):
      raise TypeError(f"{fn}: branch must be callable, got {type(branch).__name__}")
    _check_kind(fn, kind)
    V.check_scalar(fn, "sinkhorn_iters", sinkhorn_iters, low=1, integer=True)
    V.check_choice(fn, "projection", projection, ("sphere", "ball"))
    del rngs
    self.branch = branch
    self.kind = kind
    self.n_streams = int(n_streams)
    self.dim = int(dim)
    self.sinkhorn_iters = int(sinkhorn_iters)
    self.projection = projection
    self.params = nnx.Dict({k: nnx.Param(v) for k, v in
                            hc_init(n_streams, dim, kind=kind, layer_index=layer_index,
                                    gate_scale=gate_scale).items()})

  def coeffs(self, streams: Float[Array, "*batch n c"]) -> HCCoeffs:
    """The mixing coefficients for ``streams`` (e.g. to monitor ``H_res``)."""
    return hc_coeffs({k: v[...] for k, v in self.params.items()}, streams, kind=self.kind,
                     sinkhorn_iters=self.sinkhorn_iters, projection=self.projection)

  def __call__(self, streams: Float[Array, "*batch n c"], *args: Any, **kwargs: Any
               ) -> Float[Array, "*batch n c"]:
    co = self.coeffs(streams)
    h = hc_width(streams, co.h_pre)
    return hc_depth(streams, self.branch(h, *args, **kwargs), co.h_post, co.h_res)


def product_norm(matrices: Float[Array, "depth n n"]) -> float:
  """``|| M_L ... M_2 M_1 ||_2``, the spectral norm of the product of a stack of square
  matrices (the depth-composition of ``H_res`` over ``L`` layers), computed in float64 NumPy
  on the host (it is a diagnostic, not a traced op).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import product_norm
    >>> product_norm(jnp.stack([2 * jnp.eye(3)] * 4))
    16.0
  """
  fn = "product_norm"
  V.check_rank(fn, "matrices", matrices, 3)
  V.check_floating(fn, "matrices", matrices)
  if matrices.shape[0] < 1 or matrices.shape[1] != matrices.shape[2] or matrices.shape[1] < 1:
    raise ValueError(f"{fn}: matrices must have shape [depth >= 1, n, n], got "
                     f"{list(matrices.shape)}")
  if isinstance(matrices, jax.core.Tracer):
    raise TypeError(f"{fn}: matrices must be a concrete array (a host diagnostic), got a "
                    f"traced value")
  if not np.isfinite(np.asarray(matrices, np.float64)).all():
    raise ValueError(f"{fn}: matrices must be finite, got NaN or Inf entries")
  prod = np.eye(matrices.shape[1])
  for m in np.asarray(matrices, np.float64):
    prod = m @ prod
  return float(np.linalg.norm(prod, 2))
