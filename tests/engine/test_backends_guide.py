"""The worked example of docs/backends.md is a working package: its code blocks, installed with
the guide's pyproject entry point, are found by `dra-framework plugins`, discover devices with
`dra-framework discover`, pass the start-up hook checks, and prepare/unprepare a claim through the
real engine (checkpoint, CDI writer); the guide's unit test passes as written."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from engine_support import DRIVER, Env

from dra_framework.cdi.testing import assert_valid_cdi_dir

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "backends.md").read_text()
EXE = Path(sys.executable).parent / "dra-framework"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE, re.S)


def module_source() -> str:
    code = [b for b in blocks("python") if "def test_" not in b]
    assert code[0].startswith("# acme_dra/__init__.py")
    return "\n".join(code)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The guide's package installed the way pip does (module + dist-info with the entry point)."""
    site = tmp_path / "site"
    (site / "acme_dra").mkdir(parents=True)
    (site / "acme_dra" / "__init__.py").write_text(module_source())
    project = tomllib.loads(blocks("toml")[0])["project"]
    dist = site / f"acme_dra_backend-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["dra_framework.backends"]
    (dist / "entry_points.txt").write_text("[dra_framework.backends]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture
def host(tmp_path):
    """Two acme cards, /dev nodes as plain files (as in sample hosts) and /proc/devices."""
    host = tmp_path / "host"
    for i, serial in enumerate(("A1", "B2")):
        card = host / f"sys/class/acme/acme{i}"
        card.mkdir(parents=True)
        (card / "serial").write_text(serial + "\n")
        (card / "memory_bytes").write_text(str(8 << 30))
    (host / "dev").mkdir()
    for i in range(2):
        (host / f"dev/acme{i}").write_text("")
    (host / "proc").mkdir()
    (host / "proc/devices").write_text("Character devices:\n  1 mem\n240 acme\n")
    return host


def run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NODE_NAME", None)
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=120)


def test_guide_package_is_found_and_discovers(site, host, tmp_path):
    r = run(site, "plugins", "-o", "json")
    rows = json.loads(r.stdout)
    assert not [row for row in rows if "error" in row], rows
    acme = next(row for row in rows if row.get("backend") == "acme")
    assert acme["distribution"] == "acme-dra-backend"
    config = yaml.safe_load(blocks("yaml")[-1])
    config["drivers"][0]["backends"][0]["options"]["hostRoot"] = str(host)
    cfg = tmp_path / "acme.yaml"
    cfg.write_text(yaml.safe_dump(config))
    r = run(site, "discover", "--config", str(cfg), "--node-name", "n1")
    assert r.returncode == 0, r.stderr
    for name in ("acme-0", "acme-0-half-1", "acme-1-half-0", "[counters] acme-1-counters"):
        assert name in r.stdout
    r = run(site, "discover", "--config", str(cfg), "--node-name", "n1", "-o", "json")
    slices = json.loads(r.stdout)["items"]
    assert {d["name"] for s in slices for d in s["spec"].get("devices", [])} >= {"acme-0", "acme-1-half-1"}


async def test_guide_backend_prepares_through_the_engine(site, host, tmp_path):
    from acme_dra import AcmeBackend, Options

    env = Env(tmp_path / "env", [("acme", lambda ctx: AcmeBackend(Options(hostRoot=str(host)), ctx))])
    env.host_root = host  # the framework builds the context's host_root from the hostRoot option
    engine = await env.make_engine()
    ref = env.add_claim("c", [{"request": "acc", "device": "acme-1-half-0"}], configs=[{
        "source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": {
            "apiVersion": "acme.example.com/v1", "kind": "AcmeConfig", "clockMHz": 900}}}])
    out = await engine.prepare([ref])
    assert out[ref.uid].error == ""
    assert_valid_cdi_dir(env.cdi_root, allow_empty=False)
    spec = json.loads(next(env.cdi_root.glob("*.json")).read_text())
    edits = spec["devices"][0]["containerEdits"]
    assert "ACME_CLOCK_MHZ=900" in edits["env"]
    assert edits["deviceNodes"] == [{"path": "/dev/acme1", "type": "c", "major": 240, "minor": 1}]
    assert env.status_writes[-1][1][0]["data"] == {"serial": "B2"}
    state = env.state_root / "acme" / "leases.json"
    assert json.loads(state.read_text()) == {"acme-1-half-0": ref.uid}

    bad = env.add_claim("bad", [{"request": "acc", "device": "acme-0-half-0"}], configs=[{
        "source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": {
            "apiVersion": "acme.example.com/v1", "kind": "AcmeConfig", "clockMHz": 1800}}}])
    assert "clockMHz: halves run at most 1500" in (await engine.prepare([bad]))[bad.uid].error

    assert await engine.unprepare([ref]) == {ref.uid: ""}
    assert json.loads(state.read_text()) == {}
    assert env.cdi_files() == []


def test_guide_unit_test_passes_as_written(site, tmp_path):
    (test,) = [b for b in blocks("python") if "def test_" in b]
    namespace: dict = {}
    exec(compile(test, "docs/backends.md", "exec"), namespace)
    namespace["test_discovers_cards_and_halves"](tmp_path)


def test_guide_names_exist():
    """Dotted framework names and hook names the guide mentions exist (a renamed helper breaks this)."""
    import importlib

    from dra_framework import api
    from dra_framework.hookcheck import BACKEND_HOOKS, REGISTRY_HOOKS

    missing = []
    for dotted in set(re.findall(r"`(dra_framework(?:\.\w+)+)", GUIDE)):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ImportError:
                continue
        for p in parts[i:]:
            obj = getattr(obj, p, None)
        if obj is None:
            missing.append(dotted)
    not_hooks = {"dra_framework", "dra_driver", "dra_prepair"}  # the package, a fixture, a misspelling shown
    for hook in set(re.findall(r"`(dra_\w+)", GUIDE)) - not_hooks:
        if hook not in BACKEND_HOOKS and hook not in REGISTRY_HOOKS:
            missing.append(hook)
    for name in ("device_node", "device_numbers", "proc_device_majors", "write_json_atomic", "read_json_object",
                 "apply_host_root", "map_host_path", "merge_edits", "watch_hotplug", "bind_driver", "restore_journal",
                 "char_device_node", "walk_pci"):
        if name in GUIDE and not hasattr(api, name):
            missing.append(name)
    assert not missing, missing
