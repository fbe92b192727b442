"""docs/install.md: its links resolve (files and #anchors), and nothing points at the static
manifest the chart replaced."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install.md"


def anchors(md: Path) -> set[str]:
    """GitHub-style heading anchors of ``md``."""
    out = set()
    for line in md.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_links_resolve():
    text = DOC.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        f = (DOC.parent / path).resolve() if path else DOC
        assert f.exists(), f"docs/install.md links to {target}: {f} does not exist"
        if anchor:
            assert anchor in anchors(f), f"docs/install.md links to {target}: no such heading in {f.name}"


def test_no_reference_to_the_removed_static_manifest():
    assert not (ROOT / "deploy" / "dra-framework.yaml").exists()
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "deploy/dra-framework.yaml" not in f.read_text(), f
