#!/usr/bin/env python
"""Regenerates the README's generated blocks from the catalogue and the recorded results.

The blocks sit between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers
(``catalogue-status``: how many catalogue rows are implemented and reproduced; ``results``: the
results table and each experiment's setting and departures). Nothing is run: the numbers come
from ``bottleneck_jax/experiments/recorded_results.json`` (``bottleneck-jax reproduce --all
--record --readme README.md`` runs the experiments, records them and regenerates in one go).

Usage::

  python scripts/update_readme.py            # rewrite README.md's blocks
  python scripts/update_readme.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
  from bottleneck_jax.experiments import report
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("readme", nargs="?", default=str(Path(__file__).resolve().parents[1] /
                                                  "README.md"))
  p.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
  args = p.parse_args(argv)
  try:
    changed = report.update_readme(args.readme, check=args.check)
  except (OSError, ValueError) as e:
    print(f"update_readme: error: {e}", file=sys.stderr)
    return 2
  if args.check and changed:
    print(f"{args.readme} is stale: run python scripts/update_readme.py", file=sys.stderr)
    return 1
  print(f"{args.readme}: {'updated' if changed and not args.check else 'up to date'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
