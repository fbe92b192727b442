"""CEL selectors through explain and through the scheduler's allocator (the harness's
``dra-allocator --batch``): the same devices, the same error text. Covers ``cel.bind``, the
``sets`` library, optional chaining (``.?``, ``[?]``, ``optional.*``), cel-go's compile-time
errors for undeclared references and non-bool results,
and the runtime error for a non-bool result."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from dra_framework.explain.core import Explainer
from dra_framework.explain.inputs import Inputs
from dra_framework.testing.k8s import allocate_batch

pytestmark = pytest.mark.k8s
API = "resource.k8s.io/v1"
SLICE = {"apiVersion": API, "kind": "ResourceSlice", "metadata": {"name": "s"},
         "spec": {"driver": "d.example.com", "nodeName": "node-1",
                  "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                  "devices": [{"name": f"dev-{i}", "attributes": {"i": {"int": i}, "model": {"string": f"m{i % 2}"}}}
                              for i in range(3)]}}
CLASS = {"apiVersion": API, "kind": "DeviceClass", "metadata": {"name": "c"},
         "spec": {"selectors": [{"cel": {"expression": 'device.driver == "d.example.com"'}}]}}
ATTR = 'device.attributes["d.example.com"].i'
EXPRESSIONS = [
    f"cel.bind(x, {ATTR}, x > 1)",
    f"cel.bind(x, {ATTR}, cel.bind(y, x * 2, y == 2))",
    f"sets.contains([1, 2, 3], [{ATTR}])",
    f"sets.equivalent([1, 1], [{ATTR}])",
    f"sets.intersects([2, 5], [{ATTR}])",
    f"[1, 2].exists(x, x == {ATTR})",
    # optional chaining, as the scheduler's own "no such key" hint suggests
    'device.attributes["d.example.com"].?i.orValue(0) > 1',
    'device.attributes["d.example.com"].?nope.orValue(7) == 7 && device.attributes["d.example.com"].i == 0',
    'device.attributes["other.example.com"].?i.hasValue()',
    'device.attributes[?"d.example.com"].?model.orValue("") == "m1"',
    f"optional.of(1).value() == {ATTR}",
    f"optional.none().orValue(2) == {ATTR}",
    f"optional.ofNonZeroValue({ATTR}).hasValue()",
    'device.attributes["d.example.com"].?nope.value() == 1',
    "optional.foo(1)",
    'dev.driver == "d.example.com"',           # undeclared variable
    f"foo({ATTR})",                                # undeclared function
    "sets.foo([1], [1])",                       # not in the sets library
    f"[1].exists(x, x == y) || {ATTR} == 1",       # a macro's variable is declared, y is not
    f"{ATTR}.foo()",                               # undeclared method
    "device.driver",                            # compile time: not a bool
    "device.driver.lowerAscii()",
    f"[{ATTR}]",
    f"[[{ATTR}]]",
    "[]",
    '{"a": 1}',
    f'{{"a": {ATTR}}}',
    f"{ATTR}",                                      # run time: not a bool
    'device.attributes["d.example.com"].model',
]


@pytest.fixture(scope="module")
def oracle(harness_bins) -> dict[str, dict[str, Any]]:
    cases = [{"name": e, "claim": _claim(n, e)} for n, e in enumerate(EXPRESSIONS)]
    out = allocate_batch(harness_bins, [{"name": "cel", "nodeName": "node-1", "slices": [SLICE], "classes": [CLASS],
                                         "claims": [], "cases": cases}])
    return {o["case"]: o for o in out}


def _claim(n: int, expression: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ResourceClaim", "metadata": {"name": f"x{n}", "namespace": "default"},
            "spec": {"devices": {"requests": [{"name": "r", "exactly": {
                "deviceClassName": "c", "selectors": [{"cel": {"expression": expression}}]}}]}}}


@pytest.mark.parametrize("n,expression", list(enumerate(EXPRESSIONS)), ids=EXPRESSIONS)
def test_selector_as_the_allocator_sees_it(oracle, k8s_version, n, expression):
    inputs = Inputs()
    for obj in copy.deepcopy([SLICE, CLASS, _claim(n, expression)]):
        inputs.add(obj, "test")
    (mine,) = Explainer(inputs, k8s_version.startswith("1.34.")).explain("node-1")["claims"]
    want = oracle[expression]
    assert (mine["satisfiable"], mine["error"]) == (want["allocated"], want.get("error")), want
    if want["allocated"]:
        assert [r["device"] for r in mine["allocation"]["devices"]["results"]] == \
            [r["device"] for r in want["allocation"]["devices"]["results"]]
