"""Block-size helpers for chunked XLA loops and Pallas grids."""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
  """Ceiling division of non-negative ints."""
  return -(-a // b)


def round_up(a: int, multiple: int) -> int:
  """Smallest multiple of ``multiple`` that is >= ``a``."""
  return cdiv(a, multiple) * multiple


def next_power_of_2(n: int) -> int:
  """Smallest power of two >= ``n`` (1 for n <= 1)."""
  n = int(n)
  return 1 if n <= 1 else 1 << (n - 1).bit_length()


def pick_block(size: int, preferred: int, *, multiple: int = 1, power_of_2: bool = False) -> int:
  """A block size for an axis of length ``size``.

  Returns ``preferred`` rounded down to ``multiple`` (and to a power of two if asked), but never
  larger than ``size`` rounded up to ``multiple`` (small axes get one block).
  """
  if size <= 0:
    raise ValueError(f"pick_block: size must be > 0, got {size}")
  block = max(multiple, (preferred // multiple) * multiple)
  cap = round_up(size, multiple)
  if power_of_2:
    block = next_power_of_2(block)
    cap = next_power_of_2(cap)
  return min(block, cap)


__all__ = ["cdiv", "round_up", "next_power_of_2", "pick_block"]
