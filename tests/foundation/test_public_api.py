"""The public backend API (dra_framework.api): the only framework module backends import."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import dra_framework
from dra_framework import api

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"dra_framework", "dra_framework.api"}
TEST_ONLY = "dra_framework.testing"


def _framework_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every import of dra_framework in a Python file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "dra_framework"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "dra_framework":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def _backend_files() -> list[Path]:
    files = [*ROOT.glob("backends/**/*.py"), *ROOT.glob("examples/**/*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def test_backends_import_only_the_public_api():
    """Built-in backends and examples are written the way a vendor's package is: anything else
    of dra_framework is internal (tests of a backend may also use dra_framework.testing)."""
    assert _backend_files(), "no backend sources found"
    bad = []
    for path in _backend_files():
        # tests, fake hardware and sample-host generators are test support: they may build trees
        # with dra_framework.testing (never the backend code itself)
        is_test = ("tests" in path.parts or "fake" in path.parts or path.parent.name == "hosts"
                   or path.name.startswith("test_") or path.name == "conftest.py")
        for line, module, names in _framework_imports(path):
            if is_test and (module == TEST_ONLY or module.startswith(TEST_ONLY + ".")):
                continue
            if module not in ALLOWED:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
            elif module == "dra_framework":
                bad += [f"{path.relative_to(ROOT)}:{line}: imports dra_framework.{n} (not in dra_framework.api)"
                        for n in names if n not in api.__all__]
    assert not bad, "backends must import only dra_framework.api:\n" + "\n".join(bad)


def test_boundary_check_catches_an_internal_import(tmp_path):
    """The check above can fail: an internal import is reported."""
    f = tmp_path / "b.py"
    f.write_text("from dra_framework.fsutil import write_json_atomic\nimport dra_framework.plugins\n")
    mods = [m for _l, m, _n in _framework_imports(f)]
    assert mods == ["dra_framework.fsutil", "dra_framework.plugins"]
    assert not set(mods) & ALLOWED


def test_top_level_package_re_exports_the_api():
    for name in api.__all__:
        assert getattr(dra_framework, name) is getattr(api, name), name


@pytest.mark.parametrize("name", api.__all__)
def test_every_public_name_is_documented(name):
    obj = getattr(api, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return  # type aliases and the hookimpl marker are described in the module docstring
    doc = inspect.getdoc(obj) or ""
    assert len(doc) > 30, f"dra_framework.api.{name} has no useful docstring"


def test_device_fields_after_name_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        api.Device("gpu-0", {"model": "x"})  # type: ignore[misc]
    d = api.Device("gpu-0", attributes={"model": "x"}, capacity={"memory": api.Capacity(1 << 30)})
    assert d.attributes["model"] == "x"


@pytest.mark.parametrize("kwargs, field", [
    ({"attributes": [("model", "x")]}, "attributes"),
    ({"capacity": ["memory"]}, "capacity"),
    ({"consumes_counters": {"set": {"c": 1}}}, "consumes_counters"),
    ({"taints": ["k=v"]}, "taints"),
])
def test_device_wrong_shape_names_device_and_field(kwargs, field):
    with pytest.raises(TypeError, match=f"Device 'gpu-0': {field}"):
        api.Device("gpu-0", **kwargs)


def test_status_types_are_keyword_only():
    st = api.DeviceStatus(data={"uuid": "u"}, network_data=api.NetworkData(interface_name="net1", ips=["10.0.0.2/24"]))
    assert st.network_data.ips == ["10.0.0.2/24"]
    with pytest.raises(TypeError):
        api.DeviceStatus({"uuid": "u"})  # type: ignore[misc]
    with pytest.raises(TypeError):
        api.PreparedDeviceEdits(api.ContainerEdits(), st)  # type: ignore[misc]


def test_device_node_from_a_real_character_device():
    node = api.device_node("/dev/null")
    assert (node.type, node.major, node.minor) == ("c", 1, 3)
    assert api.device_numbers("/dev/null") == ("c", 1, 3)


def test_device_node_in_a_fake_host_tree_needs_numbers(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/accel0").write_text("")  # a regular file, as in sample host trees
    with pytest.raises(ValueError, match="/dev/accel0"):
        api.device_node("/dev/accel0", tmp_path)
    node = api.device_node("/dev/accel0", tmp_path, major=240, minor=0, permissions="rw")
    assert node.to_cdi() == {"path": "/dev/accel0", "type": "c", "major": 240, "minor": 0, "permissions": "rw"}


def test_proc_device_majors(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/devices").write_text("Character devices:\n  1 mem\n195 nvidia\n\nBlock devices:\n  8 sd\n")
    assert api.proc_device_majors(tmp_path) == {"mem": 1, "nvidia": 195}
    assert api.proc_device_majors(tmp_path, "b") == {"sd": 8}
    assert api.proc_device_majors(tmp_path / "missing") == {}


def test_rediscovery_is_a_public_callback(tmp_path):
    calls = []
    ctx = api.BackendContext(driver_name="d.example.com", node_name="n", host_root=tmp_path, state_dir=tmp_path,
                             cdi_root=tmp_path, on_rediscovery=lambda: calls.append(1))
    ctx.request_rediscovery()
    assert calls == [1]
    api.BackendContext(driver_name="d", node_name="n", host_root=tmp_path, state_dir=tmp_path,
                       cdi_root=tmp_path).request_rediscovery()  # unattached: a no-op, not an error


async def test_prepare_context_for_unit_tests_needs_only_a_claim():
    ctx = api.PrepareContext(api.ClaimInfo("uid-1", "default", "c"))
    await ctx.record("lease/dev-0", "uid-1")
    async with ctx.lock("card-0"):
        assert ctx.journal == {"lease/dev-0": "uid-1"}
    seen = []

    async def persist(key, value):
        seen.append((key, value))
    ctx = api.PrepareContext(api.ClaimInfo("uid-2", "default", "c"), "acme", on_record=persist)
    await ctx.record("k", 1)
    assert seen == [("k", 1)]
