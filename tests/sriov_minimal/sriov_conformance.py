"""pytest plugin: the conformance suite on sriov-minimal with a sample host instead of hardware.

Prepare rebinds VFs by writing into ``hostRoot``; on a sample host nothing answers those writes
and the tree in the repository would change. With ``-p sriov_conformance`` every sriov-minimal
backend of ``--dra-config`` gets a private copy of its ``hostRoot``, with
:class:`~dra_framework.testing.hosttree.FakePciKernel` playing the kernel for the whole session;
``--dra-leftovers=sriov_conformance:bindings`` makes the suite check that every VF is back on
its driver after each claim. From the repository root::

    PYTHONPATH=tests/sriov_minimal .venv/bin/python -m pytest -p sriov_conformance \\
        --dra-conformance=sriov-minimal --dra-config=examples/configs/sriov-minimal.yaml \\
        --dra-leftovers=sriov_conformance:bindings
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dra_framework.api import walk_pci
from dra_framework.testing.hosttree import FakePciKernel

BACKEND = "sriov-minimal"
_kernels: list[FakePciKernel] = []
_tmp: list[Path] = []


def _sriov_backends(cfg: dict[str, Any]):
    for d in cfg.get("drivers", []):
        for b in d.get("backends", []):
            if b.get("name") == BACKEND:
                yield b.setdefault("options", {})


def pytest_configure(config) -> None:
    src = config.getoption("dra_config", None)
    if config.getoption("dra_conformance", None) != BACKEND or not src:
        return
    cfg = yaml.safe_load(Path(src).read_text()) or {}
    tmp = Path(tempfile.mkdtemp(prefix="sriov-conformance-"))
    _tmp.append(tmp)
    for i, opts in enumerate(_sriov_backends(cfg)):
        host = Path(opts.get("hostRoot", "/")).resolve()
        if host == Path("/"):
            continue  # a real node: the kernel answers
        copy = tmp / f"host-{i}"
        shutil.copytree(host, copy, symlinks=True)
        opts["hostRoot"] = str(copy)
        _kernels.append(FakePciKernel(copy).__enter__())
    out = tmp / Path(src).name
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    config.option.dra_config = str(out)


def pytest_unconfigure(config) -> None:
    while _kernels:
        _kernels.pop().__exit__(None, None, None)
    while _tmp:
        shutil.rmtree(_tmp.pop(), ignore_errors=True)


def bindings(drv: Any) -> dict[str, Any]:
    """The leftovers probe: every VF's driver and driver_override under each sriov-minimal
    backend's ``hostRoot`` (must be the same before a claim and after its unprepare)."""
    out: dict[str, Any] = {}
    for opts in _sriov_backends(drv.config):
        root = opts.get("hostRoot", "/")
        out[root] = {vf.bdf: [vf.driver, vf.driver_override] for vf in walk_pci(root, vfs=True)}
    return out
