"""Code cites only what a reader of the repository can open: docs/ in the repo or upstream URLs.

Comments and docstrings under dra_framework/ and backends/ must not point at private notes
(paths outside the repository, unpublished row ids such as "B05"), and every ``docs/<file>.md``
they name must exist.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("dra_framework", "backends")

FORBIDDEN = [
    (re.compile(r"\.\./shared"), "path outside the repository"),
    (re.compile(r"fact sheet", re.I), "private fact sheet"),
    (re.compile(r"bug[- ]log", re.I), "private bug log"),
    (re.compile(r"\bB\d{2}[a-z]?\b"), "private bug-row id"),
    (re.compile(r"\b(dra-protocol|python-ecosystem|ref-drivers-\w+|reliability-findings)\.md\b"),
     "private research note"),
]
DOCS_PATH = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")


def _sources() -> list[Path]:
    files = []
    for top in SCANNED:
        for p in sorted((ROOT / top).rglob("*.py")):
            if "_pb2" in p.name or "/build/" in p.as_posix() or ".venv" in p.parts:
                continue
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


def test_sources_found():
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_citations(path: Path):
    bad = []
    for line, text in comments_and_docstrings(path.read_text()):
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


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
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
    assert len(hits) == 4
    assert "plain string" not in texts
