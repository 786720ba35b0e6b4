"""Pallas forward kernel of ``linear_logit_stats`` (private helper).

Grid ``(N / BN, S)``: program ``(i, s)`` owns row block ``i`` and the ``s``-th contiguous range of
vocabulary blocks. It loops over its ``BV``-wide vocabulary blocks and, inside, over ``d`` in
``BD`` chunks accumulating the f32 logit tile ``[BN, BV]`` (a transposed-RHS ``dot_general``), then
masks, soft-caps and updates an online ``(max, sum-exp)`` pair, the target logit and the row sum.
It writes per-split partials ``[S, N]`` that XLA combines (``logsumexp`` over ``S``, sums for the
other two): no atomics, deterministic. This is the flash-attention pattern of
``jax.experimental.pallas.ops.gpu.attention``.

Every array loaded inside the kernel has power-of-two dimensions (a Triton requirement). A
vocabulary size ``V`` that is not a multiple of ``BV`` is handled without padding the weight:
the last block's start is clamped to ``V - BV`` (so no load goes out of bounds) and columns that
an earlier block already covered are masked; blocks of a split that lie past ``V`` are masked
entirely. Rows are padded to a multiple of ``BN`` (a copy of ``x`` only, never of ``w``).

Portable primitives only (``ref[...]``, ``pl.ds``, ``lax.fori_loop``, ``lax.dot_general``,
``jnp`` elementwise, ``broadcasted_iota``), so the same body runs in interpret mode on CPU and
through the Triton lowering on GPU. TPU (Mosaic) is not supported: the weight would have to be
blocked into VMEM; ``UnsupportedInput`` sends the dispatcher to the XLA path there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks
from bottleneck_jax.kernels.dispatch import UnsupportedInput

F32 = jnp.float32
_NT = (((1,), (1,)), ((), ()))

# Defaults for the Triton lowering: the fastest of an 11-point sweep on an H200 at N=8192,
# d=2048, V=128256, bf16 (`scripts/bench_efficiency.py --sweep`, see BENCHMARKS.md): 8.1 ms,
# 530 TFLOP/s, vs 9.9 ms for the test plan's (64, 128, 64, 4 warps) starting point.
GPU_CONFIG = {"block_n": 128, "block_v": 256, "block_d": 64, "num_warps": 8, "num_stages": 3}
# Interpret mode on CPU: every grid step is a Python-free but sequential loop; bigger blocks
# mean fewer steps.
INTERPRET_CONFIG = {"block_n": 64, "block_v": 128, "block_d": 128, "num_warps": None,
                    "num_stages": None}


def _prev_power_of_2(n: int) -> int:
  return 1 << (max(int(n), 1).bit_length() - 1)


def _largest_pow2_divisor(n: int, cap: int) -> int:
  b = 1
  while b * 2 <= cap and n % (b * 2) == 0:
    b *= 2
  return b


def _kernel(*refs, v, d, bn, bv, bd, blocks_per_split, softcap, has_bias):
  if has_bias:
    x_ref, lab_ref, w_ref, b_ref, lse_ref, t_ref, zs_ref = refs
  else:
    x_ref, lab_ref, w_ref, lse_ref, t_ref, zs_ref = refs
    b_ref = None
  split = pl.program_id(1)
  labels = lab_ref[...]
  n_d = d // bd

  def vblock(jj, carry):
    m, s, t, zs = carry
    start = (split * blocks_per_split + jj) * bv
    start_eff = jnp.minimum(start, v - bv)     # never load past the end of w

    def dstep(k, acc):
      xk = x_ref[:, pl.ds(k * bd, bd)]
      wk = w_ref[pl.ds(start_eff, bv), pl.ds(k * bd, bd)]
      return acc + lax.dot_general(xk, wk, _NT, preferred_element_type=F32)

    z = lax.fori_loop(0, n_d, dstep, jnp.zeros((bn, bv), F32))
    if b_ref is not None:
      z = z + b_ref[pl.ds(start_eff, bv)].astype(F32)[None, :]
    if softcap is not None:
      z = softcap * jnp.tanh(z / softcap)
    col = start_eff + lax.broadcasted_iota(jnp.int32, (bn, bv), 1)
    valid = col >= start                     # drops columns an earlier block already owns
    zm = jnp.where(valid, z, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(zm, axis=1))
    m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
    s = s * jnp.exp(m - m_safe) + jnp.sum(jnp.exp(zm - m_safe[:, None]), axis=1)
    hit = jnp.logical_and(valid, col == labels[:, None])
    t = t + jnp.sum(jnp.where(hit, z, 0.0), axis=1)
    zs = zs + jnp.sum(jnp.where(valid, z, 0.0), axis=1)
    return m_new, s, t, zs

  init = (jnp.full((bn,), -jnp.inf, F32), jnp.zeros((bn,), F32), jnp.zeros((bn,), F32),
          jnp.zeros((bn,), F32))
  m, s, t, zs = lax.fori_loop(0, blocks_per_split, vblock, init)
  lse_ref[...] = m + jnp.log(s)
  t_ref[...] = t
  zs_ref[...] = zs


# Triton software-pipelines the d loop: each stage buffers an x tile and a w tile in shared
# memory. H100/H200 allow 227 KiB per block; stay well below it.
_SMEM_BUDGET = 160 * 1024


def plan(n: int, v: int, d: int, *, block_size: int | None, interpret: bool,
         config: dict | None = None, itemsize: int = 2) -> dict:
  """Block sizes and split count for these sizes; raises UnsupportedInput if impossible."""
  cfg = dict(INTERPRET_CONFIG if interpret else GPU_CONFIG)
  if config:
    cfg.update(config)
  if block_size is not None:
    if block_size & (block_size - 1):
      raise UnsupportedInput(f"the Pallas kernel needs a power-of-two vocabulary block, got "
                                f"block_size={block_size}")
    cfg["block_v"] = int(block_size)
  min_dim = 1 if interpret else 16          # Triton's dot needs every dimension >= 16
  bv = min(cfg["block_v"], _prev_power_of_2(v))
  if bv < min_dim:
    raise UnsupportedInput(f"vocabulary size {v} is below the smallest Triton block "
                              f"({min_dim})")
  bd = _largest_pow2_divisor(d, cfg["block_d"])
  if bd < min_dim:
    raise UnsupportedInput(f"feature size d={d} needs a power-of-two divisor >= {min_dim} "
                              f"for the Triton kernel (got {bd})")
  bn = max(min_dim, min(cfg["block_n"], blocks.next_power_of_2(n)))
  stages = cfg["num_stages"]
  if not interpret:
    # e.g. f32 inputs with the bf16-tuned tiles would ask for 256 KiB: halve the d chunk first.
    smem = lambda bd_, st: (bn + bv) * bd_ * itemsize * max(st or 1, 1)
    while smem(bd, stages) > _SMEM_BUDGET and bd > min_dim:
      bd //= 2
    while smem(bd, stages) > _SMEM_BUDGET and stages and stages > 1:
      stages -= 1
  n_pad = blocks.round_up(max(n, 1), bn)
  n_vblocks = blocks.cdiv(v, bv)
  splits = cfg.get("splits")
  if splits is None:
    # Enough programs to fill a GPU (~132 SMs, a few waves), at most 8 vocabulary splits.
    splits = max(1, min(8, blocks.cdiv(512, n_pad // bn)))
  splits = max(1, min(int(splits), n_vblocks))
  per_split = blocks.cdiv(n_vblocks, splits)
  splits = blocks.cdiv(n_vblocks, per_split)   # every split owns at least one real block
  return {"bn": bn, "bv": bv, "bd": bd, "n_pad": n_pad, "splits": splits,
          "blocks_per_split": per_split, "num_warps": cfg["num_warps"], "num_stages": stages}


def check_supported(n: int, v: int, d: int, block_size: int | None,
                    config: dict | None = None, itemsize: int = 2) -> None:
  """Raises UnsupportedInput (with the reason) for inputs this kernel cannot take."""
  if kernels.backend() == "tpu" and not kernels.pallas_interpret():
    raise UnsupportedInput("the Pallas linear_logit_stats kernel targets the Triton (GPU) "
                              "lowering and interpret mode; no Mosaic TPU version yet")
  plan(n, v, d, block_size=block_size, interpret=kernels.pallas_interpret(), config=config,
       itemsize=itemsize)


def forward(x, w, labels, bias, softcap, block_size, config: dict | None = None):
  """Pallas forward: f32 ``(lse, target_logit, logit_sum)`` for rows of ``x`` (shape [N])."""
  n, d = x.shape
  v = w.shape[0]
  itemsize = jnp.dtype(x.dtype).itemsize
  check_supported(n, v, d, block_size, config, itemsize)
  interpret = kernels.pallas_interpret()
  has_bias = bias is not None

  def call(x, labels, w, *maybe_bias):
    n_loc = x.shape[0]
    q = plan(n_loc, v, d, block_size=block_size, interpret=interpret, config=config,
             itemsize=itemsize)
    bn, n_pad, splits = q["bn"], q["n_pad"], q["splits"]
    labels = labels.astype(jnp.int32)
    if n_pad != n_loc:
      x = jnp.pad(x, ((0, n_pad - n_loc), (0, 0)))
      labels = jnp.pad(labels, (0, n_pad - n_loc))
    kern = functools.partial(_kernel, v=v, d=d, bn=bn, bv=q["bv"], bd=q["bd"],
                             blocks_per_split=q["blocks_per_split"], softcap=softcap,
                             has_bias=has_bias)
    in_specs = [pl.BlockSpec((bn, d), lambda i, s: (i, 0)),
                pl.BlockSpec((bn,), lambda i, s: (i,)),
                pl.BlockSpec((v, d), lambda i, s: (0, 0))]
    if has_bias:
      in_specs.append(pl.BlockSpec((v,), lambda i, s: (0,)))
    out_spec = pl.BlockSpec((None, bn), lambda i, s: (s, i))
    out_shape = [jax.ShapeDtypeStruct((splits, n_pad), F32)] * 3
    compiler_params = None
    if not interpret and kernels.backend() == "gpu":
      from jax.experimental.pallas import triton as plgpu
      compiler_params = plgpu.CompilerParams(num_warps=q["num_warps"],
                                             num_stages=q["num_stages"])
    cost = pl.CostEstimate(flops=2 * n_pad * d * v, transcendentals=n_pad * v,
                           bytes_accessed=(n_pad * d + v * d) * itemsize + 3 * splits * n_pad * 4)
    lse_p, t_p, zs_p = pl.pallas_call(
        kern, grid=(n_pad // bn, splits), in_specs=in_specs, out_specs=[out_spec] * 3,
        out_shape=out_shape, interpret=interpret, compiler_params=compiler_params,
        cost_estimate=cost, name="linear_logit_stats_fwd",
    )(x, labels, w, *maybe_bias)
    lse = jax.nn.logsumexp(lse_p, axis=0)
    return lse[:n_loc], jnp.sum(t_p, axis=0)[:n_loc], jnp.sum(zs_p, axis=0)[:n_loc]

  args = (x, labels, w) + ((bias,) if has_bias else ())
  batched = (True, True, False) + ((False,) if has_bias else ())
  return kernels.batch_shard_map(call, args, batched=batched, out_batched=(True, True, True),
                                 batch_size=n)
