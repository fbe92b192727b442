"""Package re-exports resolve on first use (docs/operations.md#start-up): the public names stay
the same, and `dra-framework run` reaches its kubelet sockets without the heavy imports."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest



def test_top_level_package_offers_the_public_api():
    import dra_framework
    from dra_framework import api

    assert set(dra_framework.__all__) == {*api.__all__, "__version__"}
    for name in api.__all__:
        assert getattr(dra_framework, name) is getattr(api, name), name
    assert set(api.__all__) <= set(dir(dra_framework))
    namespace: dict = {}
    exec("from dra_framework import *", namespace)
    assert {*api.__all__, "__version__"} <= set(namespace)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        dra_framework.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", ["dra_framework.cdi", "dra_framework.kubelet"])
def test_package_names_resolve(package: str):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    namespace: dict = {}
    exec(f"from {package} import *", namespace)
    assert set(mod.__all__) <= set(namespace)
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


#: What `dra-framework run` must not import before its sockets are served.
HEAVY = ("lightkube", "dra_framework.api", "dra_framework.model", "dra_framework.cdi.edits",
         "dra_framework.plugins", "dra_framework.runtime", "dra_framework.engine", "prometheus_client", "pluggy",
         "dra_framework.kubelet.client", "pydantic", "dra_framework.config")


def test_run_serves_its_sockets_before_the_heavy_imports(tmp_path):
    """The modules loaded once the `run` flags are parsed, the config read (not yet validated:
    no pydantic) and the sockets bound (what dra_framework.daemon.run_daemon does first)."""
    (tmp_path / "kubelet" / "plugins_registry").mkdir(parents=True)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"nodeName: n1\nkubeletRootDir: {tmp_path / 'kubelet'}\n"
                   "drivers: [{name: gpu.example.com, backends: [{name: example}]}]\n")
    code = f"""
import asyncio, sys
from dra_framework import cli, daemon, startup
args = cli.build_parser().parse_args(["run", "--config", {str(cfg)!r}])
sockets = startup.SocketSettings.read(cli._sources(args))
async def main():
    early = await startup.serve_early(sockets)
    assert list(early) == ["gpu.example.com"], early
    await startup.stop_early(early, "test")
asyncio.run(main())
print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"imported before the sockets were served: {r.stdout}"


def test_kubelet_cli_timeout_default_is_the_clients():
    from dra_framework.kubelet import cli, client

    assert cli.CALL_TIMEOUT == client.CALL_TIMEOUT


def test_the_cli_collects_no_garbage_during_start_up_and_turns_the_collector_back_on(capsys):
    """`dra-framework` runs its start-up with the cyclic collector off (it only costs time there);
    a command that returns, and the daemon once its drivers have started, turn it back on."""
    import gc

    from dra_framework import cli, daemon

    seen = {}
    real = cli.build_parser

    def spy():
        seen["during"] = gc.isenabled()
        return real()

    assert gc.isenabled()
    try:
        cli.build_parser = spy
        assert cli.main(["plugins", "-o", "json"]) == 0
    finally:
        cli.build_parser = real
    assert seen == {"during": False} and gc.isenabled()
    gc.disable()
    try:
        daemon._collect_after_start_up()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
