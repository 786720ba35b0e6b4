"""A real entropy coder for integer latents: CDF tables + range coding (host side).

Turns the learned entropy models of this family into bytes: integer CDF tables are built once
from a model's parameters (NumPy, float64 on the host), then integer symbols are range-coded with
the `constriction <https://bamler-lab.github.io/constriction/>`_ library (a queue
``RangeEncoder``; each table becomes a ``Categorical`` model with the table's exact
probabilities), and decoded back exactly.

Tables follow CompressAI (``EntropyBottleneck.update`` / ``GaussianConditional.update`` and the
C++ ``pmf_to_quantized_cdf``): per table a pmf over ``pmf_length`` integers plus one **escape**
symbol carrying the tail mass, quantised to ``2^precision`` counts with every symbol at least one
count. A value outside a table's support is coded as the escape symbol followed by its raw value
in *bypass* mode: ``raw = -2v - 1`` (below) or ``2 (v - max)`` (above), as a count of 4-bit
chunks (in chunks of 15) and the chunks, each with a uniform model over 16 values (CompressAI's
rANS semantics). The symbols of a stream are ordered by table, then by position; the escapes
follow all symbols.

Departures: the coder is constriction's range coder, not CompressAI's rANS, so the bytes differ
from CompressAI's while the tables (and thus the ideal code lengths) are the same. Values must lie
in ``[-2^30, 2^30]``.

Nothing here is traced: these are NumPy functions for the host (as entropy coders are in every
peer library).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bottleneck_jax.core import validation as V

_BYPASS_BITS = 4
_BYPASS_MAX = (1 << _BYPASS_BITS) - 1
MAX_ABS_SYMBOL = 2 ** 30


def _host(fn: str, arg: str, x, kinds: str = "fiu") -> np.ndarray:
  """``np.asarray(x)`` with a named error for non-arrays and non-numeric dtypes."""
  if x is None or isinstance(x, (str, bytes, dict)):
    raise TypeError(f"{fn}: {arg} must be an array, got {type(x).__name__}")
  try:
    a = np.asarray(x)
  except Exception as e:  # noqa: BLE001 - ragged lists and other non-arrays
    raise TypeError(f"{fn}: {arg} must be an array, got {type(x).__name__} ({e})") from None
  if a.dtype.kind not in kinds:
    raise TypeError(f"{fn}: {arg} must have a real {'integer' if kinds == 'iu' else 'numeric'} "
                    f"dtype, got {a.dtype}")
  return a


def _constriction():
  try:
    import constriction
  except ImportError as e:  # pragma: no cover - a declared dependency
    raise ImportError("the entropy coder needs the `constriction` package "
                      "(pip install constriction)") from e
  return constriction


class CdfTables(NamedTuple):
  """Integer CDF tables for the coder (CompressAI's ``_quantized_cdf`` layout).

  ``cdf``: int32 ``[T, L_max + 2]`` (row ``t`` valid up to ``cdf_length[t]``, ending at
  ``2^precision``); ``cdf_length``: int32 ``[T]`` (``pmf_length + 2``); ``offset``: int32
  ``[T]`` (the symbol of the table's first entry); ``precision``: bits of the counts.
  """
  cdf: np.ndarray
  cdf_length: np.ndarray
  offset: np.ndarray
  precision: int


def pmf_to_quantized_cdf(pmf, precision: int = 16) -> np.ndarray:
  """Quantises a pmf to an integer CDF of total ``2^precision`` with every symbol >= 1 count.

  A transcription of CompressAI's C++ ``pmf_to_quantized_cdf``: round ``p 2^precision``,
  rescale to the total, then give every zero-count symbol one count stolen from the smallest
  symbol with more than one.

  Args:
    pmf: 1-D non-negative finite probabilities (float, summing to about 1; the escape mass
      included).
    precision: bits of the total count, ``1..24``.

  Returns:
    uint32 CDF of length ``len(pmf) + 1``, from 0 to ``2^precision``.

  Example:
    >>> from bottleneck_jax.compression import pmf_to_quantized_cdf
    >>> pmf_to_quantized_cdf([0.5, 0.5, 0.0], precision=4).tolist()
    [0, 7, 15, 16]
  """
  fn = "pmf_to_quantized_cdf"
  V.check_scalar(fn, "precision", precision, low=1, high=24, integer=True)
  p = _host(fn, "pmf", pmf).astype(np.float32)
  if p.ndim != 1 or p.size == 0:
    raise ValueError(f"{fn}: pmf must be a non-empty 1-D array of probabilities, got {pmf!r}")
  if not np.all(np.isfinite(p)) or np.any(p < 0):
    raise ValueError(f"{fn}: pmf must be finite and non-negative, got {p.tolist()}")
  total_count = 1 << precision
  if p.size > total_count:
    raise ValueError(f"{fn}: pmf must have at most 2^precision = {total_count} entries, got "
                     f"{p.size}")
  cdf = np.zeros(p.size + 1, np.uint64)
  cdf[1:] = np.round(p * np.float32(total_count)).astype(np.uint64)  # std::round of a float
  total = int(cdf.sum())
  if total == 0:
    raise ValueError(f"{fn}: pmf must have a positive mass after quantisation, got "
                     f"{p.tolist()}")
  cdf = (np.uint64(total_count) * cdf) // np.uint64(total)
  cdf = np.cumsum(cdf).astype(np.int64)
  cdf[-1] = total_count
  for i in range(cdf.size - 1):
    if cdf[i] == cdf[i + 1]:
      freq = np.diff(cdf)
      cand = np.where(freq > 1)[0]
      best = int(cand[np.argmin(freq[cand])])  # first index of the smallest count > 1
      if best < i:
        cdf[best + 1:i + 1] -= 1
      else:
        cdf[i + 1:best + 1] += 1
  return cdf.astype(np.uint32)


def _sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def _np_logits(params, y):
  """NumPy float64 ``f_c`` for ``y`` of shape ``[C, n]``."""
  h = np.asarray(y, np.float64)[:, None, :]                        # [C, 1, n]
  k = len(params.factors)
  for i in range(k + 1):
    m = np.logaddexp(0.0, np.asarray(params.matrices[i], np.float64))
    h = m @ h + np.asarray(params.biases[i], np.float64)
    if i < k:
      h = h + np.tanh(np.asarray(params.factors[i], np.float64)) * np.tanh(h)
  return h[:, 0, :]


def _tables_from_pmfs(pmfs, pmf_lengths, tails, offsets, precision) -> CdfTables:
  max_len = int(np.max(pmf_lengths))
  cdf = np.zeros((len(pmfs), max_len + 2), np.int32)
  for i, (pmf, n, tail) in enumerate(zip(pmfs, pmf_lengths, tails)):
    q = pmf_to_quantized_cdf(np.concatenate([pmf[:n], [tail]]), precision)
    cdf[i, :q.size] = q
  return CdfTables(cdf, np.asarray(pmf_lengths, np.int32) + 2, np.asarray(offsets, np.int32),
                   int(precision))


def build_factorized_tables(params, quantiles, *, precision: int = 16) -> CdfTables:
  """The coder's tables for a factorised prior (CompressAI's ``EntropyBottleneck.update``).

  One table per channel over ``median + [-ceil(m - q_lo), ceil(q_hi - m)]``.

  Args:
    params: :class:`FactorizedPriorParams`.
    quantiles: ``[C, 3]`` (``fit_quantiles(params)``).
    precision: bits of the integer CDF.

  Example:
    >>> from bottleneck_jax.compression import (init_factorized_prior, fit_quantiles,
    ...                                         build_factorized_tables)
    >>> p = init_factorized_prior(0, 2)
    >>> t = build_factorized_tables(p, fit_quantiles(p))
    >>> t.cdf.shape[0], int(t.cdf[0, t.cdf_length[0] - 1])
    (2, 65536)
  """
  fn = "build_factorized_tables"
  from bottleneck_jax.compression._entropy_models import _check_params
  c = _check_params(fn, params)
  V.check_scalar(fn, "precision", precision, low=8, high=24, integer=True)
  q = _host(fn, "quantiles", quantiles).astype(np.float64)
  if q.shape != (c, 3) or not np.all(np.isfinite(q)):
    raise ValueError(f"{fn}: quantiles must be finite with shape [{c}, 3], got "
                     f"{V.describe(quantiles) if hasattr(quantiles, 'shape') else quantiles!r}")
  med = q[:, 1]
  minima = np.maximum(np.ceil(med - q[:, 0]), 0).astype(np.int64)
  maxima = np.maximum(np.ceil(q[:, 2] - med), 0).astype(np.int64)
  pmf_length = minima + maxima + 1
  if int(pmf_length.max()) > (1 << precision) - 1:
    raise ValueError(f"{fn}: quantiles span {int(pmf_length.max())} integers, more than "
                     f"2^precision - 1; refit them (fit_quantiles) or raise precision")
  max_len = int(pmf_length.max())
  samples = (med - minima)[:, None] + np.arange(max_len)[None, :]
  lower = _np_logits(params, samples - 0.5)
  upper = _np_logits(params, samples + 0.5)
  sign = np.where(lower + upper > 0, -1.0, 1.0)
  pmf = np.abs(_sigmoid(sign * upper) - _sigmoid(sign * lower))
  # CompressAI reads the upper tail at the last *padded* sample of each row; the row of the
  # longest table is the same, shorter rows differ only in this O(tail_mass) escape mass.
  tail = _sigmoid(lower[:, 0]) + _sigmoid(-upper[:, -1])
  return _tables_from_pmfs(pmf, pmf_length, tail, -minima, precision)


def _std_cdf(x):
  from scipy.special import ndtr
  return ndtr(x)


def build_gaussian_tables(scale_table, *, tail_mass: float = 1e-9,
                          precision: int = 16) -> CdfTables:
  """The coder's tables for the Gaussian conditional, one per scale of ``scale_table``
  (CompressAI's ``GaussianConditional.update``).

  Example:
    >>> from bottleneck_jax.compression import gaussian_scale_table, build_gaussian_tables
    >>> t = build_gaussian_tables(gaussian_scale_table())
    >>> t.cdf.shape[0], int(t.offset[0])
    (64, -1)
  """
  fn = "build_gaussian_tables"
  from scipy.special import ndtri
  s = _host(fn, "scale_table", scale_table).astype(np.float64)
  if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
    raise ValueError(f"{fn}: scale_table must be a non-empty 1-D array of positive scales, got "
                     f"{scale_table!r}")
  V.check_scalar(fn, "tail_mass", tail_mass, low=0.0, high=1.0, low_inclusive=False,
                 high_inclusive=False)
  V.check_scalar(fn, "precision", precision, low=8, high=24, integer=True)
  multiplier = -ndtri(tail_mass / 2)
  center = np.ceil(s * multiplier).astype(np.int64)
  pmf_length = 2 * center + 1
  if int(pmf_length.max()) > (1 << precision) - 1:
    raise ValueError(f"{fn}: the largest scale needs {int(pmf_length.max())} symbols, more "
                     f"than 2^precision - 1")
  max_len = int(pmf_length.max())
  samples = np.abs(np.arange(max_len)[None, :] - center[:, None]).astype(np.float64)
  upper = _std_cdf((0.5 - samples) / s[:, None])
  lower = _std_cdf((-0.5 - samples) / s[:, None])
  pmf = upper - lower
  tail = 2 * lower[:, 0]
  return _tables_from_pmfs(pmf, pmf_length, tail, -center, precision)


def gaussian_scale_indexes(scales, scale_table, *, scale_bound: float = 0.11) -> np.ndarray:
  """Index of each scale in ``scale_table``: the first entry ``>= max(scale, scale_bound)``
  (the last entry for larger scales), as CompressAI's ``build_indexes``.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import gaussian_scale_indexes, gaussian_scale_table
    >>> gaussian_scale_indexes(np.array([0.01, 0.12, 1e4]), gaussian_scale_table()).tolist()
    [0, 1, 63]
  """
  fn = "gaussian_scale_indexes"
  s = _host(fn, "scales", scales).astype(np.float64)
  t = _host(fn, "scale_table", scale_table).astype(np.float64)
  if not np.all(np.isfinite(s)):
    raise ValueError(f"{fn}: scales must be a finite array, got {scales!r}")
  if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
    raise ValueError(f"{fn}: scale_table must be a non-empty 1-D array, got {scale_table!r}")
  s = np.maximum(s, scale_bound)
  idx = np.full(s.shape, t.size - 1, np.int32)
  for v in t[:-1]:
    idx -= (s <= v).astype(np.int32)
  return idx


# --------------------------------------------------------------------------------------------
# encode / decode


def _check_tables(fn: str, tables) -> None:
  if not isinstance(tables, CdfTables):
    raise TypeError(f"{fn}: tables must be a CdfTables, got {type(tables).__name__}")


def _models(tables: CdfTables, used):
  cs = _constriction()
  models = {}
  for t in used:
    n = int(tables.cdf_length[t])
    probs = np.diff(tables.cdf[t, :n].astype(np.float64)) / float(1 << tables.precision)
    models[t] = cs.stream.model.Categorical(probs, perfect=False)
  return models


def _check_symbols(fn: str, symbols, indexes, tables):
  _check_tables(fn, tables)
  s = _host(fn, "symbols", symbols, "iu")
  idx = _host(fn, "indexes", indexes, "iu")
  if s.shape != idx.shape:
    raise ValueError(f"{fn}: symbols and indexes must have the same shape, got {list(s.shape)} "
                     f"and {list(idx.shape)}")
  if idx.size and (idx.min() < 0 or idx.max() >= tables.cdf.shape[0]):
    raise ValueError(f"{fn}: indexes must lie in [0, {tables.cdf.shape[0]}) (one per table), "
                     f"got values in [{idx.min()}, {idx.max()}]")
  if s.size and (int(s.min()) < -MAX_ABS_SYMBOL or int(s.max()) > MAX_ABS_SYMBOL):
    raise ValueError(f"{fn}: symbols must lie in [-2^30, 2^30] (the coder's range), got "
                     f"values in [{int(s.min())}, {int(s.max())}]")
  return s.astype(np.int64).ravel(), idx.astype(np.int64).ravel()


def encode_symbols(symbols, indexes, tables: CdfTables) -> bytes:
  """Range-codes integer ``symbols``, each with the table ``indexes`` names, into bytes.

  Args:
    symbols: integer array (any shape) of quantised values (``round(y - median)``).
    indexes: integer array of the same shape: the table of each symbol.
    tables: :class:`CdfTables`.

  Returns:
    The compressed bytes (a whole number of 32-bit words).

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import (gaussian_scale_table, build_gaussian_tables,
    ...                                         encode_symbols, decode_symbols)
    >>> tables = build_gaussian_tables(gaussian_scale_table())
    >>> s, i = np.array([0, 3, -200]), np.array([10, 20, 0])
    >>> decode_symbols(encode_symbols(s, i, tables), i, tables).tolist()
    [0, 3, -200]
  """
  fn = "encode_symbols"
  s, idx = _check_symbols(fn, symbols, indexes, tables)
  cs = _constriction()
  enc = cs.stream.queue.RangeEncoder()
  used = np.unique(idx)
  models = _models(tables, used)
  escapes = []
  for t in used:
    sel = np.nonzero(idx == t)[0]
    v = s[sel] - int(tables.offset[t])
    max_value = int(tables.cdf_length[t]) - 2
    esc = (v < 0) | (v >= max_value)
    raw = np.where(v < 0, -2 * v - 1, 2 * (v - max_value))
    escapes += raw[esc].tolist()
    enc.encode(np.where(esc, max_value, v).astype(np.int32), models[t])
  if escapes:
    uni = cs.stream.model.Uniform(1 << _BYPASS_BITS)
    out = []
    for raw in escapes:
      n = 0
      while (raw >> (n * _BYPASS_BITS)) != 0:
        n += 1
      out += [_BYPASS_MAX] * (n // _BYPASS_MAX) + [n % _BYPASS_MAX]
      out += [(raw >> (j * _BYPASS_BITS)) & _BYPASS_MAX for j in range(n)]
    enc.encode(np.asarray(out, np.int32), uni)
  return enc.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, indexes, tables: CdfTables) -> np.ndarray:
  """Inverse of :func:`encode_symbols` (same ``indexes`` and ``tables``).

  Returns:
    int32 symbols of the shape of ``indexes``.
  """
  fn = "decode_symbols"
  _check_tables(fn, tables)
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise TypeError(f"{fn}: data must be bytes, got {type(data).__name__}")
  if len(data) % 4:
    raise ValueError(f"{fn}: data must be a whole number of 32-bit words, got {len(data)} bytes")
  idx_arr = _host(fn, "indexes", indexes, "iu")
  _, idx = _check_symbols(fn, np.zeros(idx_arr.shape, np.int32), idx_arr, tables)
  cs = _constriction()
  words = np.frombuffer(bytes(data), "<u4").astype(np.uint32)
  dec = cs.stream.queue.RangeDecoder(words)
  out = np.zeros(idx.shape, np.int64)
  used = np.unique(idx)
  models = _models(tables, used)
  esc_pos = []
  for t in used:
    sel = np.nonzero(idx == t)[0]
    v = np.asarray(dec.decode(models[t], sel.size), np.int64)
    max_value = int(tables.cdf_length[t]) - 2
    out[sel] = v + int(tables.offset[t])
    esc_pos += [(p, t, max_value) for p in sel[v == max_value]]
  if esc_pos:
    uni = cs.stream.model.Uniform(1 << _BYPASS_BITS)
    for p, t, max_value in esc_pos:
      n = 0
      while True:
        c = int(dec.decode(uni, 1)[0])
        n += c
        if c < _BYPASS_MAX:
          break
        if n > 64:
          raise ValueError(f"{fn}: data is corrupt (an escape longer than 64 chunks)")
      raw = 0
      for j in range(n):
        raw |= int(dec.decode(uni, 1)[0]) << (j * _BYPASS_BITS)
      v = -(raw + 1) // 2 if raw & 1 else raw // 2 + max_value
      if abs(v + int(tables.offset[t])) > MAX_ABS_SYMBOL:
        raise ValueError(f"{fn}: data is corrupt (a decoded value outside the coder's range)")
      out[p] = v + int(tables.offset[t])
  return out.reshape(idx_arr.shape).astype(np.int32)


def ideal_code_length(symbols, indexes, tables: CdfTables) -> float:
  """The ideal code length in bits of ``symbols`` under the quantised tables (bypass chunks
  counted at 4 bits each): what :func:`encode_symbols` should approach.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import (gaussian_scale_table, build_gaussian_tables,
    ...                                         ideal_code_length)
    >>> t = build_gaussian_tables(gaussian_scale_table())
    >>> round(ideal_code_length(np.zeros(8, np.int32), np.full(8, 63), t), 1)
    74.6
  """
  fn = "ideal_code_length"
  s, idx = _check_symbols(fn, symbols, indexes, tables)
  bits = 0.0
  for t in np.unique(idx):
    v = s[idx == t] - int(tables.offset[t])
    max_value = int(tables.cdf_length[t]) - 2
    esc = (v < 0) | (v >= max_value)
    sym = np.where(esc, max_value, v)
    freq = np.diff(tables.cdf[t, :max_value + 2].astype(np.float64))
    bits += float(np.sum(tables.precision - np.log2(freq[sym])))
    raw = np.where(v < 0, -2 * v - 1, 2 * (v - max_value))[esc]
    for r in raw.tolist():
      n = max(int(r).bit_length() + _BYPASS_BITS - 1, 0) // _BYPASS_BITS
      bits += _BYPASS_BITS * (n // _BYPASS_MAX + 1 + n)
  return bits


def factorized_compress(y, medians, tables: CdfTables) -> list[bytes]:
  """Compresses latents ``y`` ``[B, ..., C]`` with a factorised prior's tables: one byte string
  per example (``round(y - median)`` coded with channel ``c``'s table).

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import (init_factorized_prior, fit_quantiles,
    ...     build_factorized_tables, factorized_compress, factorized_decompress)
    >>> p = init_factorized_prior(0, 2); q = np.asarray(fit_quantiles(p))
    >>> t = build_factorized_tables(p, q)
    >>> y = np.array([[[0.2, -3.0], [7.0, 1e3]]], np.float32)
    >>> m = q[:, 1]
    >>> y_hat = factorized_decompress(factorized_compress(y, m, t), y.shape, m, t)
    >>> bool(np.allclose(y_hat, np.round(y - m) + m))
    True
  """
  fn = "factorized_compress"
  _check_tables(fn, tables)
  y = _host(fn, "y", y).astype(np.float64)
  med = _host(fn, "medians", medians).astype(np.float64)
  if y.ndim < 2 or y.shape[0] == 0 or not np.all(np.isfinite(y)):
    raise ValueError(f"{fn}: y must be finite with shape [batch, ..., C], got "
                     f"{getattr(y, 'shape', y)}")
  c = tables.cdf.shape[0]
  if y.shape[-1] != c or med.shape != (c,) or not np.all(np.isfinite(med)):
    raise ValueError(f"{fn}: y's last axis and medians must have the tables' {c} channels, got "
                     f"y {list(y.shape)} and medians {getattr(med, 'shape', medians)}")
  sym = np.round(y - med)
  if np.abs(sym).max() > MAX_ABS_SYMBOL:
    raise ValueError(f"{fn}: y is outside the coder's range (|round(y - median)| <= 2^30)")
  idx = np.broadcast_to(np.arange(c, dtype=np.int32), y.shape[1:])
  return [encode_symbols(sym[b].astype(np.int64), idx, tables) for b in range(y.shape[0])]


def factorized_decompress(strings, shape, medians, tables: CdfTables) -> np.ndarray:
  """Inverse of :func:`factorized_compress`: float32 ``y_hat = symbols + median`` of ``shape``."""
  fn = "factorized_decompress"
  _check_tables(fn, tables)
  if not isinstance(strings, (list, tuple)) or not all(
      isinstance(b, (bytes, bytearray)) for b in strings):
    raise TypeError(f"{fn}: strings must be a list of bytes, got {type(strings).__name__}")
  if not isinstance(shape, (tuple, list)) or not all(
      isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
    raise TypeError(f"{fn}: shape must be a tuple of non-negative ints, got {shape!r}")
  shape = tuple(shape)
  if len(shape) < 2 or shape[0] != len(strings) or shape[-1] != tables.cdf.shape[0]:
    raise ValueError(f"{fn}: shape must be [{len(strings)}, ..., {tables.cdf.shape[0]}] (one "
                     f"string per example, the tables' channels), got {list(shape)}")
  med = _host(fn, "medians", medians).astype(np.float64)
  if med.shape != (shape[-1],):
    raise ValueError(f"{fn}: medians must have shape [{shape[-1]}], got {list(med.shape)}")
  idx = np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape[1:])
  out = np.stack([decode_symbols(s, idx, tables) for s in strings]).astype(np.float64)
  return (out + med).astype(np.float32)
