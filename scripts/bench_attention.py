#!/usr/bin/env python
"""Benchmarks of the block-sparse attention paths against dense attention.

Ops: :func:`bottleneck_jax.ops.block_sparse_attention` (prefill, a random block table keeping
``--keep`` of the key blocks per query block, plus the diagonal block) and
:func:`bottleneck_jax.ops.block_sparse_decode` (one query per sequence, ``--keep`` of the cache's
blocks), against dense attention (:func:`bottleneck_jax.ops.attention`; ``"reference"``
materialises the logits, ``"xla"`` is the flash-style blocked loop).

What is printed (markdown tables):

1. **temporary memory** of forward and forward+backward (prefill) or forward (decode) at the
   target size (default L = 16384 tokens, 8 heads, 2 KV heads, head dim 64, blocks of 128, 5% of
   blocks kept), from ``jax.jit(f).lower(ShapeDtypeStructs).compile().memory_analysis()``: nothing
   is allocated. f32 inputs.
2. **CPU time** (process CPU seconds and wall seconds, median of ``--rounds`` interleaved rounds)
   at ``--cpu-len`` (default 4096) for the same programs.
3. ``--gpu`` (automatic on a GPU backend): native Pallas kernels checked against ``"xla"``, then
   bf16 median times of every implementation at the target size.

Usage::

    python scripts/bench_attention.py              # CPU: memory at 16k + CPU timings at 4k
    python scripts/bench_attention.py --quick      # smaller sizes
    python scripts/bench_attention.py --gpu        # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bottleneck_jax import ops


def table(rng, b, hkv, nq, nk, keep):
  k = max(1, int(round(keep * nk)))
  idx = np.stack([rng.permutation(nk)[:k] for _ in range(b * hkv * nq)]).reshape(b, hkv, nq, k)
  diag = np.minimum(np.arange(nq), nk - 1)[None, None, :, None]
  return jnp.asarray(np.concatenate([np.broadcast_to(diag, (b, hkv, nq, 1)), idx], -1),
                     jnp.int32)


def prefill_fns(idx, block, impls):
  fns = {}
  for impl in impls:
    def sparse(q, k, v, impl=impl):
      return ops.block_sparse_attention(q, k, v, idx, block_size=block, causal=True,
                                        implementation=impl).out
    fns[f"block_sparse/{impl}"] = sparse
  for impl in ("reference", "xla"):
    def dense(q, k, v, impl=impl):
      return ops.attention(q, k, v, causal=True, implementation=impl).out
    fns[f"dense/{impl}"] = dense
  return fns


def loss_of(f):
  return jax.grad(lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32) ** 2), argnums=(0, 1, 2))


def temp_bytes(f, *shapes):
  c = jax.jit(f).lower(*shapes).compile()
  return int(c.memory_analysis().temp_size_in_bytes)


def timed(f, args, rounds):
  f = jax.jit(f)
  jax.block_until_ready(f(*args))
  walls, cpus = [], []
  for _ in range(rounds):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(f(*args))
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
  return statistics.median(walls), statistics.median(cpus)


def mib(x):
  return f"{x / 2**20:.1f}"


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--len", type=int, default=16384)
  ap.add_argument("--cpu-len", type=int, default=4096)
  ap.add_argument("--heads", type=int, default=8)
  ap.add_argument("--kv-heads", type=int, default=2)
  ap.add_argument("--head-dim", type=int, default=64)
  ap.add_argument("--block", type=int, default=128)
  ap.add_argument("--keep", type=float, default=0.05)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--gpu", action="store_true")
  a = ap.parse_args()
  if a.quick:
    a.len, a.cpu_len, a.rounds = 4096, 1024, 2
  gpu = a.gpu or jax.default_backend() == "gpu"
  rng = np.random.default_rng(0)
  h, hkv, d, bs = a.heads, a.kv_heads, a.head_dim, a.block

  # 1. memory at the target size (compile only)
  n = a.len
  nb = -(-n // bs)
  idx = table(rng, 1, hkv, nb, nb, a.keep)
  q_s = jax.ShapeDtypeStruct((1, n, h, d), jnp.float32)
  kv_s = jax.ShapeDtypeStruct((1, n, hkv, d), jnp.float32)
  print(f"## prefill temp memory, L={n}, H={h}, Hkv={hkv}, D={d}, block {bs}, "
        f"{idx.shape[-1]}/{nb} blocks kept (MiB, f32, XLA:{jax.default_backend()})\n")
  print("| program | forward | forward+backward |\n|---|---|---|")
  for name, f in prefill_fns(idx, bs, ("xla",)).items():
    fwd = temp_bytes(f, q_s, kv_s, kv_s)
    bwd = temp_bytes(loss_of(f), q_s, kv_s, kv_s)
    print(f"| {name} | {mib(fwd)} | {mib(bwd)} |")
  t = 2 * n
  nbt = -(-t // bs)
  didx = table(rng, 1, hkv, 1, nbt, a.keep)[:, :, 0]
  dq = jax.ShapeDtypeStruct((1, h, d), jnp.float32)
  dkv = jax.ShapeDtypeStruct((1, t, hkv, d), jnp.float32)

  def dec_sparse(q, k, v, impl="xla"):
    return ops.block_sparse_decode(q, k, v, didx, block_size=bs, implementation=impl).out

  def dec_dense(q, k, v, impl="xla"):
    return ops.attention(q[:, None], k, v, implementation=impl).out[:, 0]
  print(f"\n## decode temp memory, cache T={t}, {didx.shape[-1]}/{nbt} blocks read (MiB)\n")
  print("| program | forward |\n|---|---|")
  for name, f in (("block_sparse_decode/xla", dec_sparse), ("dense/xla", dec_dense),
                  ("dense/reference", lambda q, k, v: dec_dense(q, k, v, "reference"))):
    print(f"| {name} | {mib(temp_bytes(f, dq, dkv, dkv))} |")

  # 2. CPU time at a smaller size
  n = a.cpu_len
  nb = -(-n // bs)
  idx = table(rng, 1, hkv, nb, nb, a.keep)
  key = jax.random.key(0)
  q = jax.random.normal(key, (1, n, h, d))
  k = jax.random.normal(jax.random.fold_in(key, 1), (1, n, hkv, d))
  v = jax.random.normal(jax.random.fold_in(key, 2), (1, n, hkv, d))
  print(f"\n## CPU time, L={n}, {idx.shape[-1]}/{nb} blocks kept, median of {a.rounds} "
        f"(seconds: wall / process CPU)\n")
  print("| program | forward | forward+backward |\n|---|---|---|")
  for name, f in prefill_fns(idx, bs, ("xla",)).items():
    fw, fc = timed(f, (q, k, v), a.rounds)
    bw, bc = timed(loss_of(f), (q, k, v), a.rounds)
    print(f"| {name} | {fw:.3f} / {fc:.3f} | {bw:.3f} / {bc:.3f} |")

  if gpu:
    n = a.len
    nb = -(-n // bs)
    idx = table(rng, 1, hkv, nb, nb, a.keep)
    qb = jax.random.normal(key, (1, n, h, d), jnp.bfloat16)
    kb = jax.random.normal(jax.random.fold_in(key, 1), (1, n, hkv, d), jnp.bfloat16)
    vb = jax.random.normal(jax.random.fold_in(key, 2), (1, n, hkv, d), jnp.bfloat16)
    fns = prefill_fns(idx, bs, ("xla", "pallas"))
    a_x = jax.jit(fns["block_sparse/xla"])(qb, kb, vb).astype(jnp.float32)
    a_p = jax.jit(fns["block_sparse/pallas"])(qb, kb, vb).astype(jnp.float32)
    print(f"\n## GPU: native Pallas vs xla max |diff| = {float(jnp.max(jnp.abs(a_x - a_p))):.3e}")
    print(f"\n## GPU bf16 time, L={n} (ms, median of 10)\n")
    print("| program | forward | forward+backward |\n|---|---|---|")
    for name, f in fns.items():
      if name == "dense/reference" and n > 8192:
        continue
      fw, _ = timed(f, (qb, kb, vb), 10)
      bw, _ = timed(loss_of(f), (qb, kb, vb), 10)
      print(f"| {name} | {1e3 * fw:.2f} | {1e3 * bw:.2f} |")
    t = 4 * n
    nbt = -(-t // bs)
    didx = table(rng, 8, hkv, 1, nbt, a.keep)[:, :, 0]
    qd = jax.random.normal(key, (8, h, d), jnp.bfloat16)
    kd = jax.random.normal(key, (8, t, hkv, d), jnp.bfloat16)
    for impl in ("xla", "pallas"):
      f = lambda q, k, v, impl=impl: ops.block_sparse_decode(  # noqa: E731
          q, k, v, didx, block_size=bs, implementation=impl).out
      w, _ = timed(f, (qd, kd, kd), 20)
      print(f"| block_sparse_decode/{impl}, B=8, T={t} | {1e3 * w:.3f} ms | |")


if __name__ == "__main__":
  main()
