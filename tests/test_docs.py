"""The README and docs/: the README stays short, every relative link and image resolves (anchors included),
every docs page is linked from the README, the README's tables are copies of docs tables, and the SHA-256
table of docs/models.md matches the shipped files. External links are not checked (no network)."""

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, *sorted((ROOT / "assets").glob("**/*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text without the front matter and fenced code blocks (where neither links nor headings are)."""
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[1]
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (links as their text, code without backticks),
    lowercased, punctuation other than - and _ dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[str]:
    """The targets of the inline links and images of `path`, outside code blocks and code spans."""
    return [target for _, target in LINK.findall(CODE_SPAN.sub("", prose(path.read_text())))]


def broken(path: Path) -> list[str]:
    """The relative links and images of `path` whose file, or whose heading in a Markdown file, is missing."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...: not checked
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no such heading")
    return problems


def test_slugs_follow_github():
    assert slug("Speed of `mini` (`python benchmarks/bench_mini.py`)") == "speed-of-mini-python-benchmarksbench_minipy"
    assert slug("Against issue #14's targets") == "against-issue-14s-targets"
    assert slug("Why the default realism is 0.67") == "why-the-default-realism-is-067"
    assert slug("The estimator `F`") == "the-estimator-f"


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#a-section) [gone](missing.md) [bad anchor](other.md#nowhere)\n"
                    "![img](missing.png) [here](#page) [web](https://example.com/x) `[code](nothing.md)`\n"
                    "```bash\n[fenced](nothing.md)\n```\n")
    assert broken(page) == ["missing.md: no such file", "other.md#nowhere: no such heading",
                            "missing.png: no such file"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken(page) == []


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.read_text().splitlines()) <= 250
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    assert [doc.name for doc in DOCS if doc.resolve() not in linked] == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_docs_page_starts_with_a_title_and_what_it_answers(doc):
    lines = doc.read_text().splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2] and not lines[2].startswith(("#", "|", "`"))


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in prose(text).splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|$", line):
            rows.append([cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")])
    return rows


def numbers(row: list[str]) -> list[str]:
    return [cell for cell in row if re.fullmatch(r"-?\d+(\.\d+)?", cell)]


def test_readme_tables_are_copies_of_docs_tables():
    """Every number in a README table row is in one row of a docs table, in the same order: the README shows
    measurements, docs/ keeps them with their commands."""
    docs_rows = [numbers(row) for doc in DOCS for row in table_rows(doc.read_text())]

    def within(short: list[str], long: list[str]) -> bool:
        rest = iter(long)
        return all(any(cell == other for other in rest) for cell in short)

    readme_rows = [numbers(row) for row in table_rows(README.read_text())]
    assert [row for row in readme_rows if row] and all(any(within(row, other) for other in docs_rows)
                                                       for row in readme_rows if row)


def test_models_page_lists_the_shipped_weights_sha256():
    listed = {path: digest for path, _, digest in re.findall(r"^\| `(assets/[^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$",
                                                              (ROOT / "docs" / "models.md").read_text(), re.M)}
    shipped = sorted(p for p in (ROOT / "assets").glob("**/*") if p.suffix in (".safetensors", ".npz"))
    assert sorted(listed) == sorted(str(p.relative_to(ROOT)) for p in shipped)
    assert {path: hashlib.sha256((ROOT / path).read_bytes()).hexdigest() for path in listed} == listed
