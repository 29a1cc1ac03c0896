"""The documentation stands alone: every reference in the README, ``docs/`` and the installed
package (docstrings, comments, shipped configs) points inside the repository or the wheel.

* markdown links resolve to files of the repository, and their ``#anchors`` to headings there;
* repository paths named in the text (``docs/…``, ``benchmarks/…``, ``tests/…``, ``src/…``) exist,
  and ``docs/…md#anchor`` references from the package name a real heading (a file of another
  repository is written with that repository's name first, ``CVT-Occ/docs/dataset.md``, or as
  "the release's ``model/…``");
* nothing refers to the design notes or the data folder outside the repository
  (``DESIGN §n``, ``DESIGN.md``, ``../shared``); the real frame's own folder ``shared/data`` is
  named only by ``docs/real_data.md``, which says where it comes from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = [p for p in sorted((ROOT / "src" / "gaussrender").rglob("*")) if p.suffix in (".py", ".yaml", ".md")]
FORBIDDEN = re.compile(r"DESIGN\s*§|DESIGN\.md|\.\./shared")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|benchmarks|tests|src)/[\w./+*<>{},-]*[\w+*>}-](?:#[\w-]+)?)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.M)}


def _check_target(source: Path, target: str, base: Path) -> str | None:
    """None when ``target`` (a path, optionally ``#anchor``) resolves inside the repository."""
    path_part, _, anchor = target.partition("#")
    resolved = (base / path_part).resolve() if path_part else source
    if not resolved.is_relative_to(ROOT):
        return f"{_rel(source)}: {target!r} points outside the repository"
    if not resolved.exists():
        return f"{_rel(source)}: {target!r} does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
        return f"{_rel(source)}: {target!r}: no heading with anchor #{anchor} in {_rel(resolved)}"
    return None


@pytest.mark.parametrize("path", DOCS + PACKAGE, ids=_rel)
def test_no_reference_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    bad = [f"line {text[: m.start()].count(chr(10)) + 1}: {m.group(0)!r}" for m in FORBIDDEN.finditer(text)]
    if path.name != "real_data.md":
        bad += [
            f"line {text[: m.start()].count(chr(10)) + 1}: shared/data (see docs/real_data.md)"
            for m in re.finditer(r"shared/data", text)
        ]
    assert not bad, f"{_rel(path)} refers to files that are neither in the repository nor in the wheel: {bad}"


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_markdown_links_resolve(path):
    text = path.read_text(encoding="utf-8")
    problems = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):  # http(s), mailto: outside links are fine
            continue
        problem = _check_target(path, target, path.parent)
        if problem:
            problems.append(problem)
    assert not problems, problems


@pytest.mark.parametrize("path", DOCS + PACKAGE, ids=_rel)
def test_named_repository_paths_exist(path):
    text = path.read_text(encoding="utf-8")
    problems = []
    for m in REPO_PATH.finditer(text):
        target = m.group(1).rstrip(".")
        if any(c in target for c in "*{<") or target.endswith("/"):
            continue
        problem = _check_target(path, target, ROOT)
        if problem:
            problems.append(problem)
    assert not problems, problems


def test_the_check_catches_what_it_should(tmp_path):
    assert FORBIDDEN.search("see DESIGN §5") and FORBIDDEN.search("in ../shared/data")
    readme = ROOT / "README.md"
    assert _check_target(readme, "docs/nope.md", ROOT) and _check_target(readme, "../../etc/passwd", ROOT)
    assert _check_target(readme, "docs/performance.md#no-such-heading", ROOT)
    assert _check_target(readme, "docs/performance.md#cpu-threads", ROOT) is None
    assert _slug("Targets (from the paper, not obtained here)") == "targets-from-the-paper-not-obtained-here"
