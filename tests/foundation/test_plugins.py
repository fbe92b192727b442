"""Plugin discovery through real entry points, allow/block lists and hook validation."""
from __future__ import annotations

import types

import pytest

from dra_framework import hookimpl, hookspecs
from dra_framework.errors import PluginError
from dra_framework.plugins import BackendHooks, Registry

from plugin_dist import install_plugin


def test_example_backend_found_through_installed_entry_point():
    reg = Registry()
    t = reg.get("example")
    assert t.distribution == "dra-example-backend"
    assert t.version == "0.3.0"
    assert t.plugin == "example"


def test_builtin_nvidia_backend_uses_the_same_entry_point_group():
    import importlib.metadata

    names = {ep.name: ep.dist.metadata["Name"] for ep in importlib.metadata.entry_points(group="dra_framework.backends")}
    assert names.get("nvidia") == "dra-framework"
    assert names.get("example") == "dra-example-backend"


def test_allowlist_loads_only_listed(monkeypatch):
    monkeypatch.setenv("DRA_FRAMEWORK_LOAD_PLUGINS", "example")
    reg = Registry()
    assert set(reg.types) == {"example"}


def test_blocklist_hides_plugin(monkeypatch):
    monkeypatch.setenv("DRA_FRAMEWORK_DISABLE_PLUGINS", "example")
    reg = Registry()
    assert "example" not in reg.types
    with pytest.raises(PluginError, match="unknown backend 'example'"):
        reg.get("example")


def test_misspelled_registry_hook_is_one_line_error_naming_it():
    mod = types.SimpleNamespace()

    @hookimpl
    def dra_register_backend(register):  # missing "s"
        pass

    mod.dra_register_backend = dra_register_backend
    reg = Registry(extra_plugins={"typo": mod})
    msg = reg.broken["typo"]
    assert "dra_register_backend is not a dra_framework hook; did you mean dra_register_backends?" in msg
    assert "typo" in msg and "\n" not in msg
    assert reg.get("example").plugin == "example"  # only the plugin at fault is disabled


def test_misspelled_backend_hook_is_one_line_error_naming_it():
    class Backend:
        @hookimpl
        def dra_discovr(self, inventory):
            pass

    with pytest.raises(PluginError) as exc:
        BackendHooks("drv/typo", Backend())
    assert "dra_discovr" in str(exc.value) and "\n" not in str(exc.value)


def test_hook_argument_not_in_spec_is_refused():
    class Backend:
        @hookimpl
        def dra_discover(self, inventory, pools):
            pass

    with pytest.raises(PluginError, match="pools"):
        BackendHooks("drv/bad", Backend())


async def test_async_hooks_are_awaited():
    class Backend:
        @hookimpl
        async def dra_config_types(self):
            return ["x"]

        @hookimpl
        async def dra_prepare(self, ctx, devices):
            return "prepared"

    h = BackendHooks("drv/async", Backend())
    assert await h.call("dra_config_types") == [["x"]]
    assert await h.call("dra_prepare", ctx=None, devices=[]) == "prepared"
    assert h.implements("dra_prepare") and not h.implements("dra_watch_health")


def test_duplicate_backend_name_is_refused():
    def make(name):
        mod = types.SimpleNamespace()

        @hookimpl
        def dra_register_backends(register):
            register("example", object)

        mod.dra_register_backends = dra_register_backends
        return mod

    reg = Registry(extra_plugins={"dup": make("dup")})
    assert "backend 'example' is registered by both plugin 'example' and plugin 'dup'" in reg.broken["dup"]
    with pytest.raises(PluginError, match="neither is used"):
        reg.get("example")
    assert reg.get("nvidia").plugin == "nvidia"


def test_every_hook_is_documented():
    """Each hook has a docstring that names its arguments (like datasette's docs test)."""
    import inspect

    for spec in (hookspecs.RegistrySpec, hookspecs.BackendSpec):
        for name, fn in vars(spec).items():
            if not name.startswith("dra_"):
                continue
            doc = inspect.getdoc(fn) or ""
            assert len(doc) > 60, f"{name} lacks a docstring"
            for arg in list(inspect.signature(fn).parameters)[1:]:
                assert arg in doc or arg in ("ctx", "devices"), f"{name}: argument {arg} not documented"


def test_example_backend_stays_small():
    """The README promises a whole third-party backend, with partitions, under 80 lines."""
    import dra_example_backend

    with open(dra_example_backend.__file__) as f:
        assert len(f.readlines()) < 80


def _registry_in_subprocess(tmp_path, backends: str, extra_path: str = "") -> dict:
    """Registry(backends=...) in a fresh interpreter: which modules it imported, and get()'s
    result per name (the backend's plugin, or the error)."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from dra_framework.plugins import Registry\n"
        f"names = {backends!r}.split(',')\n"
        "reg = Registry(backends=names)\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = reg.get(n).plugin\n"
        "    except Exception as exc:\n"
        "        out[n] = 'error: ' + str(exc)\n"
        "mods = sorted(m for m in sys.modules if m.startswith(('dra_backends', 'dra_example', 'acme')))\n"
        "print(json.dumps({'get': out, 'modules': mods}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (extra_path, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_registry_for_a_config_imports_only_the_plugins_it_names(tmp_path):
    # dra-framework run keeps only the backends its config uses in memory (docs/backends.md)
    out = _registry_in_subprocess(tmp_path, "example")
    assert out["get"] == {"example": "example"}
    assert not [m for m in out["modules"] if m.startswith("dra_backends")], out["modules"]
    out = _registry_in_subprocess(tmp_path, "sriov-nic")  # entry point sriov_nic: '-' read as '_'
    assert out["get"] == {"sriov-nic": "sriov_nic"}
    assert "dra_backends.sriov_nic.plugin" in out["modules"]
    assert not [m for m in out["modules"] if m.startswith(("dra_backends.nvidia", "dra_example"))]


def _acme_distribution(root) -> str:
    """An installed third-party plugin (dist-info on sys.path) whose entry point ``acme``
    registers a backend of another name, ``acme-gpu``."""
    return install_plugin(root, "acme_plugin", (
        "from dra_framework.api import hookimpl\n"
        "class Acme:\n"
        "    def __init__(self, options, context): pass\n"
        "    @hookimpl\n"
        "    def dra_discover(self, inventory): pass\n"
        "    @hookimpl\n"
        "    def dra_prepare(self, ctx, devices): return None\n"
        "    @hookimpl\n"
        "    def dra_unprepare(self, stored): pass\n"
        "@hookimpl\n"
        "def dra_register_backends(register):\n"
        "    register('acme-gpu', Acme)\n"), "acme", "0.1", "acme")


def test_backend_of_a_plugin_with_another_name_still_loads(tmp_path):
    site = _acme_distribution(tmp_path)
    out = _registry_in_subprocess(tmp_path, "acme-gpu", site)
    assert out["get"] == {"acme-gpu": "acme"}
    out = _registry_in_subprocess(tmp_path, "example", site)
    assert "acme_plugin" not in out["modules"]


def test_unknown_backend_for_a_config_lists_every_installed_backend(tmp_path):
    out = _registry_in_subprocess(tmp_path, "nvidai")
    msg = out["get"]["nvidai"]
    assert msg.startswith("error: unknown backend 'nvidai' (loaded: ")
    for name in ("example", "fpga", "nvidia", "sriov-nic", "tpu"):
        assert f"{name}," in msg or f"{name})" in msg or f"{name};" in msg, msg
