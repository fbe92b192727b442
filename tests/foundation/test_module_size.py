"""Modules of the framework stay small enough to read in one sitting: none over 400 lines
(generated gRPC code excepted). docs/design.md has the module map."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def test_no_framework_module_over_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for p in (ROOT / "dra_framework").rglob("*.py") if "_proto" not in p.parts}
    assert len(sizes) > 50
    too_long = {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these by responsibility (docs/design.md#module-map): {too_long}"
