"""Code cites only what a reader of the repository can open: docs/ in the repo or upstream URLs.

Comments and docstrings of every Python file of the repository (the package, the built-in
backends, tests, examples, benchmarks, scripts) and the Markdown files next to them must not
point at private notes (paths outside the repository, unpublished row ids: a B and two digits), every
``docs/<file>.md#anchor`` they name must exist, and every section reference ``<file> §x.y`` (in
any string, error messages included) must name a file in the repository with that numbered
section.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SELF = Path(__file__).resolve()
SCANNED = ("dra_framework", "backends", "tests", "examples", "benchmarks", "scripts", "docs")

FORBIDDEN = [
    (re.compile(r"\.\./shared"), "path outside the repository"),
    (re.compile(r"\bshared/(specs|research)\b"), "private notes outside the repository"),
    (re.compile(r"\bresearch/[\w-]+\.md\b"), "private research note"),
    (re.compile(r"fact sheet", re.I), "private fact sheet"),
    (re.compile(r"\bbug[- ]log", re.I), "private bug log"),
    (re.compile(r"\bB\d{2}[a-z]?\b"), "private bug-row id"),
    (re.compile(r"\b(dra-protocol|python-ecosystem|ref-drivers-\w+|reliability-findings)\.md\b"),
     "private research note"),
]
DOCS_PATH = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")


def _sources(pattern: str = "*.py") -> list[Path]:
    files = []
    for top in SCANNED:
        for p in sorted((ROOT / top).rglob(pattern)):
            if "_pb2" in p.name or "/build/" in p.as_posix() or ".venv" in p.parts or p == SELF:
                continue  # generated code, build output, and this checker's own examples
            files.append(p)
    return files


def comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and every string literal that stands alone as a statement
    (module, class and function docstrings, attribute docs)."""
    out: list[tuple[int, str]] = []
    prev_significant = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
        elif tok.type == tokenize.STRING and (
                prev_significant is None
                or prev_significant.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)):
            out.append((tok.start[0], tok.string))
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING):
            prev_significant = tok
    return out


SOURCES = _sources()
MARKDOWN = _sources("*.md")


def test_sources_found():
    assert len(SOURCES) > 50
    assert {p.relative_to(ROOT).parts[0] for p in SOURCES} >= {"dra_framework", "backends", "tests", "examples",
                                                                  "benchmarks", "scripts"}


def _cited_texts(path: Path) -> list[tuple[int, str]]:
    """Comments and docstrings of a Python file; the whole text of a Markdown file."""
    text = path.read_text()
    if path.suffix == ".py":
        return comments_and_docstrings(text)
    return list(enumerate(text.splitlines(), start=1))


@pytest.mark.parametrize("path", SOURCES + MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_citations(path: Path):
    bad = []
    for line, text in _cited_texts(path):
        for rx, why in FORBIDDEN:
            for m in rx.finditer(text):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)!r} ({why})")
    assert not bad, "cite docs/ or an upstream URL instead:\n" + "\n".join(bad)


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file, plus explicit ``<a id="...">`` anchors."""
    text = doc.read_text()
    out = set(re.findall(r'<a id="([\w-]+)"', text))
    for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        out.add(re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("path", SOURCES + MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_docs_exist(path: Path):
    missing = set()
    for m in DOCS_PATH.finditer(path.read_text()):
        doc = ROOT / "docs" / m.group(1)
        if not doc.is_file() or (m.group(2) and m.group(2) not in anchors(doc)):
            missing.add(m.group(0))
    assert not missing, f"{path.relative_to(ROOT)} cites missing docs or sections: {sorted(missing)}"


def test_anchor_slugs():
    assert "publishing-semantics-go-controller" in anchors(ROOT / "docs" / "resourceslices.md")
    assert "restart-vs-uninstall" in anchors(ROOT / "docs" / "resourceslices.md")


def test_checker_catches_each_kind():
    src = ('"""See ../shared/specs/x.md and the fact sheet."""\n'
           "x = 1  # bug log B05, also (B15b)\n"
           's = "B05 in a plain string value is data, not a citation"\n')
    texts = " ".join(t for _, t in comments_and_docstrings(src))
    hits = [rx.pattern for rx, _ in FORBIDDEN if rx.search(texts)]
    assert len(hits) == 5  # "../shared/specs" is both outside the repo and private notes
    assert "plain string" not in texts


# "<file> §1.2" or a bare "§1.2" / "§2.2-§2.4" (which continues the last file named before it).
# A file is a name with an extension, a path, or an all-caps name such as README or SPEC.
SECTION_REF = re.compile(r"(?:(?P<file>[\w./-]*\.[A-Za-z]{1,5}|[\w.-]+/[\w./-]*\w|\b[A-Z][A-Z0-9_-]+)\s+)?"
                         r"§\s*(?P<sec>\d+(?:\.\d+)*)")


def _resolve(name: str, base: Path) -> Path | None:
    """The repository file a section reference names (relative to the repo root, the citing
    file's directory or docs/; a missing ``.md`` is added), or None when the repo has none."""
    for cand in (name, name + ".md"):
        for d in (ROOT, base, ROOT / "docs"):
            p = (d / cand).resolve()
            if p.is_file() and ROOT in p.parents:
                return p
    return None


def _has_section(doc: Path, sec: str) -> bool:
    return re.search(rf"^#{{1,6}}\s+§?\s*{re.escape(sec)}\.?(\s|$)", doc.read_text(), re.M) is not None


def bad_section_refs(text: str, base: Path) -> list[str]:
    """Section references in ``text`` that a reader of the repository cannot open: a file
    outside the repo (e.g. a private ``README §2.2``), a section the file lacks, or a bare ``§``
    with no file before it."""
    bad, current = [], None
    for m in SECTION_REF.finditer(text):
        if m.group("file"):
            current = m.group("file")
        doc = _resolve(current, base) if current else None
        if doc is None or not _has_section(doc, m.group("sec")):
            bad.append(m.group(0))
    return bad


@pytest.mark.parametrize("path", SOURCES + MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_section_refs_resolve(path: Path):
    """Any string counts here (error messages cite too), not only comments and docstrings."""
    bad = bad_section_refs(path.read_text(), path.parent)
    assert not bad, (f"{path.relative_to(ROOT)} cites sections a reader cannot open: {bad}; "
                     "cite docs/<file>.md#<anchor> or an upstream URL instead")


def test_section_ref_checker(tmp_path):
    base = ROOT / "dra_framework"
    assert bad_section_refs('"""Rules (README §2.2; also §3.1, §2.2-§2.4)."""', base) == [
        "README §2.2", "§3.1", "§2.2", "§2.4"]
    assert bad_section_refs("# see ref-drivers-gpu.md §6.4", base) == ["ref-drivers-gpu.md §6.4"]
    assert bad_section_refs('raise E("bad name (§2.2)")', base) == ["§2.2"]
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\n## 2.1 Fields\n")
    assert bad_section_refs("notes.md §2.1", tmp_path) == ["notes.md §2.1"]  # outside the repo
    assert bad_section_refs("see docs/cdi-rules.md#names", base) == []
    texts = " ".join(t for _, t in comments_and_docstrings(
        '"""Rules follow ``shared/specs/cdi/README.md`` and research/cdi.md."""\n'))
    assert sum(1 for rx, _ in FORBIDDEN if rx.search(texts)) == 2
