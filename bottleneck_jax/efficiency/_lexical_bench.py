"""Check and time the lexical max-pool implementations on the default device.

``python -m bottleneck_jax.efficiency._lexical_bench [--small]`` prints, per implementation,
the agreement with the reference on small shapes (values, argmax, VJPs) and, at a SPLADE-size
problem (B=32, L=256, d=768, V=30522), the compile-time temporary memory and the median wall time
of the forward and of forward + backward.
"""

from __future__ import annotations

import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from bottleneck_jax.efficiency.sparton import lexical_max_pool


def _inputs(b, l, d, v, dtype, seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  h = jax.random.normal(k[0], (b, l, d), jnp.float32).astype(dtype)
  w = (jax.random.normal(k[1], (v, d), jnp.float32) / np.sqrt(d)).astype(dtype)
  bias = 0.1 * jax.random.normal(k[2], (v,), jnp.float32)
  lengths = jax.random.randint(k[3], (b,), 1, l + 1).at[-1].set(0)
  mask = jnp.arange(l)[None, :] < lengths[:, None]
  return h, w, bias, mask


def check(impls, dtype=jnp.float32):
  h, w, bias, mask = _inputs(4, 37, 64, 1000, dtype)
  ct = jax.random.normal(jax.random.key(9), (4, 1000), jnp.float32)

  def run(impl, h, w, bias, mask, ct):
    f = lambda h, w, b: lexical_max_pool(h, w, b, mask=mask, implementation=impl,
                                         return_indices=True)
    (y, idx), vjp = jax.vjp(f, h, w, bias)
    return y, idx, vjp((ct, np.zeros(idx.shape, jax.dtypes.float0)))

  args = (h, w, bias, mask, ct)
  y0, i0, g0 = jax.jit(run, static_argnums=0)("reference", *args)
  for impl in impls:
    try:
      y, i, g = jax.jit(run, static_argnums=0)(impl, *args)
      errs = [float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))
              for a, b in zip(g, g0)]
      print(f"check {jnp.dtype(dtype).name} {impl}: |dy|={float(jnp.max(jnp.abs(y - y0))):.2e} "
            f"idx_mismatch={int(jnp.sum(i != i0))} |dh|,|dw|,|db|={[f'{e:.2e}' for e in errs]}",
            flush=True)
    except Exception:  # noqa: BLE001 - report and continue
      print(f"check {impl}: FAILED\n{traceback.format_exc()[-3000:]}", flush=True)


def bench(impls, b=32, l=256, d=768, v=30522, dtype=jnp.bfloat16, iters=10):
  h, w, bias, mask = _inputs(b, l, d, v, dtype)
  print(f"bench B={b} L={l} d={d} V={v} {jnp.dtype(dtype).name} on {jax.devices()[0]}",
        flush=True)
  for impl in impls:
    fwd = jax.jit(lambda h, w: lexical_max_pool(h, w, bias, mask=mask, implementation=impl))
    both = jax.jit(jax.grad(lambda h, w: jnp.sum(lexical_max_pool(
        h, w, bias, mask=mask, implementation=impl)), argnums=(0, 1)))
    row = [impl]
    for name, f in (("fwd", fwd), ("fwd+bwd", both)):
      try:
        c = f.lower(h, w).compile()
        temp = c.memory_analysis().temp_size_in_bytes / 2**20
        jax.block_until_ready(c(h, w))
        ts = []
        for _ in range(iters):
          t0 = time.perf_counter()
          jax.block_until_ready(c(h, w))
          ts.append(time.perf_counter() - t0)
        row.append(f"{name}: {1e3 * np.median(ts):.2f} ms, temp {temp:.0f} MiB")
      except Exception as e:  # noqa: BLE001
        row.append(f"{name}: FAILED {type(e).__name__}: {str(e)[:300]}")
    print(" | ".join(row), flush=True)


if __name__ == "__main__":
  small = "--small" in sys.argv
  impls = ("xla", "pallas")
  check(impls)
  check(impls, jnp.bfloat16)
  if small:
    bench(("reference",) + impls, b=4, l=32, d=64, v=1000, dtype=jnp.float32, iters=3)
  else:
    bench(("reference",) + impls)
