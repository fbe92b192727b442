"""A comparable picture of a directory tree, for "the committed sample host is exactly what its
generator writes" tests (docs/testing.md)."""
from __future__ import annotations

import os
from pathlib import Path

Entry = tuple[str] | tuple[str, str] | tuple[str, bytes]


def tree_snapshot(root: str | os.PathLike[str], ignore: tuple[str, ...] = ("README.md",)) -> dict[str, Entry]:
    """Every path below ``root`` → ``("link", target)``, ``("file", bytes)`` or ``("dir",)``.

    Args:
        root: the tree to read; symbolic links are recorded, never followed.
        ignore: paths relative to ``root`` left out (hand-written READMEs next to generated data).

    Returns:
        A dict keyed by the path relative to ``root``. Empty directories are included, so a
        generator that writes one fails the comparison with its committed copy: git does not keep
        empty directories, a fresh clone would lack it.

    Raises:
        OSError: a file cannot be read.
    """
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in ignore:
                continue
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = ("file", path.read_bytes())
            else:
                out[rel] = ("dir",)
    return out
