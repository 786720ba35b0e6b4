"""The README: its generated blocks equal what the generator produces now (so the status counts
and the results table never go stale), and it points only at files inside the repository."""

import re
from pathlib import Path

from bottleneck_jax.experiments import report

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_generated_blocks_are_current():
  text = README.read_text()
  found = report.read_blocks(text)
  assert sorted(found) == sorted(report.BLOCKS), "README.md lacks generated-block markers"
  want = report.readme_blocks()
  for name in report.BLOCKS:
    assert found[name] == want[name], (f"README.md block {name!r} is stale: run "
                                       "python scripts/update_readme.py")


def test_the_status_block_states_the_catalogue_counts():
  from bottleneck_jax import catalog
  rows = catalog.entries()
  built = sum(e.status != "planned" for e in rows)
  reproduced = sum(e.status == "reproduced" for e in rows)
  text = report.read_blocks(README.read_text())["catalogue-status"]
  assert f"of its {len(rows)} rows" in text
  assert f"{built} are implemented" in text
  assert f"full run: {reproduced}" in text


def test_render_replaces_only_between_markers():
  text = "a\n<!-- results:start -->\nold\n<!-- results:end -->\nb\n"
  assert report.render_readme(text, {"results": "new\n"}) == \
      "a\n<!-- results:start -->\nnew\n<!-- results:end -->\nb\n"
  try:
    report.render_readme("no markers", {"results": "x"})
  except ValueError as e:
    assert "no <!-- results:start -->" in str(e)
  else:
    raise AssertionError("a README without markers must be an error")


def test_links_point_inside_the_repository():
  text = README.read_text()
  assert "../shared" not in text and "`shared/`" not in text
  for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
    if re.match(r"[a-z]+://", target):
      continue
    path = (ROOT / target).resolve()
    assert path.is_relative_to(ROOT), target
    assert path.exists(), target
