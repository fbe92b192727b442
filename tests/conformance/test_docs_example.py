"""The driver-test example in tests/harness/README.md runs as written (imports, fixtures, paths)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.k8s
def test_harness_readme_example_runs(kubelet_shim, dra_driver, k8s_objects, allocator, cdi_check, monkeypatch):
    text = (ROOT / "tests" / "harness" / "README.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "def test_" in c)
    ns: dict = {}
    exec(compile(code, "tests/harness/README.md", "exec"), ns)
    monkeypatch.chdir(ROOT)  # the example's config path is relative to the repository root
    test = next(v for k, v in ns.items() if k.startswith("test_"))
    test(kubelet_shim, dra_driver, k8s_objects, allocator, cdi_check)
    drv = dra_driver.started[0]
    assert drv.checkpoint() and drv.cdi_specs()  # the example left its pod prepared
