"""Schema + Go-library rules + strict policy (issue 5, item 4; docs/cdi-rules.md#load-rules and
docs/cdi-rules.md#schema)."""
import copy
import json

import pytest

from dra_framework.cdi import CdiValidationError, spec_issues, validate_spec, validate_spec_file


def minimal():
    return {"cdiVersion": "0.3.0", "kind": "vendor.com/device",
            "devices": [{"name": "device", "containerEdits": {"deviceNodes": [{"path": "/dev/card1"}]}}]}


def example():
    # Shaped like upstream schema/testdata/good/spec-example.json (our own data).
    return {
        "cdiVersion": "0.6.0",
        "kind": "example.com/gpu",
        "annotations": {"example.com/owner": "tests"},
        "devices": [
            {"name": "gpu0", "annotations": {"slot": "1"},
             "containerEdits": {"deviceNodes": [{"hostPath": "/dev/gpu0", "path": "/dev/gpu0", "type": "c",
                                                 "major": 226, "minor": 0, "fileMode": 438,
                                                 "permissions": "rw"}]}},
            {"name": "gpu1", "containerEdits": {"deviceNodes": [{"path": "/dev/gpu1"}]}},
        ],
        "containerEdits": {
            "env": ["FOO=VALID_SPEC", "BAR=", "BAZ=a=b"],
            "deviceNodes": [{"path": "/dev/gpu-ctl", "uid": 1000, "gid": 1000}],
            "mounts": [{"hostPath": "/bin/vendor-binary", "containerPath": "/bin/vendor-binary",
                        "options": ["bind", "ro"]},
                       {"hostPath": "tmpfs", "containerPath": "/scratch", "type": "tmpfs", "options": ["size=1m"]}],
            "hooks": [{"hookName": "createContainer", "path": "/bin/vendor-hook", "args": ["vendor-hook", "x"],
                       "env": ["A=1"], "timeout": 10},
                      {"hookName": "startContainer", "path": "/usr/bin/ldconfig"}],
        },
    }


def full_110():
    s = minimal()
    s["cdiVersion"] = "1.1.0"
    s["devices"][0]["containerEdits"].update({
        "additionalGids": [44], "netDevices": [{"hostInterfaceName": "eth1", "name": "net1"}],
        "intelRdt": {"closID": "/", "schemata": ["L3:0=f"], "enableMonitoring": True}})
    return s


@pytest.mark.parametrize("spec", [minimal(), example(), full_110()], ids=["minimal", "example", "full-1.1.0"])
def test_good_specs(spec):
    validate_spec(spec)


def test_relaxed_accepts_go_valid_but_unsafe():
    s = minimal()
    s["cdiVersion"] = "1.0.0"             # not the minimum
    s["kind"] = "v/c"                     # 1-char vendor/class
    s["devices"][0]["name"] = "dev:1"     # colon
    s["devices"][0]["containerEdits"]["deviceNodes"][0]["path"] = "dev/x"  # relative
    assert spec_issues(s, strict=False) == []
    assert len(spec_issues(s, strict=True)) == 5


def _set(path, value):
    def f(s):
        obj = s
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return f


def _del(path):
    def f(s):
        obj = s
        for k in path[:-1]:
            obj = obj[k]
        del obj[path[-1]]
    return f


D0 = ("devices", 0, "containerEdits")
D0LOC = 'devices[0] "device": containerEdits'

# (id, mutation of minimal(), expected substring of the location, expected substring of the message)
BAD = [
    ("schema-missing-kind", _del(("kind",)), "(spec)", "'kind' is a required property"),
    ("schema-missing-devices", _del(("devices",)), "(spec)", "'devices' is a required property"),
    ("schema-missing-edits", _del(("devices", 0, "containerEdits")), 'devices[0] "device"', "containerEdits"),
    ("schema-node-path", _set(D0 + ("deviceNodes",), [{"type": "c"}]), D0LOC + ".deviceNodes[0]", "'path'"),
    ("schema-uid-range", _set(D0 + ("deviceNodes", 0, "uid"), -1), D0LOC + ".deviceNodes[0].uid", "minimum"),
    ("schema-gid-type", _set(D0 + ("deviceNodes", 0, "gid"), "0"), D0LOC + ".deviceNodes[0].gid", "integer"),
    ("schema-annotation-value", _set(("annotations",), {"a": 1}), "annotations.a", "string"),
    ("unknown-top", _set(("containerSpec",), {}), "containerSpec", "unknown field"),
    ("unknown-device", _set(("devices", 0, "extra"), 1), 'devices[0] "device": extra', "unknown field"),
    ("unknown-node", _set(D0 + ("deviceNodes", 0, "hostpath"), "/x"), D0LOC + ".deviceNodes[0].hostpath",
     "unknown field"),
    ("additionalGIDs-typo", _set(D0 + ("additionalGIDs",), [1]), D0LOC + ".additionalGIDs", "unknown field"),
    ("version-missing", _del(("cdiVersion",)), "(spec)", "cdiVersion"),
    ("version-unknown", _set(("cdiVersion",), "1.2.0"), "cdiVersion", "invalid version"),
    ("version-old", _set(("cdiVersion",), "0.2.0"), "cdiVersion", "at least v0.3.0"),
    ("version-too-low", _set(D0 + ("deviceNodes", 0, "hostPath"), "/dev/y"), "cdiVersion", "at least v0.5.0"),
    ("version-not-minimum", _set(("cdiVersion",), "1.1.0"), "cdiVersion", "minimum required version '0.3.0'"),
    ("kind-no-slash", _set(("kind",), "vendor.com"), "kind", "vendor/class"),
    ("kind-bad-vendor", _set(("kind",), "vendor.com-/device"), "kind", "invalid vendor"),
    ("kind-bad-class", _set(("kind",), "vendor.com/dev ice"), "kind", "invalid class"),
    ("kind-class-slash", _set(("kind",), "a1/b1/c1"), "kind", "invalid class"),
    ("kind-1char", _set(("kind",), "v/device"), "kind", "at least 2 characters"),
    ("no-devices", _set(("devices",), []), "devices", "at least one device"),
    ("device-name-empty", _set(("devices", 0, "name"), ""), 'devices[0] "": name', "invalid device name"),
    ("device-name-slash", _set(("devices", 0, "name"), "MIG-GPU-1/1/0"), "name", "invalid device name"),
    ("device-name-trailing", _set(("devices", 0, "name"), "dev_"), "name", "invalid device name"),
    ("device-name-colon", _set(("devices", 0, "name"), "0000:3b:00.0"), "name", "must not contain ':'"),
    ("device-dup", lambda s: s["devices"].append(copy.deepcopy(s["devices"][0])), 'devices[1] "device": name',
     "duplicate device name"),
    ("device-empty-edits", _set(D0, {}), 'devices[0] "device": containerEdits', "empty device edits"),
    ("device-empty-edits-lists", _set(D0, {"env": [], "mounts": []}), "containerEdits", "empty device edits"),
    ("env-no-eq", _set(D0 + ("env",), ["FOO"]), D0LOC + ".env[0]", "NAME=VALUE"),
    ("env-leading-eq", _set(D0 + ("env",), ["=x"]), D0LOC + ".env[0]", "NAME=VALUE"),
    ("env-not-string", _set(D0 + ("env",), [1]), D0LOC + ".env[0]", "must be a string"),
    ("spec-env", _set(("containerEdits",), {"env": ["X"]}), "containerEdits.env[0]", "NAME=VALUE"),
    ("node-path-empty", _set(D0 + ("deviceNodes", 0, "path"), ""), D0LOC + ".deviceNodes[0].path", "must not be empty"),
    ("node-path-relative", _set(D0 + ("deviceNodes", 0, "path"), "dev/x"), D0LOC + ".deviceNodes[0].path",
     "must be an absolute path"),
    ("node-path-unclean", _set(D0 + ("deviceNodes", 0, "path"), "/dev/../dev/x"), ".deviceNodes[0].path", "clean"),
    ("node-hostpath-relative", _set(D0 + ("deviceNodes", 0, "hostPath"), "x"), ".deviceNodes[0].hostPath",
     "absolute"),
    ("node-type", _set(D0 + ("deviceNodes", 0, "type"), "x"), D0LOC + ".deviceNodes[0].type", "device node type"),
    ("node-perm", _set(D0 + ("deviceNodes", 0, "permissions"), "rwx"), ".deviceNodes[0].permissions", "permissions"),
    ("node-perm-none", _set(D0 + ("deviceNodes", 0, "permissions"), "none"), ".deviceNodes[0].permissions", "none"),
    ("node-filemode", _set(D0 + ("deviceNodes", 0, "fileMode"), -1), ".deviceNodes[0].fileMode", "uint32"),
    ("node-filemode-type", _set(D0 + ("deviceNodes", 0, "fileMode"), "0644"), ".deviceNodes[0].fileMode", "uint32"),
    ("mount-containerpath-empty", _set(D0 + ("mounts",), [{"hostPath": "/a", "containerPath": ""}]),
     D0LOC + ".mounts[0].containerPath", "must not be empty"),
    ("mount-containerpath-relative", _set(D0 + ("mounts",), [{"hostPath": "/a", "containerPath": "b"}]),
     D0LOC + ".mounts[0].containerPath", "absolute"),
    ("mount-hostpath-empty", _set(D0 + ("mounts",), [{"hostPath": "", "containerPath": "/b"}]),
     D0LOC + ".mounts[0].hostPath", "must not be empty"),
    ("mount-bind-relative", _set(D0 + ("mounts",), [{"hostPath": "a", "containerPath": "/b", "options": ["rbind"]}]),
     D0LOC + ".mounts[0].hostPath", "absolute"),
    ("hook-name", _set(D0 + ("hooks",), [{"hookName": "preStart", "path": "/x"}]), D0LOC + ".hooks[0].hookName",
     "invalid hook name"),
    ("hook-path-empty", _set(D0 + ("hooks",), [{"hookName": "prestart", "path": ""}]), D0LOC + ".hooks[0].path",
     "must not be empty"),
    ("hook-path-relative", _set(D0 + ("hooks",), [{"hookName": "prestart", "path": "bin/x"}]),
     D0LOC + ".hooks[0].path", "absolute"),
    ("hook-env", _set(D0 + ("hooks",), [{"hookName": "prestart", "path": "/x", "env": ["bad"]}]),
     D0LOC + ".hooks[0].env[0]", "NAME=VALUE"),
    ("hook-timeout-zero", _set(D0 + ("hooks",), [{"hookName": "prestart", "path": "/x", "timeout": 0}]),
     D0LOC + ".hooks[0].timeout", "> 0"),
    ("hook-timeout-range", _set(D0 + ("hooks",), [{"hookName": "prestart", "path": "/x", "timeout": 2**32}]),
     D0LOC + ".hooks[0].timeout", "maximum"),
    ("closid-dotdot", lambda s: (_set(D0 + ("intelRdt",), {"closID": ".."})(s), _set(("cdiVersion",), "0.7.0")(s)),
     D0LOC + ".intelRdt.closID", "closID"),
    ("closid-slash", lambda s: (_set(D0 + ("intelRdt",), {"closID": "a/b"})(s), _set(("cdiVersion",), "0.7.0")(s)),
     D0LOC + ".intelRdt.closID", "closID"),
    ("closid-long", lambda s: (_set(D0 + ("intelRdt",), {"closID": "a" * 4096})(s), _set(("cdiVersion",), "0.7.0")(s)),
     D0LOC + ".intelRdt.closID", "closID"),
    ("rdt-unknown", lambda s: (_set(D0 + ("intelRdt",), {"enableCMT": True})(s), _set(("cdiVersion",), "0.7.0")(s)),
     D0LOC + ".intelRdt.enableCMT", "unknown field"),
    ("net-empty-name", lambda s: (_set(D0 + ("netDevices",), [{"hostInterfaceName": "eth0", "name": ""}])(s),
                                  _set(("cdiVersion",), "1.1.0")(s)), D0LOC + ".netDevices[0].name", "must not be empty"),
    ("net-dup-host", lambda s: (_set(D0 + ("netDevices",), [{"hostInterfaceName": "eth0", "name": "a"},
                                                           {"hostInterfaceName": "eth0", "name": "b"}])(s),
                                _set(("cdiVersion",), "1.1.0")(s)),
     D0LOC + ".netDevices[1].hostInterfaceName", "duplicate"),
    ("net-dup-name", lambda s: (_set(D0 + ("netDevices",), [{"hostInterfaceName": "eth0", "name": "a"},
                                                           {"hostInterfaceName": "eth1", "name": "a"}])(s),
                                _set(("cdiVersion",), "1.1.0")(s)), D0LOC + ".netDevices[1].name", "duplicate"),
    ("gid-range", lambda s: (_set(D0 + ("additionalGids",), [2**32])(s), _set(("cdiVersion",), "0.7.0")(s)),
     D0LOC + ".additionalGids[0]", "maximum"),
    ("annotation-key", lambda s: (_set(("annotations",), {"bad key!": "x"})(s), _set(("cdiVersion",), "0.6.0")(s)),
     "annotations.bad key!", "qualified name"),
    ("annotation-key-prefix", lambda s: (_set(("devices", 0, "annotations"), {"Ex_ample.com/k": "x"})(s),
                                         _set(("cdiVersion",), "0.6.0")(s)),
     'devices[0] "device": annotations.Ex_ample.com/k', "qualified name"),
    ("annotation-key-long", lambda s: (_set(("annotations",), {"a" * 64: "x"})(s), _set(("cdiVersion",), "0.6.0")(s)),
     "annotations.aaa", "qualified name"),
    ("annotation-size", lambda s: (_set(("annotations",), {"k": "x" * (256 * 1024)})(s),
                                   _set(("cdiVersion",), "0.6.0")(s)), "annotations", "too large"),
    ("intelrdt-null", _set(D0 + ("intelRdt",), None), D0LOC + ".intelRdt", "object"),
]


@pytest.mark.parametrize("mutate,loc,msg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_specs(mutate, loc, msg):
    s = minimal()
    mutate(s)
    with pytest.raises(CdiValidationError) as ei:
        validate_spec(s)
    hits = [i for i in ei.value.issues if loc in i.location and msg in i.message]
    assert hits, f"expected an issue at {loc!r} with {msg!r}, got:\n{ei.value}"
    assert loc in str(ei.value)


def test_error_format_names_device_and_field():
    s = minimal()
    s["devices"] = [{"name": f"dev{i}", "containerEdits": {"env": ["A=1"]}} for i in range(2)]
    s["devices"].append({"name": "abc-gpu0", "containerEdits": {"deviceNodes": [{"path": "dev/x"}]}})
    with pytest.raises(CdiValidationError) as ei:
        validate_spec(s)
    assert str(ei.value).endswith('devices[2] "abc-gpu0": containerEdits.deviceNodes[0].path: must be an absolute path')


def test_validate_spec_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(minimal()))
    assert validate_spec_file(str(good)) == minimal()
    empty = tmp_path / "empty.json"
    empty.write_text("")
    dup = tmp_path / "dup.json"
    dup.write_text('{"cdiVersion": "0.3.0", "cdiVersion": "0.3.0", "kind": "vendor.com/device", "devices": []}')
    for p in (empty, dup):
        with pytest.raises(CdiValidationError, match=str(p.name)):
            validate_spec_file(str(p))
    explicit_empty = tmp_path / "explicit-empty.json"
    explicit_empty.write_text("{}")
    with pytest.raises(CdiValidationError, match="required"):
        validate_spec_file(str(explicit_empty))
    y = tmp_path / "spec.yaml"
    y.write_text("---\ncdiVersion: 0.3.0\nkind: vendor.com/device\ndevices:\n- name: d\n  containerEdits:\n"
                 "    env: [A=1]\n")
    validate_spec_file(str(y))
