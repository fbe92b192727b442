"""``dra-framework validate`` checks that span several fields: socket paths, CDI spec files,
static host paths. Run as the installed executable."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

EXE = Path(sys.executable).parent / "dra-framework"
UID = "11111111-2222-3333-4444-555555555555"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=120)


def write(tmp_path: Path, config: dict, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(config))
    return str(p)


def example_driver(name: str, **extra) -> dict:
    return {"name": name, "backends": [{"name": "example", "options": {"count": 1}}], **extra}


def test_validate_prints_socket_paths_that_fit(tmp_path):
    # A 37-byte driver name with a pod UID: dra-<podUID>.sock would be 108 bytes.
    cfg = write(tmp_path, {"nodeName": "node-1", "kubeletRootDir": "/var/lib/kubelet", "podUID": UID,
                           "stateDir": str(tmp_path), "drivers": [example_driver("abcdef.dra-example-driver.sigs.k8s.io")]})
    r = run("validate", "-c", cfg)
    assert r.returncode == 0, r.stderr
    sockets = re.findall(r"(registration|dra) socket (\S+) \((\d+) bytes", r.stdout)
    assert [s[0] for s in sockets] == ["registration", "dra"], r.stdout
    for _what, path, n in sockets:
        assert len(path.encode()) == int(n) <= 107
    assert "config valid" in r.stdout


def test_validate_refuses_a_kubelet_root_no_socket_fits(tmp_path):
    cfg = write(tmp_path, {"nodeName": "node-1", "stateDir": str(tmp_path),
                           "drivers": [example_driver("gpu.example.com")]})
    r = run("validate", "-c", cfg, "--kubelet-root-dir", "/" + "r" * 100)
    assert r.returncode == 1
    assert "flag --kubelet-root-dir: kubeletRootDir: driver gpu.example.com (drivers[0])" in r.stderr
    assert "at most 80 bytes" in r.stderr and "Traceback" not in r.stderr


def test_validate_refuses_two_drivers_with_one_cdi_kind(tmp_path):
    cfg = write(tmp_path, {"nodeName": "n", "stateDir": str(tmp_path), "drivers": [
        example_driver("one.dra.dev", cdiVendor="k8s.shared.dev"),
        example_driver("two.dra.dev", cdiVendor="k8s.shared.dev")]})
    r = run("validate", "-c", cfg)
    assert r.returncode == 1
    assert (f"{cfg}: drivers[1].cdiVendor: CDI kind k8s.shared.dev/claim of driver two.dra.dev is already "
            "used by driver one.dra.dev") in r.stderr


def test_validate_refuses_cdi_spec_file_names_that_collide(tmp_path):
    # Different kinds (k8s.a/b-cd, k8s.a-b/cd), same file names k8s.a-b-cd_<uid>.json.
    cfg = write(tmp_path, {"nodeName": "n", "stateDir": str(tmp_path), "drivers": [
        example_driver("a", cdiClass="b-cd"), example_driver("a-b", cdiClass="cd")]})
    r = run("validate", "-c", cfg)
    assert r.returncode == 1
    assert "drivers[1].cdiClass: CDI spec files of driver a-b (k8s.a-b-cd_*.json, kind k8s.a-b/cd)" in r.stderr
    assert "would have the same names as those of driver a;" in r.stderr
    # Default vendors of distinct drivers never collide.
    ok = write(tmp_path, {"nodeName": "n", "stateDir": str(tmp_path), "drivers": [
        example_driver("one.dra.dev"), example_driver("two.dra.dev")]}, "ok.yaml")
    assert run("validate", "-c", ok).returncode == 0


ROOT = Path(__file__).resolve().parents[2]
DGX = ROOT / "examples" / "hosts" / "dgx-h100"


def nvidia_driver(host: Path, **options) -> dict:
    return {"name": "gpu.nvidia.com", "backends": [{"name": "nvidia", "options": {
        "nvml": "fake", "hostRoot": str(host), "driverRoot": str(host), "hostDriverRoot": "/",
        "executor": "record", **options}}]}


def test_validate_checks_static_host_paths(tmp_path):
    import shutil

    hook = "/usr/local/bin/nvidia-cdi-hook"
    cfg = write(tmp_path, {"nodeName": "n", "stateDir": str(tmp_path / "state"),
                           "drivers": [nvidia_driver(DGX, nvidiaCdiHookPath=hook)]})
    r = run("validate", "-c", cfg)
    assert r.returncode == 1
    assert (f"drivers[0].backends[0].options.nvidiaCdiHookPath: {hook} does not exist under hostRoot {DGX}"
            in r.stderr) and "Traceback" not in r.stderr
    host = tmp_path / "host"
    shutil.copytree(DGX, host, symlinks=True)
    (host / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (host / "usr/local/bin/nvidia-cdi-hook").touch(mode=0o755)
    cfg = write(tmp_path, {"nodeName": "n", "stateDir": str(tmp_path / "state"),
                           "drivers": [nvidia_driver(host, nvidiaCdiHookPath=hook)]}, "ok.yaml")
    r = run("validate", "-c", cfg)
    assert r.returncode == 0, r.stderr
    assert f"backend nvidia: options.nvidiaCdiHookPath {hook} exists under hostRoot {host}" in r.stdout
    assert "backend nvidia: CDI policy deviceNodes=['/dev/nvidia*', '/dev/vfio/*'] " in r.stdout
    assert f"hooks=['{hook}'] env=['NVIDIA_*', 'CUDA_MPS_*']" in r.stdout


def test_cdi_policy_errors_name_the_field(tmp_path):
    d = example_driver("one.dra.dev")
    d["backends"][0]["cdiPolicy"] = {"mounts": ["usr/lib"], "hooksAllowed": True}
    r = run("validate", "-c", write(tmp_path, {"nodeName": "n", "drivers": [d]}))
    assert r.returncode == 1
    assert "drivers[0].backends[0].cdiPolicy.mounts: Value error, 'usr/lib': path patterns must be absolute" in r.stderr
    assert "drivers[0].backends[0].cdiPolicy.hooksAllowed: unknown field" in r.stderr
