"""WINNER (SIREN squared): a noise-perturbed SIREN initialisation set by the target's spectrum.

Paper: Hemanth Chandravamsi, Dhanush V. Shenoy, Itay Zinn, Shimon Pisnoy, Steven H. Frankel,
"Spectral Bottleneck in Deep Neural Networks: Noise is All You Need", 2025
(https://arxiv.org/abs/2509.09719); code: cfdlabtechnion/siren_square.

Idea. A sinusoidal network (SIREN, Sitzmann et al. 2020) initialised the standard way fits a
target whose energy sits at high frequencies very badly: the empirical neural tangent kernel of
the fresh network has almost no eigen-energy there (a *spectral bottleneck*), so gradient
descent barely moves the output (the network keeps predicting about zero). WINNER adds Gaussian
noise to the first two weight matrices, with a standard deviation set by the target's *spectral
centroid*, which widens the pre-activation spectrum of the early layers so that the high
frequencies are learnable from the first step.

Equations implemented:

- SIREN: ``h_1 = sin(w_0 (x W_1 + b_1))``, ``h_{l+1} = sin(w_h (h_l W_{l+1} + b_{l+1}))``, a
  linear read-out; ``W_1 ~ U(-1/n_in, 1/n_in)``, later ``W ~ U(-sqrt(6/n_in)/w_h, +...)``,
  biases ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` (the PyTorch ``nn.Linear`` default the SIREN code
  keeps);
- spectral centroid (real FFT along the signal axis, frequencies ``rfftfreq(n)`` in
  ``[0, 1/2]`` cycles per sample): per slice ``c = sum_f f |Y(f)| / sum_f |Y(f)|``, averaged over
  the slices of a channel and then over the ``C`` channels; ``psi = 2 c / C``;
- ``z = psi / C`` (the reference divides by the channel count a second time; kept, so for mono
  signals ``z = 2 c`` is the centroid as a fraction of Nyquist);
- noise scales ``s_0 = s0_max (1 - exp(-a z))``, ``s_1 = b z`` (audio: ``s0_max = 3500, a = 7,
  b = 3``; images: ``50, 5, 0.4``);
- ``W_1 += N(0, (s_0 / w_h)^2)``, ``W_2 += N(0, (s_1 / w_h)^2)`` (the hidden ``w_h`` divides both);
  biases and deeper layers keep the SIREN initialisation.

Departures from the paper / reference code:

- The constants are those of the reference code (``a = 7`` for audio, where the paper text says
  ``a = 5``); :class:`WinnerSchedule` takes any ``(s0_max, a, b)``, so the text's variant is
  ``WinnerSchedule(3500.0, 5.0, 3.0)``. The README's rendering of ``s_0`` with a square root is
  treated as a typo of the code form.
- The perturbation uses the key of :func:`siren_init` folded with 1, so ``winner_init`` and
  ``siren_init`` with the same key share the SIREN weights (a low-frequency target, ``z ~ 0``,
  gives back the SIREN initialisation).
- Weights are stored ``[n_in, n_out]`` (``x @ W``), the transpose of PyTorch's layout.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key

# ------------------------------------------------------------------------------ configuration


@dataclasses.dataclass(frozen=True)
class WinnerSchedule:
  """The map from the target's spectral centroid to the two noise scales.

  ``s_0 = s0_max (1 - exp(-a z))`` (first layer), ``s_1 = b z`` (second layer).

  Attributes:
    s0_max: the largest first-layer scale (audio 3500, images 50).
    a: how fast ``s_0`` saturates with the centroid (audio 7, images 5).
    b: the slope of the second-layer scale (audio 3, images 0.4).
  """

  s0_max: float
  a: float
  b: float

  def __post_init__(self):
    for name in ("s0_max", "a", "b"):
      V.check_scalar("WinnerSchedule", name, getattr(self, name), low=0.0)

  @classmethod
  def audio(cls) -> WinnerSchedule:
    """The reference code's audio (1-D) constants ``(3500, 7, 3)``."""
    return cls(3500.0, 7.0, 3.0)

  @classmethod
  def image(cls) -> WinnerSchedule:
    """The reference code's image (2-D) constants ``(50, 5, 0.4)``."""
    return cls(50.0, 5.0, 0.4)


class WinnerScales(NamedTuple):
  """The noise scales of :func:`winner_scales` (before the division by ``omega_hidden``).

  Attributes:
    s0: first-layer scale.
    s1: second-layer scale.
  """

  s0: Float[Array, ""]
  s1: Float[Array, ""]


# ------------------------------------------------------------------------------ validation


def _check_layer_sizes(fn: str, layer_sizes) -> tuple[int, ...]:
  if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
    raise TypeError(f"{fn}: layer_sizes must be a sequence of ints (in, hidden..., out), got "
                    f"{type(layer_sizes).__name__}")
  sizes = tuple(layer_sizes)
  if len(sizes) < 3:
    raise ValueError(f"{fn}: layer_sizes must list at least (in, hidden, out), got {sizes!r}")
  for i, s in enumerate(sizes):
    V.check_scalar(fn, f"layer_sizes[{i}]", s, low=1, integer=True)
  return tuple(int(s) for s in sizes)


def _check_omega(fn: str, name: str, omega) -> float:
  V.check_scalar(fn, name, omega, low=0.0, low_inclusive=False, static=True)
  if not math.isfinite(float(omega)):
    raise ValueError(f"{fn}: {name} must be finite, got {omega}")
  return float(omega)


def _check_schedule(fn: str, schedule) -> WinnerSchedule:
  if not isinstance(schedule, WinnerSchedule):
    raise TypeError(f"{fn}: schedule must be a WinnerSchedule (WinnerSchedule.audio() or "
                    f".image()), got {type(schedule).__name__}")
  return schedule


def _check_params(fn: str, params) -> None:
  if not isinstance(params, (list, tuple)) or len(params) < 2:
    raise TypeError(f"{fn}: params must be a list of {{'w', 'b'}} layers (from siren_init), got "
                    f"{type(params).__name__}")
  for i, layer in enumerate(params):
    if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
      raise TypeError(f"{fn}: params[{i}] must be a dict with keys 'w' and 'b', got "
                      f"{type(layer).__name__}")
    V.check_rank(fn, f"params[{i}]['w']", layer["w"], 2)
    V.check_floating(fn, f"params[{i}]['w']", layer["w"])
    V.check_shape(fn, f"params[{i}]['b']", layer["b"], (layer["w"].shape[1],))
    V.check_floating(fn, f"params[{i}]['b']", layer["b"])
    if i and params[i - 1]["w"].shape[1] != layer["w"].shape[0]:
      raise ValueError(f"{fn}: params[{i}]['w'] must have {params[i - 1]['w'].shape[1]} rows "
                       f"(the previous layer's width), got shape {list(layer['w'].shape)}")


# ------------------------------------------------------------------------------ pure functions


def spectral_centroid(signal: Float[Array, "*slices n channels"], *, freq_axis: int = -2,
                      channel_axis: int | None = -1) -> Float[Array, ""]:
  """The target's spectral-centroid statistic ``psi`` of the WINNER reference code.

  .. math::
    c_s = \\frac{\\sum_f f\\,|Y_s(f)|}{\\sum_f |Y_s(f)|},\\qquad
    \\psi = \\frac{2}{C}\\,\\operatorname{mean}_{ch}\\operatorname{mean}_{s \\in ch} c_s

  with ``Y_s`` the real FFT of slice ``s`` along ``freq_axis`` and ``f = rfftfreq(n)`` in cycles
  per sample (``[0, 1/2]``). For a mono signal ``psi = 2 c`` is the centroid as a fraction of
  Nyquist, in ``[0, 1]``. An all-zero slice has no centroid and counts as 0.

  Args:
    signal: the target samples on a regular grid; the signal runs along ``freq_axis`` (at least
      2 samples), channels along ``channel_axis``; any other axes are slices averaged over.
      A 1-D array is a mono signal.
    freq_axis: the signal axis.
    channel_axis: the channel axis, or ``None`` for a single channel.

  Returns:
    ``psi``, a float32 scalar (the input of :func:`winner_scales`).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import spectral_centroid
    >>> t = jnp.arange(64.0)
    >>> round(float(spectral_centroid(jnp.cos(2 * jnp.pi * 8 * t / 64), channel_axis=None)), 4)
    0.25

  References:
    Chandravamsi et al., "Spectral Bottleneck in Deep Neural Networks: Noise is All You Need",
    2025, https://arxiv.org/abs/2509.09719 (``set_noise_scales`` in cfdlabtechnion/siren_square).
  """
  fn = "spectral_centroid"
  V.check_floating(fn, "signal", signal)
  nd = len(np.shape(signal))
  if nd < 1:
    raise ValueError(f"{fn}: signal must have rank >= 1, got rank 0")
  if nd == 1:
    freq_axis, channel_axis = 0, None
  if not isinstance(freq_axis, int) or isinstance(freq_axis, bool) or not -nd <= freq_axis < nd:
    raise ValueError(f"{fn}: freq_axis must be an int axis of the rank-{nd} signal, got "
                     f"{freq_axis!r}")
  fa = freq_axis % nd
  if channel_axis is not None:
    if (not isinstance(channel_axis, int) or isinstance(channel_axis, bool)
        or not -nd <= channel_axis < nd or channel_axis % nd == fa):
      raise ValueError(f"{fn}: channel_axis must be None or an axis of the rank-{nd} signal "
                       f"other than freq_axis ({freq_axis}), got {channel_axis!r}")
  if signal.shape[fa] < 2:
    raise ValueError(f"{fn}: signal must have at least 2 samples along freq_axis ({freq_axis}), "
                     f"got shape {list(signal.shape)}")
  if min(signal.shape) < 1:
    raise ValueError(f"{fn}: signal must have non-empty axes, got shape {list(signal.shape)}")
  x = jnp.asarray(signal, jnp.float32)
  if channel_axis is None:
    x = jnp.moveaxis(x, fa, -1)[..., None, :]
  else:
    x = jnp.moveaxis(x, (channel_axis % nd, fa), (-2, -1))
  n = x.shape[-1]
  n_channels = x.shape[-2]
  mag = jnp.abs(jnp.fft.rfft(x, axis=-1))
  freqs = jnp.asarray(np.fft.rfftfreq(n), jnp.float32)
  total = jnp.sum(mag, axis=-1)
  c = jnp.sum(mag * freqs, axis=-1) / jnp.where(total > 0, total, 1.0)
  c = jnp.where(total > 0, c, 0.0)
  per_channel = jnp.mean(c.reshape(-1, n_channels), axis=0)
  return 2.0 * jnp.mean(per_channel) / n_channels


def winner_scales(psi: Float[Array, ""] | float, *, n_channels: int = 1,
                  schedule: WinnerSchedule | None = None) -> WinnerScales:
  """WINNER's two noise scales from the spectral statistic ``psi``.

  .. math::
    z = \\psi / C,\\qquad s_0 = s_{0,\\max}\\,(1 - e^{-a z}),\\qquad s_1 = b\\, z

  Args:
    psi: :func:`spectral_centroid` of the target (a scalar, may be traced).
    n_channels: ``C``, the target's channel count (the reference divides by it again).
    schedule: the constants (default :meth:`WinnerSchedule.audio`).

  Returns:
    :class:`WinnerScales` ``(s0, s1)``, float32 scalars.

  Example:
    >>> from bottleneck_jax.architecture import winner_scales
    >>> s = winner_scales(0.603)
    >>> round(float(s.s0), 1), round(float(s.s1), 3)
    (3448.6, 1.809)

  References:
    Chandravamsi et al., 2025, https://arxiv.org/abs/2509.09719.
  """
  fn = "winner_scales"
  schedule = _check_schedule(fn, WinnerSchedule.audio() if schedule is None else schedule)
  V.check_scalar(fn, "n_channels", n_channels, low=1, integer=True)
  if isinstance(psi, bool) or not (isinstance(psi, (int, float, np.number))
                                   or hasattr(psi, "dtype")):
    raise TypeError(f"{fn}: psi must be a float scalar, got {type(psi).__name__}")
  if hasattr(psi, "dtype"):
    V.check_rank(fn, "psi", psi, 0)
    V.check_floating(fn, "psi", psi)
  else:
    V.check_scalar(fn, "psi", psi, low=0.0)
  z = jnp.asarray(psi, jnp.float32) / n_channels
  s0 = schedule.s0_max * (1.0 - jnp.exp(-schedule.a * z))
  s1 = schedule.b * z
  return WinnerScales(s0=jnp.asarray(s0, jnp.float32), s1=jnp.asarray(s1, jnp.float32))


def siren_init(key, layer_sizes: Sequence[int], *, omega_first: float = 30.0,
               omega_hidden: float = 30.0) -> list[dict[str, Float[Array, "..."]]]:
  """The SIREN initialisation (Sitzmann et al. 2020) of an MLP with sine activations.

  First layer ``W ~ U(-1/n_in, 1/n_in)``; later layers ``W ~ U(-sqrt(6/n_in)/omega_hidden,
  +sqrt(6/n_in)/omega_hidden)``; biases ``U(-1/sqrt(n_in), 1/sqrt(n_in))``.

  Args:
    key: a ``jax.random.key`` (or an int seed).
    layer_sizes: ``(in, hidden_1, ..., hidden_k, out)``, at least three sizes.
    omega_first: ``w_0`` of the first layer (not used by the initialisation itself; kept for a
      uniform signature with :func:`siren_apply`).
    omega_hidden: ``w_h`` of the hidden layers (scales their initial weights).

  Returns:
    A list of ``{"w": [n_in, n_out], "b": [n_out]}`` float32 layers.

  Example:
    >>> from bottleneck_jax.architecture import siren_init
    >>> params = siren_init(0, (1, 16, 16, 1))
    >>> [p["w"].shape for p in params]
    [(1, 16), (16, 16), (16, 1)]

  References:
    Sitzmann et al., "Implicit Neural Representations with Periodic Activation Functions",
    NeurIPS 2020, https://arxiv.org/abs/2006.09661.
  """
  fn = "siren_init"
  key = as_key(key, fn=fn)
  sizes = _check_layer_sizes(fn, layer_sizes)
  _check_omega(fn, "omega_first", omega_first)
  omega_hidden = _check_omega(fn, "omega_hidden", omega_hidden)
  return _siren_init(key, sizes, omega_hidden)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _siren_init(key, sizes: tuple[int, ...], omega_hidden: float) -> list[dict[str, Array]]:
  params = []
  keys = jax.random.split(key, 2 * (len(sizes) - 1))
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    bound = 1.0 / n_in if i == 0 else math.sqrt(6.0 / n_in) / omega_hidden
    w = jax.random.uniform(keys[2 * i], (n_in, n_out), jnp.float32, -bound, bound)
    bb = 1.0 / math.sqrt(n_in)
    b = jax.random.uniform(keys[2 * i + 1], (n_out,), jnp.float32, -bb, bb)
    params.append({"w": w, "b": b})
  return params


def winner_init(key, layer_sizes: Sequence[int], target: Float[Array, "*slices n channels"], *,
                schedule: WinnerSchedule | None = None, omega_first: float = 30.0,
                omega_hidden: float = 30.0, freq_axis: int = -2,
                channel_axis: int | None = -1) -> list[dict[str, Array]]:
  """The WINNER initialisation: SIREN plus target-aware Gaussian noise on layers 1 and 2.

  .. math::
    W_1 \\mathrel{+}= \\mathcal N\\big(0, (s_0/\\omega_h)^2\\big),\\qquad
    W_2 \\mathrel{+}= \\mathcal N\\big(0, (s_1/\\omega_h)^2\\big),\\qquad
    (s_0, s_1) = \\mathrm{winner\\_scales}(\\mathrm{spectral\\_centroid}(\\mathrm{target}))

  Args:
    key: a ``jax.random.key`` (or an int seed); the SIREN part equals ``siren_init(key, ...)``.
    layer_sizes: ``(in, hidden_1, ..., out)``, at least three sizes.
    target: the signal to be fitted (see :func:`spectral_centroid` for its axes).
    schedule: the constants (default :meth:`WinnerSchedule.audio`).
    omega_first, omega_hidden: as for :func:`siren_init`; ``omega_hidden`` divides both scales.
    freq_axis, channel_axis: as for :func:`spectral_centroid`; the channel count ``C`` is the
      size of ``channel_axis`` (1 when ``None`` or for a 1-D target).

  Returns:
    The parameters, as from :func:`siren_init`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import siren_init, winner_init
    >>> t = jnp.arange(256.0)
    >>> target = jnp.cos(2 * jnp.pi * 96 * t / 256)[:, None]
    >>> params = winner_init(0, (1, 32, 32, 1), target)
    >>> bool(jnp.std(params[0]["w"]) > 10 * jnp.std(siren_init(0, (1, 32, 32, 1))[0]["w"]))
    True

  References:
    Chandravamsi et al., "Spectral Bottleneck in Deep Neural Networks: Noise is All You Need",
    2025, https://arxiv.org/abs/2509.09719.
  """
  fn = "winner_init"
  key = as_key(key, fn=fn)
  sizes = _check_layer_sizes(fn, layer_sizes)
  omega_hidden = _check_omega(fn, "omega_hidden", omega_hidden)
  _check_omega(fn, "omega_first", omega_first)
  schedule = _check_schedule(fn, WinnerSchedule.audio() if schedule is None else schedule)
  V.check_floating(fn, "target", target)
  try:
    psi = spectral_centroid(target, freq_axis=freq_axis, channel_axis=channel_axis)
  except (ValueError, TypeError) as e:
    raise type(e)(str(e).replace("spectral_centroid:", f"{fn}:", 1)) from None
  nd = len(np.shape(target))
  n_channels = 1 if (nd == 1 or channel_axis is None) else int(target.shape[channel_axis])
  scales = winner_scales(psi, n_channels=n_channels, schedule=schedule)
  params = siren_init(key, sizes, omega_first=omega_first, omega_hidden=omega_hidden)
  return _perturb(key, params, scales.s0 / omega_hidden, scales.s1 / omega_hidden)


@jax.jit
def _perturb(key, params, std0, std1):
  k0, k1 = jax.random.split(jax.random.fold_in(key, 1))
  w0, w1 = params[0]["w"], params[1]["w"]
  params = list(params)
  params[0] = {"w": w0 + std0 * jax.random.normal(k0, w0.shape, w0.dtype), "b": params[0]["b"]}
  params[1] = {"w": w1 + std1 * jax.random.normal(k1, w1.shape, w1.dtype), "b": params[1]["b"]}
  return params


def siren_apply(params: Sequence[dict[str, Array]], coords: Float[Array, "*batch d_in"], *,
                omega_first: float = 30.0, omega_hidden: float = 30.0
                ) -> Float[Array, "*batch d_out"]:
  """Evaluates a SIREN: sine layers ``sin(omega (x W + b))`` and a linear read-out.

  Args:
    params: layers from :func:`siren_init` / :func:`winner_init`.
    coords: input coordinates ``[*batch, d_in]`` (``d_in`` = the first layer's rows).
    omega_first: ``w_0`` of the first layer.
    omega_hidden: ``w_h`` of the hidden layers.

  Returns:
    ``[*batch, d_out]`` in the dtype of the parameters and coordinates.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import siren_apply, siren_init
    >>> siren_apply(siren_init(0, (1, 8, 2)), jnp.linspace(-1, 1, 5)[:, None]).shape
    (5, 2)

  References:
    Sitzmann et al., NeurIPS 2020, https://arxiv.org/abs/2006.09661.
  """
  fn = "siren_apply"
  _check_params(fn, params)
  omega_first = _check_omega(fn, "omega_first", omega_first)
  omega_hidden = _check_omega(fn, "omega_hidden", omega_hidden)
  V.check_rank(fn, "coords", coords, min_rank=1)
  V.check_floating(fn, "coords", coords)
  V.check_axis_size(fn, "coords", coords, -1, params[0]["w"].shape[0], "the input size")
  h = coords
  for i, layer in enumerate(params[:-1]):
    omega = omega_first if i == 0 else omega_hidden
    h = jnp.sin(omega * (h @ layer["w"].astype(h.dtype) + layer["b"].astype(h.dtype)))
  return h @ params[-1]["w"].astype(h.dtype) + params[-1]["b"].astype(h.dtype)


# ------------------------------------------------------------------------------ NNX module


class Siren(nnx.Module):
  """A SIREN MLP whose parameters come from :func:`siren_init` or, given a target,
  :func:`winner_init`.

  Args:
    layer_sizes: ``(in, hidden_1, ..., out)``.
    target: ``None`` (plain SIREN) or the signal to be fitted (WINNER initialisation).
    schedule: WINNER constants (default :meth:`WinnerSchedule.audio`).
    omega_first, omega_hidden: the sine frequencies.
    freq_axis, channel_axis: the target's axes (see :func:`spectral_centroid`).
    rngs: ``nnx.Rngs``; the ``params`` stream seeds the initialisation.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.architecture import Siren
    >>> model = Siren((1, 16, 16, 1), rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((4, 1))).shape
    (4, 1)
  """

  def __init__(self, layer_sizes: Sequence[int], *, target: Array | None = None,
               schedule: WinnerSchedule | None = None, omega_first: float = 30.0,
               omega_hidden: float = 30.0, freq_axis: int = -2, channel_axis: int | None = -1,
               rngs: nnx.Rngs):
    fn = "Siren"
    sizes = _check_layer_sizes(fn, layer_sizes)
    self.omega_first = _check_omega(fn, "omega_first", omega_first)
    self.omega_hidden = _check_omega(fn, "omega_hidden", omega_hidden)
    key = rngs.params()
    if target is None:
      params = siren_init(key, sizes, omega_first=omega_first, omega_hidden=omega_hidden)
    else:
      params = winner_init(key, sizes, target, schedule=schedule, omega_first=omega_first,
                           omega_hidden=omega_hidden, freq_axis=freq_axis,
                           channel_axis=channel_axis)
    self.weights = nnx.List([nnx.Param(p["w"]) for p in params])
    self.biases = nnx.List([nnx.Param(p["b"]) for p in params])

  def params_list(self) -> list[dict[str, Array]]:
    """The parameters as the list of ``{"w", "b"}`` layers that :func:`siren_apply` takes."""
    return [{"w": w[...], "b": b[...]} for w, b in zip(self.weights, self.biases)]

  def __call__(self, coords: Float[Array, "*batch d_in"]) -> Float[Array, "*batch d_out"]:
    return siren_apply(self.params_list(), coords, omega_first=self.omega_first,
                       omega_hidden=self.omega_hidden)
