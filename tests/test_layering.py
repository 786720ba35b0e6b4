"""The package's layers import one way only: ``core -> kernels -> ops -> families -> data, train
-> experiments -> cli``; a family never imports another family, and no module imports form a
circle. Read from the source (``ast``), so lazy imports inside functions count too."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "bottleneck_jax"
FAMILIES = ("information", "concepts", "quantize", "compression", "efficiency", "attention",
            "architecture", "objectives")
RANK = {"core": 0, "kernels": 1, "ops": 2, **{f: 3 for f in FAMILIES}, "data": 4, "train": 5,
        "experiments": 6, "catalog": 6, "cli": 7}


def _module_name(path: Path) -> str:
  parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _imports(path: Path) -> set[str]:
  tree = ast.parse(path.read_text())
  me = _module_name(path)
  package = me if path.name == "__init__.py" else me.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
      else:
        mod = node.module or ""
      out.add(mod)
      out |= {f"{mod}.{a.name}" for a in node.names}
  return {m for m in out if m.startswith("bottleneck_jax")}


def _layer(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def _graph():
  files = {_module_name(p): p for p in PKG.rglob("*.py")}
  graph = {m: {i for i in _imports(p) if i in files} for m, p in files.items()}
  return files, graph


def test_imports_never_run_back_up_and_families_stay_apart():
  files, graph = _graph()
  bad = []
  for mod, deps in graph.items():
    src = _layer(mod)
    for dep in deps:
      dst = _layer(dep)
      if src is None or dst is None or src == dst:
        continue
      if RANK[dst] > RANK[src] or (src in FAMILIES and dst in FAMILIES):
        bad.append(f"{mod} -> {dep}")
  assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_modules():
  files, graph = _graph()
  # Treat a package's __init__ importing its own submodules as the package's content, not a
  # dependency that could close a cycle back to the package.
  def deps(m):
    return {d for d in graph[m] if d != m and not d.startswith(m + ".")}

  color: dict[str, int] = {}
  stack: list[str] = []
  cycles = []

  def visit(m):
    color[m] = 1
    stack.append(m)
    for d in deps(m):
      if color.get(d) == 1:
        cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
      elif d not in color:
        visit(d)
    stack.pop()
    color[m] = 2

  for m in sorted(graph):
    if m not in color:
      visit(m)
  assert not cycles, "import cycles:\n" + "\n".join(cycles)
