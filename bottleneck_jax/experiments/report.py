"""Reports generated from the recorded results: the markdown results table and the README's
generated blocks (the catalogue status and the results), so that they never go stale.

A generated block of the README sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``;
:func:`update_readme` rewrites what lies between the markers (``bottleneck-jax reproduce ...
--readme README.md`` or ``python scripts/update_readme.py``), and a test checks that the
README's blocks equal what :func:`readme_blocks` produces now.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BLOCKS: tuple[str, ...] = ("catalogue-status", "results")


def _fmt(v) -> str:
  if isinstance(v, bool) or v is None:
    return str(v)
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, int):
    return str(v)
  return v if isinstance(v, str) else json.dumps(v, default=str)


def _md(text) -> str:
  return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def setting_cell(s: Mapping[str, Any]) -> str:
  """``paper``, ``proxy (3 departures)`` or ``—``."""
  setting = s.get("setting")
  if not setting:
    return "—"
  n = len(s.get("departures") or ())
  return setting if not n else f"{setting} ({n} departure{'s' if n != 1 else ''})"


def held_cell(s: Mapping[str, Any]) -> str:
  if s.get("status") == "error" or "error" in s:
    return "error"
  if s.get("expectation_held") is None:
    return "not counted (below)" if s.get("note") else "not recorded"
  held = "yes" if s["expectation_held"] else "**no**"
  flags = [f for f in ("quick", "custom") if s.get(f)]
  return held + (f" ({', '.join(flags)})" if flags else "")


def results_table(summaries: list[Mapping[str, Any]]) -> str:
  """A markdown table: paper, experiment, setting, claim, paper's number, our number,
  expectation, held. A row is a run's summary, a recorded result joined with its
  declaration (:func:`recorded_rows`), or an error (``{"status": "error", "error": ...}``)."""
  lines = ["| paper | experiment | setting | claim | paper's number | our number | expectation "
           "| held |",
           "|---|---|---|---|---|---|---|---|"]
  for s in summaries:
    if s.get("status") == "error" or "error" in s:
      ours = f"error: {s.get('error')}"
    elif s.get("value") is None and s.get("expectation_held") is None:
      ours = "—"
    else:
      ours = f"{s['metric']} = {_fmt(s.get('value'))}"
    lines.append("| " + " | ".join(_md(c) for c in (
        s["paper_id"], s["experiment"], setting_cell(s), s.get("claim"), s.get("paper_value"),
        ours, s.get("expectation"), held_cell(s))) + " |")
  return "\n".join(lines) + "\n"


def departures_list(summaries: list[Mapping[str, Any]]) -> str:
  """A markdown list of each experiment's setting and departures from the paper."""
  out = []
  for s in summaries:
    deps = list(s.get("departures") or ())
    text = "; ".join(deps) if deps else "none"
    out.append(f"- `{s['experiment']}` ({s.get('setting') or 'undeclared'}): {text}")
  return "\n".join(out) + ("\n" if out else "")


def recorded_rows(records: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
  """One row per registered experiment: its current declaration (claim, setting, departures,
  rendered expectations) joined with its recorded result, if any. The ``held`` of a row is
  ``None`` (not recorded) unless the record counts (:func:`bottleneck_jax.catalog.
  record_problem`), or is an honest miss or an error."""
  from bottleneck_jax import catalog
  from bottleneck_jax.experiments import registry
  records = catalog.recorded_results() if records is None else records
  rows = []
  for name in registry.names():
    exp = registry.get(name)
    rec = records.get(name) or {}
    row = {"experiment": name, "paper_id": exp.paper_id, "claim": exp.claim,
           "paper_value": exp.paper_value, "setting": exp.setting or None,
           "departures": list(exp.departures), "metric": exp.metric,
           "expectation": "; ".join(exp.describe_expectations(source=False)),
           "value": None, "expectation_held": None}
    problem = catalog.record_problem(name, rec)
    if rec.get("status") == "error":
      row.update(status="error", error=rec.get("error"))
    elif problem is None or problem == "the expectations were missed":
      row.update(value=rec.get("value"), expectation_held=bool(rec.get("expectation_held")))
    elif rec:
      row.update(note=problem)
    rows.append(row)
  return rows


def catalogue_status_text() -> str:
  """One paragraph: how many catalogue rows are planned, implemented and reproduced."""
  from bottleneck_jax import catalog
  rows = catalog.entries()
  counts = {s: sum(e.status == s for e in rows) for s in catalog.STATUSES}
  papers = len(catalog.paper_ids())
  built = counts["implemented"] + counts["reproduced"]
  reproduced = [e.id for e in rows if e.status == "reproduced"]
  with_exps = sum(bool(e.experiments) for e in rows if e.status != "planned")
  text = (f"**Status** (generated from the catalogue): of its {len(rows)} rows ({papers} papers "
          f"and {len(rows) - papers} base method{'s' if len(rows) - papers != 1 else ''}), "
          f"{built} are implemented — their functions exist and are tested against independent "
          f"references ({with_exps} of them with experiments) — and {counts['planned']} are "
          f"planned. Reproduced — every experiment of the row held its declared expectations "
          f"in the last recorded full run: {counts['reproduced']}")
  text += f" ({', '.join(f'`{i}`' for i in reproduced)})." if reproduced else "."
  text += " `bottleneck-jax list` prints the table."
  return text


def readme_blocks(records: Mapping[str, Any] | None = None) -> dict[str, str]:
  """The README's generated blocks, by marker name."""
  rows = recorded_rows(records)
  results = (results_table(rows) + "\n"
             "Setting: `paper` runs the paper's own data and scale; `proxy` is a smaller stand-in "
             "whose numbers are not comparable with the paper's. Departures from the paper:\n\n"
             + departures_list(rows))
  notes = [r for r in rows if r.get("note")]
  if notes:
    results += ("\nNot counted: " + "; ".join(f"`{r['experiment']}` ({r['note']})"
                                              for r in notes) + ".\n")
  return {"catalogue-status": catalogue_status_text() + "\n", "results": results}


def _pattern(name: str) -> re.Pattern:
  return re.compile(rf"(<!-- {re.escape(name)}:start -->\n)(.*?)(<!-- {re.escape(name)}:end -->)",
                    re.S)


def read_blocks(text: str) -> dict[str, str]:
  """The generated blocks found in a README's text (by marker name)."""
  out = {}
  for name in BLOCKS:
    m = _pattern(name).search(text)
    if m:
      out[name] = m.group(2)
  return out


def render_readme(text: str, blocks: Mapping[str, str]) -> str:
  """``text`` with every generated block replaced; a ``ValueError`` names a missing marker."""
  for name, body in blocks.items():
    pat = _pattern(name)
    if not pat.search(text):
      raise ValueError(f"update_readme: no <!-- {name}:start --> ... <!-- {name}:end --> "
                       "markers in the README")
    text = pat.sub(lambda m, body=body: m.group(1) + body + m.group(3), text, count=1)
  return text


def update_readme(path: str | Path, *, check: bool = False) -> bool:
  """Regenerates the README's blocks; returns whether anything changed (``check``: only
  compare, never write)."""
  from bottleneck_jax.core.io import atomic_write_text
  path = Path(path)
  old = path.read_text()
  new = render_readme(old, readme_blocks())
  if new != old and not check:
    atomic_write_text(path, new)
  return new != old


__all__ = ["BLOCKS", "catalogue_status_text", "departures_list", "read_blocks",
           "readme_blocks", "recorded_rows", "render_readme", "results_table", "update_readme"]
