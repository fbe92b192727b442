"""Discovery of the tpu backend on the sample hosts: chips, shapes, counters, topology sources
and their cross-check with the hardware (docs/tpu.md)."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from tpu_helpers import REPO, backend, build_host, counter_sets, discover

from dra_framework.testing.hosttree import HostTree

GIB = 1 << 30


def test_v5e_8_chips_shapes_and_counters(tmp_path):
    devs = discover(backend(build_host("tpu-v5e-8", tmp_path / "h"), tmp_path / "s"))
    chips = [f"tpu-0000-00-{s:02x}-0" for s in range(4, 12)]
    assert sorted(devs) == sorted(chips + [f"tpu-1x2-{i}" for i in range(4)] + ["tpu-2x2-0", "tpu-2x2-1", "tpu-host"])
    assert counter_sets(backend(tmp_path / "h", tmp_path / "s")) == {"tpu-chips": {f"chip-{i}": 1 for i in range(8)}}
    c5 = devs["tpu-0000-00-09-0"]
    assert c5.attributes["index"] == 5 and c5.attributes["numaNode"] == 1 and c5.attributes["tpuGen"] == "v5e"
    assert c5.attributes["resource.kubernetes.io/pciBusID"] == "0000:00:09.0"
    assert c5.attributes["resource.kubernetes.io/pcieRoot"] == "pci0000:00"
    assert c5.attributes["hostTopology"] == "2x4" and c5.attributes["hostAcceleratorType"] == "v5litepod-8"
    assert c5.capacity["hbm"].value == 16 * GIB
    two = devs["tpu-2x2-1"]
    assert two.attributes["topology"] == "2x2" and two.attributes["chips"] == "4,5,6,7"
    assert two.attributes["acceleratorType"] == "v5litepod-4" and two.attributes["numaNode"] == 1
    assert two.capacity["hbm"].value == 64 * GIB
    assert [dict(c.counters) for c in two.consumes_counters] == [{f"chip-{i}": 1 for i in range(4, 8)}]
    host = devs["tpu-host"]
    assert host.attributes["chipCount"] == 8 and "numaNode" not in host.attributes  # spans both nodes
    assert [dict(c.counters) for c in devs["tpu-1x2-3"].consumes_counters] == [{"chip-6": 1, "chip-7": 1}]


def test_v4_accel_nodes_and_node_labels(tmp_path):
    labels = {"cloud.google.com/gke-tpu-accelerator": "tpu-v4-podslice", "cloud.google.com/gke-tpu-topology": "2x2x1",
              "cloud.google.com/gke-accelerator-count": "4"}
    devs = discover(backend(build_host("tpu-v4-4", tmp_path / "h"), tmp_path / "s", nodeLabels=labels))
    assert sorted(devs) == sorted([f"tpu-0000-00-0{s}-0" for s in range(4, 8)] + ["tpu-1x2x1-0", "tpu-1x2x1-1", "tpu-host"])
    assert devs["tpu-0000-00-06-0"].data["paths"] == ["/dev/accel2"]
    assert devs["tpu-host"].attributes["acceleratorType"] == "v4-8"  # 2 TensorCores per v4 chip
    assert devs["tpu-0000-00-04-0"].capacity["hbm"].value == 32 * GIB


def test_canonical_label_names_win_over_gke(tmp_path):
    from dra_backends.tpu.topology import from_labels

    info = from_labels({"tpu.google.com/topology": "2x2x1", "cloud.google.com/gke-tpu-topology": "2x2x2",
                        "cloud.google.com/gke-tpu-accelerator": "tpu-v4-podslice"})
    assert (info.topology, info.accelerator) == ("2x2x1", "tpu-v4-podslice")


def test_v6e_4_from_tpu_env(tmp_path):
    devs = discover(backend(build_host("tpu-v6e-4", tmp_path / "h"), tmp_path / "s"))
    assert sorted(devs) == sorted([f"tpu-0000-00-0{s}-0" for s in range(4, 8)] + ["tpu-1x2-0", "tpu-1x2-1", "tpu-host"])
    assert devs["tpu-host"].attributes["topology"] == "2x2"
    assert devs["tpu-host"].data["paths"] == [f"/dev/vfio/{i}" for i in range(4)]
    assert devs["tpu-0000-00-04-0"].capacity["hbm"].value == 32 * GIB


def test_gvnic_and_nvme_are_not_chips_unsupported_generations_are_reported(tmp_path, caplog):
    host = build_host("tpu-v6e-4", tmp_path / "h")
    t = HostTree(host)
    t.pci_function("0000:00:02.0", parent="pci0000:00", vendor="1ae0", device="001f", class_code="010802")
    t.pci_function("0000:00:0c.0", parent="pci0000:00", vendor="1ae0", device="0076", class_code="ff0000")
    with caplog.at_level(logging.WARNING):
        devs = discover(backend(host, tmp_path / "s"))
    assert not any("00-03-0" in n or "00-02-0" in n or "00-0c-0" in n for n in devs)
    assert "0000:00:0c.0: Google TPU of TPU7x (Ironwood) is not supported" in caplog.text
    assert "0000:00:03.0" not in caplog.text  # the gVNIC is not even mentioned


def test_chip_count_mismatch_publishes_single_chips_only(tmp_path, caplog):
    host = build_host("tpu-v5e-8", tmp_path / "h")
    (host / "sys/bus/pci/devices/0000:00:0b.0").unlink()  # one chip gone from the bus before start-up
    with caplog.at_level(logging.WARNING):
        devs = discover(backend(host, tmp_path / "s"))
    assert len(devs) == 7 and all(d.attributes["kind"] == "chip" for d in devs.values())
    assert "tpu-env file /etc/tpu/tpu-env says 8 chips per host, 7 found" in caplog.text


def test_generation_mismatch_is_reported_and_pci_id_wins(tmp_path, caplog):
    host = build_host("tpu-v6e-4", tmp_path / "h", tpu_env={"ACCELERATOR_TYPE": "v5litepod-4", "TOPOLOGY": "2x2"})
    with caplog.at_level(logging.WARNING):
        devs = discover(backend(host, tmp_path / "s"))
    assert devs["tpu-host"].attributes["tpuGen"] == "v6e"
    assert "says TPU generation v5e (v5litepod-4), the chips' PCI id says v6e" in caplog.text


def test_multi_host_slice_publishes_the_host_only(tmp_path):
    env = {"ACCELERATOR_TYPE": "v6e-16", "TOPOLOGY": "4x4", "CHIPS_PER_HOST_BOUNDS": "2,2,1", "WORKER_ID": "1"}
    devs = discover(backend(build_host("tpu-v6e-4", tmp_path / "h", tpu_env=env), tmp_path / "s"))
    assert list(devs) == ["tpu-host"]
    d = devs["tpu-host"]
    assert d.attributes["multiHost"] is True and d.attributes["hostTopology"] == "4x4"
    assert d.data["hosts"] == 4 and d.data["processBounds"] == [2, 2, 1] and d.data["acceleratorType"] == "v6e-16"


def test_options_override_the_tpu_env_file(tmp_path):
    devs = discover(backend(build_host("tpu-v6e-4", tmp_path / "h"), tmp_path / "s",
                            acceleratorType="tpu-v6e-slice", topology="2x4"))
    assert devs["tpu-host"].attributes["hostTopology"] == "2x4" and devs["tpu-host"].attributes["multiHost"] is True


def test_no_chips_publishes_nothing(tmp_path):
    HostTree(tmp_path / "h").dir("sys/bus/pci/devices")
    assert discover(backend(tmp_path / "h", tmp_path / "s")) == {}


@pytest.mark.parametrize("name", ["tpu-v5e-8", "tpu-v4-4", "tpu-v6e-4"])
def test_discover_cli_on_each_sample_host(name):
    """``dra-framework discover`` on each sample host config exits 0 and lists chips, shapes and
    the counter set."""
    out = subprocess.run([str(Path(sys.executable).parent / "dra-framework"), "discover", "-c",
                          str(REPO / f"examples/configs/{name}.yaml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[counters] tpu-chips" in out.stdout and "tpu-host" in out.stdout and "kind=slice" in out.stdout


@pytest.mark.parametrize("topology", ["ü", "2x", "0x4", "2x2x2x2"])
def test_malformed_topology_option_is_a_config_error_naming_it(tmp_path, topology):
    """It was a discovery warning attributed to the tpu-env file, and the option was ignored."""
    host = REPO / "examples" / "hosts" / "tpu-v5e-8"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drivers:\n- name: tpu.dra-framework.io\n  backends:\n  - name: tpu\n"
                   f"    options: {{hostRoot: '{host}', readNodeLabels: false, topology: '{topology}'}}\n",
                   encoding="utf-8")
    r = subprocess.run([str(Path(sys.executable).parent / "dra-framework"), "discover", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"options.topology: Value error, topology '{topology}' is not of the form AxB or AxBxC" in r.stderr
    assert "Traceback" not in r.stderr
