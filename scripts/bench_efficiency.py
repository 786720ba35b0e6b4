#!/usr/bin/env python
"""Benchmarks for the efficiency family's fused kernels: memory and time tables.

Two ops, each as ``"reference"`` (materialises the big tensor), ``"xla"`` (chunked XLA +
custom_vjp) and ``"pallas"``:

* ``ce``: fused linear cross-entropy (Cut Cross-Entropy, Chronicals), target size N=8192 tokens,
  d=2048, V=128256 (Llama-3 vocabulary);
* ``splade``: the SPLADE/Sparton lexical max-pool, target size B=32, L=256, d=768, V=30522.

What is printed (markdown tables):

1. **temporary memory of forward + backward** at the target size, from
   ``jax.jit(f).lower(*ShapeDtypeStructs).compile().memory_analysis().temp_size_in_bytes``.
   Nothing is allocated or run: the programs are only compiled. f32 inputs, because on CPU bf16
   inputs make XLA upcast and hoist the whole weight (the project's test plan). On CPU the Pallas
   path only exists in interpret mode, whose memory says nothing about a GPU kernel: n/a.
   For ``ce`` a second table compares with the plain implementation a user would otherwise
   write (``x @ w.T`` + optax ``softmax_cross_entropy_with_integer_labels``) and, when it
   pip-installs, tokamax's XLA ``linear_softmax_cross_entropy_loss``.
2. **CPU wall time**: for ``ce``, forward + backward of ours (xla) vs optax (and tokamax; and
   with ``--ce-peers optax,tokamax,cce`` cut-cross-entropy's PyTorch ``torch_compile`` path) at
   ``--ce-sizes`` (default N=2048/d=1024/V=32000 and N=4096/d=2048/V=128256), ``--rounds``
   interleaved rounds (each round runs every implementation once), median, spread, the median
   per-round wall-time ratio and the process-CPU-time ratio; for ``splade``, ours (xla, and the
   library's reference as a second row) vs the plain head a user writes (``h @ W.T + b``,
   ``log1p(relu)``, masked max over L, autodiff) at ``--splade-sizes`` (default B=16, L=256,
   d=768, V=30522), the same interleaved-rounds statistics and each program's compiled temp
   memory; the memory table at the target size (B=32) is printed with the other memory tables.
3. ``--gpu`` (automatic when ``jax.default_backend() == "gpu"``): a native-Pallas agreement
   check, then bf16 median times (forward, forward+backward) at the target size for every
   implementation, TFLOP/s, XLA's ``bytes accessed`` estimate per time vs the HBM bandwidth
   measured with a large copy, and temporary memory of the compiled GPU programs.

Usage::

    python scripts/bench_efficiency.py                 # CPU: memory at target + CPU timings
    python scripts/bench_efficiency.py --quick         # smaller sizes
    python scripts/bench_efficiency.py --ops ce --gpu  # on a GPU machine
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import traceback

import jax
import jax.numpy as jnp

GiB = 1024 ** 3
IMPLS = ("reference", "xla", "pallas")


# ------------------------------------------------------------------------------------ helpers


def _lce():
  from bottleneck_jax.ops import linear_cross_entropy
  return linear_cross_entropy


def _pool():
  try:
    from bottleneck_jax.efficiency import lexical_max_pool
  except ImportError as e:  # written by another helper; may be absent
    return None, f"{type(e).__name__}: {e}"
  return lexical_max_pool, None


def fmt_bytes(b):
  if b is None:
    return "n/a"
  return f"{b / GiB:.3f} GiB" if b >= GiB / 8 else f"{b / 1024 ** 2:.1f} MiB"


def compile_stats(f, specs):
  """``(compiled, temp, args, out)`` of ``jax.jit(f)`` lowered on ShapeDtypeStructs."""
  c = jax.jit(f).lower(*specs).compile()
  m = c.memory_analysis()
  return c, m.temp_size_in_bytes, m.argument_size_in_bytes, m.output_size_in_bytes


def bytes_accessed(compiled):
  try:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
      ca = ca[0]
    return float(ca.get("bytes accessed", float("nan")))
  except Exception:  # noqa: BLE001 - not every backend reports it
    return float("nan")


def median_time(f, args, *, iters, warmup=1):
  for _ in range(warmup):
    jax.block_until_ready(f(*args))
  ts = []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def table(header, rows):
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  print("\n".join(out) + "\n", flush=True)


# -------------------------------------------------------------------------------- op builders


def ce_sizes(quick):
  return (2048, 512, 32768) if quick else (8192, 2048, 128256)


def ce_time_sizes(quick):
  return (256, 128, 4096) if quick else (1024, 256, 16384)


def ce_fns(impl, n, v):
  lce = _lce()

  def loss(x, w, y):
    return lce(x, w, y, implementation=impl)

  def fwd_bwd(x, w, y):
    return jax.value_and_grad(loss, argnums=(0, 1))(x, w, y)

  return loss, fwd_bwd


def ce_specs(n, d, v, dtype):
  return (jax.ShapeDtypeStruct((n, d), dtype), jax.ShapeDtypeStruct((v, d), dtype),
          jax.ShapeDtypeStruct((n,), jnp.int32))


def ce_inputs(n, d, v, dtype, seed=0):
  k = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(k[0], (n, d), jnp.float32).astype(dtype)
  w = (jax.random.normal(k[1], (v, d), jnp.float32) * d ** -0.5).astype(dtype)
  y = jax.random.randint(k[2], (n,), 0, v)
  return x, w, y


def ce_peers():
  """fwd+bwd builders of the plain implementations a user would otherwise write.

  ``optax``: ``x @ w.T`` then ``optax.softmax_cross_entropy_with_integer_labels`` (mean);
  ``tokamax-xla``: ``tokamax.linear_softmax_cross_entropy_loss(implementation="xla")`` when
  ``pip install tokamax`` worked (a peer library; it materialises the logits too).
  """
  import optax

  def optax_loss(x, w, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y))

  peers = {"optax (x @ w.T + softmax CE)": optax_loss}
  try:
    import tokamax
  except Exception as e:  # noqa: BLE001 - optional peer
    peers["tokamax-xla"] = f"not installed ({type(e).__name__})"
  else:
    from absl import flags  # tokamax reads absl flags from sys.argv (ours are not absl's)
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()

    def tokamax_loss(x, w, y):
      return tokamax.linear_softmax_cross_entropy_loss(x, y, w.T, reduction="mean",
                                                       implementation="xla")
    peers["tokamax-xla"] = tokamax_loss
  return peers


def cce_torch_peer(x, w, y):
  """Forward + backward of cut-cross-entropy's ``torch_compile`` implementation (PyTorch, CPU)
  on the same data, as a callable, or a string saying why it cannot run here.

  ``pip install cut-cross-entropy`` (it pulls PyTorch). Its ``cce`` implementation is a Triton
  GPU kernel; on CPU the library offers ``impl="torch_compile"``: ``torch.compile`` of the
  materialised logits and ``F.cross_entropy`` (a peer for time, not for memory). The first call
  (compilation) happens here, outside the timed rounds.
  """
  import numpy as np
  try:
    import torch
    from cut_cross_entropy import linear_cross_entropy as cce_loss
  except Exception as e:  # noqa: BLE001 - optional peer
    return f"not installed ({type(e).__name__})"
  xt = torch.from_numpy(np.array(x)).requires_grad_(True)
  wt = torch.from_numpy(np.array(w)).requires_grad_(True)
  yt = torch.from_numpy(np.array(y).astype(np.int64))

  def run(*_):
    xt.grad = wt.grad = None
    loss = cce_loss(xt, wt, yt, impl="torch_compile")
    loss.backward()
    return np.float32(loss.item())
  try:
    run()
  except Exception as e:  # noqa: BLE001 - report and go on
    return f"failed: {type(e).__name__}: {str(e)[:100]}"
  return run


def ce_fwd_bwd(loss):
  return lambda x, w, y: jax.value_and_grad(loss, argnums=(0, 1))(x, w, y)


def ce_memory_vs_optax_section(quick):
  """Temp memory of fwd+bwd at the target size: ours vs optax (and tokamax), compile only."""
  n, d, v = ce_sizes(quick)
  specs = ce_specs(n, d, v, jnp.float32)
  print(f"### Temporary memory, forward + backward, fused linear cross-entropy vs plain, "
        f"N={n}, d={d}, V={v}, f32 ({jax.default_backend()}, compile only)\n")
  fns = {f"ours {i}": ce_fns(i, n, v)[1] for i in ("xla", "reference")}
  for name, f in ce_peers().items():
    fns[name] = f if isinstance(f, str) else ce_fwd_bwd(f)
  temps, rows = {}, []
  for name, f in fns.items():
    if isinstance(f, str):
      rows.append([name, f, "", ""])
      continue
    try:
      _, temps[name], args, out = compile_stats(f, specs)
    except Exception as e:  # noqa: BLE001 - report and go on
      rows.append([name, f"failed: {type(e).__name__}: {str(e)[:100]}", "", ""])
      continue
    rows.append([name, fmt_bytes(temps[name]), None, fmt_bytes(args + out)])
  base = temps.get("optax (x @ w.T + softmax CE)")
  for r in rows:
    if r[2] is None:
      r[2] = f"{base / temps[r[0]]:.1f}x" if base else "-"
  table(["implementation", "temp", "optax temp / this", "args + out"], rows)


def _torch_version():
  try:
    import torch
    return torch.__version__
  except Exception:  # noqa: BLE001 - optional peer
    return "not installed"


def ce_time_vs_optax_section(sizes, rounds, tokamax=True, warmup=True, cce=False):
  """Interleaved rounds of fwd+bwd (f32): ours (xla) vs optax (and tokamax, and
  cut-cross-entropy's PyTorch path); median, spread, per-round wall-time ratio and
  process-CPU-time ratio."""
  import numpy as np
  for n, d, v in sizes:
    args = ce_inputs(n, d, v, jnp.float32)
    fns = {"ours xla": ce_fns("xla", n, v)[1]}
    fns.update({k: (f if isinstance(f, str) else ce_fwd_bwd(f)) for k, f in ce_peers().items()
                if tokamax or not k.startswith("tokamax")})
    base = "optax (x @ w.T + softmax CE)"
    compiled, temps, notes = {}, {}, {}
    for name, f in fns.items():
      if isinstance(f, str):
        notes[name] = f
        continue
      try:
        c, temps[name], _, _ = compile_stats(f, ce_specs(n, d, v, jnp.float32))
        if warmup:
          jax.block_until_ready(c(*args))
      except Exception as e:  # noqa: BLE001 - a peer that cannot run here: report it
        notes[name] = f"failed: {type(e).__name__}: {str(e)[:100]}"
        continue
      compiled[name] = c
    if cce:
      name = f"cut-cross-entropy torch_compile (torch {_torch_version()})"
      peer = cce_torch_peer(*args)
      if isinstance(peer, str):
        notes[name] = peer
      else:
        compiled[name] = peer
      fns[name] = peer
    wall = {k: [] for k in compiled}
    cpu = {k: [] for k in compiled}
    for _ in range(rounds):
      for name, c in compiled.items():
        t0, p0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(c(*args))
        wall[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - p0)
      print(f"round {len(wall[base])}: " + ", ".join(
          f"{k} {wall[k][-1]:.2f} s wall / {cpu[k][-1]:.2f} s CPU" for k in compiled),
          file=sys.stderr, flush=True)
    print(f"### {jax.default_backend().upper()} forward + backward, fused linear cross-entropy "
          f"vs plain, N={n}, d={d}, V={v}, f32, {rounds} interleaved rounds"
          f"{' after a warm-up' if warmup else ' (no warm-up call)'}\n")
    rows = []
    for name in fns:
      if name in notes:
        rows.append([name, notes[name], "", "", "", "", ""])
        continue
      w_, c_ = np.array(wall[name]), np.array(cpu[name])
      rw = np.median(w_ / np.array(wall[base]))
      rc = np.median(c_ / np.array(cpu[base]))
      tmp = [fmt_bytes(temps[name]), f"{temps[base] / temps[name]:.1f}x"] if name in temps \
          else ["n/a (torch)", "-"]
      rows.append([name, *tmp,
                   f"{np.median(w_):.2f} s", f"{w_.min():.2f}-{w_.max():.2f} s", f"{rw:.2f}x",
                   f"{rc:.2f}x"])
    table(["implementation", "temp", "optax temp / this", "median wall", "spread (min-max)",
           "wall / optax (median of rounds)", "CPU time / optax"], rows)


def splade_sizes(quick):
  return (8, 128, 384, 8192) if quick else (32, 256, 768, 30522)


def splade_time_sizes(quick):
  return (2, 64, 128, 2048) if quick else (8, 128, 256, 8192)


def splade_fns(impl):
  pool, _ = _pool()

  def fwd(h, w, b, mask):
    return jnp.sum(pool(h, w, b, mask=mask, implementation=impl))

  def fwd_bwd(h, w, b, mask):
    return jax.value_and_grad(fwd, argnums=(0, 1, 2))(h, w, b, mask)

  return fwd, fwd_bwd


def splade_specs(b, l, d, v, dtype):
  return (jax.ShapeDtypeStruct((b, l, d), dtype), jax.ShapeDtypeStruct((v, d), dtype),
          jax.ShapeDtypeStruct((v,), jnp.float32), jax.ShapeDtypeStruct((b, l), jnp.bool_))


def splade_inputs(b, l, d, v, dtype, seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  h = jax.random.normal(k[0], (b, l, d), jnp.float32).astype(dtype)
  w = (jax.random.normal(k[1], (v, d), jnp.float32) * d ** -0.5).astype(dtype)
  bias = jax.random.normal(k[2], (v,), jnp.float32) * 0.1
  lens = jax.random.randint(k[3], (b,), 1, l + 1)
  mask = jnp.arange(l)[None, :] < lens[:, None]
  return h, w, bias, mask


def splade_plain_head(h, w, b, mask):
  """The SPLADE head a user writes: ``[B, L, V]`` logits, ``log1p(relu)``, masked max, autodiff."""
  logits = h @ w.T + b
  act = jnp.log1p(jax.nn.relu(logits))
  return jnp.sum(jnp.max(act * mask[..., None], axis=1))


def splade_vs_plain_fns():
  """fwd+bwd of the plain head (the baseline) and of ours (xla, reference)."""
  fns = {"plain head (h @ W.T + b, log1p(relu), masked max)": splade_plain_head}
  fns.update({f"ours {impl}": splade_fns(impl)[0] for impl in ("xla", "reference")})
  return {k: splade_fwd_bwd(f) for k, f in fns.items()}


def splade_fwd_bwd(loss):
  return lambda h, w, b, m: jax.value_and_grad(loss, argnums=(0, 1, 2))(h, w, b, m)


def splade_memory_vs_plain_section(quick):
  """Temp memory of fwd+bwd at the target size: ours vs the plain head, compile only."""
  pool, why = _pool()
  if pool is None:
    print(f"### splade vs plain head: not available ({why})\n")
    return
  b, l, d, v = splade_sizes(quick)
  specs = splade_specs(b, l, d, v, jnp.float32)
  print(f"### Temporary memory, forward + backward, SPLADE head vs the plain head, B={b}, L={l}, "
        f"d={d}, V={v}, f32 ({jax.default_backend()}, compile only)\n")
  temps, rows = {}, []
  for name, f in splade_vs_plain_fns().items():
    try:
      _, temps[name], args, out = compile_stats(f, specs)
    except Exception as e:  # noqa: BLE001 - report and go on
      rows.append([name, f"failed: {type(e).__name__}: {str(e)[:100]}", "", ""])
      continue
    rows.append([name, fmt_bytes(temps[name]), None, fmt_bytes(args + out)])
  base = temps.get(next(iter(splade_vs_plain_fns())))
  for r in rows:
    if r[2] is None:
      r[2] = f"{base / temps[r[0]]:.1f}x" if base else "-"
  table(["implementation", "temp", "plain temp / this", "args + out"], rows)


def splade_time_vs_plain_section(sizes, rounds):
  """Interleaved rounds of fwd+bwd (f32, same process): ours (xla, reference) vs the plain head;
  median, spread, median per-round wall-time ratio, process-CPU-time ratio, compiled temp."""
  import numpy as np
  pool, why = _pool()
  if pool is None:
    print(f"### splade time vs plain head: not available ({why})\n")
    return
  for b, l, d, v in sizes:
    args = splade_inputs(b, l, d, v, jnp.float32)
    fns = splade_vs_plain_fns()
    base = next(iter(fns))
    compiled, temps = {}, {}
    for name, f in fns.items():
      compiled[name], temps[name], _, _ = compile_stats(f, splade_specs(b, l, d, v, jnp.float32))
      jax.block_until_ready(compiled[name](*args))  # warm-up
    wall = {k: [] for k in compiled}
    cpu = {k: [] for k in compiled}
    for _ in range(rounds):
      for name, c in compiled.items():
        t0, p0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(c(*args))
        wall[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - p0)
    print(f"### {jax.default_backend().upper()} forward + backward, SPLADE head vs the plain head, "
          f"B={b}, L={l}, d={d}, V={v}, f32, {rounds} interleaved rounds after a warm-up, "
          f"same process\n")
    rows = []
    for name in compiled:
      w_, c_ = np.array(wall[name]), np.array(cpu[name])
      rows.append([name, fmt_bytes(temps[name]), f"{temps[base] / temps[name]:.1f}x",
                   f"{np.median(w_):.2f} s", f"{w_.min():.2f}-{w_.max():.2f} s",
                   f"{np.median(w_ / np.array(wall[base])):.2f}x",
                   f"{np.median(c_):.2f} s",
                   f"{np.median(c_ / np.array(cpu[base])):.2f}x"])
    table(["implementation", "temp", "plain temp / this", "median wall", "spread (min-max)",
           "wall / plain (median of rounds)", "median CPU time", "CPU time / plain"], rows)


# --------------------------------------------------------------------------------- sections


def memory_section(op, quick, on_gpu):
  """Temp memory of fwd+bwd at the target size, f32 inputs, compile only."""
  if op == "ce":
    n, d, v = ce_sizes(quick)
    title = f"fused linear cross-entropy, N={n}, d={d}, V={v}"
    specs = ce_specs(n, d, v, jnp.float32)
    build = lambda impl: ce_fns(impl, n, v)[1]
  else:
    pool, why = _pool()
    if pool is None:
      print(f"### splade lexical max-pool: not available ({why})\n")
      return
    b, l, d, v = splade_sizes(quick)
    title = f"SPLADE lexical max-pool, B={b}, L={l}, d={d}, V={v}"
    specs = splade_specs(b, l, d, v, jnp.float32)
    build = lambda impl: splade_fns(impl)[1]
  print(f"### Temporary memory, forward + backward: {title}, f32 inputs "
        f"({jax.default_backend()}, compile only)\n")
  rows, ref_temp = [], None
  for impl in IMPLS:
    if impl == "pallas" and not on_gpu:
      rows.append([impl, "n/a (interpret mode on CPU)", "", "", ""])
      continue
    try:
      _, temp, args, out = compile_stats(build(impl), specs)
    except Exception as e:  # noqa: BLE001 - report and go on
      rows.append([impl, f"failed: {type(e).__name__}: {str(e)[:120]}", "", "", ""])
      continue
    if impl == "reference":
      ref_temp = temp
    ratio = f"{ref_temp / temp:.1f}x" if ref_temp and temp else "-"
    rows.append([impl, fmt_bytes(temp), ratio, fmt_bytes(args + out), fmt_bytes(temp + args + out)])
  table(["implementation", "temp", "reference / this", "args + out", "temp + args + out"], rows)


def cpu_time_section(op, quick, iters):
  if op == "ce":
    n, d, v = ce_time_sizes(quick)
    size = f"N={n}, d={d}, V={v}"
    args = ce_inputs(n, d, v, jnp.float32)
    fns = {impl: ce_fns(impl, n, v) for impl in ("reference", "xla")}
  else:
    pool, why = _pool()
    if pool is None:
      print(f"### splade CPU time: not available ({why})\n")
      return
    b, l, d, v = splade_time_sizes(quick)
    size = f"B={b}, L={l}, d={d}, V={v}"
    args = splade_inputs(b, l, d, v, jnp.float32)
    fns = {impl: splade_fns(impl) for impl in ("reference", "xla")}
  name = "fused linear cross-entropy" if op == "ce" else "SPLADE lexical max-pool"
  print(f"### {jax.default_backend().upper()} wall time, {name}, SMALLER size {size}, f32, "
        f"median of {iters} after 1 warm-up, same process\n")
  rows, ref = [], {}
  for impl, (fwd, fb) in fns.items():
    tf = median_time(jax.jit(fwd), args, iters=iters)
    tb = median_time(jax.jit(fb), args, iters=iters)
    if impl == "reference":
      ref = {"f": tf, "b": tb}
    rows.append([impl, f"{tf * 1e3:.1f} ms", f"{tb * 1e3:.1f} ms",
                 f"{tb / ref['b']:.2f}x"])
  table(["implementation", "forward", "forward + backward", "fwd+bwd time / reference"], rows)


def measure_bandwidth():
  """HBM bandwidth of a large elementwise copy: (read + write bytes) / time.

  A 4 GiB f32 array, ``a * 2`` (a fused elementwise kernel) applied 10 times in a chain that
  reuses two buffers (so at most ~12 GiB is alive, not 44 GiB), queued back to back and timed
  together (host dispatch overlaps), best of 3.
  """
  a = jnp.ones((1 << 30,), jnp.float32)
  f = jax.jit(lambda a: a * 2.0)
  jax.block_until_ready(f(a))
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    out = a
    for _ in range(10):
      out = f(out)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t0) / 10)
    del out
  del a
  return 2 * (1 << 30) * 4 / best


def gpu_check_section(ops):
  """Native Pallas vs reference on small shapes (values and VJPs)."""
  from bottleneck_jax.kernels import testing
  print("### Native Pallas agreement check (GPU)\n")
  rows = []
  if "ce" in ops:
    lce = _lce()
    for dtype, tol in ((jnp.float32, 2e-3), (jnp.bfloat16, 3e-2)):
      x, w, y = ce_inputs(300, 128, 1000, dtype, seed=1)
      y = y.at[5].set(-100)
      b = jax.random.normal(jax.random.key(7), (1000,), jnp.float32)
      try:
        testing.assert_implementations_agree(
            lambda x, w, b, *, implementation, y=y: lce(
                x, w, y, bias=b, softcap=20.0, label_smoothing=0.1, z_loss=1e-3,
                reduction="none", implementation=implementation),
            (x, w, b), implementations=("xla", "pallas"), rtol=tol, atol=tol)
        rows.append(["ce", jnp.dtype(dtype).name, "ok"])
      except Exception as e:  # noqa: BLE001
        rows.append(["ce", jnp.dtype(dtype).name, f"FAILED {type(e).__name__}: "
                     f"{str(e)[:300]}".replace("\n", " ")])
  if "splade" in ops:
    pool, why = _pool()
    if pool is None:
      rows.append(["splade", "-", f"not available ({why})"])
    else:
      for dtype, tol in ((jnp.float32, 2e-3), (jnp.bfloat16, 3e-2)):
        h, w, b, mask = splade_inputs(4, 100, 128, 1000, dtype, seed=1)
        try:
          testing.assert_implementations_agree(
              lambda h, w, b, *, implementation, mask=mask: pool(h, w, b, mask=mask,
                                                      implementation=implementation),
              (h, w, b), implementations=("xla", "pallas"), rtol=tol, atol=tol)
          rows.append(["splade", jnp.dtype(dtype).name, "ok"])
        except Exception as e:  # noqa: BLE001
          rows.append(["splade", jnp.dtype(dtype).name, f"FAILED {type(e).__name__}: "
                       f"{str(e)[:300]}".replace("\n", " ")])
  table(["op", "dtype", "xla and pallas vs reference"], rows)


def gpu_time_section(op, quick, iters, bw):
  dtype = jnp.bfloat16
  if op == "ce":
    n, d, v = ce_sizes(quick)
    size = f"N={n}, d={d}, V={v}"
    args = ce_inputs(n, d, v, dtype)
    specs = ce_specs(n, d, v, dtype)
    flops_f, flops_b = 2 * n * d * v, 6 * n * d * v
    build = lambda impl: ce_fns(impl, n, v)
    name = "fused linear cross-entropy"
  else:
    pool, why = _pool()
    if pool is None:
      print(f"### splade GPU time: not available ({why})\n")
      return
    b, l, d, v = splade_sizes(quick)
    size = f"B={b}, L={l}, d={d}, V={v}"
    args = splade_inputs(b, l, d, v, dtype)
    specs = splade_specs(b, l, d, v, dtype)
    flops_f, flops_b = 2 * b * l * d * v, 4 * b * d * v  # sparse backward: gather + scatter
    build = splade_fns
    name = "SPLADE lexical max-pool"
  dev = jax.devices()[0].device_kind
  print(f"### GPU ({dev}) {name}, {size}, bf16 inputs, median of {iters} after 3 warm-ups; "
        f"HBM copy bandwidth {bw / 1e12:.2f} TB/s; TFLOP/s counts 2·MNK forward and "
        f"{'6·NdV' if op == 'ce' else '4·BVd (sparse)'} backward (no recompute)\n")
  rows, ref = [], {}
  for impl in IMPLS:
    fwd, fb = build(impl)
    try:
      cf, _temp_f, _, _ = compile_stats(fwd, specs)
      cb, temp_b, _, _ = compile_stats(fb, specs)
      tf = median_time(cf, args, iters=iters, warmup=3)
      tb = median_time(cb, args, iters=iters, warmup=3)
    except Exception as e:  # noqa: BLE001
      rows.append([impl, f"failed: {type(e).__name__}: {str(e)[:200]}".replace("\n", " ")]
                  + [""] * 7)
      traceback.print_exc(limit=3)
      continue
    if impl == "reference":
      ref = {"f": tf, "b": tb, "temp": temp_b}
    bacc = bytes_accessed(cb)
    bw_txt = "n/a" if math.isnan(bacc) else f"{bacc / tb / 1e12:.2f} TB/s ({bacc / tb / bw:.0%})"
    rows.append([impl, f"{tf * 1e3:.2f} ms", f"{tb * 1e3:.2f} ms",
                 f"{ref['b'] / tb:.2f}x" if ref else "-",
                 f"{flops_f / tf / 1e12:.0f}", f"{(flops_f + flops_b) / tb / 1e12:.0f}",
                 fmt_bytes(temp_b),
                 f"{ref['temp'] / temp_b:.1f}x" if ref and temp_b else "-",
                 bw_txt])
  table(["implementation", "forward", "fwd + bwd", "speed-up vs reference (fwd+bwd)",
         "fwd TFLOP/s", "fwd+bwd TFLOP/s", "temp (fwd+bwd)", "temp reduction",
         "XLA bytes-accessed estimate / time (vs copy bw)"], rows)


def gpu_pallas_sweep(quick, iters):
  """Forward-only time of a few Pallas tile configurations (CE)."""
  from bottleneck_jax.ops._linear_cross_entropy import pallas as _lce_pallas
  n, d, v = ce_sizes(quick)
  x, w, y = ce_inputs(n, d, v, jnp.bfloat16)
  print(f"### Pallas CE forward tile sweep, N={n}, d={d}, V={v}, bf16\n")
  rows = []
  configs = [{"block_n": bn, "block_v": bv, "block_d": bd, "num_warps": nw, "num_stages": ns}
             for bn, bv, bd, nw, ns in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3),
                                        (128, 256, 64, 8, 3), (128, 256, 64, 8, 4),
                                        (128, 256, 32, 8, 4), (128, 256, 128, 8, 2),
                                        (256, 128, 64, 8, 3), (64, 256, 64, 4, 3),
                                        (128, 256, 64, 4, 3))]
  for splits in (4, 16):
    configs.append(dict(configs[2], splits=splits))
  for cfg in configs:
    f = jax.jit(lambda x, w, y, cfg=cfg: _lce_pallas.forward(x, w, y, None, None, None, cfg))
    try:
      t = median_time(f, (x, w, y), iters=iters, warmup=2)
      rows.append([str(cfg), f"{t * 1e3:.2f} ms", f"{2 * n * d * v / t / 1e12:.0f}"])
    except Exception as e:  # noqa: BLE001
      rows.append([str(cfg), f"failed: {type(e).__name__}: {str(e)[:150]}".replace("\n", " "),
                   ""])
  table(["config (splits: default unless given)", "forward", "TFLOP/s"], rows)


# ------------------------------------------------------------------------------------- main


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="smaller sizes everywhere")
  p.add_argument("--ops", default="ce,splade", help="comma-separated subset of ce,splade")
  p.add_argument("--gpu", action="store_true", default=None,
                 help="GPU section (default: on when the default backend is gpu)")
  p.add_argument("--no-gpu", dest="gpu", action="store_false")
  p.add_argument("--skip-memory", action="store_true")
  p.add_argument("--skip-cpu-time", action="store_true")
  p.add_argument("--sweep", action="store_true", help="GPU: Pallas CE forward tile sweep")
  p.add_argument("--iters", type=int, default=None)
  p.add_argument("--ce-sizes", default=None,
                 help="CE vs optax time sizes NxDxV,... (default 2048x1024x32000,"
                      "4096x2048x128256; --quick: 1024x512x16000)")
  p.add_argument("--rounds", type=int, default=5,
                 help="interleaved rounds (CE vs optax; SPLADE vs the plain head: at least 5)")
  p.add_argument("--splade-sizes", default=None,
                 help="SPLADE vs plain head time sizes BxLxDxV,... (default 16x256x768x30522; "
                      "--quick: 4x128x256x8192)")
  p.add_argument("--no-warmup", action="store_true", help="CE vs optax: no warm-up call")
  p.add_argument("--ce-peers", default="optax,tokamax",
                 help="CE time peers (optax always; optional: tokamax, cce = "
                      "cut-cross-entropy's torch_compile path, needs PyTorch)")
  a = p.parse_args(argv)
  ops = [o.strip() for o in a.ops.split(",") if o.strip()]
  for o in ops:
    if o not in ("ce", "splade"):
      p.error(f"--ops: unknown op {o!r}; expected ce and/or splade")
  backend = jax.default_backend()
  on_gpu = backend == "gpu"
  gpu = on_gpu if a.gpu is None else a.gpu
  if gpu and not on_gpu:
    print(f"--gpu asked for but the default backend is {backend}: skipping the GPU section")
    gpu = False
  print(f"# bench_efficiency: jax {jax.__version__}, backend {backend} "
        f"({jax.devices()[0].device_kind}), command: {' '.join(sys.argv)}\n")
  if not a.skip_memory:
    for op in ops:
      memory_section(op, a.quick, on_gpu)
      if op == "ce":
        ce_memory_vs_optax_section(a.quick)
      else:
        splade_memory_vs_plain_section(a.quick)
  if not a.skip_cpu_time and not on_gpu:
    for op in ops:
      if op == "ce":
        spec = a.ce_sizes or ("1024x512x16000" if a.quick else "2048x1024x32000,4096x2048x128256")
        sizes = [tuple(int(t) for t in z.split("x")) for z in spec.split(",") if z]
        ce_time_vs_optax_section(sizes, a.rounds, tokamax="tokamax" in a.ce_peers,
                                 warmup=not a.no_warmup, cce="cce" in a.ce_peers)
      else:
        spec = a.splade_sizes or ("4x128x256x8192" if a.quick else "16x256x768x30522")
        sizes = [tuple(int(t) for t in z.split("x")) for z in spec.split(",") if z]
        splade_time_vs_plain_section(sizes, max(5, a.rounds))
  if gpu:
    gpu_check_section(ops)
    bw = measure_bandwidth()
    for op in ops:
      gpu_time_section(op, a.quick, a.iters or 20, bw)
    if a.sweep and "ce" in ops:
      gpu_pallas_sweep(a.quick, a.iters or 10)


if __name__ == "__main__":
  main()
