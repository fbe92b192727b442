"""The writer skips the JSON-schema step on its own documents (dra_framework/cdi/writer.py): that
is only sound if nothing the typed edit models accept can violate the schema. Checked here for
arbitrary model values, and the writer's output still passes the complete validation."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dra_framework.cdi import CdiWriter, ContainerEdits
from dra_framework.cdi.edits import HOOK_NAMES, DeviceNode, Hook, IntelRdt, Mount, NetDevice
from dra_framework.cdi.validate import SCHEMA, spec_issues, validate_spec
from dra_framework.cdi.version import minimum_version

UID = "0b5e9a2c-1d2e-4f00-8a9b-0123456789ab"
text = st.text(max_size=12)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)


def model(cls, **fields):
    """A strategy of ``cls`` instances from ``fields`` strategies; values the model refuses are
    rejected (only what a backend can actually construct counts)."""
    @st.composite
    def build(draw):
        kwargs = {k: draw(v) for k, v in fields.items()}
        try:
            return cls(**kwargs)
        except (ValidationError, ValueError):
            reject()
    return build()


opt = st.none
device_nodes = model(DeviceNode, path=text, host_path=opt() | text, type=opt() | st.sampled_from("bcup"),
                     major=opt() | i64, minor=opt() | i64, file_mode=opt() | u32,
                     permissions=opt() | st.text("rwm", max_size=3), uid=opt() | u32, gid=opt() | u32)
mounts = model(Mount, host_path=text, container_path=text, type=opt() | text, options=st.lists(text, max_size=3))
hooks = model(Hook, hook_name=st.sampled_from(HOOK_NAMES), path=text, args=st.lists(text, max_size=3),
              env=st.lists(st.builds(lambda a, b: f"{a}={b}", st.text(min_size=1, max_size=5), text), max_size=3),
              timeout=opt() | st.integers(1, 2**32 - 1))
net = model(NetDevice, host_interface_name=text, name=text)
rdt = model(IntelRdt, clos_id=opt() | text, l3_cache_schema=opt() | text, mem_bw_schema=opt() | text,
            schemata=opt() | st.lists(text, max_size=2), enable_monitoring=opt() | st.booleans())
edits = model(ContainerEdits, env=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: "=" not in s), text,
                                                  max_size=3),
              device_nodes=st.lists(device_nodes, max_size=2), mounts=st.lists(mounts, max_size=2),
              hooks=st.lists(hooks, max_size=2), additional_gids=st.lists(u32, max_size=3),
              net_devices=st.lists(net, max_size=2), intel_rdt=opt() | rdt)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(device=edits, claim=opt() | edits)
def test_documents_built_from_the_models_never_violate_the_schema(tmp_path_factory, device, claim):
    w = CdiWriter(str(tmp_path_factory.mktemp("cdi")), vendor="k8s.gpu.example.com", class_="gpu")
    # What the writer's build_claim_spec assembles, before its (schema-less) validation.
    doc = {"kind": w.kind, "devices": [w._device(f"{UID}-gpu0", device)]}
    if claim is not None and not claim.is_empty():
        doc["containerEdits"] = claim.to_cdi()
    doc = {"cdiVersion": minimum_version(doc), **doc}
    assert [i for i in spec_issues(doc, strict=True) if i.rule == SCHEMA] == []


@pytest.mark.parametrize("edits_", [
    ContainerEdits(env={"A": "1"}),
    ContainerEdits(device_nodes=[DeviceNode(path="/dev/x", type="c", major=1, minor=2, permissions="rw")],
                   mounts=[Mount(host_path="/h", container_path="/c", options=("ro", "bind"))],
                   hooks=[Hook(hook_name="createContainer", path="/bin/true", args=("true",), timeout=5)],
                   additional_gids=(5,), net_devices=[NetDevice(host_interface_name="eth1", name="net1")],
                   intel_rdt=IntelRdt(clos_id="c1", schemata=("L3:0=f",), enable_monitoring=True)),
])
def test_written_specs_pass_the_complete_validation(tmp_path, edits_):
    w = CdiWriter(str(tmp_path), vendor="k8s.gpu.example.com", class_="gpu")
    spec = w.build_claim_spec(UID, [("gpu0", None, edits_)], ContainerEdits(env={"CLAIM": "1"}))
    validate_spec(spec, strict=True)  # schema included
