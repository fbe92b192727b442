"""Hook misuse is found at start-up, named in one line, and disables only the plugin at fault.

Each case is a small plugin package installed the way pip installs one (a module plus a
``*.dist-info`` with an entry point in ``dra_framework.backends``) and run through the
``dra-framework`` executable.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "dra-framework"
ROOT = Path(__file__).resolve().parents[2]

HEADER = "from dra_framework.api import PrepareResult, hookimpl\n"
GOOD_HOOKS = """
    @hookimpl
    def dra_discover(self, inventory):
        pass

    @hookimpl
    def dra_prepare(self, ctx, devices):
        return PrepareResult()

    @hookimpl
    def dra_unprepare(self, stored):
        pass
"""
REGISTER = """
@hookimpl
def dra_register_backends(register):
    register("{name}", Backend)
"""


def install(site: Path, name: str, body: str) -> None:
    """Write module ``<name>_backend`` and its dist-info (package ``<name>-backend`` 1.0)."""
    site.mkdir(exist_ok=True)
    (site / f"{name}_backend.py").write_text(body)
    dist = site / f"{name}_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[dra_framework.backends]\n{name} = {name}_backend\n")


def backend_module(name: str, methods: str, register: bool = True) -> str:
    body = HEADER + "\n\nclass Backend:\n    def __init__(self, options, context):\n        pass\n" + methods
    return body + (REGISTER.format(name=name) if register else "")


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NODE_NAME", None)
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=120)


def discover(site: Path, tmp_path: Path, backend: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / f"{backend}.yaml"
    cfg.write_text(f"drivers:\n- name: {backend}.example.com\n  backends: [{{name: {backend}}}]\n")
    return run(site, "discover", "--config", str(cfg))


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    return lines[0]


def broken(site: Path) -> dict[str, str]:
    r = run(site, "plugins", "-o", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    backends = {row["backend"] for row in rows if "backend" in row}
    assert {"example", "nvidia"} <= backends, "other plugins must keep working"
    return {row["plugin"]: row["error"] for row in rows if "error" in row}


PREPARE_UNMARKED = GOOD_HOOKS.replace("    @hookimpl\n    def dra_prepare", "    def dra_prepare")
CASES = {
    # name: (methods, words the one error line must contain)
    "unmarked": (PREPARE_UNMARKED, ["dra_prepare is not marked @hookimpl"]),
    "nodecorators": (GOOD_HOOKS.replace("    @hookimpl\n", ""),
                     ["dra_discover is not marked @hookimpl", "dra_prepare is not marked @hookimpl"]),
    "noprepare": ("""
    @hookimpl
    def dra_discover(self, inventory):
        pass
""", ["required hook dra_prepare is missing"]),
    "halfpair": (GOOD_HOOKS + """
    @hookimpl
    def dra_create_partition(self, ctx, device):
        return None
""", ["dra_create_partition is implemented but dra_destroy_partition is not"]),
    "nounprepare": (GOOD_HOOKS.replace("    @hookimpl\n    def dra_unprepare(self, stored):\n        pass\n", ""),
                    ["dra_prepare is implemented but dra_unprepare is not"]),
    "misspelled": (GOOD_HOOKS.replace("def dra_prepare(", "def dra_prepair("),
                   ["dra_prepair is not a dra_framework hook; did you mean dra_prepare?"]),
    "badargs": (GOOD_HOOKS.replace("def dra_discover(self, inventory)", "def dra_discover(self, inventory, pools)"),
                ["dra_discover takes pools, which the hook does not pass"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_backend_hook_misuse_disables_only_that_plugin(tmp_path, case):
    methods, words = CASES[case]
    site = tmp_path / "site"
    install(site, case, backend_module(case, methods))
    line = one_error_line(discover(site, tmp_path, case))
    assert f"package {case}-backend 1.0" in line and f"backend '{case}'" in line, line
    for w in words:
        assert w in line, line
    assert "discovered no devices" not in line
    errors = broken(site)
    assert set(errors) == {case} and all(w in errors[case] for w in words), errors


def test_well_formed_in_test_plugin_is_accepted(tmp_path):
    """The control for the cases above: the same package with every hook right works."""
    site = tmp_path / "site"
    install(site, "fine", backend_module("fine", GOOD_HOOKS))
    assert broken(site) == {}
    r = discover(site, tmp_path, "fine")
    assert r.returncode == 0, r.stderr
    assert "discovered no devices" in r.stderr  # it really has none: the warning still works


def test_misnamed_registry_hook_in_one_package_keeps_the_others_working(tmp_path):
    site = tmp_path / "site"
    body = backend_module("typo", GOOD_HOOKS, register=False) + textwrap.dedent("""
        @hookimpl
        def dra_register_backend(register):
            register("typo", Backend)
        """)
    install(site, "typo", body)
    errors = broken(site)
    assert list(errors) == ["typo"]
    assert "package typo-backend 1.0" in errors["typo"]
    assert "dra_register_backend is not a dra_framework hook; did you mean dra_register_backends?" in errors["typo"]
    r = run(site, "discover", "--config", str(ROOT / "examples/configs/example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "acc-0" in r.stdout
    line = one_error_line(discover(site, tmp_path, "typo"))
    assert "did you mean dra_register_backends?" in line


@pytest.mark.parametrize("body, words", [
    ("def dra_register_backends(register):\n    register('x', object)\n", "dra_register_backends is not marked @hookimpl"),
    ("@hookimpl\ndef dra_prepare(ctx, devices):\n    pass\n", "dra_prepare is a backend hook"),
    ("X = 1\n", "has no dra_register_backends hook"),
    ("@hookimpl\ndef dra_register_backends(register):\n    raise RuntimeError('no sysfs')\n",
     "dra_register_backends raised RuntimeError: no sysfs"),
    ("class B:\n    pass\n@hookimpl\ndef dra_register_backends(register):\n    register('../My Backend', B)\n",
     "backend name '../My Backend' must be a DNS-1123 label"),
])
def test_registry_level_misuse_is_one_line_per_plugin(tmp_path, body, words):
    site = tmp_path / "site"
    install(site, "reg", HEADER + body)
    errors = broken(site)
    assert list(errors) == ["reg"] and words in errors["reg"] and "\n" not in errors["reg"], errors


def test_two_packages_registering_one_backend_name_use_neither(tmp_path):
    """Which one would win depends on install order, so neither is used; other backends run."""
    site = tmp_path / "site"
    body = backend_module("dup", GOOD_HOOKS, register=False) + REGISTER.format(name="example")
    install(site, "dup", body)
    r = run(site, "plugins", "-o", "json")
    rows = json.loads(r.stdout)
    assert "example" not in {row.get("backend") for row in rows} and "nvidia" in {row.get("backend") for row in rows}
    line = one_error_line(run(site, "discover", "--config", str(ROOT / "examples/configs/example.yaml")))
    assert "backend 'example' is registered by both plugin" in line and "'dup'" in line, line


def test_factory_function_instance_is_checked_when_the_driver_starts(tmp_path):
    """A factory that is not a class is checked on the instance it returns."""
    site = tmp_path / "site"
    body = backend_module("fn", PREPARE_UNMARKED, register=False) + textwrap.dedent("""
        @hookimpl
        def dra_register_backends(register):
            register("fn", lambda options, context: Backend(options, context))
        """)
    install(site, "fn", body)
    assert broken(site) == {}
    line = one_error_line(discover(site, tmp_path, "fn"))
    assert "drivers[0].backends[0]" in line and "dra_prepare is not marked @hookimpl" in line, line


def test_discover_returning_devices_instead_of_adding_them(tmp_path):
    site = tmp_path / "site"
    methods = GOOD_HOOKS.replace("    def dra_discover(self, inventory):\n        pass",
                                 "    def dra_discover(self, inventory):\n        return ['dev-0']")
    install(site, "ret", backend_module("ret", methods))
    line = one_error_line(discover(site, tmp_path, "ret"))
    assert "backend ret.example.com/ret: dra_discover returned list" in line and "inventory.add_device" in line


def test_factory_that_cannot_take_options_and_context(tmp_path):
    site = tmp_path / "site"
    install(site, "init", backend_module("init", GOOD_HOOKS).replace("def __init__(self, options, context)",
                                                                     "def __init__(self, options)"))
    line = one_error_line(discover(site, tmp_path, "init"))
    assert "factory Backend(options) cannot be called as factory(options, context)" in line, line
    assert "package init-backend 1.0" in line


@pytest.mark.parametrize("init, words", [
    ("raise RuntimeError('no\\ncard')", "backend 'boom' cannot start: RuntimeError: no card"),
    ("raise OSError(2, 'no /sys/class/boom')", "backend 'boom' cannot start: [Errno 2] no /sys/class/boom"),
])
def test_factory_that_raises_is_named_in_one_line(tmp_path, init, words):
    """Any exception of the factory names the driver's backend entry (was a bare 'RuntimeError: ...')."""
    site = tmp_path / "site"
    install(site, "boom", backend_module("boom", GOOD_HOOKS).replace(
        "def __init__(self, options, context):\n        pass", f"def __init__(self, options, context):\n        {init}"))
    line = one_error_line(discover(site, tmp_path, "boom"))
    assert "drivers[0].backends[0]" in line and words in line, line


def test_discover_failure_with_a_multi_line_message_is_one_line(tmp_path):
    site = tmp_path / "site"
    methods = GOOD_HOOKS.replace("    def dra_discover(self, inventory):\n        pass",
                                 "    def dra_discover(self, inventory):\n        raise RuntimeError('sysfs\\nbroken')")
    install(site, "ml", backend_module("ml", methods))
    line = one_error_line(discover(site, tmp_path, "ml"))
    assert line.endswith("backend ml: dra_discover failed: RuntimeError: sysfs broken"), line


@pytest.mark.parametrize("body, words", [
    ("return dict", "dra_config_types returned type, expected a list of OpaqueConfig subclasses"),
    ("return [dict]", "dra_config_types returned <class 'dict'>, which is not an OpaqueConfig subclass"),
    ("raise RuntimeError('no\\nfirmware')", "backend ct: dra_config_types failed: RuntimeError: no firmware"),
])
def test_validate_runs_the_config_types_check_of_start_up(tmp_path, body, words):
    """validate said 'config valid' for a backend whose driver could never start."""
    site = tmp_path / "site"
    methods = GOOD_HOOKS + f"\n    @hookimpl\n    def dra_config_types(self):\n        {body}\n"
    install(site, "ct", backend_module("ct", methods))
    cfg = tmp_path / "ct.yaml"
    cfg.write_text("drivers:\n- name: ct.example.com\n  backends: [{name: ct}]\n")
    r = run(site, "validate", "--config", str(cfg))
    invalid = [line for line in r.stderr.splitlines() if line.startswith("invalid: ")]
    assert r.returncode == 1 and len(invalid) == 1 and words in invalid[0], r.stderr


def test_validate_lists_the_opaque_config_types(tmp_path):
    r = run(tmp_path, "validate", "--config", str(ROOT / "examples/configs/nvidia-dgx-h100.yaml"))
    assert r.returncode == 0, r.stderr
    assert "backend nvidia: opaque configs resource.nvidia.com/v1beta1/GpuConfig" in r.stdout


def test_sys_exit_in_a_hook_is_an_error_of_that_backend(tmp_path):
    """A backend calling sys.exit() must not decide the exit status (or end the daemon) silently."""
    site = tmp_path / "site"
    methods = GOOD_HOOKS.replace("    def dra_discover(self, inventory):\n        pass",
                                 "    def dra_discover(self, inventory):\n        import sys; sys.exit(3)")
    install(site, "ex", backend_module("ex", methods))
    r = discover(site, tmp_path, "ex")
    assert r.returncode == 1, (r.returncode, r.stderr)
    line = one_error_line(r)
    assert "backend ex.example.com/ex: dra_discover called sys.exit(3)" in line, line


@pytest.mark.parametrize("output", ["table", "yaml"])
def test_discover_exits_1_when_a_device_would_not_be_published(tmp_path, output):
    """The device is listed and the problem printed, but the status says it too (scripts and CI)."""
    site = tmp_path / "site"
    methods = GOOD_HOOKS.replace(
        "    def dra_discover(self, inventory):\n        pass",
        "    def dra_discover(self, inventory):\n        from dra_framework.api import Device\n"
        "        inventory.add_device(Device('good-0'))\n        inventory.add_device(Device('Bad_Device'))")
    install(site, "inv", backend_module("inv", methods))
    cfg = tmp_path / "inv.yaml"
    cfg.write_text("drivers:\n- name: inv.example.com\n  backends: [{name: inv}]\n")
    r = run(site, "discover", "--config", str(cfg), "-o", output)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "good-0" in r.stdout and "Bad_Device" in r.stderr, (r.stdout, r.stderr)
