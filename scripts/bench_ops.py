#!/usr/bin/env python
"""Benchmarks of the shared ops (:mod:`bottleneck_jax.ops`): memory and time tables.

The script is a list of sections (:data:`SECTIONS`); each section is one function printing one
markdown table, named ``<op>-<what>``. Add a section for another op by appending to the list.

Sections so far:

* ``attention-memory``: temporary memory of the compiled forward + backward of
  ``attention(q, k, v)`` (loss ``sum(out) + sum(lse)``, gradients in ``q, k, v``) for the
  ``"reference"`` (materialises ``[B, H, L, L]``) and ``"xla"`` (blocked, FlashAttention-2
  backward) implementations at ``L = 1k, 4k, 16k`` (``B=1, H=8, D=64``, f32), from
  ``jax.jit(f).lower(*ShapeDtypeStructs).compile().memory_analysis().temp_size_in_bytes``.
  Nothing is allocated or run. The done-criterion of the op is printed under the table: at
  ``L = 16k`` the XLA temporaries are at least 10x below the reference's. On CPU the Pallas
  kernel only exists in interpret mode, whose memory says nothing about a GPU kernel: n/a.
* ``attention-time``: wall time (median over interleaved rounds, ``block_until_ready``) of the
  forward and of forward + backward at a small ``L`` for reference and xla (and pallas on GPU).

Usage::

    python scripts/bench_ops.py                        # every section
    python scripts/bench_ops.py --quick                # smaller sizes
    python scripts/bench_ops.py --sections attention-memory
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

GiB = 1024 ** 3
MiB = 1024 ** 2


# ------------------------------------------------------------------------------------ helpers


def fmt_bytes(b):
  if b is None:
    return "n/a"
  return f"{b / GiB:.2f} GiB" if b >= GiB / 8 else f"{b / MiB:.1f} MiB"


def temp_bytes(f, specs) -> int:
  """Temporary bytes of ``jax.jit(f)`` compiled for ShapeDtypeStructs (nothing is run)."""
  return jax.jit(f).lower(*specs).compile().memory_analysis().temp_size_in_bytes


def interleaved_medians(fns: dict[str, Callable], args, *, rounds: int) -> dict[str, float]:
  """Median seconds per function over ``rounds`` rounds, each round timing every function once
  in turn (so slow drifts of a shared machine hit every function alike); one warm-up each."""
  for f in fns.values():
    jax.block_until_ready(f(*args))
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(rounds):
    for name, f in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f(*args))
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(ts) for name, ts in times.items()}


def table(header, rows):
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  print("\n".join(out) + "\n", flush=True)


def on_gpu() -> bool:
  return jax.default_backend() == "gpu"


# ---------------------------------------------------------------------------------- attention

ATTN_B, ATTN_H, ATTN_D = 1, 8, 64


def _attention_fns(impl):
  from bottleneck_jax.ops import attention

  def fwd(q, k, v):
    res = attention(q, k, v, implementation=impl)
    return res.out, res.lse

  def loss(q, k, v):
    res = attention(q, k, v, implementation=impl)
    return jnp.sum(res.out.astype(jnp.float32)) + jnp.sum(res.lse)

  return fwd, jax.value_and_grad(loss, argnums=(0, 1, 2))


def _attention_specs(l, dtype=jnp.float32):
  s = jax.ShapeDtypeStruct((ATTN_B, l, ATTN_H, ATTN_D), dtype)
  return (s, s, s)


def attention_memory(args) -> bool:
  """Temp memory of fwd+bwd, reference vs xla; returns whether the done-criterion holds."""
  lengths = (512, 1024, 4096) if args.quick else (1024, 4096, 16384)
  impls = ("reference", "xla") + (("pallas",) if on_gpu() else ())
  print(f"### attention: temporary memory of forward + backward, B={ATTN_B}, H={ATTN_H}, "
        f"D={ATTN_D}, f32, no mask ({jax.default_backend()}, compile only)\n")
  rows, at_max = [], {}
  for l in lengths:
    temps = {}
    for impl in impls:
      try:
        temps[impl] = temp_bytes(_attention_fns(impl)[1], _attention_specs(l))
      except Exception as e:  # noqa: BLE001 - report and go on
        temps[impl] = None
        print(f"  {impl} at L={l} failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    ref, xla = temps["reference"], temps["xla"]
    ratio = f"{ref / xla:.1f}x" if ref and xla else "-"
    lxl = ATTN_B * ATTN_H * l * l * 4
    row = [l, fmt_bytes(lxl), fmt_bytes(ref), fmt_bytes(xla), ratio]
    if "pallas" in impls:
      row.append(fmt_bytes(temps["pallas"]))
    rows.append(row)
    at_max = temps
  header = ["L", "one f32 [B,H,L,L]", "reference temp", "xla temp", "reference / xla"]
  if "pallas" in impls:
    header.append("pallas temp")
  table(header, rows)
  ref, xla = at_max.get("reference"), at_max.get("xla")
  ok = bool(ref and xla and ref >= 10 * xla)
  if not args.quick:
    print(f"done-criterion (xla temp at L={lengths[-1]} at least 10x below the reference's): "
          f"{'PASS' if ok else 'FAIL'} ({ref / xla if ref and xla else float('nan'):.1f}x)\n")
  return ok


def attention_time(args) -> bool:
  l = 256 if args.quick else 1024
  rounds = max(5, args.rounds)
  impls = ("reference", "xla") + (("pallas",) if on_gpu() else ())
  key = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(kk, (ATTN_B, l, ATTN_H, ATTN_D), jnp.float32) for kk in key)
  fwd = {impl: jax.jit(_attention_fns(impl)[0]) for impl in impls}
  fb = {impl: jax.jit(_attention_fns(impl)[1]) for impl in impls}
  tf = interleaved_medians(fwd, (q, k, v), rounds=rounds)
  tb = interleaved_medians(fb, (q, k, v), rounds=rounds)
  print(f"### attention: {jax.default_backend().upper()} wall time, B={ATTN_B}, L={l}, "
        f"H={ATTN_H}, D={ATTN_D}, f32, no mask; median of {rounds} interleaved rounds after one "
        f"warm-up\n")
  rows = [[impl, f"{tf[impl] * 1e3:.1f} ms", f"{tb[impl] * 1e3:.1f} ms",
           f"{tb[impl] / tb['reference']:.2f}x"] for impl in impls]
  table(["implementation", "forward", "forward + backward", "fwd+bwd time / reference"], rows)
  return True


# ------------------------------------------------------------------------------------- main


class Section(NamedTuple):
  name: str
  run: Callable[[argparse.Namespace], bool]   # prints a table; False if a criterion failed


SECTIONS: list[Section] = [
    Section("attention-memory", attention_memory),
    Section("attention-time", attention_time),
]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="smaller sizes everywhere")
  p.add_argument("--sections", default="",
                 help="comma-separated section names or op prefixes (default: all); one of "
                      + ", ".join(s.name for s in SECTIONS))
  p.add_argument("--rounds", type=int, default=7, help="timing rounds (at least 5)")
  a = p.parse_args(argv)
  wanted = [w.strip() for w in a.sections.split(",") if w.strip()]
  chosen = [s for s in SECTIONS
            if not wanted or any(s.name == w or s.name.startswith(w + "-") for w in wanted)]
  if wanted and not chosen:
    p.error(f"no section matches {wanted}; sections: {[s.name for s in SECTIONS]}")
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{jax.devices()[0].device_kind}\n")
  ok = True
  for s in chosen:
    ok = s.run(a) and ok
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
