"""Benchmark of the quantisers against vector-quantize-pytorch on the same CPU, in the same run.

For FSQ, LFQ (entropy loss over 2^d codes) and VQ-EMA (one training step: forward, backward and
the EMA update), the median wall time of a jitted forward+backward of ours and of the PyTorch
peer (if ``torch`` and ``vector-quantize-pytorch`` are importable; otherwise only ours), printed
with the ratio. Then the temporary memory of the nearest-code search at N=65536, K=16384,
d=256 (f32) from XLA's compile-time memory analysis, reference (``[N, K]`` matrix) vs the
blocked ``"xla"`` implementation (nothing is allocated).

    python scripts/bench_quantize.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def _median_time(fn, rounds):
  fn()                                     # warm-up / compile
  times = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def _ours(name, cfg):
  from bottleneck_jax import quantize as Q
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=cfg["shape"]).astype(np.float32))
  if name == "fsq":
    f = jax.jit(jax.value_and_grad(lambda a: jnp.sum(Q.fsq(a, levels=cfg["levels"]).z)))
  elif name == "lfq":
    f = jax.jit(jax.value_and_grad(lambda a: Q.lfq(a, entropy_weight=0.1,
                                                    commitment_weight=0.0).loss))
  else:
    cb = jnp.asarray(rng.normal(size=(cfg["codes"], cfg["shape"][-1])).astype(np.float32))
    state = Q.vq_ema_init(cb)

    def step(a, st):
      def loss(a):
        out = Q.vector_quantize(a, st.codebook)
        return jnp.sum(out.z) + out.aux["commitment_loss"], out.aux["indices"]
      (val, idx), g = jax.value_and_grad(loss, has_aux=True)(a)
      return val, g, Q.vq_ema_update(st, a, idx, decay=0.8)
    jitted = jax.jit(step)
    return lambda: jax.block_until_ready(jitted(x, state))
  return lambda: jax.block_until_ready(f(x))


def _torch(name, cfg):
  try:
    import torch
    import vector_quantize_pytorch as vqp
  except ImportError:
    return None
  torch.manual_seed(0)
  x = torch.randn(*cfg["shape"])
  if name == "fsq":
    mod = vqp.FSQ(levels=list(cfg["levels"]))

    def run():
      a = x.clone().requires_grad_(True)
      q, _ = mod(a[None])
      q.sum().backward()
  elif name == "lfq":
    d = cfg["shape"][-1]
    mod = vqp.LFQ(dim=d, codebook_size=2 ** d, entropy_loss_weight=0.1).train()

    def run():
      a = x.clone().requires_grad_(True)
      q, _, aux = mod(a[None])
      aux.backward()
  else:
    mod = vqp.VectorQuantize(dim=cfg["shape"][-1], codebook_size=cfg["codes"], decay=0.8,
                             rotation_trick=False).train()

    def run():
      a = x.clone().requires_grad_(True)
      q, _, loss = mod(a[None])
      (q.sum() + loss).backward()
  return run


def _memory():
  from bottleneck_jax.quantize import nearest_code
  n, k, d = 65536, 16384, 256
  specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((k, d), jnp.float32))
  out = {}
  for impl in ("reference", "xla"):
    f = jax.jit(lambda a, b, impl=impl: nearest_code(a, b, implementation=impl))
    out[impl] = f.lower(*specs).compile().memory_analysis().temp_size_in_bytes
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--quick", action="store_true", help="smaller shapes, one round, no memory")
  args = ap.parse_args()
  n = 1024 if args.quick else 16384
  cases = {
      "fsq": {"shape": (n, 4), "levels": (8, 5, 5, 5)},
      "lfq": {"shape": (n // 4, 12)},
      "vq_ema": {"shape": (n // 2, 64), "codes": 1024},
  }
  rounds = 1 if args.quick else args.rounds
  print(f"{'quantiser':10s} {'shape':>14s} {'ours (ms)':>10s} {'torch (ms)':>11s} "
        f"{'torch / ours':>12s}")
  for name, cfg in cases.items():
    ours = _median_time(_ours(name, cfg), rounds)
    peer = _torch(name, cfg)
    theirs = _median_time(peer, rounds) if peer is not None else float("nan")
    print(f"{name:10s} {str(cfg['shape']):>14s} {ours * 1e3:10.2f} {theirs * 1e3:11.2f} "
          f"{theirs / ours:12.1f}")
  if not args.quick:
    mem = _memory()
    print(f"nearest_code temp memory at N=65536, K=16384, d=256: reference "
          f"{mem['reference'] / 2**30:.2f} GiB, xla {mem['xla'] / 2**20:.1f} MiB "
          f"({mem['reference'] / max(mem['xla'], 1):.0f}x less)")


if __name__ == "__main__":
  main()
