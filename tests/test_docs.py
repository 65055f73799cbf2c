"""Every document that the code, a `--help` text or the README cites exists, and every section it
cites by number ("docs/method.md §4") is a heading of that document.

A citation is a repository path ending in .md (docs/…, benchmarks/results/…, hub/README.md, …)
or a Markdown link to one; a bare "method.md" means docs/method.md. Section numbers are the
numbered headings of the cited page ("## 4. The losses", "### 4.4 DiffCD").
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("diffcd", "hub", "space", "benchmarks", "tools")
PAGES = ("README.md", "hub/README.md", "CHANGELOG.md", "docs/*.md", "benchmarks/results/*.md")

_PATH = re.compile(r"(?<![\w/.-])((?:docs|benchmarks|hub|space|tools|tests|examples)/[\w./-]*\.md|"
                   r"README\.md|CHANGELOG\.md|method\.md)(?![\w/-])")
_SECTION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\)?\s*(?:§\s*|section\s+)(\d+(?:\.\d+)*)")
_LINK = re.compile(r"\]\(([^)\s#]+\.md)(#[^)\s]*)?\)")
_HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.M)


def resolve(cited: str, base: Path = ROOT) -> Path:
    """The file a citation names: relative to `base` (a page's folder for its links), else the
    repository root; a bare method.md is docs/method.md."""
    if cited == "method.md":
        return ROOT / "docs" / "method.md"
    for folder in (base, ROOT):
        if (folder / cited).exists():
            return folder / cited
    return ROOT / cited


def headings(page: Path) -> set[str]:
    return set(_HEADING.findall(page.read_text()))


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _sources() -> list[tuple[str, str, Path]]:
    """(where, text, folder its relative links start from) of code, pages and --help texts."""
    found = [(str(p.relative_to(ROOT)), p.read_text(), p.parent)
             for folder in CODE_FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    found.append(("app.py", (ROOT / "app.py").read_text(), ROOT))
    found += [(str(p.relative_to(ROOT)), p.read_text(), p.parent)
              for pattern in PAGES for p in sorted(ROOT.glob(pattern))]
    found += [(f"--help of {name}", text, ROOT) for name, text in _help_texts()]
    return found


def _help_texts() -> list[tuple[str, str]]:
    from diffcd.cli import build_parser
    from diffcd_hub.cli import _parser as hub_parser

    texts = []
    for name, parser in (("python -m diffcd", build_parser()), ("python -m diffcd_hub", hub_parser())):
        texts.append((name, parser.format_help()))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                texts += [(f"{name} {command}", sub.format_help()) for command, sub in action.choices.items()]
    for module in ("tools.hubserver", "diffcd_hub.publish_examples"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
        texts.append((f"python -m {module}", done.stdout))
    # Help text is wrapped to the terminal: a citation may be split over two lines.
    return [(name, " ".join(text.split())) for name, text in texts]


@pytest.fixture(scope="module")
def sources():
    return _sources()


def test_the_method_document_exists_and_numbers_its_sections():
    numbers = headings(ROOT / "docs" / "method.md")
    assert {str(n) for n in range(1, 9)} <= numbers


def test_every_cited_document_exists(sources):
    missing = sorted({f"{where}: {cited}" for where, text, base in sources
                      for cited in _PATH.findall(text) if not resolve(cited, base).exists()})
    assert not missing, missing


def test_every_markdown_link_to_a_page_resolves(sources):
    broken = []
    for where, text, base in sources:
        for target, anchor in _LINK.findall(text):
            if "://" in target:
                continue
            page = resolve(target, base)
            if not page.exists():
                broken.append(f"{where}: {target}")
            elif anchor and anchor[1:] not in {github_anchor(h) for h in re.findall(r"^#+\s+(.*)$", page.read_text(), re.M)}:
                broken.append(f"{where}: {target}{anchor} (no such heading)")
    assert not broken, broken


def test_every_cited_section_is_a_heading(sources):
    wrong = []
    for where, text, base in sources:
        for cited, number in _SECTION.findall(text):
            page = resolve(cited, base)
            if not page.exists() or number not in headings(page):
                wrong.append(f"{where}: {cited} §{number}")
    assert wrong == [], wrong


def test_the_checks_see_what_they_should(tmp_path):
    text = "see docs/method.md §4 and (method.md section 7), [x](docs/method.md#4-the-losses), hub/README.md"
    assert _PATH.findall(text) == ["docs/method.md", "method.md", "docs/method.md", "hub/README.md"]
    assert _SECTION.findall(text) == [("docs/method.md", "4"), ("method.md", "7")]
    assert _LINK.findall(text) == [("docs/method.md", "#4-the-losses")]
    assert github_anchor("7. Metrics and evaluation protocols") == "7-metrics-and-evaluation-protocols"
    page = tmp_path / "p.md"
    page.write_text("# Title\n## 1. One\n### 1.2 Sub\n## Two\n")
    assert headings(page) == {"1", "1.2"}


_WRITES = re.compile(r"""save_pretrained\(["']([^"']+)["']|out_dir=["']([^"']+)["']|--out[ =]([^\s`'")\]]+)""")


def test_the_readme_examples_write_into_ignored_folders():
    """What the READMEs' examples save, pull or fit lands in a folder git ignores (runs/), never
    in a tracked folder, and no two examples share a folder by accident of naming."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    written = []
    for page in ("README.md", "hub/README.md"):
        for match in _WRITES.finditer((ROOT / page).read_text()):
            folder = next(group for group in match.groups() if group)
            if not folder.isupper() and not folder.startswith(("$", "/", "<")):  # DIR, RUNS_DIR: placeholders
                written.append((page, folder))
    assert any("save_pretrained" in (ROOT / p).read_text() for p, _ in written)
    tracked = [f"{page}: {folder}" for page, folder in written
               if subprocess.run(["git", "check-ignore", "-q", "--no-index", folder.rstrip("/") + "/"],
                                 cwd=ROOT).returncode != 0]
    assert not tracked, f"README examples write into folders git does not ignore: {tracked}"
    saved = {folder for page, folder in written if page == "README.md"}
    assert "runs/saved/torus" in saved and "runs/pulled/torus" in saved
