"""Generated descriptors match the kubelet's DRA gRPC API (docs/protocol.md), and are current."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor as F

from dra_framework.kubelet._proto import (
    dra_health_v1_pb2,
    dra_health_v1alpha1_pb2,
    dra_v1_pb2,
    dra_v1beta1_pb2,
    pluginregistration_v1_pb2,
)

PROTOS = Path(__file__).resolve().parents[2] / "dra_framework" / "kubelet" / "protos"


def methods(mod, service):
    svc = mod.DESCRIPTOR.services_by_name[service]
    return {f"/{svc.full_name}/{m.name}": (m.input_type.name, m.output_type.name, m.server_streaming)
            for m in svc.methods}


def fields(msg):
    return {f.name: (f.number, f.type, f.is_repeated) for f in msg.DESCRIPTOR.fields}


def test_registration():
    assert pluginregistration_v1_pb2.DESCRIPTOR.package == "pluginregistration"
    assert methods(pluginregistration_v1_pb2, "Registration") == {
        "/pluginregistration.Registration/GetInfo": ("InfoRequest", "PluginInfo", False),
        "/pluginregistration.Registration/NotifyRegistrationStatus":
            ("RegistrationStatus", "RegistrationStatusResponse", False),
    }
    m = pluginregistration_v1_pb2
    assert fields(m.PluginInfo) == {"type": (1, F.TYPE_STRING, False), "name": (2, F.TYPE_STRING, False),
                                    "endpoint": (3, F.TYPE_STRING, False),
                                    "supported_versions": (4, F.TYPE_STRING, True)}
    assert fields(m.RegistrationStatus) == {"plugin_registered": (1, F.TYPE_BOOL, False),
                                            "error": (2, F.TYPE_STRING, False)}
    assert fields(m.InfoRequest) == {} and fields(m.RegistrationStatusResponse) == {}


@pytest.mark.parametrize("mod,version", [(dra_v1_pb2, "v1"), (dra_v1beta1_pb2, "v1beta1")])
def test_dra_node_service(mod, version):
    pkg = f"k8s.io.kubelet.pkg.apis.dra.{version}"
    assert mod.DESCRIPTOR.package == pkg
    assert methods(mod, "DRAPlugin") == {
        f"/{pkg}.DRAPlugin/NodePrepareResources":
            ("NodePrepareResourcesRequest", "NodePrepareResourcesResponse", False),
        f"/{pkg}.DRAPlugin/NodeUnprepareResources":
            ("NodeUnprepareResourcesRequest", "NodeUnprepareResourcesResponse", False),
    }
    assert fields(mod.Claim) == {"namespace": (1, F.TYPE_STRING, False), "uid": (2, F.TYPE_STRING, False),
                                 "name": (3, F.TYPE_STRING, False)}
    assert fields(mod.NodePrepareResourcesRequest) == {"claims": (1, F.TYPE_MESSAGE, True)}
    assert fields(mod.NodeUnprepareResourcesRequest) == {"claims": (1, F.TYPE_MESSAGE, True)}
    for resp, value in ((mod.NodePrepareResourcesResponse, "NodePrepareResourceResponse"),
                        (mod.NodeUnprepareResourcesResponse, "NodeUnprepareResourceResponse")):
        f = resp.DESCRIPTOR.fields_by_name["claims"]
        assert f.number == 1 and f.message_type.GetOptions().map_entry
        assert f.message_type.fields_by_name["key"].type == F.TYPE_STRING
        assert f.message_type.fields_by_name["value"].message_type.name == value
    assert fields(mod.NodePrepareResourceResponse) == {"devices": (1, F.TYPE_MESSAGE, True),
                                                       "error": (2, F.TYPE_STRING, False)}
    assert fields(mod.NodeUnprepareResourceResponse) == {"error": (1, F.TYPE_STRING, False)}
    expected = {"request_names": (1, F.TYPE_STRING, True), "pool_name": (2, F.TYPE_STRING, False),
                "device_name": (3, F.TYPE_STRING, False), "cdi_device_ids": (4, F.TYPE_STRING, True)}
    if version == "v1":
        expected["share_id"] = (5, F.TYPE_STRING, False)
        assert mod.Device.DESCRIPTOR.fields_by_name["share_id"].has_presence  # proto3 optional
    assert fields(mod.Device) == expected


@pytest.mark.parametrize("mod,pkg", [(dra_health_v1alpha1_pb2, "v1alpha1"), (dra_health_v1_pb2, "v1")])
def test_health(mod, pkg):
    assert mod.DESCRIPTOR.package == pkg
    assert methods(mod, "DRAResourceHealth") == {
        f"/{pkg}.DRAResourceHealth/NodeWatchResources":
            ("NodeWatchResourcesRequest", "NodeWatchResourcesResponse", True),
    }
    assert fields(mod.NodeWatchResourcesRequest) == {}
    assert fields(mod.NodeWatchResourcesResponse) == {"devices": (1, F.TYPE_MESSAGE, True)}
    assert fields(mod.DeviceIdentifier) == {"pool_name": (1, F.TYPE_STRING, False),
                                            "device_name": (2, F.TYPE_STRING, False)}
    assert fields(mod.DeviceHealth) == {
        "device": (1, F.TYPE_MESSAGE, False), "health": (2, F.TYPE_ENUM, False),
        "last_updated_time": (3, F.TYPE_INT64, False), "health_check_timeout_seconds": (4, F.TYPE_INT64, False),
        "message": (5, F.TYPE_STRING, False)}
    enum = mod.DESCRIPTOR.enum_types_by_name["HealthStatus"]
    assert {v.name: v.number for v in enum.values} == {"UNKNOWN": 0, "HEALTHY": 1, "UNHEALTHY": 2}


def test_generated_code_is_current(tmp_path):
    """The committed _pb2 modules were generated from the current .proto files."""
    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}",
                    *sorted(p.name for p in PROTOS.glob("*.proto"))], check=True)
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    mods = {m.DESCRIPTOR.name: m for m in (dra_health_v1_pb2, dra_health_v1alpha1_pb2, dra_v1_pb2,
                                           dra_v1beta1_pb2, pluginregistration_v1_pb2)}
    assert sorted(f.name for f in fresh.file) == sorted(mods)
    for f in fresh.file:
        for msg in f.message_type:  # protoc adds json_name only to descriptor sets
            for fld in msg.field:
                fld.ClearField("json_name")
            for nested in msg.nested_type:
                for fld in nested.field:
                    fld.ClearField("json_name")
        committed = descriptor_pb2.FileDescriptorProto.FromString(mods[f.name].DESCRIPTOR.serialized_pb)
        assert committed == f, f"{f.name} is stale: run `make protos`"
