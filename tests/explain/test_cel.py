"""The DRA CEL environment of explain: values, library functions and error texts as the
scheduler's (k8s.io/dynamic-resource-allocation/cel, k8s.io/apiserver/pkg/cel/library)."""
from __future__ import annotations

import pytest

from dra_framework.explain.celenv import CelError
from dra_framework.explain.model import Device
from dra_framework.explain.selector import Selector


def gpu() -> Device:
    return Device(driver="gpu.example.com", pool="node-1", name="gpu-0", slice_name="s", raw={},
                  attributes={"model": {"string": "H100-SXM"}, "index": {"int": 3}, "mig": {"bool": True},
                              "driverVersion": {"version": "550.54.15"},
                              "resource.kubernetes.io/pcieRoot": {"string": "pci0000:15"},
                              "cores": {"ints": [1, 2, 3]}},
                  capacity={"memory": {"value": "80Gi"}})


@pytest.mark.parametrize("expr, want", [
    ('device.driver == "gpu.example.com"', True),
    ('device.attributes["gpu.example.com"].model == "H100-SXM"', True),
    ('device.attributes["gpu.example.com"].index >= 3 && device.attributes["gpu.example.com"].mig', True),
    ('device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:15"', True),
    ('device.attributes["unknown.example.com"].size() == 0', True),           # unknown domain: empty map
    ('has(device.attributes["gpu.example.com"].nope)', False),
    ('device.attributes["gpu.example.com"].model == 1', False),                 # heterogeneous equality
    ('device.attributes["gpu.example.com"].index == 3.0', True),
    ('device.capacity["gpu.example.com"].memory.compareTo(quantity("40Gi")) > 0', True),
    ('device.capacity["gpu.example.com"].memory.isLessThan(quantity("80Gi"))', False),
    ('device.capacity["gpu.example.com"].memory == quantity("81920Mi")', True),
    ('device.capacity["gpu.example.com"].memory.sub(quantity("16Gi")).asInteger() == 68719476736', True),
    ('device.attributes["gpu.example.com"].driverVersion.isGreaterThan(semver("535.0.0"))', True),
    ('device.attributes["gpu.example.com"].driverVersion.major() == 550', True),
    ('semver("v1.2", true) == semver("1.2.0")', True),
    ('isSemver("1.2") || isSemver("v1.2.3")', False),
    ('isSemver("1.2", true) && isQuantity("1.5Gi") && !isQuantity("1.5 Gi")', True),
    ('device.attributes["gpu.example.com"].model.lowerAscii().contains("h100")', True),
    ('device.attributes["gpu.example.com"].model.split("-")[1] == "SXM"', True),
    ('device.attributes["gpu.example.com"].model.substring(0, 4) == "H100"', True),
    ('device.attributes["gpu.example.com"].model.indexOf("SXM") == 5', True),
    ('device.attributes["gpu.example.com"].model.matches("^H[0-9]+")', True),
    ('device.attributes["gpu.example.com"].cores.includes(2)', True),
    ('device.attributes["gpu.example.com"].cores.sum() == 6 && [3, 1].isSorted() == false', True),
    ('device.allowMultipleAllocations', False),
])
def test_selector_values(expr, want):
    assert Selector(expr).matches(gpu()) is want


def test_unknown_attribute_is_the_schedulers_no_such_key_error():
    with pytest.raises(CelError) as e:
        Selector('device.attributes["gpu.example.com"].modle == "x"').matches(gpu())
    assert str(e.value) == ("no such key: modle. consider using CEL optional chaining (.? followed by orValue()) "
                            "or guarding the check with has() for optional fields")


def test_false_beats_error_in_and_as_in_cel():
    assert Selector('device.attributes["gpu.example.com"].modle == "x" && false').matches(gpu()) is False
    assert Selector('device.attributes["gpu.example.com"].modle == "x" || true').matches(gpu()) is True


def test_non_bool_result_and_syntax_errors():
    with pytest.raises(CelError, match="could not be converted to bool"):
        Selector('device.attributes["gpu.example.com"].model').matches(gpu())
    with pytest.raises(CelError) as e:
        Selector('device.driver == ')
    assert e.value.kind == "compile"
    with pytest.raises(CelError, match="at most 10240"):
        Selector("true && " * 1400 + "true")
    with pytest.raises(CelError, match="quantities must match"):
        Selector('quantity("1.5 Gi").sign() == 1').matches(gpu())


def test_explain_names_the_false_clause_and_the_values_it_read():
    s = Selector('device.driver == "gpu.example.com" && device.attributes["gpu.example.com"].index > 5 '
                 '&& device.capacity["gpu.example.com"].memory.isGreaterThan(quantity("1Gi"))')
    v = s.explain(gpu())
    assert v.clause == 'device.attributes["gpu.example.com"].index > 5'
    assert v.error == ""
    assert v.values == ['device.attributes["gpu.example.com"].index = 3']
    v = Selector('device.attributes["gpu.example.com"].productName == "x"').explain(gpu())
    assert v.error.startswith("no such key: productName")
    assert v.values == ['device.attributes["gpu.example.com"].productName: not set']
