"""A backend plugin installed the way pip leaves it: a module plus a ``*.dist-info`` with an entry
point in the ``dra_framework.backends`` group, under ``root`` (put ``root`` on PYTHONPATH)."""
from __future__ import annotations

from pathlib import Path


def install_plugin(root: Path, module: str, source: str, dist: str, version: str, entry: str) -> str:
    """Writes ``<module>.py`` with ``source`` and ``<dist>-<version>.dist-info`` whose entry point
    ``entry`` loads ``module``. Returns ``root`` as a string (for PYTHONPATH)."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[dra_framework.backends]\n{entry} = {module}\n")
    return str(root)
