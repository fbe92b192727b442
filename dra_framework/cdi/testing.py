"""Test helper: :func:`assert_valid_cdi_dir` — validate every CDI spec in a directory.

Meant for any test that produces CDI specs (``from dra_framework.cdi.testing import
assert_valid_cdi_dir``). It is a pure-Python check (schema + Go-library rules + framework policy,
see :mod:`dra_framework.cdi.validate`); the Go-library oracle lives in ``tests/harness``
(``cdi_check`` fixture).
"""
from __future__ import annotations

import os
import stat

from .errors import CdiValidationError
from .validate import validate_spec_file


def assert_valid_cdi_dir(path: str | os.PathLike[str], *, strict: bool = True, check_mode: bool = True,
                         allow_empty: bool = True, allow_temp_files: bool = False) -> dict[str, dict]:
    """Assert that every spec file in ``path`` (regular ``*.json``/``*.yaml`` files directly in it,
    which is what runtimes read, docs/cdi-rules.md#directories) is valid, and that the directory as a whole works:

    * each file passes :func:`~dra_framework.cdi.validate.validate_spec_file` (``strict``);
    * ``check_mode``: each file has mode 0644 (docs/cdi-rules.md#atomic-write);
    * no qualified device ID ``vendor/class=name`` appears in two files (runtimes drop such
      devices entirely, docs/cdi-rules.md#directories);
    * unless ``allow_temp_files``: no leftover writer temp files (``.*.tmp``);
    * unless ``allow_empty`` (default True): at least one spec file.

    Returns ``{file name: parsed spec}``. Raises ``AssertionError`` listing every problem.
    A missing directory counts as empty.
    """
    root = os.fspath(path)
    problems: list[str] = []
    specs: dict[str, dict] = {}
    owners: dict[str, str] = {}
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    for name in names:
        full = os.path.join(root, name)
        if name.startswith(".") and name.endswith(".tmp") and not allow_temp_files:
            problems.append(f"{name}: leftover temp file")
            continue
        if not (name.endswith(".json") or name.endswith(".yaml")) or not os.path.isfile(full):
            continue
        if check_mode:
            mode = stat.S_IMODE(os.stat(full).st_mode)
            if mode != 0o644:
                problems.append(f"{name}: mode {mode:04o}, expected 0644")
        try:
            spec = validate_spec_file(full, strict=strict)
        except CdiValidationError as exc:
            problems.append(str(exc))
            continue
        specs[name] = spec
        for d in spec["devices"]:
            qid = f"{spec['kind']}={d['name']}"
            if qid in owners:
                problems.append(f"{name}: device {qid} also defined in {owners[qid]} "
                                f"(same-priority conflict: runtimes drop it)")
            else:
                owners[qid] = name
    if not specs and not problems and not allow_empty:
        problems.append(f"{root}: no CDI spec files")
    if problems:
        raise AssertionError(f"invalid CDI directory {root}:\n" + "\n".join(f"- {p}" for p in problems))
    return specs
