"""The chart rendered by the real Helm CLI (no cluster): lint, the values schema, paths set
once, RBAC per server version, privilege only where a backend needs it, the rollout settings,
the DeviceClasses of the built-in backends and configs the daemon accepts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from builtin_cases import CASES
from chart import CHART, VALUES_DIR, by_kind, chart_rules, helm, one, render, write_values
from dra_framework.config import load_settings

VALUES = [None, VALUES_DIR / "multi-group.yaml", VALUES_DIR / "existing-namespace.yaml"]
IDS = ["default", "multi-group", "existing-namespace"]
VERSIONS = ["1.34.4", "1.37.2"]


def values_args(v: Path | None) -> list[Path]:
    return [v] if v else []


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_helm_lint_strict(helm_bin, values):
    args = ["lint", "--strict", str(CHART)] + [a for v in values_args(values) for a in ("-f", str(v))]
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out and "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("bad, field", [
    ({"paths": {"kubeletRootDir": "var/lib/kubelet", "cdiRoot": "/var/run/cdi", "stateDir": "/s", "hostRoot": "/"}},
     "/paths/kubeletRootDir"),
    ({"nodeGroups": [{"name": "g", "drivers": [{"name": "gpu.nvidia.com", "backends": [
        {"name": "nvidia", "options": {"hostRoot": "/x"}}]}]}]}, "/nodeGroups/0/drivers/0/backends/0/options/hostRoot"),
    ({"nodeGroups": [{"name": "Bad_Name", "drivers": [{"name": "d.example.com", "backends": [{"name": "b"}]}]}]},
     "/nodeGroups/0/name"),
    ({"nodeGroups": []}, "/nodeGroups"),
    ({"settings": {"kubeletRootDir": "/x"}}, "/settings/kubeletRootDir"),
    ({"nodeGroup": []}, "nodeGroup"),
    ({"hostNetwork": True}, "hostNetwork: true makes ports.metrics and ports.healthz host ports"),
    ({"nodeGroups": [{"name": "g", "drivers": [{"name": "gpu.nvidia.com", "backends": [{"name": "nvidia"}]}]},
                     {"name": "g", "drivers": [{"name": "tpu.dra-framework.io", "backends": [{"name": "tpu"}]}]}]},
     'nodeGroups[1].name: "g" is also the name of nodeGroups[0]'),
    ({"nodeGroups": [{"name": "g", "drivers": [{"name": "gpu.nvidia.com", "backends": [{"name": "nvidia"}]},
                                               {"name": "gpu.nvidia.com", "backends": [{"name": "nvidia"}]}]}]},
     'nodeGroups[0].drivers[1].name: driver "gpu.nvidia.com" is listed twice in node group "g"'),
])
def test_schema_rejects_bad_values_naming_the_field(helm_bin, tmp_path, bad, field):
    r = helm("template", "x", str(CHART), "--kube-version", "1.37.2", "-f", str(write_values(tmp_path / "v.yaml", bad)),
             check=False)
    assert r.returncode != 0 and field in r.stderr, r.stderr


@pytest.mark.parametrize("values", VALUES, ids=IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_daemonsets_use_each_path_once_and_roll_with_surge(helm_bin, values, version):
    objs = render(values=values_args(values), kube_version=version)
    v = yaml.safe_load((values or CHART / "values.yaml").read_text()) or {}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = {**defaults["paths"], **(v.get("paths") or {})}
    kubelet = paths["kubeletRootDir"]
    groups = (v.get("nodeGroups") or defaults["nodeGroups"])
    daemonsets = by_kind(objs, "DaemonSet")
    assert len(daemonsets) == len(groups)
    text = yaml.safe_dump_all(objs)
    if kubelet != "/var/lib/kubelet":
        assert "/var/lib/kubelet" not in text, "the default kubelet root leaked past paths.kubeletRootDir"
    configs = {c["metadata"]["name"]: yaml.safe_load(c["data"]["config.yaml"]) for c in by_kind(objs, "ConfigMap")
               if "config.yaml" in c["data"]}
    for ds, group in zip(daemonsets, groups, strict=True):
        spec = ds["spec"]["template"]["spec"]
        ctr = spec["containers"][0]
        host = {vol["name"]: vol["hostPath"]["path"] for vol in spec["volumes"] if "hostPath" in vol}
        mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
        # The kubelet dials the sockets by host path: host path == container path.
        for name, sub in (("plugins-registry", "plugins_registry"), ("plugins", "plugins")):
            assert host[name] == mounts[name] == f"{kubelet}/{sub}"
        assert host["cdi"] == mounts["cdi"] == paths["cdiRoot"]
        assert host["state"] == mounts["state"] == paths["stateDir"]
        assert host["host"] == paths["hostRoot"] and mounts["host"] == "/host"
        cfg = configs[spec["volumes"][0]["configMap"]["name"]]
        assert (cfg["kubeletRootDir"], cfg["cdiRoot"], cfg["stateDir"]) == (kubelet, paths["cdiRoot"], paths["stateDir"])
        for d in cfg["drivers"]:
            for b in d["backends"]:
                assert b["options"]["hostRoot"] == "/host"
                if b["name"] in paths.get("driverRoots", {}):
                    root = paths["driverRoots"][b["name"]]
                    assert b["options"]["hostDriverRoot"] == root
                    assert mounts[f"driver-root-{b['name']}"] == b["options"]["driverRoot"]
                    assert host[f"driver-root-{b['name']}"] == root
        # Rollout: surge with pod-UID sockets, probes, priority, placement per group.
        surge = {"maxSurge": 0, "maxUnavailable": 1} if v.get("hostNetwork") else {"maxSurge": 1, "maxUnavailable": 0}
        assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": surge}
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in ctr["env"]}
        assert env == {"NODE_NAME": "spec.nodeName", "DRA_FRAMEWORK_POD_UID": "metadata.uid"}
        assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["priorityClassName"] == v.get("priorityClassName", "system-node-critical")
        assert spec.get("nodeSelector") == group.get("nodeSelector")
        assert spec.get("tolerations") == group.get("tolerations")
        assert (spec.get("affinity") or {}) == (group.get("affinity") or {})
        assert ctr.get("resources") == group.get("resources")
        assert ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_rendered_configs_are_accepted_by_the_daemon(helm_bin, values, tmp_path):
    """Each node group's config.yaml loads with the daemon's own settings model, and every
    installed backend's options validate."""
    from dra_framework.plugins import Registry

    registry = Registry()
    for cm in by_kind(render(values=values_args(values)), "ConfigMap"):
        if "config.yaml" not in cm["data"]:
            continue
        f = tmp_path / f"{cm['metadata']['name']}.yaml"
        f.write_text(cm["data"]["config.yaml"])
        settings = load_settings(f, require_node_name=False)
        assert settings.drivers
        for d in settings.drivers:
            for b in d.backends:
                try:
                    plugin = registry.get(b.name)
                except Exception:  # noqa: BLE001 - a backend of another package (example)
                    continue
                plugin.options.model_validate(b.options)


@pytest.mark.parametrize("version, granular", [("1.34.4", False), ("1.35.3", False), ("1.36.0", True),
                                               ("1.37.2", True)])
def test_clusterrole_grants_the_driver_subresource_where_the_server_checks_it(helm_bin, version, granular):
    objs = render(kube_version=version, values=[VALUES_DIR / "multi-group.yaml"])
    rules = one(objs, "ClusterRole")["rules"]
    driver_rules = [r for r in rules if "resourceclaims/driver" in r["resources"]]
    if not granular:
        assert not driver_rules
        return
    assert driver_rules == [{"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims/driver"],
                             "resourceNames": ["example.dra.dev", "gpu.nvidia.com"],
                             "verbs": ["associated-node:patch"]}]


def test_rbac_is_exactly_the_calls_of_the_code(helm_bin):
    """Rules of the default chart: no wildcard, nothing beyond the calls of the code (which the
    e2e run's audit log confirms), Events only in "default" where the Node's Events go."""
    objs = render()
    sa = one(objs, "ServiceAccount")["metadata"]
    rules = chart_rules(objs, sa["name"], sa["namespace"])
    flat = sorted((ns, g, res, verb) for ns, r in rules for g in r["apiGroups"] for res in r["resources"]
                  for verb in r["verbs"])
    assert flat == sorted([
        ("", "resource.k8s.io", "resourceslices", v) for v in ("get", "list", "watch", "create", "update", "delete")
    ] + [("", "resource.k8s.io", "resourceclaims", "get"), ("", "resource.k8s.io", "resourceclaims/status", "patch"),
         ("", "resource.k8s.io", "resourceclaims/driver", "associated-node:patch"), ("", "", "nodes", "get"),
         ("default", "", "events", "create")])
    text = (CHART / "templates" / "rbac.yaml").read_text()
    # One comment per rule naming the code path.
    assert len(re.findall(r"#[^\n]*dra_framework/\S+\.py", text)) >= 5


def test_privileged_only_for_backends_that_need_it(helm_bin, tmp_path):
    example_only = write_values(tmp_path / "v.yaml", {"nodeGroups": [{"name": "acc", "drivers": [
        {"name": "example.dra.dev", "backends": [{"name": "example"}]}]}]})
    objs = render(values=[example_only])
    ctr = one(objs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert ctr["securityContext"]["privileged"] is False
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "pod-security.kubernetes.io/enforce" not in one(objs, "Namespace")["metadata"]["labels"]
    objs = render(values=[VALUES_DIR / "multi-group.yaml"])
    priv = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"]
            for d in by_kind(objs, "DaemonSet")}
    assert priv == {"dra-dra-framework-dgx": True, "dra-dra-framework-accel": False}
    assert one(objs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_a_deviceclass_per_builtin_device_kind_selecting_by_cel(helm_bin):
    classes = {c["metadata"]["name"]: c["spec"]["selectors"] for c in by_kind(render(), "DeviceClass")}
    for name in ("gpu.nvidia.com", "mig.nvidia.com", "tpu.dra-framework.io", "fpga.dra-framework.io",
                 "sriovnic.dra-framework.io"):
        assert name in classes
    for selectors in classes.values():
        assert len(selectors) == 1 and selectors[0]["cel"]["expression"].startswith("device.driver == '")
    for case in CASES:
        assert case.device_class in classes, f"case {case.id}: the chart has no DeviceClass {case.device_class}"


def test_verb_coverage_check_flags_what_the_rules_do_not_grant(helm_bin):
    """The comparison the e2e run applies to the audit log: a call outside the rendered rules
    (verb, resource, subresource, namespace of a Role, resourceNames) or refused by the server
    is reported."""
    from chart import Call, ungranted

    objs = render()
    sa = one(objs, "ServiceAccount")["metadata"]
    rules = chart_rules(objs, sa["name"], sa["namespace"])

    def call(verb, group, resource, ns="", name="", code=200, uri="/apis/x", message=""):
        return Call(verb, group, resource, ns, name, code, uri, message)

    ok = [call("watch", "resource.k8s.io", "resourceslices"), call("get", "resource.k8s.io", "resourceclaims", "ns1"),
          call("patch", "resource.k8s.io", "resourceclaims/status", "ns1"), call("get", "", "nodes", name="n"),
          call("create", "", "events", "default"), call("get", "", "", uri="/apis/resource.k8s.io"),
          call("get", "", "", uri="/version")]
    bad = [call("patch", "resource.k8s.io", "resourceslices"), call("list", "resource.k8s.io", "resourceclaims"),
           call("update", "resource.k8s.io", "resourceclaims/status", "ns1"), call("create", "", "events", "kube-system"),
           call("get", "", "secrets", "ns1"), call("patch", "resource.k8s.io", "resourceclaims/driver", "ns1", "other.example.com"),
           call("get", "", "", uri="/metrics"),
           call("patch", "resource.k8s.io", "resourceclaims/status", "ns1", code=422, message="status.devices: Forbidden: x")]
    assert ungranted(ok, rules) == []
    assert ungranted(bad, rules) == bad
